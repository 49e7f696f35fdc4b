package integration

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
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
