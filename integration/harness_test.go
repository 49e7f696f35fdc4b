// Package integration tests the built corral binary end to end: real
// processes, real signals, real sockets on 127.0.0.1.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	repoRoot  string
	corralBin string // bin/corral, built by TestMain
	helloBin  string // examples/hello, built by TestMain
)

func TestMain(m *testing.M) {
	wd, _ := os.Getwd()
	repoRoot = filepath.Dir(wd)
	corralBin = filepath.Join(repoRoot, "bin", "corral")
	tmp, err := os.MkdirTemp("", "corral-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helloBin = filepath.Join(tmp, "hello")
	for _, b := range [][2]string{{corralBin, "./cmd/corral"}, {helloBin, "./examples/hello"}} {
		cmd := exec.Command("go", "build", "-o", b[0], b[1])
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", b[1], err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	stopDockerd() // if the container tests started it
	os.RemoveAll(tmp)
	os.Exit(code)
}

// server is one corral arbiter started by a test.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	Pid     int
	Addr    string // host:port of the first listener, or its unix socket path
	Network string // the first listener's: "tcp" or "unix"
	log     *logFile
	done    chan struct{}
	err     error // Wait's result, once done is closed
}

// logFile is where a server's stdout and stderr go. A file, not a pipe:
// an arbiter started by USR2 inherits it and outlives the one the test
// started, and exec.Cmd.Wait would wait for a pipe's last writer.
type logFile struct{ path string }

func (l *logFile) String() string {
	b, _ := os.ReadFile(l.path)
	return string(b)
}

// start runs a binary with args, stdout and stderr captured, and waits
// for its "Listening at:" line.
func start(t *testing.T, bin string, args []string, opts ...func(*exec.Cmd)) *server {
	t.Helper()
	s := startNoWait(t, bin, args, opts...)
	m := s.waitLog(`Listening at: (\S+) \((\d+)\)`, 10*time.Second)
	s.Addr = strings.TrimPrefix(strings.TrimPrefix(m[1], "http://"), "unix:")
	s.Network = "tcp"
	if strings.HasPrefix(m[1], "unix:") {
		s.Network = "unix"
	}
	return s
}

func startNoWait(t *testing.T, bin string, args []string, opts ...func(*exec.Cmd)) *server {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "server-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := &server{t: t, log: &logFile{f.Name()}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = f, f
	s.cmd.Env = os.Environ()
	for _, o := range opts {
		o(s.cmd)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Pid = s.cmd.Process.Pid
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.cleanup)
	return s
}

// adopt returns a handle on an arbiter the test did not start itself: one
// started by USR2, which shares the log of the one it took over from.
func adopt(t *testing.T, pid int, log *logFile) *server {
	s := &server{t: t, Pid: pid, log: log, done: make(chan struct{})}
	go func() {
		for syscall.Kill(pid, 0) == nil && !isZombie(pid) {
			time.Sleep(20 * time.Millisecond)
		}
		close(s.done)
	}()
	t.Cleanup(s.cleanup)
	return s
}

// upgrade sends USR2 and returns the new arbiter it started, which shares
// this one's log: the nth the log names.
func (s *server) upgrade(nth int) *server {
	s.t.Helper()
	s.signal(syscall.SIGUSR2)
	m := s.waitLogN(`Upgrading: started new arbiter \S+ \(pid: (\d+)\)`, nth, 10*time.Second)
	pid, _ := strconv.Atoi(m[nth-1][1])
	return adopt(s.t, pid, s.log)
}

// cleanup ends the arbiter and every worker it logged, by pid.
func (s *server) cleanup() {
	select {
	case <-s.done:
	default:
		if s.cmd != nil {
			s.cmd.Process.Signal(syscall.SIGKILL)
		} else if isOurs(s.Pid) {
			syscall.Kill(s.Pid, syscall.SIGKILL)
		}
		<-s.done
	}
	for _, pid := range s.loggedWorkers() {
		if isOurs(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	removeStaleControlSockets(s.log.String())
	if s.t.Failed() {
		s.t.Logf("server log:\n%s", s.log.String())
	}
}

// removeStaleControlSockets removes the control sockets an arbiter that
// was killed left behind (by default in /tmp/corral-UID/): those that
// nothing answers on any more.
func removeStaleControlSockets(log string) {
	for _, m := range regexp.MustCompile(`Control socket at: (\S+)`).FindAllStringSubmatch(log, -1) {
		c, err := net.Dial("unix", m[1])
		if err == nil {
			c.Close()
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			os.Remove(m[1])
		}
	}
}

// isOurs reports whether pid is alive and runs one of the binaries the
// tests built, so cleanup never signals a recycled pid.
func isOurs(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	return strings.HasPrefix(exe, repoRoot) || strings.HasPrefix(exe, os.TempDir())
}

func (s *server) loggedWorkers() []int {
	var pids []int
	for _, m := range regexp.MustCompile(`Booting worker with pid: (\d+)`).FindAllStringSubmatch(s.log.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		pids = append(pids, n)
	}
	return pids
}

// waitLog waits until the log matches re and returns the submatches of
// the first match.
func (s *server) waitLog(re string, timeout time.Duration) []string {
	s.t.Helper()
	m := s.waitLogN(re, 1, timeout)
	return m[0]
}

// waitLogN waits until re matches n times; it returns all matches.
func (s *server) waitLogN(re string, n int, timeout time.Duration) [][]string {
	s.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		if m := rx.FindAllStringSubmatch(s.log.String(), -1); len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("log never matched %q %d times within %s", re, n, timeout)
		}
		select {
		case <-s.done:
			if m := rx.FindAllStringSubmatch(s.log.String(), -1); len(m) >= n {
				return m
			}
			s.t.Fatalf("server exited (%v) before the log matched %q", s.err, re)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := syscall.Kill(s.Pid, sig); err != nil {
		s.t.Fatalf("signal %v: %v", sig, err)
	}
}

// children lists the arbiter's live child processes. The kernel lists
// children per thread, so every thread of the arbiter is read.
func (s *server) children() []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", s.Pid))
	var all []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		all = append(all, strings.Fields(string(b))...)
	}
	var pids []int
	for _, f := range all {
		n, _ := strconv.Atoi(f)
		if !isZombie(n) {
			pids = append(pids, n)
		}
	}
	sort.Ints(pids)
	return pids
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || len(b) < i+3 || b[i+2] == 'Z' || b[i+2] == 'X'
}

// waitWorkers waits until the arbiter has exactly n children.
func (s *server) waitWorkers(n int, timeout time.Duration) []int {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c := s.children()
		if len(c) == n {
			return c
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("arbiter has %d workers %v, want %d", len(c), c, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait waits for the arbiter to exit and returns its exit code.
func (s *server) wait(timeout time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		s.t.Fatalf("arbiter still running after %s", timeout)
	}
	var ee *exec.ExitError
	if errors.As(s.err, &ee) {
		return ee.ExitCode()
	}
	if s.err != nil {
		s.t.Fatalf("wait: %v", s.err)
	}
	return 0
}

// get does one request on a new connection and returns status and body.
func get(addr, path string) (int, string, error) { return getOn("tcp", addr, path) }

// getOn is get over network, "tcp" or "unix" (addr is then the path).
func getOn(network, addr, path string) (int, string, error) {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: dial}}
	host := addr
	if network == "unix" {
		host = "unix"
	}
	res, err := c.Get("http://" + host + path)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

func mustGet(t *testing.T, addr, path string) string {
	t.Helper()
	code, body, err := get(addr, path)
	if err != nil || code != 200 {
		t.Fatalf("GET %s: %d %v", path, code, err)
	}
	return body
}

// loadResult counts what a load loop saw.
type loadResult struct {
	mu       sync.Mutex
	ok       int
	failures map[string]int // kind of failure -> count
	refused  int            // connects refused: the server was not listening
	examples []string
}

func (r *loadResult) fail(kind string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failures == nil {
		r.failures = map[string]int{}
	}
	r.failures[kind]++
	if len(r.examples) < 5 {
		r.examples = append(r.examples, fmt.Sprintf("%s: %v", kind, err))
	}
}

func (r *loadResult) failed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.failures {
		n += c
	}
	return n
}

func (r *loadResult) String() string {
	return fmt.Sprintf("%d ok, %d failed %v, %d refused; e.g. %q", r.ok, r.failed(), r.failures, r.refused, r.examples)
}

// budget hands out up to total requests among a load's clients: take says
// whether one more may be sent (none once ctx ends).
func budget(ctx context.Context, total int) (take func() bool) {
	var mu sync.Mutex
	left := total
	return func() bool {
		mu.Lock()
		defer mu.Unlock()
		if left <= 0 || ctx.Err() != nil {
			return false
		}
		left--
		return true
	}
}

// keepAliveLoad runs conns clients, each sending requests one after the
// other on a keep-alive connection with a raw HTTP/1.1 client, so no
// client library retries hide a connection closed under a request. A
// response with "Connection: close" ends the connection cleanly and the
// client reconnects. It stops after total requests or when ctx ends.
func keepAliveLoad(ctx context.Context, addr string, conns, total int, path string) *loadResult {
	r := &loadResult{}
	var wg sync.WaitGroup
	take := budget(ctx, total)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c net.Conn
			var br *bufio.Reader
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for take() {
				if c == nil {
					var err error
					c, err = net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						if refusedAtConnect(err) {
							r.mu.Lock()
							r.refused++
							r.mu.Unlock()
						} else {
							r.fail("connect", err)
						}
						time.Sleep(10 * time.Millisecond)
						continue
					}
					br = bufio.NewReader(c)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
					r.fail("write", err)
					c.Close()
					c = nil
					continue
				}
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					r.fail("read", err)
					c.Close()
					c = nil
					continue
				}
				_, err = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if err != nil || res.StatusCode != 200 {
					r.fail("response", fmt.Errorf("status %d, body %v", res.StatusCode, err))
				} else {
					r.mu.Lock()
					r.ok++
					r.mu.Unlock()
				}
				if res.Close {
					c.Close()
					c = nil
				}
			}
		}()
	}
	wg.Wait()
	return r
}

// refusedAtConnect reports whether a dial failed because the server's
// intake had stopped: ECONNREFUSED, or ECONNRESET from a connection the
// kernel completed in the listener's backlog that the listener's close
// then reset before the dial returned (the race at the end of any drain:
// it was never accepted, so no request of it was lost).
func refusedAtConnect(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// closeLoad runs conns clients that each send one request per connection
// with "Connection: close" to addr over network ("tcp" or "unix"). A
// refused connect (refusedAtConnect, or ENOENT for a unix socket file that is
// gone) is counted apart: it is not a failure of an accepted connection.
func closeLoad(ctx context.Context, network, addr string, conns, total int, path string) *loadResult {
	r := &loadResult{}
	var wg sync.WaitGroup
	take := budget(ctx, total)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for take() {
				c, err := net.DialTimeout(network, addr, 5*time.Second)
				if err != nil {
					if refusedAtConnect(err) || errors.Is(err, syscall.ENOENT) {
						r.mu.Lock()
						r.refused++
						r.mu.Unlock()
						time.Sleep(5 * time.Millisecond)
					} else {
						r.fail("connect", err)
					}
					continue
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
				if err == nil {
					var res *http.Response
					res, err = http.ReadResponse(bufio.NewReader(c), nil)
					if err == nil {
						_, err = io.Copy(io.Discard, res.Body)
						res.Body.Close()
						if err == nil && res.StatusCode != 200 {
							err = fmt.Errorf("status %d", res.StatusCode)
						}
					}
				}
				c.Close()
				if err != nil {
					r.fail("read", err)
				} else {
					r.mu.Lock()
					r.ok++
					r.mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return r
}

// mixedLoad is the load tests run while something happens to the server:
// keep-alive and Connection: close clients at once.
type mixedLoad struct {
	keepAlive, close int // clients of each kind; 0 runs none of that kind
	requests         int // the most requests each kind sends
}

// loadResults is what each kind of client of a mixedLoad saw.
type loadResults struct{ keepAlive, close *loadResult }

// start runs the load at addr until ctx ends or the requests are sent;
// wait waits for the clients and returns what they saw.
func (l mixedLoad) start(ctx context.Context, addr string) (wait func() loadResults) {
	ka, cl := make(chan *loadResult, 1), make(chan *loadResult, 1)
	go func() { ka <- keepAliveLoad(ctx, addr, l.keepAlive, l.requests, "/") }()
	go func() { cl <- closeLoad(ctx, "tcp", addr, l.close, l.requests, "/") }()
	return func() loadResults { return loadResults{<-ka, <-cl} }
}

// ok is the requests answered 200.
func (r loadResults) ok() int { return r.keepAlive.ok + r.close.ok }

// lost is the requests that failed and the connects refused: with the
// listeners open all along, a refused connect is a lost request too.
func (r loadResults) lost() int {
	return r.keepAlive.failed() + r.close.failed() + r.keepAlive.refused + r.close.refused
}

func (r loadResults) String() string {
	return fmt.Sprintf("keep-alive clients: %s; Connection: close clients: %s", r.keepAlive, r.close)
}

// hupStorm sends HUP every interval until ctx ends; it returns how many.
func (s *server) hupStorm(ctx context.Context, every time.Duration) int {
	s.t.Helper()
	hups := 0
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if ctx.Err() == nil {
				s.signal(syscall.SIGHUP)
				hups++
			}
		case <-ctx.Done():
			return hups
		}
	}
}

// hupStormUnderLoad runs load for d while a HUP comes every interval; it
// returns the HUPs sent and what the clients saw.
func (s *server) hupStormUnderLoad(d, every time.Duration, load mixedLoad) (int, loadResults) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	wait := load.start(ctx, s.Addr)
	hups := s.hupStorm(ctx, every)
	return hups, wait()
}

// termUnderLoad sends TERM 700 ms into a load of 32 Connection: close
// clients on the server's first listener, with a 1.5 s request in flight,
// and checks what a graceful stop promises: exit code 0, the slow request
// answered, no accepted connection failed (a connect refused once the
// intake stopped is fine), and at least minOK requests served. what names
// the case in the log. It returns what the clients saw.
func termUnderLoad(t *testing.T, s *server, what string, minOK int) *loadResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	res := make(chan *loadResult)
	go func() { res <- closeLoad(ctx, s.Network, s.Addr, 32, 1000000, "/") }()
	slow := make(chan error, 1)
	go func() {
		code, body, err := getOn(s.Network, s.Addr, "/sleep?seconds=1.5")
		if err == nil && (code != 200 || !strings.HasPrefix(body, "slept")) {
			err = fmt.Errorf("status %d body %q", code, body)
		}
		slow <- err
	}()
	time.Sleep(700 * time.Millisecond)
	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after TERM", code)
	}
	cancel()
	r := <-res
	t.Logf("%s: TERM under load: %s", what, r)
	if err := <-slow; err != nil {
		t.Errorf("request in flight at TERM: %v", err)
	}
	if r.failed() != 0 {
		t.Errorf("accepted connections failed at TERM: %s", r)
	}
	if r.ok < minOK {
		t.Errorf("too little load: %s", r)
	}
	return r
}

// lastGeneration is the generation of the last reload the arbiter logged.
// Signals of one kind sent while one is pending merge into one (POSIX),
// so tests count the generations the arbiter started, not the HUPs sent.
// waitReloaded waits until the last generation the arbiter started has
// completed its reload with want workers ("" for any count). It reads
// the last generation again each time round: a HUP sent just before may
// not be in the log yet, and a generation it supersedes never completes.
func (s *server) waitReloaded(want string, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		last := s.lastGeneration()
		re := regexp.MustCompile(fmt.Sprintf(`Reload complete: generation %d, %s`, last, want))
		if re.MatchString(s.log.String()) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("generation %d did not complete its reload (%q) within %s", last, want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) lastGeneration() int {
	n := 1
	for _, m := range regexp.MustCompile(`Reloading: generation (\d+)`).FindAllStringSubmatch(s.log.String(), -1) {
		n, _ = strconv.Atoi(m[1])
	}
	return n
}

// configValue is a key's value in --print-config's output, "" if absent.
func configValue(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " = "); ok && k == key {
			return v
		}
	}
	return ""
}

// run runs bin/corral to completion and returns its exit code and output.
func run(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(corralBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// bareAddr strips a listener URL's scheme: "uwsgi://127.0.0.1:1" -> "127.0.0.1:1".
func bareAddr(url string) string {
	if _, rest, ok := strings.Cut(url, "://"); ok {
		url = rest
	}
	return strings.TrimPrefix(url, "unix:")
}

// hostOf is the host part of addr, or addr when it has no port.
func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// writeFile writes content to the file name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeScript(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func renameOver(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}
