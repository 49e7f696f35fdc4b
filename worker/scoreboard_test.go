package worker

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-server/corral/worker/http1"
)

// firstWrites records the first write on each connection a listener
// accepts, as the goroutine worker's trackedConn sees net/http's writes.
type firstWrites struct {
	net.Listener
	mu     sync.Mutex
	writes [][]byte
}

func (l *firstWrites) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &firstWrite{Conn: c, l: l}, nil
}

type firstWrite struct {
	net.Conn
	l    *firstWrites
	once sync.Once
}

func (c *firstWrite) Write(b []byte) (int, error) {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.writes = append(c.l.writes, append([]byte(nil), b...))
		c.l.mu.Unlock()
	})
	return c.Conn.Write(b)
}

// TestNetHTTPErrorStatusOnARealServer tells net/http's own answers to
// requests it refused from a handler's response that looks alike (text,
// Connection: close), on this Go's net/http.
func TestNetHTTPErrorStatusOnARealServer(t *testing.T) {
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &firstWrites{Listener: nl}
	srv := &http.Server{MaxHeaderBytes: 1024, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "400 Bad Request")
	})}
	go srv.Serve(l)
	defer srv.Close()
	for _, tc := range []struct {
		req  string
		want int
	}{
		{"GET / HTTP/1.1\r\n\r\n", 400}, // no Host
		{"GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 8000) + "\r\n\r\n", 431},
		{"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0}, // the handler's own 400
	} {
		c, err := net.Dial("tcp", nl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, tc.req)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("%q: %v", tc.req[:20], err)
		}
		res.Body.Close()
		l.mu.Lock()
		first := l.writes[len(l.writes)-1]
		l.mu.Unlock()
		if got := netHTTPErrorStatus(first); got != tc.want {
			t.Errorf("%q answered %d: netHTTPErrorStatus = %d, want %d (%q)", tc.req[:20], res.StatusCode, got, tc.want, first)
		}
	}
}

// withBoard turns p's scoreboard on, as Config.Metrics does at boot.
func withBoard(p *Process) *Process {
	p.board = p.heartbeat.Board()
	p.board.Init()
	return p
}

// TestServeHTTPCountsOnTheScoreboard: a request is counted once it is
// answered, by class and duration, with the current request shown while
// it runs; a panic counts as the 500 it is answered with.
func TestServeHTTPCountsOnTheScoreboard(t *testing.T) {
	inside := make(chan struct{})
	release := make(chan struct{})
	p := withBoard(newTestProcess(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			close(inside)
			<-release
		case "/panic":
			panic("boom")
		case "/missing":
			http.NotFound(w, r)
		}
	}), nil))
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/slow?x=1", nil))
	}()
	<-inside
	if c := p.board.Read(); c.InFlight != 1 || c.Current != "GET /slow?x=1" || c.RequestCount() != 0 {
		t.Fatalf("while serving: in flight %d, current %q, answered %d", c.InFlight, c.Current, c.RequestCount())
	}
	close(release)
	<-done
	p.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/missing", nil))
	func() {
		defer func() { recover() }()
		p.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/panic", nil))
	}()
	c := p.board.Read()
	if c.Requests != [5]uint64{0, 1, 0, 1, 1} || c.InFlight != 0 || c.Current != "" {
		t.Fatalf("by class %v, in flight %d, current %q; want [0 1 0 1 1], 0, none", c.Requests, c.InFlight, c.Current)
	}
}

// TestServeRecoverReusesInFlight: requests served one after the other
// through one InFlight (ServeRecover, then ServeNext for the rest of a
// batch) are each counted by their own status, a panic as the 500 it is
// answered with and reported as not returned; none stays in flight.
func TestServeRecoverReusesInFlight(t *testing.T) {
	p := withBoard(newTestProcess(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/missing":
			http.NotFound(w, r)
		}
	}), nil))
	var q InFlight
	serve := batchServer(p, &q)
	if !serve(false, "/missing") || !serve(true, "/") || serve(true, "/panic") || !serve(false, "/") {
		t.Fatal("want ok for every request but the panic")
	}
	c := p.board.Read()
	if c.Requests != [5]uint64{0, 2, 0, 1, 1} || c.InFlight != 0 || c.Current != "" || p.Requests() != 4 {
		t.Fatalf("by class %v, in flight %d, current %q, requests %d; want [0 2 0 1 1], 0, none, 4", c.Requests, c.InFlight, c.Current, p.Requests())
	}
	if q.r != nil || q.w != nil || q.next != nil {
		t.Fatal("the InFlight keeps the last request past its end")
	}
}

// batchServer returns a function that answers a GET of path on p as a
// connection loop would: by ServeNext when next (a later request of the
// batch in q), else by ServeRecover (a batch's first), and reports
// whether the handler returned.
func batchServer(p *Process, q *InFlight) func(next bool, path string) bool {
	var rw http1.ResponseWriter
	return func(next bool, path string) bool {
		rw.Reset(nil, "GET", 1, 1, false)
		r := httptest.NewRequest("GET", path, nil)
		if next {
			return ServeNext(p, q, &rw, r)
		}
		return ServeRecover(p, q, &rw, r)
	}
}

// TestServeNextCountsOnFlush: a batch's requests after the first are put
// on the scoreboard together, by InFlight.Flush (or sooner, by the first
// request answered unlike them), each by its own status and once.
func TestServeNextCountsOnFlush(t *testing.T) {
	p := withBoard(newTestProcess(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
		}
	}), nil))
	var q InFlight
	serve := batchServer(p, &q)
	serve(false, "/")
	serve(true, "/")
	serve(true, "/")
	if c := p.board.Read(); c.Requests != [5]uint64{0, 1, 0, 0, 0} || c.InFlight != 0 {
		t.Fatalf("tallied: by class %v, in flight %d; want [0 1 0 0 0], 0", c.Requests, c.InFlight)
	}
	serve(true, "/missing")
	if c := p.board.Read(); c.Requests != [5]uint64{0, 3, 0, 0, 0} {
		t.Fatalf("after an unlike answer: by class %v, want [0 3 0 0 0]", c.Requests)
	}
	q.Flush()
	q.Flush()
	c := p.board.Read()
	if c.Requests != [5]uint64{0, 3, 0, 1, 0} || c.InFlight != 0 || p.Requests() != 4 {
		t.Fatalf("after: by class %v, in flight %d, requests %d; want [0 3 0 1 0], 0, 4", c.Requests, c.InFlight, p.Requests())
	}
	var buckets uint64
	for _, n := range c.Buckets {
		buckets += n
	}
	if buckets != 4 {
		t.Errorf("%d requests in the duration buckets, want 4", buckets)
	}
}

// BenchmarkServeHTTP is the per-request path every type serves through,
// with the scoreboard off and on: the difference is what the metrics
// cost a request (the types' connection counting adds an atomic add per
// read and per write).
func BenchmarkServeHTTP(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "Hello, World!") })
	boardModes(b, h, "", func(b *testing.B, p *Process) {
		r := httptest.NewRequest("GET", "/", nil)
		b.ReportAllocs()
		for range b.N {
			p.ServeHTTP(httptest.NewRecorder(), r)
		}
	})
}

// BenchmarkServeRecover is the per-request path of the types that serve
// through worker/http1 (sync, event), a batch's requests after the first
// through ServeNext, flushed to the board every 16 as the event worker's
// pipelined batches are, with the scoreboard off and on, and no
// allocation.
func BenchmarkServeRecover(b *testing.B) {
	textPlain := []string{"text/plain"}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = textPlain
		io.WriteString(w, "Hello, World!")
	})
	boardModes(b, h, "board=", func(b *testing.B, p *Process) {
		r := httptest.NewRequest("GET", "/", nil)
		var q InFlight
		var rw http1.ResponseWriter
		out := make([]byte, 0, 4096)
		ServeRecover(p, &q, &rw, r)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			rw.Reset(out[:0], "GET", 1, 1, false)
			ServeNext(p, &q, &rw, r)
			out, _ = rw.Finish()
			if i++; i%16 == 0 {
				q.Flush()
			}
		}
	})
}

// boardModes runs bench on a Process serving h with the scoreboard off,
// then on, as sub-benchmarks prefix+"off" and prefix+"on".
func boardModes(b *testing.B, h http.Handler, prefix string, bench func(*testing.B, *Process)) {
	for _, on := range []bool{false, true} {
		name := "off"
		p := newTestProcess(b, h, nil)
		if on {
			name = "on"
			withBoard(p)
		}
		b.Run(prefix+name, func(b *testing.B) { bench(b, p) })
	}
}

// TestServeNextInFlight: a batch's request after the first is in the
// abort log while its handler runs, as the first is; the batch's last
// leaves it at Flush, which also counts the batch's requests after the
// first against Requests (and --max-requests).
func TestServeNextInFlight(t *testing.T) {
	var logged bytes.Buffer
	var p *Process
	var during []string
	p = newTestProcess(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logged.Reset()
		p.logInFlight()
		during = append(during, strings.TrimSpace(logged.String()))
	}), nil)
	p.Log = slog.New(slog.NewTextHandler(&logged, nil))
	p.maxRequests = 3
	var q InFlight
	serve := batchServer(p, &q)
	serve(false, "/first")
	serve(true, "/second")
	serve(true, "/third")
	if len(during) != 3 {
		t.Fatalf("%d handler calls, want 3", len(during))
	}
	for i, path := range []string{"/first", "/second", "/third"} {
		if !strings.Contains(during[i], "aborted in request GET "+path+" ") || strings.Count(during[i], "aborted in request") != 1 {
			t.Errorf("abort log while serving %s: %q", path, during[i])
		}
	}
	if n := p.Requests(); n != 1 {
		t.Errorf("before the batch's Flush: %d requests counted, want 1 (the first)", n)
	}
	q.Flush()
	if n := p.Requests(); n != 3 {
		t.Errorf("after Flush: %d requests counted, want 3", n)
	}
	logged.Reset()
	p.logInFlight()
	if got := logged.String(); !strings.Contains(got, "no request in flight") {
		t.Errorf("abort log after the batch: %q", got)
	}
	if q.linked || q.next != nil || q.shown != nil {
		t.Error("the InFlight stays in the ring after Flush")
	}
}
