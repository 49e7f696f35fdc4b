package worker

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/corral-server/corral/worker/frontend"
	"github.com/corral-server/corral/worker/http1"
	"github.com/corral-server/corral/worker/internal/workertest"
)

// TestGoroutineLimits: the goroutine worker refuses what the sync and event
// workers refuse, with the same answers, and closes.
func TestGoroutineLimits(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), &Config{KeepAlive: 5 * time.Second, LimitRequestLine: 100,
		LimitRequestFields: 5, LimitRequestFieldSize: 200, MaxBody: 10})
	addr, _ := serveTest(t, p, new(goroutineWorker))
	workertest.CheckRefusals(t, addr)
}

// TestGoroutineRefusalAfterResponse: a refused request behind one whose
// handler is still running is answered after that handler's response, and
// the handler's request is not cancelled for it.
func TestGoroutineRefusalAfterResponse(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), &Config{KeepAlive: 5 * time.Second})
	addr, _ := serveTest(t, p, new(goroutineWorker))
	c := workertest.Dial(t, addr, 10*time.Second)
	io.WriteString(c, "GET /sleep?d=300ms HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n")
	br := bufio.NewReader(c)
	if res, body := workertest.ReadResponse(t, br); res.StatusCode != 200 || body != "slept" {
		t.Fatalf("first response: %d %q", res.StatusCode, body)
	}
	if res, _ := workertest.ReadResponse(t, br); res.StatusCode != 400 || !res.Close {
		t.Fatalf("second response: %d close=%v, want 400 and a close", res.StatusCode, res.Close)
	}
	if ok, got := workertest.ClosedAfter(br, c, 2*time.Second); !ok {
		t.Fatalf("not closed: %q", got)
	}
}

// TestGoroutinePipelinedDuringHandler: a request that arrives while the
// handler of the one before runs is read by net/http's background read,
// which hands it to the Screen: served after, or refused after, that
// handler's response.
func TestGoroutinePipelinedDuringHandler(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), &Config{KeepAlive: 5 * time.Second})
	addr, _ := serveTest(t, p, new(goroutineWorker))
	for next, want := range map[string]int{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n":               200,
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n": 400,
	} {
		c := workertest.Dial(t, addr, 10*time.Second)
		io.WriteString(c, "GET /sleep?d=300ms HTTP/1.1\r\nHost: x\r\n\r\n")
		time.Sleep(100 * time.Millisecond)
		io.WriteString(c, next)
		br := bufio.NewReader(c)
		if res, body := workertest.ReadResponse(t, br); res.StatusCode != 200 || body != "slept" {
			t.Fatalf("%q: first response %d %q", next, res.StatusCode, body)
		}
		if res, _ := workertest.ReadResponse(t, br); res.StatusCode != want {
			t.Fatalf("%q: second response %d, want %d", next, res.StatusCode, want)
		}
	}
}

// TestGoroutineEmptyLines: an empty line before a request-line is skipped,
// on a fresh connection and between kept requests (net/http alone would
// answer 400 to the first).
func TestGoroutineEmptyLines(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), &Config{KeepAlive: 5 * time.Second})
	addr, _ := serveTest(t, p, new(goroutineWorker))
	c := workertest.Dial(t, addr, 10*time.Second)
	io.WriteString(c, "\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"hi", "hello"} {
		if res, body := workertest.ReadResponse(t, br); res.StatusCode != 200 || body != want {
			t.Fatalf("%d %q, want 200 %q", res.StatusCode, body, want)
		}
	}
}

// BenchmarkGoroutineKeepAlive serves keep-alive requests on one
// connection over loopback: net/http alone, read plainly and through a
// Screen (the Screen's cost), and the goroutine worker, on its fast path
// and as before it, through net/http and the Screen (worker-nethttp).
func BenchmarkGoroutineKeepAlive(b *testing.B) {
	for _, netHTTP := range []bool{false, true} {
		name := "worker-fast"
		if netHTTP {
			name = "worker-nethttp"
		}
		b.Run(name, func(b *testing.B) {
			p := newTestProcess(b, workertest.Handler(), &Config{KeepAlive: 5 * time.Second})
			addr, _ := serveTest(b, p, &goroutineWorker{netHTTP: netHTTP})
			workertest.BenchKeepAlive(b, addr)
		})
	}
	for _, screened := range []bool{false, true} {
		name := "nethttp-plain"
		if screened {
			name = "nethttp-screened"
		}
		b.Run(name, func(b *testing.B) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			cfg := ParserConfig(&Process{Config: &Config{}})
			srv := &http.Server{Handler: workertest.Handler(), ConnState: func(c net.Conn, s http.ConnState) {
				c.(*trackedConn).inState(s)
			}}
			go srv.Serve(benchListener{l, cfg, screened})
			defer srv.Close()
			workertest.BenchKeepAlive(b, l.Addr().String())
		})
	}
}

// benchListener wraps connections as the goroutine worker's drainListener.
type benchListener struct {
	net.Listener
	cfg      *http1.Config
	screened bool
}

func (l benchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{BaseConn: frontend.BaseConn{Conn: c}}
	if l.screened {
		tc.screen = newScreenedConn(l.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	}
	return tc, nil
}

// TestGoroutineClientGoneDuringHandler: a client that goes away while a
// long handler runs cancels the request's context, though the background
// read that sees it first waits off the socket (see goroutine_watch.go);
// kept requests before and after on another connection are served.
func TestGoroutineClientGoneDuringHandler(t *testing.T) {
	gone := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			if p := servedBy(w); p != "fast" {
				t.Errorf("/wait served by %s, want the fast path", p)
			}
			select {
			case <-r.Context().Done():
				close(gone)
			case <-time.After(5 * time.Second):
			}
			return
		}
		io.WriteString(w, "hello")
	})
	p := newTestProcess(t, h, &Config{KeepAlive: 5 * time.Second})
	addr, _ := serveTest(t, p, new(goroutineWorker))
	kept := workertest.Dial(t, addr, 10*time.Second)
	br := bufio.NewReader(kept)
	for i := 0; i < 3; i++ {
		io.WriteString(kept, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if res, body := workertest.ReadResponse(t, br); res.StatusCode != 200 || body != "hello" {
			t.Fatalf("kept request %d: %d %q", i, res.StatusCode, body)
		}
	}
	c := workertest.Dial(t, addr, 10*time.Second)
	io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	c.Close()
	select {
	case <-gone:
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("handler saw the client go away after %s", took)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("handler never saw the client go away")
	}
	io.WriteString(kept, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, body := workertest.ReadResponse(t, br); res.StatusCode != 200 || body != "hello" {
		t.Fatalf("kept request after: %d %q", res.StatusCode, body)
	}
}

// TestGoroutineCountsConnectionsAndBytes: with the scoreboard on, the
// goroutine worker's connections count themselves (no countedConn
// beneath): opened, closed, and every byte read and written.
func TestGoroutineCountsConnectionsAndBytes(t *testing.T) {
	p := withBoard(newTestProcess(t, workertest.Handler(), &Config{KeepAlive: 5 * time.Second, Metrics: true}))
	addr, _ := serveTest(t, p, new(goroutineWorker))
	req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	c := workertest.Dial(t, addr, 10*time.Second)
	var got int64
	for i := 0; i < 2; i++ {
		io.WriteString(c, req)
		var b [4096]byte
		n, err := c.Read(b[:])
		if err != nil {
			t.Fatal(err)
		}
		got += int64(n)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for p.board.Read().ConnsOpen != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	n := p.board.Read()
	if n.Connections != 1 || n.ConnsOpen != 0 {
		t.Errorf("connections %d, open %d: want 1 and 0", n.Connections, n.ConnsOpen)
	}
	if n.BytesRead != uint64(2*len(req)) || n.BytesWritten != uint64(got) {
		t.Errorf("bytes read %d, written %d: want %d and %d", n.BytesRead, n.BytesWritten, 2*len(req), got)
	}
}
