package metrics

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/scoreboard"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

func requests(ok, failed uint64) scoreboard.Totals {
	var t scoreboard.Totals
	t.Requests[1], t.Requests[4] = ok, failed
	t.Buckets[0] = ok + failed
	return t
}

// TestHerdTotalsNeverGoDown runs the herd through what replaces workers:
// a recycle, a crash, a reload, and an upgrade's inheritance. Every
// request is counted once, and the total never drops.
func TestHerdTotalsNeverGoDown(t *testing.T) {
	var h Herd
	var last uint64
	check := func(step string, live []scoreboard.Totals, want uint64) {
		t.Helper()
		got := h.Total(live)
		if n := got.RequestCount(); n != want || n < last {
			t.Fatalf("%s: total %d, want %d (last %d)", step, n, want, last)
		}
		last = got.RequestCount()
	}
	a, b := requests(5, 0), requests(3, 1)
	check("two workers", []scoreboard.Totals{a, b}, 9)
	// a serves 2 more, reaches --max-requests and exits; its replacement
	// starts from zero.
	a = requests(7, 0)
	h.Fold(a)
	check("a recycled", []scoreboard.Totals{b, {}}, 11)
	// b is SIGKILLed: its last counts are what its memory holds.
	b = requests(4, 1)
	h.Fold(b)
	c := requests(2, 0)
	check("b killed", []scoreboard.Totals{c, {}}, 14)
	// A reload: two new workers serve while c drains, then c exits.
	d, e := requests(1, 0), requests(1, 0)
	check("reload, old and new", []scoreboard.Totals{c, d, e}, 16)
	h.Fold(c)
	check("reload complete", []scoreboard.Totals{d, e}, 16)
	// A new arbiter (USR2) inherits the old one's totals once its
	// workers are gone.
	var old Herd
	old.Fold(requests(100, 0))
	h.Fold(old.Gone())
	check("inherited", []scoreboard.Totals{d, e}, 116)
}

// TestHerdGuardsAgainstAShrinkingSlot: a worker that overwrote its own
// scoreboard cannot make the herd's counters go down.
func TestHerdGuardsAgainstAShrinkingSlot(t *testing.T) {
	var h Herd
	h.Total([]scoreboard.Totals{requests(10, 0)})
	if got := h.Total([]scoreboard.Totals{requests(2, 0)}); got.RequestCount() != 10 {
		t.Fatalf("total %d after a slot shrank, want it held at 10", got.RequestCount())
	}
}

func TestCountersAdd(t *testing.T) {
	a := Counters{Requests: requests(1, 0)}
	a.Exits[ExitRecycle] = 2
	a.SpawnToReady.Observe(30 * time.Millisecond)
	b := a
	b.Reloads[ReloadFailed] = 1
	b.Canaries[CanaryTimedOut] = 1
	a.Add(b)
	if a.Requests.RequestCount() != 2 || a.Exits[ExitRecycle] != 4 || a.Reloads[ReloadFailed] != 1 || a.Canaries[CanaryTimedOut] != 1 ||
		a.SpawnToReady.Counts[2] != 2 || a.SpawnToReady.Sum < 0.059 {
		t.Fatalf("Add: %+v", a)
	}
}

func TestSpawnHistogramBounds(t *testing.T) {
	var h SpawnHistogram
	h.Observe(50 * time.Millisecond) // on a bound: that bucket
	h.Observe(2 * time.Minute)       // past the last: +Inf
	if h.Counts[2] != 1 || h.Counts[len(SpawnBuckets)] != 1 {
		t.Fatalf("counts %v", h.Counts)
	}
}

// sample is a snapshot with a bit of everything: a worker serving, one
// booting in the same slot, an exec worker, a draining one, listeners.
func sample() *Snapshot {
	now := time.Now()
	busy := scoreboard.Counts{Valid: true, State: scoreboard.Busy, ConnsOpen: 3, InFlight: 1,
		CurrentStart: 1, Current: "GET /slow"}
	busy.Totals = requests(40, 2)
	s := &Snapshot{
		Taken: now, Generation: 2, Target: 3, ReadyMin: 1, MinWorkers: 2, MaxWorkers: 4,
		TargetCause: "queue", TargetWhy: "3 connections waiting in the accept queue", TargetChanged: now,
		Workers: []Worker{
			{Slot: 0, Pid: 101, Generation: 2, Age: 4, Started: now.Add(-time.Minute), Ready: true, ReadyAfter: 80 * time.Millisecond,
				Current: true, LastBeat: time.Second, Proc: Proc{CPU: 1500 * time.Millisecond, RSS: 20 << 20, PSS: 12 << 20}, Board: busy},
			{Slot: 0, Pid: 107, Generation: 2, Age: 7, Started: now, Current: false,
				Board: scoreboard.Counts{Valid: true, State: scoreboard.Booting}},
			{Slot: 1, Pid: 102, Generation: 2, Age: 5, Exec: true, Started: now.Add(-time.Minute), Ready: true, Current: true},
			{Slot: 2, Pid: 90, Generation: 1, Age: 2, Started: now.Add(-time.Hour), Ready: true, Stopping: true,
				Board: scoreboard.Counts{Valid: true, State: scoreboard.Idle}},
		},
		Listeners: []Listener{{Name: "http://127.0.0.1:8000", Depth: 4, Limit: 2048}, {Name: "unix:/run/x.sock", Err: true}},
	}
	s.Counters.Requests = requests(1000, 7)
	s.Counters.Requests.ParseErrors[0] = 3
	s.Counters.Exits[ExitTimeout] = 1
	s.Counters.Reloads[ReloadComplete] = 1
	s.Counters.Canaries[CanaryErrors] = 1
	s.Canary = CanaryWatching
	s.Counters.SpawnToReady.Observe(80 * time.Millisecond)
	return s
}

func gather(t *testing.T, s *Snapshot) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector{latest: func() *Snapshot { return s }, now: func() int64 { return 2e9 + 1 }})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestCollectorSeries(t *testing.T) {
	out := gather(t, sample())
	for _, want := range []string{
		`corral_requests_total{class="2xx"} 1000`,
		`corral_requests_total{class="5xx"} 7`,
		`corral_request_duration_seconds_count 1007`,
		`corral_request_duration_seconds_bucket{le="+Inf"} 1007`,
		`corral_request_parse_errors_total{code="400"} 3`,
		`corral_workers{state="busy"} 1`,
		`corral_workers{state="booting"} 1`,
		`corral_workers{state="idle"} 1`, // the exec worker
		`corral_workers{state="draining"} 1`,
		`corral_workers_running 4`,
		`corral_workers_ready 2`,
		`corral_workers_target 3`,
		`corral_generation 2`,
		`corral_worker_exits_total{cause="timeout"} 1`,
		`corral_reloads_total{result="complete"} 1`,
		`corral_canary_state{state="watching"} 1`,
		`corral_canary_state{state="none"} 0`,
		`corral_canary_reloads_total{outcome="rolled_back",reason="5xx"} 1`,
		`corral_canary_reloads_total{outcome="promoted",reason="window_passed"} 0`,
		`corral_worker_spawn_to_ready_seconds_count 1`,
		`corral_listener_queue_depth{listener="http://127.0.0.1:8000"} 4`,
		`corral_listener_queue_limit{listener="http://127.0.0.1:8000"} 2048`,
		`corral_worker_pid{slot="0"} 101`, // the ready one, not its booting replacement
		`corral_worker_pid{slot="1"} 102`,
		`corral_worker_pid{slot="2"} 90`,
		`corral_worker_state{slot="0",state="busy"} 1`,
		`corral_worker_state{slot="2",state="draining"} 1`,
		`corral_worker_requests_total{slot="0"} 42`,
		`corral_worker_current_request_seconds{slot="0"} 2`,
		`corral_worker_cpu_seconds_total{slot="0"} 1.5`,
		`corral_worker_ready_seconds{slot="0"} 0.08`,
		`corral_connections_open 3`,
		`corral_requests_in_flight 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no %s in\n%s", want, out)
		}
	}
	for _, absent := range []string{`corral_listener_queue_depth{listener="unix:/run/x.sock"}`, `corral_worker_requests_total{slot="1"}`} {
		if strings.Contains(out, absent) {
			t.Errorf("%s is there: an unreadable queue and an exec worker's scoreboard are left out", absent)
		}
	}
}

func TestCollectorWithNothingPublished(t *testing.T) {
	if out := gather(t, nil); out != "" {
		t.Fatalf("before the first snapshot: %q, want nothing", out)
	}
}

// TestPromtoolChecksTheExposition runs a scrape of the real server through
// promtool check metrics, the linter Prometheus ships.
func TestPromtoolChecksTheExposition(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; make deps installs it)")
	}
	s := NewServer(slog.New(slog.DiscardHandler))
	s.Publish(sample())
	base := serve(t, s, "tcp")
	body, code := get(t, base, "/metrics")
	if code != 200 || !strings.Contains(body, "process_cpu_seconds_total") {
		t.Fatalf("scrape: %d\n%s", code, body)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// serve serves s on a new TCP or unix listener and returns the base URL.
func serve(t *testing.T, s *Server, network string) string {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "m.sock")
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	if network == "unix" {
		return "unix:" + addr
	}
	return "http://" + l.Addr().String()
}

// get fetches path from base, an http:// URL or unix:SOCKET.
func get(t *testing.T, base, path string) (string, int) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	url := base + path
	if sock, ok := strings.CutPrefix(base, "unix:"); ok {
		c.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}
		url = "http://unix" + path
	}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

func TestHealthEndpoints(t *testing.T) {
	s := NewServer(slog.New(slog.DiscardHandler))
	clock := int64(10e9)
	s.now = func() int64 { return clock }
	s.Turned()
	base := serve(t, s, "unix")
	expect := func(path string, code int, text string) {
		t.Helper()
		body, got := get(t, base, path)
		if got != code || !strings.Contains(body, text) || strings.Count(body, "\n") != 1 {
			t.Fatalf("%s: %d %q, want %d and one line with %q", path, got, body, code, text)
		}
	}
	expect("/readyz", 503, "starting")
	snap := sample()
	snap.ReadyMin = 3
	s.Publish(snap)
	expect("/readyz", 503, "2 of the 3 workers needed (--ready-min) are ready")
	snap2 := *snap
	snap2.ReadyMin = 2
	s.Publish(&snap2)
	expect("/readyz", 200, "ok: 2 workers ready")
	snap3 := snap2
	snap3.Stopping = true
	s.Publish(&snap3)
	expect("/readyz", 503, "stopping")

	expect("/livez", 200, "ok")
	clock += int64(LiveWithin) + 1
	expect("/livez", 503, "the arbiter's loop last turned 2s ago")
	s.Turned()
	expect("/livez", 200, "ok")
	if _, code := get(t, base, "/other"); code != 404 {
		t.Fatalf("/other: %d, want 404", code)
	}
}

// TestConnectionCap: scrapers that hold MaxConns connections open make
// the next one wait in the backlog, not cost the arbiter a goroutine; it
// is served once one of them closes.
func TestConnectionCap(t *testing.T) {
	s := NewServer(slog.New(slog.DiscardHandler))
	base := serve(t, s, "tcp")
	addr := strings.TrimPrefix(base, "http://")
	var held []net.Conn
	for range MaxConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// Each held connection sends half a request head and stalls.
	for _, c := range held {
		c.Write([]byte("GET /livez HTTP/1.1\r\n"))
	}
	time.Sleep(100 * time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 100)); err == nil {
		t.Fatalf("a connection beyond the cap was served (%d bytes)", n)
	}
	held[0].Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil || !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200")) {
		t.Fatalf("after a slot freed: %q, %v; want a 200", buf[:n], err)
	}
}

func TestReadProcOfThisProcess(t *testing.T) {
	// Burn a little CPU so that the tick count is above zero.
	for deadline := time.Now().Add(30 * time.Millisecond); time.Now().Before(deadline); {
	}
	p, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.CPU <= 0 || p.RSS < 1<<20 || p.PSS == 0 || p.PSS > p.RSS {
		t.Fatalf("%+v: want CPU time, an RSS over 1 MiB, 0 < PSS <= RSS", p)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Fatal("ReadProc of no such process succeeded")
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis in it.
	stat := []byte("1234 (my (odd) app) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 1000 10 18446744073709551615")
	if d, err := parseStatCPU(stat); err != nil || d != 3*time.Second {
		t.Fatalf("parseStatCPU = %s, %v; want 3s", d, err)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Fatal("a short stat line parsed")
	}
}

// TestDocsListEverySeries keeps docs/metrics.md true: every series the
// collector makes has its row there, with its type.
func TestDocsListEverySeries(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(gather(t, sample()), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[1] != "TYPE" {
			continue
		}
		n++
		if row := "| `" + f[2] + "` | " + f[3] + " |"; !bytes.Contains(doc, []byte(row)) {
			t.Errorf("docs/metrics.md has no row %q", row)
		}
	}
	if n != len(allDescs) {
		t.Errorf("the sample made %d series, the collector has %d: the sample misses some", n, len(allDescs))
	}
}
