package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startMetrics starts corral with --metrics-bind 127.0.0.1:0 and args,
// and returns it with the metrics listener's host:port, from its log.
func startMetrics(t *testing.T, args ...string) (*server, string) {
	t.Helper()
	s := start(t, corralBin, append([]string{"--metrics-bind", "127.0.0.1:0"}, args...))
	return s, metricsAddr(t, s)
}

// metricsAddr is the host:port the arbiter serves its metrics on.
func metricsAddr(t *testing.T, s *server) string {
	t.Helper()
	return s.waitLog(`Serving metrics at: http://([0-9.:]+)`, 10*time.Second)[1]
}

// scrape fetches /metrics and returns its samples by series, as written:
// `corral_requests_total{class="2xx"}` -> 12.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	body := scrapeText(t, addr)
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: bad sample %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

func scrapeText(t *testing.T, addr string) string {
	t.Helper()
	code, body, err := get(addr, "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	return body
}

// waitSample waits until series reads want, and fails with the last
// value it read otherwise.
func waitSample(t *testing.T, addr, series string, want float64, timeout time.Duration) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := scrape(t, addr)
		if v, ok := m[series]; ok && v == want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (present: %v) after %s, want %v", series, m[series], hasKey(m, series), timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasKey(m map[string]float64, k string) bool { _, ok := m[k]; return ok }

// prometheusTool is the path of prometheus or promtool, which make deps
// installs (Debian package prometheus).
func prometheusTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not installed (Debian package prometheus; make deps installs it)", name)
	}
	return path
}

const ok2xx = `corral_requests_total{class="2xx"}`

// sendN does n requests, one connection each, and fails unless each is a 200.
func sendN(t *testing.T, addr string, n int) {
	t.Helper()
	for i := range n {
		if code, _, err := get(addr, "/"); err != nil || code != 200 {
			t.Fatalf("request %d of %d: %d %v", i+1, n, code, err)
		}
	}
}

// TestMetricsCountEveryRequestOnce sends requests through what replaces
// workers: --max-requests recycles, a HUP, a SIGKILLed worker. The herd's
// total is exactly what was sent: none lost, none counted twice.
func TestMetricsCountEveryRequestOnce(t *testing.T) {
	for _, class := range workerClasses {
		t.Run(class, func(t *testing.T) {
			s, maddr := startMetrics(t, "-w", "2", "-k", class, "-b", "127.0.0.1:0", "--max-requests", "40", "demo")
			s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
			sent := 0
			sendN(t, s.Addr, 100) // at least one worker reaches 40 and is replaced
			sent += 100
			s.waitLog(`reached its max requests; replacing it`, 10*time.Second)
			waitSample(t, maddr, ok2xx, float64(sent), 5*time.Second)

			s.signal(syscall.SIGHUP)
			s.waitReloaded("", 20*time.Second)
			sendN(t, s.Addr, 30)
			sent += 30
			waitSample(t, maddr, ok2xx, float64(sent), 5*time.Second)

			workers := s.waitWorkers(2, 10*time.Second)
			syscall.Kill(workers[0], syscall.SIGKILL)
			s.waitLog(fmt.Sprintf(`Worker \(pid:%d\) was sent SIGKILL`, workers[0]), 10*time.Second)
			s.waitWorkers(2, 10*time.Second)
			sendN(t, s.Addr, 30)
			sent += 30
			m := waitSample(t, maddr, ok2xx, float64(sent), 5*time.Second)
			// And it stays there: nothing folded in twice.
			time.Sleep(1500 * time.Millisecond)
			m = scrape(t, maddr)
			if m[ok2xx] != float64(sent) {
				t.Fatalf("%s went from %d to %v", ok2xx, sent, m[ok2xx])
			}
			for series, want := range map[string]float64{
				`corral_request_duration_seconds_count`:         float64(sent),
				`corral_worker_exits_total{cause="memory"}`:     1,
				`corral_reloads_total{result="complete"}`:       1,
				`corral_requests_total{class="5xx"}`:            0,
				`corral_request_parse_errors_total{code="400"}`: 0,
				`corral_workers_target`:                         2,
				`corral_generation`:                             2,
				`corral_workers_ready`:                          2,
			} {
				if m[series] != want {
					t.Errorf("%s = %v, want %v", series, m[series], want)
				}
			}
			for _, series := range []string{`corral_worker_exits_total{cause="recycle"}`, `corral_worker_exits_total{cause="stopped"}`,
				`corral_connections_total`, `corral_read_bytes_total`, `corral_written_bytes_total`, `corral_worker_spawn_to_ready_seconds_count`} {
				if m[series] < 1 {
					t.Errorf("%s = %v, want at least 1", series, m[series])
				}
			}
			if m[`corral_connections_total`] < float64(sent) {
				t.Errorf("corral_connections_total = %v, want at least one per request (%d)", m[`corral_connections_total`], sent)
			}
		})
	}
}

// TestMetricsEveryFrontEnd: requests over uwsgi and FastCGI count as the
// HTTP ones do, and a malformed request counts as a parse error, for each
// worker type (the event type serves no FastCGI).
func TestMetricsEveryFrontEnd(t *testing.T) {
	for _, class := range workerClasses {
		t.Run(class, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "f.sock")
			args := []string{"-w", "1", "-k", class, "-b", "127.0.0.1:0", "-b", "uwsgi://127.0.0.1:0"}
			if class != "event" {
				args = append(args, "-b", "fastcgi://unix:"+sock)
			}
			s, maddr := startMetrics(t, append(args, "demo")...)
			s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
			m := s.waitLog(`Listening at: uwsgi://(\S+) `, time.Second)
			uwsgiEcho(t, m[1])
			if class != "event" {
				fcgiEcho(t, sock)
			} else {
				uwsgiEcho(t, m[1])
			}
			sendN(t, s.Addr, 3)
			c, br := rawConn(t, s.Addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost : x\r\n\r\n") // a space before the colon: 400
			if res, _ := readRes(t, br); res.StatusCode != 400 {
				t.Fatalf("malformed request: %d, want 400", res.StatusCode)
			}
			m2 := waitSample(t, maddr, ok2xx, 5, 5*time.Second)
			waitSample(t, maddr, `corral_request_parse_errors_total{code="400"}`, 1, 5*time.Second)
			if m2[`corral_read_bytes_total`] < 100 || m2[`corral_written_bytes_total`] < 100 {
				t.Errorf("bytes read %v, written %v: want the requests' and responses' sizes", m2[`corral_read_bytes_total`], m2[`corral_written_bytes_total`])
			}
		})
	}
}

// TestQueueDepthWhileEveryWorkerIsBusy fills the accept queues of a TCP
// and a unix listener while the one sync worker serves a slow request.
func TestQueueDepthWhileEveryWorkerIsBusy(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "q.sock")
	s, maddr := startMetrics(t, "-w", "1", "-k", "sync", "-b", "127.0.0.1:0", "-b", "unix:"+sock, "--backlog", "64", "demo")
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	tcp, unixL := "http://"+s.Addr, "unix:"+sock
	done := make(chan error, 1)
	go func() {
		code, _, err := get(s.Addr, "/sleep?seconds=4")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		done <- err
	}()
	waitSample(t, maddr, `corral_workers{state="busy"}`, 1, 5*time.Second)
	var conns []net.Conn
	for i := range 9 {
		network, addr := "tcp", s.Addr
		if i >= 5 {
			network, addr = "unix", sock
		}
		c, err := net.DialTimeout(network, addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		conns = append(conns, c)
	}
	m := waitSample(t, maddr, fmt.Sprintf(`corral_listener_queue_depth{listener=%q}`, tcp), 5, 3*time.Second)
	m = waitSample(t, maddr, fmt.Sprintf(`corral_listener_queue_depth{listener=%q}`, unixL), 4, 3*time.Second)
	if lim := m[fmt.Sprintf(`corral_listener_queue_limit{listener=%q}`, tcp)]; lim != 64 {
		t.Errorf("TCP queue limit %v, want 64", lim)
	}
	if lim := m[fmt.Sprintf(`corral_listener_queue_limit{listener=%q}`, unixL)]; lim != 64 {
		t.Errorf("unix queue limit %v, want 64", lim)
	}
	if cur := m[`corral_worker_current_request_seconds{slot="0"}`]; cur <= 0 {
		t.Errorf("the busy worker's current request has run %vs, want > 0", cur)
	}
	if err := <-done; err != nil {
		t.Fatalf("the slow request: %v", err)
	}
	// Every queued connection is served once the worker is free.
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("queued connection %d: %v", i, err)
		}
	}
	waitSample(t, maddr, fmt.Sprintf(`corral_listener_queue_depth{listener=%q}`, tcp), 0, 3*time.Second)
	waitSample(t, maddr, ok2xx, 10, 3*time.Second)
}

// TestPromtoolChecksAScrape runs a real scrape through promtool check
// metrics, with one worker of each kind serving: a native one and, in a
// second arbiter, an exec worker.
func TestPromtoolChecksAScrape(t *testing.T) {
	promtool := prometheusTool(t, "promtool")
	s, maddr := startMetrics(t, "-w", "2", "-b", "127.0.0.1:0", "demo")
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	sendN(t, s.Addr, 5)
	waitSample(t, maddr, ok2xx, 5, 5*time.Second)
	x, _ := startExec(t, []string{"--metrics-bind", "127.0.0.1:0", "-w", "1", "-b", "127.0.0.1:0", "--ready", "notify",
		"--", python(t), "examples/python/app.py"}, func(c *exec.Cmd) { c.Dir = repoRoot })
	xaddr := metricsAddr(t, x)
	x.waitLog(`Ready: 1 workers serving`, 15*time.Second)
	waitSample(t, xaddr, `corral_workers_ready`, 1, 5*time.Second)
	for _, addr := range []string{maddr, xaddr} {
		body := scrapeText(t, addr)
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("promtool check metrics: %v\n%s\nof\n%s", err, out, body)
		}
	}
	m := scrape(t, xaddr)
	if m[`corral_worker_pid{slot="0"}`] == 0 || hasKey(m, `corral_worker_requests_total{slot="0"}`) {
		t.Errorf("exec worker: pid %v, requests series present %v; want a pid and no scoreboard series",
			m[`corral_worker_pid{slot="0"}`], hasKey(m, `corral_worker_requests_total{slot="0"}`))
	}
}

// TestPrometheusScrapesCorral has a real Prometheus scrape corral every
// second and answers a query with the exact number of requests sent.
func TestPrometheusScrapesCorral(t *testing.T) {
	prom := prometheusTool(t, "prometheus")
	s, maddr := startMetrics(t, "-w", "2", "-b", "127.0.0.1:0", "demo")
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: corral
    static_configs:
      - targets: [%q]
`, maddr)), 0o644)
	web := freeAddr(t)
	p := startNoWait(t, prom, []string{"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + web, "--log.level=warn"})
	const sent = 137
	sendN(t, s.Addr, sent)
	query := func() (string, error) {
		code, body, err := get(web, "/api/v1/query?query="+url.QueryEscape(`sum(corral_requests_total{job="corral"})`))
		if err != nil || code != 200 {
			return "", fmt.Errorf("%d %v", code, err)
		}
		var r struct {
			Status string
			Data   struct {
				Result []struct{ Value [2]any }
			}
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" {
			return "", fmt.Errorf("%v: %s", err, body)
		}
		if len(r.Data.Result) == 0 {
			return "", nil
		}
		v, _ := r.Data.Result[0].Value[1].(string)
		return v, nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, err := query()
		if v == strconv.Itoa(sent) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus answers %q (%v), want %d\nprometheus log:\n%s", v, err, sent, p.log)
		}
		time.Sleep(250 * time.Millisecond)
	}
	p.signal(syscall.SIGTERM)
	p.wait(30 * time.Second)
}

// TestReadyz: 503 before the first worker is ready, 200 through a reload,
// 503 once TERM began (while a slow request keeps the arbiter up).
func TestReadyz(t *testing.T) {
	// examples/hello, its worker ready only after 1.5 s.
	s := start(t, helloBin, []string{"--metrics-bind", "127.0.0.1:0", "-w", "1", "-b", "127.0.0.1:0", "--graceful-timeout", "10"},
		func(c *exec.Cmd) { c.Env = append(c.Env, "POST_WORKER_INIT_DELAY=1500ms") })
	maddr := metricsAddr(t, s)
	readyz := func() (int, string) {
		code, body, err := get(maddr, "/readyz")
		if err != nil {
			t.Fatalf("GET /readyz: %v", err)
		}
		return code, body
	}
	if code, body := readyz(); code != 503 || !strings.HasPrefix(body, "0 of the 1 workers needed") && !strings.HasPrefix(body, "starting") {
		t.Fatalf("before the first worker is ready: %d %q, want 503", code, body)
	}
	if code, _, _ := get(maddr, "/livez"); code != 200 {
		t.Fatalf("/livez while booting: %d, want 200", code)
	}
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	deadline := time.Now().Add(3 * time.Second)
	for code, _ := readyz(); code != 200; code, _ = readyz() {
		if time.Now().After(deadline) {
			t.Fatal("/readyz not 200 after the worker was ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Through a reload, polled every 20 ms: always 200.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var bad []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if code, body, err := get(maddr, "/readyz"); err != nil || code != 200 {
				bad = append(bad, fmt.Sprintf("%d %q %v", code, body, err))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	s.signal(syscall.SIGHUP)
	s.waitReloaded("", 20*time.Second)
	cancel()
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("/readyz during a reload: %d answers not 200, e.g. %s", len(bad), bad[0])
	}
	// TERM with a keep-alive connection open: its worker drains it for a
	// second (--graceful-timeout allows more), and /readyz says so.
	c, br := rawConn(t, s.Addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	readRes(t, br)
	s.signal(syscall.SIGTERM)
	deadline = time.Now().Add(2 * time.Second)
	for {
		code, body := readyz()
		if code == 503 && strings.TrimSpace(body) == "stopping" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz during TERM: %d %q, want 503 stopping", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := s.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d after TERM", code)
	}
}

// TestMetricsSurviveUpgrade: the arbiter that USR2 starts inherits the
// totals, so corral_requests_total goes on from where it was.
func TestMetricsSurviveUpgrade(t *testing.T) {
	s, maddr := startMetrics(t, "-w", "1", "-b", "127.0.0.1:0", "demo")
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	sendN(t, s.Addr, 25)
	waitSample(t, maddr, ok2xx, 25, 5*time.Second)
	s.signal(syscall.SIGUSR2)
	m := s.waitLog(`Upgrading: started new arbiter \S+ \(pid: (\d+)\)`, 10*time.Second)
	pid, _ := strconv.Atoi(m[1])
	next := adopt(t, pid, s.log)
	next.waitLog(`Upgrade complete: pid \d+ took over`, 30*time.Second)
	sendN(t, s.Addr, 15)
	waitSample(t, maddr, ok2xx, 40, 5*time.Second)
	next.signal(syscall.SIGTERM)
	<-next.done
}

// TestJSONLogs: with --log-format json and --access-logformat json, every
// line the arbiter and its workers write parses as JSON, through a reload
// and a stop.
func TestJSONLogs(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "--log-format", "json",
		"--access-logfile", "-", "--access-logformat", "json", "demo"})
	s.waitLog(`"msg":"Ready: 2 workers serving"`, 10*time.Second)
	code, _, err := getWithHeader(s.Addr, "/?q=1", "User-Agent", `evil "agent" \ end`)
	if err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
	}
	s.signal(syscall.SIGHUP)
	s.waitReloaded("", 20*time.Second)
	s.signal(syscall.SIGTERM)
	s.wait(15 * time.Second)
	var access, booted int
	for i, line := range strings.Split(strings.TrimSpace(s.log.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v: %q", i+1, err, line)
		}
		if m["a"] == `evil "agent" \ end` && m["s"] == 200.0 && m["q"] == "q=1" {
			access++
		}
		if w, ok := m["worker"].(float64); ok && w > 0 && strings.HasPrefix(m["msg"].(string), "Booting worker") {
			booted++
		}
		if _, ok := m["pid"].(float64); !ok && m["s"] == nil {
			t.Errorf("line %d has no pid: %q", i+1, line)
		}
	}
	if access != 1 || booted != 4 {
		t.Fatalf("%d access lines for the request (want 1), %d boot lines with a worker attribute (want 4)\n%s", access, booted, s.log)
	}
}

// TestTimedOutWorkerShowsItsRequest: a sync worker stuck in a request past
// --timeout, then stopped (SIGSTOP) so that it cannot log anything itself:
// the arbiter names the request from the worker's scoreboard, counts the
// exit as a timeout, and the request it never answered is not counted.
func TestTimedOutWorkerShowsItsRequest(t *testing.T) {
	s, maddr := startMetrics(t, "-w", "1", "-k", "sync", "-b", "127.0.0.1:0", "--timeout", "1", "--abort-grace", "1", "demo")
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	sendN(t, s.Addr, 3)
	victim := s.waitWorkers(1, 5*time.Second)[0]
	go get(s.Addr, "/sleep?seconds=30")
	waitSample(t, maddr, `corral_workers{state="busy"}`, 1, 5*time.Second)
	syscall.Kill(victim, syscall.SIGSTOP)
	defer syscall.Kill(victim, syscall.SIGKILL)
	s.waitLog(fmt.Sprintf(`WORKER TIMEOUT \(pid:%d\) in GET /sleep\?seconds=30 \(running for [0-9.]+m?s\)`, victim), 10*time.Second)
	s.waitLog(fmt.Sprintf(`Worker \(pid:%d\) killed by signal KILL after its timeout`, victim), 10*time.Second)
	m := waitSample(t, maddr, `corral_worker_exits_total{cause="timeout"}`, 1, 5*time.Second)
	if m[ok2xx] != 3 {
		t.Fatalf("%s = %v, want the 3 answered requests", ok2xx, m[ok2xx])
	}
}
