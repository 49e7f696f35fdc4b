package worker

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-server/corral/worker/internal/workertest"
)

func TestSyncServesAndCloses(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), nil)
	addr, stop := serveTest(t, p, new(syncWorker))
	res, body, br, c := workertest.RawDo(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if res.StatusCode != 200 || body != "hello" || !res.Close || res.ContentLength != 5 {
		t.Fatalf("GET /: %d %q close=%v", res.StatusCode, body, res.Close)
	}
	if ok, got := workertest.ClosedAfter(br, c, 2*time.Second); !ok {
		t.Fatalf("connection not closed after the response: %s", got)
	}
	res, body, _, _ = workertest.RawDo(t, addr, "POST /echo?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd")
	if body != "abcd" || res.Header.Get("X-Target") != "/echo?x=1" || res.Header.Get("X-Method") != "POST" {
		t.Fatalf("POST /echo: %q %v", body, res.Header)
	}
	res, body, _, _ = workertest.RawDo(t, addr, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
	if body != "abcde" {
		t.Fatalf("chunked POST: %q", body)
	}
	res, body, _, _ = workertest.RawDo(t, addr, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	if len(body) != 15000 || res.TransferEncoding[0] != "chunked" {
		t.Fatalf("stream: %d bytes, TE %v", len(body), res.TransferEncoding)
	}
	res, _, _, _ = workertest.RawDo(t, addr, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
	if got := p.Requests(); got != 5 {
		t.Errorf("Requests() = %d, want 5", got)
	}
	if err := stop(true); err != nil {
		t.Fatal(err)
	}
}

func TestSyncExpectContinue(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), nil)
	addr, _ := serveTest(t, p, new(syncWorker))
	workertest.CheckExpectContinue(t, addr)
}

// The request limits answer 414, 431 and 413, and close.
func TestSyncLimits(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), &Config{LimitRequestLine: 100, LimitRequestFields: 5, LimitRequestFieldSize: 200, MaxBody: 10})
	addr, _ := serveTest(t, p, new(syncWorker))
	many := strings.Repeat("X-A: b\r\n", 6)
	for req, want := range map[string]int{
		"GET /" + strings.Repeat("a", 100) + " HTTP/1.1\r\nHost: x\r\n\r\n":                            414,
		"GET / HTTP/1.1\r\nHost: x\r\n" + many + "\r\n":                                                431,
		"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + strings.Repeat("v", 200) + "\r\n\r\n":                431,
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n01234567890":                      413,
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab":                400,
		"GET / HTTP/1.1\r\nHost : x\r\n\r\n":                                                           400,
		"GET / HTTP/2.0\r\nHost: x\r\n\r\n":                                                            505,
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\n\r\n": 400,
	} {
		res, _, br, c := workertest.RawDo(t, addr, req)
		if res.StatusCode != want || !res.Close {
			t.Errorf("%.40q: %d close=%v, want %d", req, res.StatusCode, res.Close, want)
		}
		if ok, got := workertest.ClosedAfter(br, c, 2*time.Second); !ok {
			t.Errorf("%.40q: not closed: %q", req, got)
		}
	}
	// Defaults in RequestLimits for a Config that sets none.
	if l := (&Config{}).RequestLimits(); l.RequestLine != 4094 || l.Fields != 100 || l.FieldSize != 8190 {
		t.Errorf("default limits %+v", l)
	}
}

// A graceful stop finishes the request in flight and serves every
// connection already in the backlog.
func TestSyncGracefulDrainsBacklog(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), &Config{Timeout: 5 * time.Second})
	addr, stop := serveTest(t, p, new(syncWorker))
	slow := make(chan string, 1)
	sc := workertest.Dial(t, addr, 0)
	io.WriteString(sc, "GET /sleep?d=500ms HTTP/1.1\r\nHost: x\r\n\r\n")
	go func() {
		sc.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(sc)
		slow <- string(b)
	}()
	time.Sleep(100 * time.Millisecond)
	// These wait in the backlog while the worker sleeps.
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for range n {
		c := workertest.Dial(t, addr, 0)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(c)
			if err != nil || !strings.HasSuffix(string(b), "hello") {
				errs <- string(b) + " " + err.Error()
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if err := stop(true); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("backlog connection: %s", e)
	}
	if b := <-slow; !strings.HasSuffix(b, "\r\n\r\nslept") {
		t.Errorf("in-flight request: %q", b)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("listener still open after the drain")
	}
}

// A quick stop ends the request in flight at once.
func TestSyncQuickStop(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), nil)
	addr, stop := serveTest(t, p, new(syncWorker))
	c := workertest.Dial(t, addr, 0)
	io.WriteString(c, "GET /sleep?d=30s HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	stop(false)
	if d := time.Since(start); d > time.Second {
		t.Errorf("quick stop took %s", d)
	}
}

// The worker beats while idle and not while a request runs.
func TestSyncBeatsBetweenRequestsOnly(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), &Config{Timeout: 200 * time.Millisecond})
	addr, _ := serveTest(t, p, new(syncWorker))
	workertest.CheckBeatsAroundBlockingRequest(t, addr, p.heartbeat.Since)
}

func TestMaxHeaderBytesMapping(t *testing.T) {
	c := &Config{LimitRequestLine: 4094, LimitRequestFields: 100, LimitRequestFieldSize: 8190}
	if got, want := c.maxHeaderBytes(), 4096+100*8192+2; got != want {
		t.Errorf("maxHeaderBytes = %d, want %d", got, want)
	}
}
