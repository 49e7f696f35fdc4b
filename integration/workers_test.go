package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// workerClasses are the worker types every test here runs against.
var workerClasses = []string{"goroutine", "sync", "event"}

func startClass(t *testing.T, class string, workers int, extra ...string) *server {
	t.Helper()
	args := append([]string{"-w", strconv.Itoa(workers), "-b", "127.0.0.1:0", "-k", class}, extra...)
	s := start(t, corralBin, append(args, "demo"))
	s.waitLog(fmt.Sprintf(`Ready: %d workers serving`, workers), 10*time.Second)
	return s
}

func TestWorkersEcho(t *testing.T) {
	for _, class := range workerClasses {
		t.Run(class, func(t *testing.T) {
			s := startClass(t, class, 2)
			if body := mustGet(t, s.Addr, "/"); body != "Hello, World!" {
				t.Errorf("GET / = %q", body)
			}
			res, err := http.Post("http://"+s.Addr+"/echo?a=1", "text/plain", strings.NewReader("ping"))
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var e struct {
				Method, Target, Body string
				Pid                  int
			}
			if err := json.NewDecoder(res.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if e.Method != "POST" || e.Target != "/echo?a=1" || e.Body != "ping" || e.Pid == 0 {
				t.Errorf("echo: %+v", e)
			}
		})
	}
}

// rawConn is a raw HTTP/1.1 client connection.
func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readRes(t *testing.T, br *bufio.Reader) (*http.Response, string) {
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

func TestWorkersKeepAlive(t *testing.T) {
	for _, class := range []string{"goroutine", "event"} {
		t.Run(class, func(t *testing.T) {
			s := startClass(t, class, 1)
			c, br := rawConn(t, s.Addr)
			for i := range 10 {
				fmt.Fprintf(c, "GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
				res, body := readRes(t, br)
				if res.StatusCode != 200 || res.Close || body == "" {
					t.Fatalf("request %d: %d close=%v %q", i, res.StatusCode, res.Close, body)
				}
			}
		})
	}
}

func TestWorkersPipelining(t *testing.T) {
	for _, class := range []string{"goroutine", "event"} {
		t.Run(class, func(t *testing.T) {
			s := startClass(t, class, 1)
			c, br := rawConn(t, s.Addr)
			var b strings.Builder
			for i := range 16 {
				fmt.Fprintf(&b, "GET /echo?i=%d HTTP/1.1\r\nHost: t\r\n\r\n", i)
			}
			io.WriteString(c, b.String())
			for i := range 16 {
				_, body := readRes(t, br)
				var e struct{ Target string }
				json.Unmarshal([]byte(body), &e)
				if want := fmt.Sprintf("/echo?i=%d", i); e.Target != want {
					t.Fatalf("response %d is for %q, want %q", i, e.Target, want)
				}
			}
		})
	}
}

// A HUP every 200 ms under load fails no request, for each worker type.
func TestWorkersHUPUnderLoad(t *testing.T) {
	for _, class := range workerClasses {
		t.Run(class, func(t *testing.T) {
			s := startClass(t, class, 4)
			load := mixedLoad{keepAlive: 8, close: 4, requests: 200000}
			if class == "sync" {
				load.keepAlive = 0 // it closes each connection after one response: no keep-alive to test
			}
			hups, r := s.hupStormUnderLoad(4*time.Second, 200*time.Millisecond, load)
			t.Logf("%s: %d HUPs; %s", class, hups, r)
			if r.lost() != 0 {
				t.Errorf("requests failed during reloads: %s", r)
			}
			if (class != "sync" && r.keepAlive.ok < 100) || r.close.ok < 100 {
				t.Errorf("too little load to mean anything: %d and %d requests", r.keepAlive.ok, r.close.ok)
			}
			// HUPs sent while one is pending merge into one (POSIX), so
			// wait for the last generation the arbiter started.
			s.waitReloaded("4 workers", 15*time.Second)
		})
	}
}

// TERM under a Connection: close load resets no accepted connection, and
// a slow request in flight finishes.
func TestWorkersTERMUnderLoadResetsNothing(t *testing.T) {
	for _, class := range workerClasses {
		t.Run(class, func(t *testing.T) {
			s := startClass(t, class, 2, "--backlog", "64")
			termUnderLoad(t, s, class, 50)
		})
	}
}

// A sync worker whose request runs past --timeout is aborted and replaced;
// the next request succeeds.
func TestSyncTimeoutKillsWorker(t *testing.T) {
	s := startClass(t, "sync", 1, "--timeout", "1", "--abort-grace", "1")
	victim := s.waitWorkers(1, 5*time.Second)[0]
	mustGet(t, s.Addr, "/")
	begin := time.Now()
	done := make(chan error, 1)
	go func() {
		_, _, err := get(s.Addr, "/sleep?seconds=30")
		done <- err
	}()
	s.waitLog(`WORKER TIMEOUT \(pid:`+strconv.Itoa(victim)+`\)`, 5*time.Second)
	var replacement int
	for deadline := time.Now().Add(5 * time.Second); ; {
		if now := s.children(); len(now) == 1 && now[0] != victim {
			replacement = now[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replacement for worker %d: children %v", victim, s.children())
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.waitLog(`Booting worker with pid: `+strconv.Itoa(replacement), 5*time.Second)
	if body := mustGet(t, s.Addr, "/"); body != "Hello, World!" {
		t.Fatalf("after the replacement: %q", body)
	}
	took := time.Since(begin)
	t.Logf("worker %d stuck in a request was replaced by %d, serving %s after the request began (timeout 1 s + abort grace 1 s)",
		victim, replacement, took.Round(time.Millisecond))
	if took > 1*time.Second+1*time.Second+2*time.Second {
		t.Errorf("replacement took %s, more than timeout + abort-grace + 2 s", took)
	}
	if err := <-done; err == nil {
		t.Errorf("the request that ran past --timeout succeeded")
	}
	if m := regexp.MustCompile(`aborted in request GET /sleep\?seconds=30`).FindString(s.log.String()); m == "" {
		t.Logf("the worker did not log its request (killed before it could)")
	}
}
