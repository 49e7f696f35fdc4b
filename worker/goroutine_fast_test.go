package worker

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-server/corral/worker/internal/workertest"
)

// servedBy names the path that serves a handler writing to w: "fast", or
// "net/http", seen through the wrappers in front of the writer.
func servedBy(w http.ResponseWriter) string {
	for {
		if _, ok := w.(*fastWriter); ok {
			return "fast"
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return "net/http"
		}
		w = u.Unwrap()
	}
}

// tellPath serves h, and says in X-Path which path served the request.
func tellPath(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", servedBy(w))
		h.ServeHTTP(w, r)
	})
}

// startFast serves the tests' handler, with X-Path, on a goroutine worker.
func startFast(t *testing.T, cfg *Config) (string, *goroutineWorker, func(bool) error) {
	t.Helper()
	if cfg == nil {
		cfg = &Config{KeepAlive: 5 * time.Second}
	}
	g := new(goroutineWorker)
	addr, stop := serveTest(t, newTestProcess(t, tellPath(workertest.Handler()), cfg), g)
	return addr, g, stop
}

// serveAndGet serves h on a goroutine worker and returns a connection to
// it, and its reader, on which a GET / was answered with body want.
func serveAndGet(t *testing.T, h http.Handler, want string) (net.Conn, *bufio.Reader) {
	t.Helper()
	addr, _ := serveTest(t, newTestProcess(t, h, &Config{KeepAlive: 5 * time.Second}), new(goroutineWorker))
	c := workertest.Dial(t, addr, 10*time.Second)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := workertest.ReadResponse(t, br); body != want {
		t.Fatalf("GET /: %q, want %q", body, want)
	}
	return c, br
}

// wantResponse reads a response from br and wants its status, body and
// path.
func wantResponse(t *testing.T, br *bufio.Reader, status int, body, path string) *http.Response {
	t.Helper()
	res, got := workertest.ReadResponse(t, br)
	if res.StatusCode != status || got != body || res.Header.Get("X-Path") != path {
		t.Fatalf("%d %q on %q, want %d %q on %q", res.StatusCode, got, res.Header.Get("X-Path"), status, body, path)
	}
	return res
}

// TestFastKeepAlive: a kept-alive connection's requests, one after the
// other, are all served on the fast path, with keep-alive framing.
func TestFastKeepAlive(t *testing.T) {
	addr, _, _ := startFast(t, nil)
	c := workertest.Dial(t, addr, 10*time.Second)
	br := bufio.NewReader(c)
	for i := range 5 {
		fmt.Fprintf(c, "POST /echo?i=%d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab%d", i, i)
		res := wantResponse(t, br, 200, fmt.Sprintf("ab%d", i), "fast")
		if res.Close || res.ContentLength != 3 || res.Header.Get("X-Target") != fmt.Sprintf("/echo?i=%d", i) {
			t.Fatalf("request %d: close %v, length %d, target %q", i, res.Close, res.ContentLength, res.Header.Get("X-Target"))
		}
	}
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n") // no keep-alive asked: the close
	if res := wantResponse(t, br, 200, "hello", "fast"); !res.Close {
		t.Fatal("an HTTP/1.0 request without keep-alive left the connection open")
	}
	if ok, got := workertest.ClosedAfter(br, c, 2*time.Second); !ok {
		t.Fatalf("not closed after HTTP/1.0: %q", got)
	}
}

// TestFastPipelined: requests sent in one write are answered in order,
// on the fast path, and a request cut by the end of the write is served
// once its rest comes.
func TestFastPipelined(t *testing.T) {
	addr, _, _ := startFast(t, nil)
	c := workertest.Dial(t, addr, 10*time.Second)
	var wire strings.Builder
	for i := range 20 {
		fmt.Fprintf(&wire, "GET /echo?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	wire.WriteString("POST /echo?n=20 HTTP/1.1\r\nHost: x\r\nContent-Len")
	io.WriteString(c, wire.String())
	br := bufio.NewReader(c)
	for i := range 20 {
		res := wantResponse(t, br, 200, "", "fast")
		if got := res.Header.Get("X-Target"); got != fmt.Sprintf("/echo?n=%d", i) {
			t.Fatalf("response %d answers %q", i, got)
		}
	}
	io.WriteString(c, "gth: 4\r\n\r\nlast")
	if res := wantResponse(t, br, 200, "last", "fast"); res.Header.Get("X-Target") != "/echo?n=20" {
		t.Fatalf("the request cut in two answers %q", res.Header.Get("X-Target"))
	}
}

// TestFastHandOver: on a connection the fast path serves, a body too large
// to buffer and a request waiting for 100 Continue go to net/http, with
// every byte the fast path had read, and net/http serves the rest of the
// connection.
func TestFastHandOver(t *testing.T) {
	addr, _, _ := startFast(t, nil)

	c := workertest.Dial(t, addr, 10*time.Second)
	br := bufio.NewReader(c)
	big := strings.Repeat("0123456789abcdef", 20<<10) // 320 KiB: more than fastMaxRequest
	// Two small requests and the large one's head and first bytes in
	// one write, the rest of its body later.
	io.WriteString(c, "GET /echo?1 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?2 HTTP/1.1\r\nHost: x\r\n\r\n"+
		fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(big))+big[:1000])
	wantResponse(t, br, 200, "", "fast")
	wantResponse(t, br, 200, "", "fast")
	go io.WriteString(c, big[1000:])
	wantResponse(t, br, 200, big, "net/http")
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	wantResponse(t, br, 200, "hello", "net/http")

	c = workertest.Dial(t, addr, 10*time.Second)
	br = bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	wantResponse(t, br, 200, "hello", "fast")
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
	if line, err := br.ReadString('\n'); line != "HTTP/1.1 100 Continue\r\n" || err != nil {
		t.Fatalf("interim response %q, %v", line, err)
	}
	if line, _ := br.ReadString('\n'); line != "\r\n" {
		t.Fatalf("after the interim status line: %q", line)
	}
	io.WriteString(c, "xyz")
	wantResponse(t, br, 200, "xyz", "net/http")
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	wantResponse(t, br, 200, "hello", "net/http")
}

// TestFastUpgradeGoesToNetHTTP: a request asking to switch protocols is
// served by net/http, whose handler hijacks the connection as it would
// without the fast path.
func TestFastUpgradeGoesToNetHTTP(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			io.WriteString(w, servedBy(w))
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nserved by %s\n", servedBy(w))
		brw.Flush()
		line, _ := brw.ReadString('\n')
		io.WriteString(conn, "echo "+line)
	})
	c, br := serveAndGet(t, h, "fast")
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhi\n")
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 101 {
		t.Fatalf("upgrade: %v, %v", res, err)
	}
	for _, want := range []string{"served by net/http\n", "echo hi\n"} {
		if line, err := br.ReadString('\n'); line != want {
			t.Fatalf("after the upgrade: %q, %v; want %q", line, err, want)
		}
	}
}

// TestFastHijack: a handler on the fast path takes the connection over:
// the responses before it went out first, the bytes the client sent right
// after the request (already read by the fast path) and later (on the
// socket) reach it, its raw bytes reach the client, and the worker no
// longer counts the connection.
func TestFastHijack(t *testing.T) {
	hijacked := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hijack" {
			io.WriteString(w, "before")
			return
		}
		if p := servedBy(w); p != "fast" {
			t.Errorf("hijacking request served by %s", p)
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		hijacked <- err
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := w.Write([]byte("x")); err != http.ErrHijacked {
			t.Errorf("write after the hijack: %v, want http.ErrHijacked", err)
		}
		if n := brw.Reader.Buffered(); n != len("PING1") {
			t.Errorf("%d bytes buffered at the hijack, want the 5 sent with the request", n)
		}
		for range 2 {
			b := make([]byte, 5)
			if _, err := io.ReadFull(brw, b); err != nil {
				t.Errorf("hijacker's read: %v", err)
				return
			}
			fmt.Fprintf(brw, "got %s\n", b)
			brw.Flush()
		}
	})
	p := newTestProcess(t, h, &Config{KeepAlive: 5 * time.Second})
	g := new(goroutineWorker)
	addr, _ := serveTest(t, p, g)
	c := workertest.Dial(t, addr, 10*time.Second)
	io.WriteString(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /hijack HTTP/1.1\r\nHost: x\r\n\r\nPING1")
	br := bufio.NewReader(c)
	if res, body := workertest.ReadResponse(t, br); res.StatusCode != 200 || body != "before" {
		t.Fatalf("the response before the hijack: %d %q", res.StatusCode, body)
	}
	if err := <-hijacked; err != nil {
		t.Fatalf("hijack: %v", err)
	}
	if line, _ := br.ReadString('\n'); line != "got PING1\n" {
		t.Fatalf("first raw line %q", line)
	}
	io.WriteString(c, "PING2")
	if line, _ := br.ReadString('\n'); line != "got PING2\n" {
		t.Fatalf("second raw line %q", line)
	}
	g.mu.Lock()
	n := len(g.conns)
	g.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d connections tracked after the hijack, want 0", n)
	}
}

// TestFastClientGoneCancelsContext: a client that goes away while a long
// handler runs on the fast path cancels its context, after the watch read
// a tick starts; a handler that returns before a tick starts none.
func TestFastClientGoneCancelsContext(t *testing.T) {
	gone := make(chan string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/wait" {
			io.WriteString(w, "quick")
			return
		}
		select {
		case <-r.Context().Done():
			gone <- servedBy(w)
		case <-time.After(5 * time.Second):
			gone <- "not cancelled"
		}
	})
	c, _ := serveAndGet(t, h, "quick")
	io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	c.Close()
	if path := <-gone; path != "fast" {
		t.Fatalf("the long handler: %s", path)
	}
	if took := time.Since(start); took > watchDelay+time.Second {
		t.Fatalf("the handler saw the client go away after %s", took)
	}
}

// TestFastHeaderTimeout: a head begun and not finished within the header
// timeout is answered 408 and closed; a connection that sends nothing,
// and a kept one silent for --keep-alive, close without a word.
func TestFastHeaderTimeout(t *testing.T) {
	g := &goroutineWorker{headerTimeout: 300 * time.Millisecond}
	addr, _ := serveTest(t, newTestProcess(t, tellPath(workertest.Handler()), &Config{KeepAlive: 200 * time.Millisecond}), g)

	c := workertest.Dial(t, addr, 10*time.Second)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHo")
	wantResponse(t, br, 200, "hello", "fast")
	start := time.Now()
	if res, _ := workertest.ReadResponse(t, br); res.StatusCode != http.StatusRequestTimeout || !res.Close {
		t.Fatalf("a head cut short: %d, close %v; want 408 and the close", res.StatusCode, res.Close)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Fatalf("408 after %s, before the header timeout", took)
	}
	if ok, got := workertest.ClosedAfter(br, c, 2*time.Second); !ok {
		t.Fatalf("not closed after the 408: %q", got)
	}

	for _, first := range []string{"", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"} {
		c := workertest.Dial(t, addr, 10*time.Second)
		br := bufio.NewReader(c)
		io.WriteString(c, first)
		if first != "" {
			wantResponse(t, br, 200, "hello", "fast")
		}
		if ok, got := workertest.ClosedAfter(br, c, 2*time.Second); !ok {
			t.Fatalf("after %q: not closed silently: %q", first, got)
		}
	}
}

// TestFastDrainServesTheNextRequest: a graceful stop closes a kept-alive
// connection idle for DrainIdle, but not one whose next request has
// begun: it is answered, with the close, though the connection has been
// idle longer than DrainIdle when it ends; then the stop completes.
func TestFastDrainServesTheNextRequest(t *testing.T) {
	cfg := &Config{KeepAlive: 10 * time.Second, DrainIdle: 400 * time.Millisecond}
	addr, _, stop := startFast(t, cfg)
	idle := workertest.Dial(t, addr, 10*time.Second)
	kept := workertest.Dial(t, addr, 10*time.Second)
	quick := workertest.Dial(t, addr, 10*time.Second)
	var brs []*bufio.Reader
	for _, c := range []net.Conn{idle, kept, quick} {
		br := bufio.NewReader(c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		wantResponse(t, br, 200, "hello", "fast")
		brs = append(brs, br)
	}
	time.Sleep(300 * time.Millisecond) // idle since t
	stopped := make(chan error, 1)
	go func() { stopped <- stop(true) }()
	time.Sleep(50 * time.Millisecond)                     // t+350ms
	io.WriteString(kept, "GET /echo?kept HTTP/1.1\r\nHo") // the next head begins...
	io.WriteString(quick, "GET /echo?quick HTTP/1.1\r\nHost: x\r\n\r\n")
	if res := wantResponse(t, brs[2], 200, "", "fast"); !res.Close {
		t.Fatal("a request during the drain was answered without Connection: close")
	}
	time.Sleep(250 * time.Millisecond) // ...and ends at t+600ms, idle or not for DrainIdle
	io.WriteString(kept, "st: x\r\n\r\n")
	if res := wantResponse(t, brs[1], 200, "", "fast"); !res.Close || res.Header.Get("X-Target") != "/echo?kept" {
		t.Fatalf("the request begun in the drain: close %v, target %q", res.Close, res.Header.Get("X-Target"))
	}
	for i, c := range []net.Conn{idle, kept, quick} {
		if ok, got := workertest.ClosedAfter(brs[i], c, 2*time.Second); !ok {
			t.Errorf("connection %d not closed by the drain: %q", i, got)
		}
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the graceful stop did not end once every connection was gone")
	}
}

// TestFastServeFile: http.ServeFile on the fast path sends the file whole
// (by sendfile, through the writer's ReadFrom), with its length, and the
// connection serves on.
func TestFastServeFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "f")
	data := strings.Repeat("corral ", 30000)
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", servedBy(w))
		http.ServeFile(w, r, name)
	})
	addr, _ := serveTest(t, newTestProcess(t, h, &Config{KeepAlive: 5 * time.Second}), new(goroutineWorker))
	c := workertest.Dial(t, addr, 10*time.Second)
	br := bufio.NewReader(c)
	for range 2 {
		io.WriteString(c, "GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
		if res := wantResponse(t, br, 200, data, "fast"); res.ContentLength != int64(len(data)) {
			t.Fatalf("Content-Length %d, want %d", res.ContentLength, len(data))
		}
	}
}

// TestFastPanicAnswers500: a handler's panic on the fast path is answered
// 500 after the responses before it, when nothing of its own was sent,
// and the connection closes.
func TestFastPanicAnswers500(t *testing.T) {
	addr, _, _ := startFast(t, nil)
	c := workertest.Dial(t, addr, 10*time.Second)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /panic HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	wantResponse(t, br, 200, "hello", "fast")
	if res, _ := workertest.ReadResponse(t, br); res.StatusCode != 500 || !res.Close {
		t.Fatalf("the panic: %d, close %v; want 500 and the close", res.StatusCode, res.Close)
	}
	if ok, got := workertest.ClosedAfter(br, c, 2*time.Second); !ok {
		t.Fatalf("not closed after the panic: %q", got)
	}
}

// TestFastRequestContextEnds: on the fast path a request's context ends
// when its handler returns, as net/http's does.
func TestFastRequestContextEnds(t *testing.T) {
	workertest.CheckRequestContextEnds(t, false, func(h http.Handler) string {
		addr, _ := serveTest(t, newTestProcess(t, h, &Config{KeepAlive: 5 * time.Second}), new(goroutineWorker))
		return addr
	})
}

// TestSyncRequestContextEnds: the sync type's too (a request a
// connection).
func TestSyncRequestContextEnds(t *testing.T) {
	workertest.CheckRequestContextEnds(t, true, func(h http.Handler) string {
		addr, _ := serveTest(t, newTestProcess(t, h, &Config{KeepAlive: 5 * time.Second}), new(syncWorker))
		return addr
	})
}
