package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Faults found by attacking the workers (issue 20): each test here failed
// before its fix.

// cpuTime is the CPU time (user and system) pid has used so far.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's closing parenthesis: state is the 3rd
	// field of the line, utime and stime the 14th and 15th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// lowestFreeFD is the descriptor number pid's next open would get: with
// RLIMIT_NOFILE at it, the next open fails with EMFILE.
func lowestFreeFD(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		used[n] = true
	}
	n := 0
	for used[n] {
		n++
	}
	return n
}

// A worker at its fd limit cannot accept: it pauses its accepts instead of
// spinning on a core, and logs the fault once, not ten times a second.
func TestFaultAcceptAtFdLimit(t *testing.T) {
	for _, class := range workerClasses {
		t.Run(class, func(t *testing.T) {
			s := startClass(t, class, 1)
			mustGet(t, s.Addr, "/")
			pid := s.waitWorkers(1, 5*time.Second)[0]
			var lim unix.Rlimit
			if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // the kept connection of mustGet closes
			low := lim
			low.Cur = uint64(lowestFreeFD(t, pid)) // no fd to spare: accept fails with EMFILE
			if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &low, nil); err != nil {
				t.Fatal(err)
			}
			var conns []net.Conn
			for range 20 {
				c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
				conns = append(conns, c)
			}
			time.Sleep(300 * time.Millisecond)
			before := cpuTime(t, pid)
			time.Sleep(3 * time.Second)
			used := cpuTime(t, pid) - before
			if used > 600*time.Millisecond {
				t.Errorf("the worker used %s of CPU in 3 s at its fd limit: it spins", used)
			}
			log := s.log.String()
			if n := len(regexp.MustCompile(`accept.*too many open files`).FindAllString(log, -1)); n < 1 || n > 2 {
				t.Errorf("%d accept error lines in the log, want 1 or 2 (rate-limited)", n)
			}
			if strings.Contains(log, "http: http:") {
				t.Errorf("doubled prefix in the log:\n%s", log)
			}
			// With fds to spare again, the waiting connections are served.
			if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
				t.Fatal(err)
			}
			for i, c := range conns {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				b := make([]byte, 12)
				if _, err := c.Read(b); err != nil || string(b) != "HTTP/1.1 200" {
					t.Errorf("connection %d after the limit was raised: %q %v", i, b, err)
				}
			}
		})
	}
}

// With one fd to spare, the sync worker's accept succeeds where turning
// the socket into a connection needs a second: it serves the connection
// rather than losing it to a reset.
func TestFaultSyncAcceptAtLastFD(t *testing.T) {
	s := startClass(t, "sync", 1)
	mustGet(t, s.Addr, "/")
	pid := s.waitWorkers(1, 5*time.Second)[0]
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = uint64(lowestFreeFD(t, pid) + 1) // one fd to spare
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &low, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if code, _, err := get(s.Addr, "/"); err != nil || code != 200 {
			t.Errorf("request %d at the fd limit: %d %v", i, code, err)
		}
	}
}

// An access log that cannot be written (a full disk) loses its lines, but
// the requests are served and the error log says so once.
func TestFaultAccessLogFullDisk(t *testing.T) {
	for _, class := range workerClasses {
		t.Run(class, func(t *testing.T) {
			s := startClass(t, class, 1, "--access-logfile", "/dev/full")
			for i := range 50 {
				if code, _, err := get(s.Addr, "/"); err != nil || code != 200 {
					t.Fatalf("request %d: %d %v", i, code, err)
				}
			}
			s.waitLog(`access log: .*no space left on device`, 5*time.Second)
			if n := strings.Count(s.log.String(), "access log: "); n != 1 {
				t.Errorf("%d access log error lines, want 1", n)
			}
		})
	}
}

// A client that goes away while its handler runs cancels the request's
// context, so an abandoned /sleep does not hold a graceful stop.
func TestFaultAbandonedRequestCancelled(t *testing.T) {
	for _, class := range []string{"goroutine", "event"} {
		t.Run(class, func(t *testing.T) {
			s := startClass(t, class, 1)
			c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("GET /sleep?seconds=15 HTTP/1.1\r\nHost: x\r\n\r\n"))
			time.Sleep(300 * time.Millisecond) // the handler sleeps
			c.Close()
			time.Sleep(100 * time.Millisecond)
			t0 := time.Now()
			s.signal(unix.SIGTERM)
			if code := s.wait(5 * time.Second); code != 0 {
				t.Fatalf("exit code %d", code)
			}
			if d := time.Since(t0); d > 2*time.Second {
				t.Errorf("TERM took %s: the abandoned request held the worker", d)
			}
		})
	}
}

// rssKiB is pid's resident set size.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// sendAndRead writes head, then body's bytes until the server stops
// reading (or limit bytes), while it reads the response; it returns the
// response's first line and whether the server closed the connection. It
// may run on a goroutine of its own.
func sendAndRead(t *testing.T, addr, head string, body func(i int) []byte, limit int) (status string, closed bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Error(err)
		return "", false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		c.Write([]byte(head))
		for i, sent := 0, 0; sent < limit; i++ {
			n, err := c.Write(body(i))
			if err != nil {
				return
			}
			sent += n
		}
	}()
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "no response: " + err.Error(), false
	}
	for { // the rest of the response, to the close
		if _, err := r.ReadString('\n'); err != nil {
			return strings.TrimSpace(line), !errors.Is(err, os.ErrDeadlineExceeded)
		}
	}
}

// The status lines of the answers to a request refused while it arrives.
const (
	tooLarge = "HTTP/1.1 413 Request Entity Too Large"
	timedOut = "HTTP/1.1 408 Request Timeout"
)

// wantAnswer checks that a request got want, then the close.
func wantAnswer(t *testing.T, what, want, status string, closed bool) {
	t.Helper()
	if status != want || !closed {
		t.Errorf("%s: %q, closed %v; want %q and the close", what, status, closed, want)
	}
}

// --max-body applies to every type: a declared length over it, and a
// chunked body that never ends, get 413 and a closed connection, and the
// worker's memory stays bounded.
func TestFaultMaxBodyEveryType(t *testing.T) {
	for _, class := range workerClasses {
		t.Run(class, func(t *testing.T) {
			s := startClass(t, class, 1)
			pid := s.waitWorkers(1, 5*time.Second)[0]
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			st, closed := sendAndRead(t, s.Addr, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n",
				func(int) []byte { return chunk }, 100<<20)
			wantAnswer(t, "100 MB body", tooLarge, st, closed)
			hex := []byte(fmt.Sprintf("%x\r\n%s\r\n", len(chunk), chunk))
			st, closed = sendAndRead(t, s.Addr, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
				func(int) []byte { return hex }, 200<<20)
			wantAnswer(t, "endless chunked body", tooLarge, st, closed)
			if kb := rssKiB(t, pid); kb > 64<<10 {
				t.Errorf("worker RSS %d KiB after refusing the bodies", kb)
			}
			mustGet(t, s.Addr, "/")
		})
	}
}

// A body that trickles in (4 bytes a second: no pause reaches the
// timeout, the rate does) is answered 408 and closed, on every type.
func TestFaultSlowBodyEveryType(t *testing.T) {
	inParallel(t, workerClasses, func(t *testing.T, class string) {
		s := startClass(t, class, 1, "--body-timeout", "1")
		t0 := time.Now()
		st, closed := sendAndRead(t, s.Addr, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
			func(int) []byte { time.Sleep(250 * time.Millisecond); return []byte("x") }, 1000)
		wantAnswer(t, "slow body", timedOut, st, closed)
		if d := time.Since(t0); d > 4*time.Second {
			t.Errorf("the slow body was held %s with --body-timeout 1", d)
		}
		mustGet(t, s.Addr, "/")
	})
}

// inParallel runs f for each worker type, as parallel subtests.
func inParallel(t *testing.T, classes []string, f func(t *testing.T, class string)) {
	for _, class := range classes {
		t.Run(class, func(t *testing.T) {
			t.Parallel()
			f(t, class)
		})
	}
}

// A request head that does not arrive in time gets 408 on every type; a
// connection that sent nothing is closed without a word.
func TestFaultHeaderTimeoutEveryType(t *testing.T) {
	inParallel(t, workerClasses, func(t *testing.T, class string) {
		checkHeaderTimeouts(t, startClass(t, class, 1, "-t", "4").Addr) // the sync worker's: --timeout/2
	})
}

// checkHeaderTimeouts checks that addr answers request heads that stop
// halfway with 408, and closes a connection that sends nothing.
func checkHeaderTimeouts(t *testing.T, addr string) {
	t.Helper()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, head := range []string{"GET / HTTP/1.1\r\nHost: x\r\n", "GET / HT"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, closed := sendAndRead(t, addr, head, func(int) []byte { return nil }, 0)
			wantAnswer(t, fmt.Sprintf("head %q", head), timedOut, st, closed)
		}()
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("a connection that sent nothing: %d bytes, %v; want a silent close", n, err)
	}
}
