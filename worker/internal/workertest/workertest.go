// Package workertest holds what the tests of the worker types share, in
// package worker and in the types' own packages (worker/event): the
// handler they serve, HTTP/1.1 clients that check how a worker answers,
// and uwsgi packets (worker/http1's and worker/frontend's tests build
// theirs with it too).
// It imports only the standard library, so package worker's tests may too.
package workertest

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// LogWriter writes a worker's log lines to the test's log (go test -v).
type LogWriter struct{ T testing.TB }

func (w LogWriter) Write(b []byte) (int, error) {
	w.T.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// Handler is what the worker tests serve.
func Handler() http.Handler {
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

// RawDo writes req on a new connection and reads one response.
func RawDo(t *testing.T, addr, req string) (*http.Response, string, *bufio.Reader, net.Conn) {
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
	res, body := ReadResponse(t, br)
	return res, body, br, c
}

func ReadResponse(t *testing.T, br *bufio.Reader) (*http.Response, string) {
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

// ClosedAfter reports whether the server closes c (EOF, or a reset) within d
// without sending another byte.
func ClosedAfter(br *bufio.Reader, c net.Conn, d time.Duration) (bool, string) {
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

// CheckBeatsAroundBlockingRequest checks the heartbeat of a worker
// serving the tests' Handler on addr with a Timeout of 200 ms (since is
// the time since its last beat): fresh while idle, stale while a request
// blocks the worker (a 600 ms /sleep), fresh again once it returns.
func CheckBeatsAroundBlockingRequest(t *testing.T, addr string, since func() time.Duration) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	if s := since(); s > 150*time.Millisecond {
		t.Fatalf("idle worker silent for %s", s)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /sleep?d=600ms HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(450 * time.Millisecond)
	if s := since(); s < 300*time.Millisecond {
		t.Fatalf("worker beat while a request blocked it: last beat %s ago", s)
	}
	time.Sleep(400 * time.Millisecond)
	if s := since(); s > 150*time.Millisecond {
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

// CheckRefusals sends each of badRequests on a connection of its own to
// addr, and wants its status and the connection closed.
func CheckRefusals(t *testing.T, addr string) {
	t.Helper()
	for req, want := range badRequests() {
		res, _, br, c := RawDo(t, addr, req)
		if res.StatusCode != want || !res.Close {
			t.Errorf("%.50q: %d close=%v, want %d", req, res.StatusCode, res.Close, want)
		}
		if ok, got := ClosedAfter(br, c, 2*time.Second); !ok {
			t.Errorf("%.50q: not closed: %q", req, got)
		}
	}
}

// BenchKeepAlive sends requests to addr on one keep-alive connection, one at
// a time, b.N of them, and reads each response whole.
func BenchKeepAlive(b *testing.B, addr string) {
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

// Dial connects to addr, closes the connection when the test ends, and
// gives it a deadline d from now (none when d is 0).
func Dial(t testing.TB, addr string, d time.Duration) net.Conn {
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

// Serve runs serve on a goroutine, waits for ready, and returns a function
// that drains, calls stop (graceful or quick) and waits for serve to
// return; the test's cleanup stops it if the test did not. As the runtime,
// it stops a worker type only once the type is ready.
func Serve(t testing.TB, serve func() error, ready <-chan struct{}, drain func(), stop func(graceful bool)) func(graceful bool) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- serve() }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Serve returned before it was ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve not ready after 10 s")
	}
	stopped := false
	stopFn := func(graceful bool) error {
		stopped = true
		drain()
		stop(graceful)
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
			stopFn(false)
		}
	})
	return stopFn
}

// CheckExpectContinue sends a POST with Expect: 100-continue to addr and
// checks the interim 100 comes before the body is sent, and the echo after.
func CheckExpectContinue(t *testing.T, addr string) {
	t.Helper()
	c := Dial(t, addr, 5*time.Second)
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
	br := bufio.NewReader(c)
	if line, _ := br.ReadString('\n'); line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim: %q", line)
	}
	br.ReadString('\n')
	io.WriteString(c, "xyz")
	if _, body := ReadResponse(t, br); body != "xyz" {
		t.Fatalf("body %q", body)
	}
}

// UwsgiBlock is a uwsgi packet's block of variables: name, value, ...,
// each with its 16-bit little-endian length.
func UwsgiBlock(pairs ...string) []byte {
	var b []byte
	for _, s := range pairs {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	return b
}

// UwsgiPacket is a uwsgi request packet (modifiers 0) carrying block.
func UwsgiPacket(block []byte) []byte {
	h := []byte{0, 0, 0, 0}
	binary.LittleEndian.PutUint16(h[1:], uint16(len(block)))
	return append(h, block...)
}

// CheckRequestContextEnds checks net/http's rule for a request's context on
// the server serve starts: a handler's context, live while it runs, ends
// once it returned, though the connection stays open for the next request,
// whose context is live; pipelined requests too. The handler derives a
// context (as a database call with a timeout would) and leaves a goroutine
// waiting on it, which would otherwise live as long as the connection.
// With oneEach, the server answers a request per connection (the sync
// type): each comes on a connection of its own.
func CheckRequestContextEnds(t *testing.T, oneEach bool, serve func(h http.Handler) (addr string)) {
	t.Helper()
	ended := make(chan struct{}, 8)
	addr := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if ctx.Err() != nil {
			io.WriteString(w, "dead")
			return
		}
		derived, cancel := context.WithTimeout(ctx, time.Hour)
		go func() {
			<-derived.Done()
			cancel()
			ended <- struct{}{}
		}()
		io.WriteString(w, "live")
	}))
	c := Dial(t, addr, 10*time.Second)
	br := bufio.NewReader(c)
	batches := []int{1, 1, 3}
	if oneEach {
		batches = []int{1, 1, 1}
	}
	waitEnded := func(what string) {
		t.Helper()
		select {
		case <-ended:
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: the context did not end after the handler returned", what)
		}
	}
	for i, batch := range batches {
		if oneEach && i > 0 {
			c = Dial(t, addr, 10*time.Second)
			br = bufio.NewReader(c)
		}
		io.WriteString(c, strings.Repeat("GET / HTTP/1.1\r\nHost: x\r\n\r\n", batch))
		for j := range batch {
			if res, body := ReadResponse(t, br); res.StatusCode != http.StatusOK || body != "live" {
				t.Fatalf("write %d, request %d: %d %q, want a live context", i, j, res.StatusCode, body)
			}
		}
		for range batch {
			waitEnded(fmt.Sprintf("write %d", i))
		}
	}
}
