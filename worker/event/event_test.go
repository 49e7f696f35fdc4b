package event

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-server/corral/worker"
	"github.com/corral-server/corral/worker/internal/workertest"
)

// eventModes are the event worker's configurations every test runs with.
var eventModes = []struct {
	name    string
	inline  bool
	threads int
}{
	{"pool", false, 1},
	{"inline", true, 1},
	{"pool-2-loops", false, 2},
}

func forEventModes(t *testing.T, cfg func() *worker.Config, f func(t *testing.T, p *testProcess, addr string, stop func(bool) error)) {
	for _, m := range eventModes {
		t.Run(m.name, func(t *testing.T) {
			c := &worker.Config{KeepAlive: 5 * time.Second}
			if cfg != nil {
				c = cfg()
			}
			c.EventInline, c.Threads = m.inline, m.threads
			p := newTestProcess(t, workertest.Handler(), c)
			addr, stop := serveTest(t, p, new(eventWorker))
			f(t, p, addr, stop)
		})
	}
}

// TestEventParserReuse: a connection holds a parser only while a request
// is read or served, and the next connection gets it back: not with the
// last one's error, and never one with another's request half parsed.
func TestEventParserReuse(t *testing.T) {
	forEventModes(t, nil, func(t *testing.T, p *testProcess, addr string, stop func(bool) error) {
		bad := workertest.Dial(t, addr, 10*time.Second)
		io.WriteString(bad, "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")
		br := bufio.NewReader(bad)
		if res, _ := workertest.ReadResponse(t, br); res.StatusCode != 400 {
			t.Fatalf("two Hosts: %d, want 400", res.StatusCode)
		}
		if closed, got := workertest.ClosedAfter(br, bad, 2*time.Second); !closed {
			t.Fatalf("not closed after the 400: %q", got)
		}
		// A request answered, then the next one's head, read with it: the
		// connection is between turns with a request half parsed.
		half := workertest.Dial(t, addr, 10*time.Second)
		io.WriteString(half, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")
		hbr := bufio.NewReader(half)
		if res, _ := workertest.ReadResponse(t, hbr); res.StatusCode != 200 {
			t.Fatalf("the request before the half-sent one: %d", res.StatusCode)
		}
		for i := range 3 {
			c := workertest.Dial(t, addr, 10*time.Second)
			fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nc%d", i)
			if res, body := workertest.ReadResponse(t, bufio.NewReader(c)); res.StatusCode != 200 || body != fmt.Sprintf("c%d", i) {
				t.Fatalf("connection %d after the 400: %d %q", i, res.StatusCode, body)
			}
			c.Close()
		}
		io.WriteString(half, "abc")
		if res, body := workertest.ReadResponse(t, hbr); res.StatusCode != 200 || body != "abc" {
			t.Fatalf("the half-sent request, finished: %d %q, want 200 \"abc\"", res.StatusCode, body)
		}
	})
}

func TestEventKeepAlive(t *testing.T) {
	forEventModes(t, nil, func(t *testing.T, p *testProcess, addr string, stop func(bool) error) {
		c := workertest.Dial(t, addr, 10*time.Second)
		br := bufio.NewReader(c)
		for i := range 5 {
			fmt.Fprintf(c, "POST /echo?i=%d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab%d", i, i)
			res, body := workertest.ReadResponse(t, br)
			if res.StatusCode != 200 || body != fmt.Sprintf("ab%d", i) || res.Close {
				t.Fatalf("request %d: %d %q close=%v", i, res.StatusCode, body, res.Close)
			}
		}
		io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
		if _, body := workertest.ReadResponse(t, br); body != "abcde" {
			t.Fatalf("chunked: %q", body)
		}
		io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
		if res, body := workertest.ReadResponse(t, br); len(body) != 15000 || body[14999] != 'e' {
			t.Fatalf("stream: %d bytes, %v", len(body), res.TransferEncoding)
		}
		io.WriteString(c, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
		res, err := http.ReadResponse(br, &http.Request{Method: "HEAD"})
		if err != nil || res.ContentLength != 5 {
			t.Fatalf("HEAD: %v %v", res, err)
		}
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if res, body := workertest.ReadResponse(t, br); body != "hello" || !res.Close {
			t.Fatalf("close: %q %v", body, res.Close)
		}
		if ok, got := workertest.ClosedAfter(br, c, 2*time.Second); !ok {
			t.Fatalf("not closed after Connection: close: %s", got)
		}
		if n := p.Requests(); n != 9 {
			t.Errorf("Requests() = %d, want 9", n)
		}
		// A panic after the head closes the connection.
		res, _, br, c = workertest.RawDo(t, addr, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
		if ok, got := workertest.ClosedAfter(br, c, 2*time.Second); !ok {
			t.Fatalf("not closed after a panic: %s", got)
		}
		if err := stop(true); err != nil {
			t.Fatal(err)
		}
	})
}

func TestEventPipelining(t *testing.T) {
	forEventModes(t, nil, func(t *testing.T, p *testProcess, addr string, stop func(bool) error) {
		c := workertest.Dial(t, addr, 10*time.Second)
		var b strings.Builder
		for i := range 16 {
			fmt.Fprintf(&b, "POST /echo?i=%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%d", i, len(fmt.Sprint(i)), i)
		}
		io.WriteString(c, b.String())
		br := bufio.NewReader(c)
		for i := range 16 {
			res, body := workertest.ReadResponse(t, br)
			if body != fmt.Sprint(i) || res.Header.Get("X-Target") != fmt.Sprintf("/echo?i=%d", i) {
				t.Fatalf("response %d: %q for %s", i, body, res.Header.Get("X-Target"))
			}
		}
	})
}

// TestEventPipelinedBatch sends requests in one write, which the pool
// serves as one batch: a response streamed mid-batch keeps its place, and
// what must be answered after the batch (a handler's panic, a target
// net/url refuses, a parse error, 100 Continue) comes after the answers
// before it, in order.
func TestEventPipelinedBatch(t *testing.T) {
	const echo = "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
	forEventModes(t, nil, func(t *testing.T, p *testProcess, addr string, stop func(bool) error) {
		for _, tc := range []struct {
			name, wire string
			want       []int // statuses; the connection closes after them
		}{
			{"stream, panic", "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n" + echo + "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n" + echo, []int{200, 200, 500}},
			{"bad escape", echo + echo + "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n" + echo, []int{200, 200, 400}},
			{"parse error", echo + "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n" + echo, []int{200, 400}},
		} {
			c := workertest.Dial(t, addr, 10*time.Second)
			io.WriteString(c, tc.wire)
			br := bufio.NewReader(c)
			for i, want := range tc.want {
				res, body := workertest.ReadResponse(t, br)
				if res.StatusCode != want || (i == 0 && strings.HasPrefix(tc.name, "stream") && len(body) != 15000) {
					t.Fatalf("%s: response %d: %d (%d bytes), want %d", tc.name, i, res.StatusCode, len(body), want)
				}
			}
			if closed, got := workertest.ClosedAfter(br, c, 2*time.Second); !closed {
				t.Errorf("%s: not closed after the refusal: %q", tc.name, got)
			}
		}
		c := workertest.Dial(t, addr, 10*time.Second)
		io.WriteString(c, echo+"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
		br := bufio.NewReader(c)
		if res, _ := workertest.ReadResponse(t, br); res.StatusCode != 200 {
			t.Fatalf("before 100 Continue: %d", res.StatusCode)
		}
		if line, err := br.ReadString('\n'); err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("want 100 Continue after the batch's response, got %q, %v", line, err)
		}
		br.ReadString('\n')
		io.WriteString(c, "ok")
		if res, body := workertest.ReadResponse(t, br); res.StatusCode != 200 || body != "ok" {
			t.Fatalf("after 100 Continue: %d %q", res.StatusCode, body)
		}
	})
}

// TestEventPipelinedBackpressure pipelines more requests than one read
// buffer holds, asking for more output than the socket and the loop's
// high-water mark take, from a client that waits before it reads: the
// loop must stop reading, then resume once the output drains, with no
// new bytes (hence no new edge) from the client, and answer every
// request in order.
func TestEventPipelinedBackpressure(t *testing.T) {
	forEventModes(t, nil, func(t *testing.T, p *testProcess, addr string, stop func(bool) error) {
		c := workertest.Dial(t, addr, 20*time.Second)
		const n = 200 // 200 × 64 KiB of output; about 30 KiB of input
		pad := strings.Repeat("p", 100)
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "GET /big?i=%d HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", i, pad)
		}
		written := make(chan error, 1)
		go func() {
			_, err := io.WriteString(c, b.String())
			written <- err
		}()
		time.Sleep(300 * time.Millisecond) // let the output back up
		br := bufio.NewReader(c)
		for i := range n {
			res, body := workertest.ReadResponse(t, br)
			if want := fmt.Sprintf("/big?i=%d", i); res.Header.Get("X-Target") != want || len(body) != 64<<10 {
				t.Fatalf("response %d: %d bytes for %q, want 65536 for %q", i, len(body), res.Header.Get("X-Target"), want)
			}
		}
		if err := <-written; err != nil {
			t.Fatalf("writing the requests: %v", err)
		}
	})
}

// TestEventRequestThenFIN sends a keep-alive request and its FIN in one
// go: the FIN is reported with the bytes, so the loop must read on past
// them to see it and close at once, not at the keep-alive timeout.
func TestEventRequestThenFIN(t *testing.T) {
	forEventModes(t, nil, func(t *testing.T, p *testProcess, addr string, stop func(bool) error) {
		c := workertest.Dial(t, addr, 0)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.(*net.TCPConn).CloseWrite()
		br := bufio.NewReader(c)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, body := workertest.ReadResponse(t, br); body != "hello" {
			t.Fatalf("body %q", body)
		}
		start := time.Now()
		if closed, got := workertest.ClosedAfter(br, c, 2*time.Second); !closed {
			t.Fatalf("connection not closed 2 s after the client's FIN (keep-alive is 5 s): %s", got)
		}
		t.Logf("closed %s after the response", time.Since(start))
	})
}

func TestEventExpectContinue(t *testing.T) {
	forEventModes(t, nil, func(t *testing.T, p *testProcess, addr string, stop func(bool) error) {
		workertest.CheckExpectContinue(t, addr)
	})
}

func TestEventHTTP10(t *testing.T) {
	forEventModes(t, nil, func(t *testing.T, p *testProcess, addr string, stop func(bool) error) {
		res, _, br, c := workertest.RawDo(t, addr, "GET / HTTP/1.0\r\n\r\n")
		if !res.Close || res.Proto != "HTTP/1.0" {
			t.Fatalf("HTTP/1.0: close=%v %s", res.Close, res.Proto)
		}
		if ok, got := workertest.ClosedAfter(br, c, 2*time.Second); !ok {
			t.Fatalf("HTTP/1.0 not closed: %s", got)
		}
		res, _, br, c = workertest.RawDo(t, addr, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		if res.Close || res.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("HTTP/1.0 keep-alive: close=%v %v", res.Close, res.Header)
		}
		io.WriteString(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		if _, body := workertest.ReadResponse(t, br); body != "hello" {
			t.Fatalf("second HTTP/1.0 request: %q", body)
		}
	})
}

func TestEventLimits(t *testing.T) {
	forEventModes(t, func() *worker.Config {
		return &worker.Config{KeepAlive: 5 * time.Second, LimitRequestLine: 100, LimitRequestFields: 5, LimitRequestFieldSize: 200, MaxBody: 10}
	}, func(t *testing.T, p *testProcess, addr string, stop func(bool) error) {
		workertest.CheckRefusals(t, addr)
	})
}

func TestEventKeepAliveTimeout(t *testing.T) {
	forEventModes(t, func() *worker.Config { return &worker.Config{KeepAlive: 300 * time.Millisecond} }, func(t *testing.T, p *testProcess, addr string, stop func(bool) error) {
		_, _, br, c := workertest.RawDo(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		start := time.Now()
		if ok, got := workertest.ClosedAfter(br, c, 3*time.Second); !ok {
			t.Fatalf("idle connection not closed: %s", got)
		}
		if d := time.Since(start); d < 250*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("idle connection closed after %s, keep-alive 300ms", d)
		}
		// --keep-alive 0: every response closes.
	})
}

func TestEventWorkerConnectionsCap(t *testing.T) {
	forEventModes(t, func() *worker.Config { return &worker.Config{KeepAlive: 5 * time.Second, WorkerConnections: 2} }, func(t *testing.T, p *testProcess, addr string, stop func(bool) error) {
		_, _, _, c1 := workertest.RawDo(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		workertest.RawDo(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c3 := workertest.Dial(t, addr, 0) // waits in the backlog
		io.WriteString(c3, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		c3.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
		if _, err := c3.Read(make([]byte, 1)); err == nil {
			t.Fatal("a third connection was served at a cap of 2")
		}
		c1.Close()
		c3.SetReadDeadline(time.Now().Add(3 * time.Second))
		if res, body := workertest.ReadResponse(t, bufio.NewReader(c3)); body != "hello" {
			t.Fatalf("third connection after the first closed: %v %q", res, body)
		}
	})
}

// A graceful stop finishes the request in flight with "Connection: close",
// closes idle keep-alive connections after DrainIdle, answers a request
// sent on an idle connection within that window, and serves the backlog.
func TestEventGracefulStop(t *testing.T) {
	for _, m := range eventModes {
		if m.inline {
			continue // /sleep would block the loop
		}
		t.Run(m.name, func(t *testing.T) {
			p := newTestProcess(t, workertest.Handler(), &worker.Config{KeepAlive: 5 * time.Second, Threads: m.threads, DrainIdle: 300 * time.Millisecond})
			addr, stop := serveTest(t, p, new(eventWorker))
			// An idle keep-alive connection, and one that sends during the drain.
			_, _, idleBR, idle := workertest.RawDo(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			_, _, lateBR, late := workertest.RawDo(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			slow := workertest.Dial(t, addr, 5*time.Second)
			io.WriteString(slow, "GET /sleep?d=600ms HTTP/1.1\r\nHost: x\r\n\r\n")
			time.Sleep(100 * time.Millisecond)
			stopped := make(chan error, 1)
			begin := time.Now()
			go func() { stopped <- stop(true) }()
			time.Sleep(100 * time.Millisecond)
			io.WriteString(late, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if res, body := workertest.ReadResponse(t, lateBR); body != "hello" || !res.Close {
				t.Errorf("request during the drain: %q close=%v", body, res.Close)
			}
			if res, body := workertest.ReadResponse(t, bufio.NewReader(slow)); body != "slept" || !res.Close {
				t.Errorf("in-flight request: %q close=%v", body, res.Close)
			}
			if ok, got := workertest.ClosedAfter(idleBR, idle, 2*time.Second); !ok {
				t.Errorf("idle connection not closed by the drain: %s", got)
			}
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
			t.Logf("drained in %s", time.Since(begin).Round(time.Millisecond))
			if _, err := net.Dial("tcp", addr); err == nil {
				t.Errorf("listener still open after the drain")
			}
		})
	}
}

// Connections already in the backlog at a graceful stop are served.
func TestEventGracefulDrainsBacklog(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), &worker.Config{KeepAlive: 5 * time.Second, WorkerConnections: 1})
	addr, stop := serveTest(t, p, new(eventWorker))
	busy := workertest.Dial(t, addr, 0)
	io.WriteString(busy, "GET /sleep?d=300ms HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	served := 0
	for range 8 {
		c := workertest.Dial(t, addr, 0)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(c)
			if strings.HasSuffix(string(b), "hello") {
				mu.Lock()
				served++
				mu.Unlock()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if err := stop(true); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if served != 8 {
		t.Errorf("%d of 8 backlog connections served", served)
	}
}

func TestEventQuickStop(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), &worker.Config{KeepAlive: 5 * time.Second})
	addr, stop := serveTest(t, p, new(eventWorker))
	c := workertest.Dial(t, addr, 0)
	io.WriteString(c, "GET /sleep?d=30s HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	begin := time.Now()
	stop(false)
	if d := time.Since(begin); d > time.Second {
		t.Errorf("quick stop took %s", d)
	}
	if ok, got := workertest.ClosedAfter(bufio.NewReader(c), c, time.Second); !ok {
		t.Errorf("connection open after a quick stop: %s", got)
	}
}

// The loop beats while it runs; an inline handler that blocks it stops
// the heartbeat, so --timeout catches a wedged loop.
func TestEventBeatsFromTheLoop(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), &worker.Config{KeepAlive: 5 * time.Second, Timeout: 200 * time.Millisecond, EventInline: true})
	addr, _ := serveTest(t, p, new(eventWorker))
	workertest.CheckBeatsAroundBlockingRequest(t, addr, p.hb.Since)
}

type jobFunc func()

func (f jobFunc) serve() { f() }

func TestEventPoolBound(t *testing.T) {
	pool := newEventPool(3)
	defer pool.close()
	var mu sync.Mutex
	running, peak := 0, 0
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		pool.submit(jobFunc(func() {
			defer wg.Done()
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
		}))
	}
	wg.Wait()
	if peak > 3 || peak < 2 {
		t.Errorf("peak %d concurrent jobs on a pool of 3", peak)
	}
}

// BenchmarkEventKeepAlive measures the loop's hot path: one keep-alive
// connection, request after request, handler inline or on the pool.
func BenchmarkEventKeepAlive(b *testing.B) {
	for _, inline := range []bool{true, false} {
		b.Run(fmt.Sprintf("inline=%v", inline), func(b *testing.B) {
			// The client shares this process: the pool's one P per loop
			// (a worker process's own setting) would make it wait on the
			// loop, and measure that.
			b.Setenv("GOMAXPROCS", strconv.Itoa(runtime.GOMAXPROCS(0)))
			p := newTestProcess(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "Hello, World!")
			}), &worker.Config{KeepAlive: 5 * time.Second, EventInline: inline})
			addr, _ := serveTest(b, p, new(eventWorker))
			workertest.BenchKeepAlive(b, addr)
		})
	}
}

// The event worker is refused TLS listeners, which it does not serve
// (the command line says so before anything starts), and takes plain ones.
func TestEventRefusesTLS(t *testing.T) {
	if err := worker.CanServe(Class, true, worker.HTTP2On); err == nil {
		t.Error("event took TLS")
	}
	if err := worker.CanServe(Class, false, worker.HTTP2On); err != nil {
		t.Errorf("event without TLS: %v", err)
	}
}

// TestEventRequestContextEnds: a request's context ends when its handler
// returns, as net/http's does, in every mode; a pipelined batch's requests
// all start with live contexts.
func TestEventRequestContextEnds(t *testing.T) {
	for _, m := range eventModes {
		t.Run(m.name, func(t *testing.T) {
			workertest.CheckRequestContextEnds(t, false, func(h http.Handler) string {
				c := &worker.Config{KeepAlive: 5 * time.Second, EventInline: m.inline, Threads: m.threads}
				addr, _ := serveTest(t, newTestProcess(t, h, c), new(eventWorker))
				return addr
			})
		})
	}
}
