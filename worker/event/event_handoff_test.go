package event

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-server/corral/worker"
	"github.com/corral-server/corral/worker/internal/workertest"
)

// get sends a GET for path on c and reads its response.
func get(t *testing.T, c net.Conn, br *bufio.Reader, path string) string {
	t.Helper()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, body := workertest.ReadResponse(t, br)
	return body
}

// A handler that blocks while the loop runs it (a kept job) does not stall
// the loop's other connections: the watchdog gives the loop to another
// goroutine, and the blocked request is answered once its handler returns.
func TestKeptJobBlockedHandsOff(t *testing.T) {
	release := make(chan struct{})
	p := newTestProcess(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			<-release
		}
		io.WriteString(w, "done "+r.URL.Path)
	}), &worker.Config{KeepAlive: 5 * time.Second})
	addr, _ := serveTest(t, p, new(eventWorker))
	// Warm the loop up with quick requests: it keeps jobs from the start,
	// and these must not be a strike.
	c := workertest.Dial(t, addr, 20*time.Second)
	br := bufio.NewReader(c)
	for range 20 {
		if body := get(t, c, br, "/quick"); body != "done /quick" {
			t.Fatalf("quick: %q", body)
		}
	}
	blocked := workertest.Dial(t, addr, 20*time.Second)
	done := make(chan string, 1)
	go func() {
		fmt.Fprint(blocked, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(blocked), nil)
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		done <- string(b)
	}()
	time.Sleep(50 * time.Millisecond) // the /block handler is running
	for range 5 {
		if body := get(t, c, br, "/quick"); body != "done /quick" {
			t.Fatalf("quick while /block blocks: %q", body)
		}
	}
	select {
	case got := <-done:
		t.Fatalf("/block answered before its handler returned: %q", got)
	default:
	}
	close(release)
	if got := <-done; got != "done /block" {
		t.Errorf("/block: %q", got)
	}
	// And the loop goes on serving.
	if body := get(t, c, br, "/quick"); body != "done /quick" {
		t.Errorf("after: %q", body)
	}
}

// Handlers that block run side by side: eight requests whose handlers each
// wait for all eight to be running are answered.
func TestKeptJobsRunConcurrently(t *testing.T) {
	const n = 8
	var all sync.WaitGroup
	all.Add(n)
	p := newTestProcess(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		all.Done()
		ok := make(chan struct{})
		go func() { all.Wait(); close(ok) }()
		select {
		case <-ok:
			io.WriteString(w, "together")
		case <-time.After(10 * time.Second):
			http.Error(w, "alone", http.StatusGatewayTimeout)
		}
	}), &worker.Config{KeepAlive: 5 * time.Second})
	addr, _ := serveTest(t, p, new(eventWorker))
	var wg sync.WaitGroup
	bodies := make([]string, n)
	for i := range n {
		c := workertest.Dial(t, addr, 20*time.Second)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				bodies[i] = err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			bodies[i] = string(b)
		}()
	}
	wg.Wait()
	for i, b := range bodies {
		if b != "together" {
			t.Errorf("request %d: %q", i, b)
		}
	}
}

// A handler that streams (flushes) while the loop runs it hands the loop
// off, as the loop must take the bytes it sends: the whole response
// arrives, and the loop serves on. So does one that streams only after
// it blocked long enough for the watchdog to take the loop over (/late):
// its send then leaves the loop's new goroutine alone.
func TestKeptJobStreams(t *testing.T) {
	chunk := strings.Repeat("x", 16<<10)
	p := newTestProcess(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
		case "/late":
			time.Sleep(20 * time.Millisecond)
		default:
			io.WriteString(w, "quick")
			return
		}
		for range 64 { // 1 MiB, past the loop's eventOutHigh
			io.WriteString(w, chunk)
			w.(http.Flusher).Flush()
		}
	}), &worker.Config{KeepAlive: 5 * time.Second})
	addr, _ := serveTest(t, p, new(eventWorker))
	c := workertest.Dial(t, addr, 20*time.Second)
	br := bufio.NewReader(c)
	for range 3 {
		if body := get(t, c, br, "/quick"); body != "quick" {
			t.Fatalf("quick: %q", body)
		}
		for _, path := range []string{"/late", "/stream"} {
			if body := get(t, c, br, path); len(body) != 64*len(chunk) || strings.Trim(body, "x") != "" {
				t.Fatalf("%s: %d bytes, want %d", path, len(body), 64*len(chunk))
			}
		}
	}
}
