package event

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/corral-server/corral/worker"
)

// The helpers of the event worker's tests: a Process built by
// worker.NewProcess, and copies of the few of package worker's test
// helpers (helpers_test.go there) that these tests share with its own.

// testProcess is a Process outside the runtime, with what the runtime
// keeps of it: when it is ready, how to begin its stop, its heartbeat.
type testProcess struct {
	*worker.Process
	ready <-chan struct{}
	drain func()
	hb    *heartbeat.Slot
}

// newTestProcess returns a Process serving h on a fresh listener on
// 127.0.0.1, as the runtime would build it, with a heartbeat slot.
func newTestProcess(t testing.TB, h http.Handler, cfg *worker.Config) *testProcess {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg == nil {
		cfg = &worker.Config{}
	}
	if cfg.DrainIdle == 0 {
		cfg.DrainIdle = 200 * time.Millisecond
	}
	hb, err := heartbeat.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hb.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, ready, drain := worker.NewProcess(cfg, h, []net.Listener{l}, log, hb)
	return &testProcess{Process: p, ready: ready, drain: drain, hb: hb}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// serveTest starts w on p, waits until it is ready, and returns a
// function that stops it (graceful or quick) and waits for Serve to
// return. As the runtime, it stops a type only once it is ready.
func serveTest(t testing.TB, p *testProcess, w worker.Worker) (addr string, stop func(graceful bool) error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- w.Serve(p.Process) }()
	select {
	case <-p.ready:
	case err := <-done:
		t.Fatalf("Serve returned before it was ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve not ready after 10 s")
	}
	stopped := false
	stop = func(graceful bool) error {
		stopped = true
		p.drain()
		w.Stop(graceful)
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return 10 s after Stop")
			return nil
		}
	}
	t.Cleanup(func() {
		if !stopped {
			stop(false)
		}
	})
	return p.Listeners[0].Addr().String(), stop
}

// testHandler is what the worker tests serve.
func testHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Target", r.RequestURI)
		w.Write(b)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		io.WriteString(w, "slept")
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		for i := range 5 {
			io.WriteString(w, strings.Repeat(string(rune('a'+i)), 3000))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Target", r.RequestURI)
		w.Write(make([]byte, 64<<10))
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		panic("boom")
	})
	return mux
}

// rawDo writes req on a new connection and reads one response.
func rawDo(t *testing.T, addr, req string) (*http.Response, string, *bufio.Reader, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, body := readResponse(t, br)
	return res, body, br, c
}

func readResponse(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res, string(b)
}

// closedAfter reports whether the server closes c (EOF, or a reset) within d
// without sending another byte.
func closedAfter(br *bufio.Reader, c net.Conn, d time.Duration) (bool, string) {
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(br)
	if len(b) > 0 {
		return false, string(b)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false, "still open"
	}
	return true, ""
}

// checkBeatsAroundBlockingRequest serves p with w (Timeout 200 ms) and
// checks the heartbeat: fresh while idle, stale while a request blocks
// the worker (a 600 ms /sleep), fresh again once it returns.
func checkBeatsAroundBlockingRequest(t *testing.T, p *testProcess, w worker.Worker) {
	t.Helper()
	addr, _ := serveTest(t, p, w)
	time.Sleep(300 * time.Millisecond)
	if s := p.hb.Since(); s > 150*time.Millisecond {
		t.Fatalf("idle worker silent for %s", s)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /sleep?d=600ms HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(450 * time.Millisecond)
	if s := p.hb.Since(); s < 300*time.Millisecond {
		t.Fatalf("worker beat while a request blocked it: last beat %s ago", s)
	}
	time.Sleep(400 * time.Millisecond)
	if s := p.hb.Since(); s > 150*time.Millisecond {
		t.Fatalf("worker silent %s after the request returned", s)
	}
}

// badRequests are refused by every worker type (with the limits
// of TestEventLimits) with the status given, each with a smuggled request
// behind it that must never be answered.
func badRequests() map[string]int {
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	return map[string]int{
		"GET /" + strings.Repeat("a", 100) + " HTTP/1.1\r\nHost: x\r\n\r\n" + smuggled:                              414,
		"GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 6) + "\r\n" + smuggled:                       431,
		"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("v", 200) + "\r\n\r\n" + smuggled:                  431,
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n01234567890" + smuggled:                        413,
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab" + smuggled:                 400,
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled: 400,
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + smuggled:                         400,
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" + smuggled:                                              400,
		"GET / HTTP/1.1\r\nHost : x\r\n\r\n" + smuggled:                                                             400,
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n" + smuggled:                                               400,
		"GET / HTTP/2.0\r\nHost: x\r\n\r\n" + smuggled:                                                              505,
	}
}

// checkRefusals sends each of badRequests on a connection of its own to
// addr, and wants its status and the connection closed.
func checkRefusals(t *testing.T, addr string) {
	t.Helper()
	for req, want := range badRequests() {
		res, _, br, c := rawDo(t, addr, req)
		if res.StatusCode != want || !res.Close {
			t.Errorf("%.50q: %d close=%v, want %d", req, res.StatusCode, res.Close, want)
		}
		if ok, got := closedAfter(br, c, 2*time.Second); !ok {
			t.Errorf("%.50q: not closed: %q", req, got)
		}
	}
}

// benchKeepAlive sends requests to addr on one keep-alive connection, one at
// a time, b.N of them, and reads each response whole.
func benchKeepAlive(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	b.ReportAllocs()
	for b.Loop() {
		c.Write(req)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
	}
}

// dialTest connects to addr, closes the connection when the test ends, and
// gives it a deadline d from now (none when d is 0).
func dialTest(t testing.TB, addr string, d time.Duration) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if d > 0 {
		c.SetDeadline(time.Now().Add(d))
	}
	return c
}
