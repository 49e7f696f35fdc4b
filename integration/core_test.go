package integration

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestServesDemo(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "demo"})
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	if body := mustGet(t, s.Addr, "/"); body != "Hello, World!" {
		t.Errorf("GET / = %q", body)
	}
	workers := s.waitWorkers(2, 5*time.Second)
	// Requests reach the workers, not the arbiter.
	pid, _ := strconv.Atoi(mustGet(t, s.Addr, "/pid"))
	if pid != workers[0] && pid != workers[1] {
		t.Errorf("served by pid %d, workers are %v", pid, workers)
	}
}

func TestTTINAndTTOU(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "demo"})
	s.waitWorkers(2, 5*time.Second)
	s.signal(syscall.SIGTTIN)
	s.waitWorkers(3, 5*time.Second)
	s.signal(syscall.SIGTTOU)
	s.waitWorkers(2, 5*time.Second)
	s.signal(syscall.SIGTTOU)
	s.waitWorkers(1, 5*time.Second)
	s.signal(syscall.SIGTTOU) // never below one worker
	time.Sleep(300 * time.Millisecond)
	s.waitWorkers(1, time.Second)
	mustGet(t, s.Addr, "/")
}

func TestHUPReplacesEveryWorker(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "4", "-b", "127.0.0.1:0", "demo"})
	s.waitLog(`Ready: 4 workers serving`, 10*time.Second)
	old := s.waitWorkers(4, 5*time.Second)
	s.signal(syscall.SIGHUP)
	m := s.waitLog(`Reload complete: generation 2, 4 workers serving, (\S+) after HUP`, 15*time.Second)
	t.Logf("HUP to the whole new generation serving, 4 workers: %s", m[1])
	now := s.waitWorkers(4, 5*time.Second)
	for _, p := range now {
		for _, o := range old {
			if p == o {
				t.Fatalf("worker %d survived the reload: old %v, new %v", p, old, now)
			}
		}
	}
	if err := syscall.Kill(s.Pid, 0); err != nil {
		t.Fatalf("arbiter pid %d gone: %v", s.Pid, err)
	}
	mustGet(t, s.Addr, "/")
}

func TestTTINSurvivesHUPUnlessConfigChanges(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "corral.toml")
	os.WriteFile(conf, []byte("workers = 2\nbind = [\"127.0.0.1:0\"]\n"), 0o644)
	s := start(t, corralBin, []string{"-c", conf, "demo"})
	s.waitWorkers(2, 5*time.Second)
	s.signal(syscall.SIGTTIN)
	s.waitWorkers(3, 5*time.Second)
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload complete: generation 2, 3 workers`, 15*time.Second)
	s.waitWorkers(3, 5*time.Second)
	// A changed count in the file wins over TTIN/TTOU.
	os.WriteFile(conf, []byte("workers = 4\nbind = [\"127.0.0.1:0\"]\n"), 0o644)
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload complete: generation 3, 4 workers`, 15*time.Second)
	s.waitWorkers(4, 5*time.Second)
	// A config file that no longer parses keeps everything as it is.
	os.WriteFile(conf, []byte("workers = \n"), 0o644)
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload failed: config file .*corral.toml: line 1`, 5*time.Second)
	s.waitWorkers(4, time.Second)
	mustGet(t, s.Addr, "/")
}

// TestHUPUnderLoadLosesNothing sends HUP every 200 ms while clients keep
// sending on keep-alive connections and on fresh connections.
func TestHUPUnderLoadLosesNothing(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "4", "-b", "127.0.0.1:0", "demo"})
	s.waitLog(`Ready: 4 workers serving`, 10*time.Second)
	hups, r := s.hupStormUnderLoad(5*time.Second, 200*time.Millisecond, mixedLoad{keepAlive: 8, close: 4, requests: 200000})
	t.Logf("%d HUPs; %s", hups, r)
	if r.lost() != 0 {
		t.Errorf("requests failed during reloads: %s", r)
	}
	if r.keepAlive.ok < 100 || r.close.ok < 100 {
		t.Errorf("too little load to mean anything: %d and %d requests", r.keepAlive.ok, r.close.ok)
	}
	if hups < 15 {
		t.Errorf("only %d HUPs sent", hups)
	}
	// After the storm the herd settles at four workers of the last generation.
	s.waitReloaded("4 workers", 15*time.Second)
	s.waitWorkers(4, 10*time.Second)
}

// TestHUPWithBrokenWorkersKeepsOldOnes replaces the worker binary with one
// that cannot boot: the reload fails and the old workers keep serving.
func TestHUPWithBrokenWorkersKeepsOldOnes(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "corral")
	copyFile(t, corralBin, bin)
	s := start(t, bin, []string{"-w", "2", "-b", "127.0.0.1:0", "--boot-timeout", "5", "demo"})
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	old := s.waitWorkers(2, 5*time.Second)

	broken := filepath.Join(dir, "broken")
	os.WriteFile(broken, []byte("#!/bin/sh\necho 'cannot start: missing library' >&2\nexit 1\n"), 0o755)
	os.Rename(broken, bin)
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload failed \(after HUP\): new worker \(pid:\d+\) could not boot: .*exited with code 1.*the old workers keep serving`, 10*time.Second)
	for range 20 {
		mustGet(t, s.Addr, "/")
	}
	time.Sleep(500 * time.Millisecond)
	if now := s.waitWorkers(2, 5*time.Second); now[0] != old[0] || now[1] != old[1] {
		t.Fatalf("workers changed after a failed reload: %v -> %v", old, now)
	}
	// The next HUP, with a good binary in place, goes through.
	copyFile(t, corralBin, bin+".new")
	os.Rename(bin+".new", bin)
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload complete: generation \d+, 2 workers`, 15*time.Second)
	mustGet(t, s.Addr, "/")
}

// TestTERMUnderLoadResetsNothing stops the server under a Connection:
// close load: every connection the kernel accepted gets its response. A
// refused connect (after the listeners closed) is fine; a read error on an
// accepted connection is not.
func TestTERMUnderLoadResetsNothing(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "--backlog", "64", "demo"})
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	termUnderLoad(t, s, "demo", 100)
	s.waitLog(`Shutting down: Master`, time.Second)
}

func TestQuickStop(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT} {
		s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "demo"})
		s.waitWorkers(2, 5*time.Second)
		go get(s.Addr, "/sleep?seconds=30")
		time.Sleep(200 * time.Millisecond)
		begin := time.Now()
		s.signal(sig)
		if code := s.wait(5 * time.Second); code != 128+int(sig) { // 130, 131: stopped by the signal, as a shell says
			t.Errorf("%v: exit code %d, want %d", sig, code, 128+int(sig))
		}
		if d := time.Since(begin); d > 3*time.Second {
			t.Errorf("%v: quick stop took %s", sig, d)
		}
	}
}

func TestArbiterKilledLeavesNoWorker(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "3", "-b", "127.0.0.1:0", "demo"})
	workers := s.waitWorkers(3, 5*time.Second)
	s.signal(syscall.SIGKILL)
	<-s.done
	deadline := time.Now().Add(2 * time.Second)
	for _, pid := range workers {
		for syscall.Kill(pid, 0) == nil && !isZombie(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d outlived the arbiter by 2 s", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestWINCHStopsWorkersKeepsArbiter(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "demo"})
	s.waitWorkers(2, 5*time.Second)
	s.signal(syscall.SIGWINCH)
	s.waitWorkers(0, 5*time.Second)
	if syscall.Kill(s.Pid, 0) != nil {
		t.Fatal("arbiter exited on WINCH")
	}
	// The socket stays bound: a HUP brings the configured workers back.
	s.signal(syscall.SIGHUP)
	s.waitWorkers(2, 5*time.Second)
	s.waitLog(`Reload complete`, 10*time.Second)
	mustGet(t, s.Addr, "/")
}

func TestUnixSocketBind(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "c.sock")
	s := start(t, corralBin, []string{"-w", "2", "-b", "unix:" + sock, "-b", "127.0.0.1:0", "--umask", "0o077", "demo"})
	s.waitLog(`Ready: 2 workers`, 10*time.Second)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket file %v, err %v; want mode 0700", fi, err)
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	res, err := c.Get("http://unix/echo?x=1")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d over unix socket", res.StatusCode)
	}
	tcp := s.waitLog(`Listening at: http://(\S+) `, time.Second)
	mustGet(t, tcp[1], "/")
	s.signal(syscall.SIGTERM)
	s.wait(10 * time.Second)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file left behind: %v", err)
	}
}

// listenerFile returns a listening TCP socket as a file for a child.
func listenerFile(t *testing.T) (*os.File, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := ln.(*net.TCPListener).File()
	addr := ln.Addr().String()
	ln.Close()
	t.Cleanup(func() { f.Close() })
	return f, addr
}

func TestFDBind(t *testing.T) {
	f, addr := listenerFile(t)
	s := start(t, corralBin, []string{"-w", "2", "-b", "fd://3", "demo"}, func(c *exec.Cmd) { c.ExtraFiles = []*os.File{f} })
	if s.Addr != addr {
		t.Errorf("listening at %s, want the inherited %s", s.Addr, addr)
	}
	s.waitLog(`Ready: 2 workers`, 10*time.Second)
	mustGet(t, addr, "/")
}

// TestSystemdActivation passes a socket as systemd does: fd 3, LISTEN_FDS,
// and LISTEN_PID set to the pid that execs corral.
func TestSystemdActivation(t *testing.T) {
	f, addr := listenerFile(t)
	s := start(t, "/bin/sh", []string{"-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web exec "$0" -w 2 demo`, corralBin},
		func(c *exec.Cmd) { c.ExtraFiles = []*os.File{f} })
	s.waitLog(`Using 1 socket\(s\) passed by systemd`, time.Second)
	if s.Addr != addr {
		t.Errorf("listening at %s, want systemd's %s", s.Addr, addr)
	}
	s.waitLog(`Ready: 2 workers`, 10*time.Second)
	mustGet(t, addr, "/")
	// The workers must not see systemd's variables as their own.
	body := mustGet(t, addr, "/echo")
	if !strings.Contains(body, `"pid"`) {
		t.Fatalf("echo: %s", body)
	}
}

// TestSystemdSocketActivate uses systemd's own tool when it is installed
// (make test installs it).
func TestSystemdSocketActivate(t *testing.T) {
	tool, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatal("systemd-socket-activate is not installed; make test installs it (package systemd)")
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	s := startNoWait(t, tool, []string{"-l", addr, corralBin, "-w", "2", "demo"})
	// systemd-socket-activate starts corral on the first connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body, err := get(addr, "/")
		if err == nil && code == 200 && body == "Hello, World!" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer through systemd-socket-activate: %d %v", code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.waitLog(`Using 1 socket\(s\) passed by systemd`, 5*time.Second)
}

func TestPidFile(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "corral.pid")
	s := start(t, corralBin, []string{"-w", "1", "-b", "127.0.0.1:0", "-p", pidfile, "demo"})
	b, err := os.ReadFile(pidfile)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(s.Pid) {
		t.Fatalf("pid file %q, %v; want %d", b, err, s.Pid)
	}
	s.signal(syscall.SIGTERM)
	s.wait(10 * time.Second)
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Errorf("pid file left after exit: %v", err)
	}
}

func TestBootFailureAtStartExits(t *testing.T) {
	s := startNoWait(t, helloBin, []string{"-w", "3", "-b", "127.0.0.1:0"},
		func(c *exec.Cmd) { c.Env = append(c.Env, "GREETING_FILE=/nonexistent/greeting") })
	if code := s.wait(10 * time.Second); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	out := s.log.String()
	if !strings.Contains(out, "error: worker (pid:") || !strings.Contains(out, "read greeting: open /nonexistent/greeting: no such file or directory") {
		t.Errorf("the worker's error is not in the output:\n%s", out)
	}
	if n := strings.Count(out, "Booting worker"); n > 3 {
		t.Errorf("%d spawns: respawned in a loop", n)
	}
}

func TestLibraryHooksAndExample(t *testing.T) {
	dir := t.TempDir()
	hooks := filepath.Join(dir, "hooks.log")
	greeting := filepath.Join(dir, "greeting")
	os.WriteFile(greeting, []byte("Howdy\n"), 0o644)
	s := start(t, helloBin, []string{"-w", "2", "-b", "127.0.0.1:0"},
		func(c *exec.Cmd) { c.Env = append(c.Env, "HOOKS_LOG="+hooks, "GREETING_FILE="+greeting) })
	s.waitLog(`Ready: 2 workers`, 10*time.Second)
	if body := mustGet(t, s.Addr, "/"); body != "Howdy\n" {
		t.Errorf("GET / = %q", body)
	}
	s.signal(syscall.SIGTTIN)
	s.waitWorkers(3, 5*time.Second)
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload complete`, 10*time.Second)
	s.signal(syscall.SIGTERM)
	s.wait(10 * time.Second)
	b, _ := os.ReadFile(hooks)
	log := string(b)
	for _, want := range []string{"on_starting", "when_ready workers=2", "post_worker_init pid=", "nworkers_changed 2->3",
		"on_reload generation=2", "worker_exit pid=", "child_exit pid=", "on_exit"} {
		if !strings.Contains(log, want) {
			t.Errorf("hook %q did not run; hooks log:\n%s", want, log)
		}
	}
	if strings.Index(log, "on_starting") != 0 || !strings.HasSuffix(log, "on_exit\n") {
		t.Errorf("hooks out of order:\n%s", log)
	}
}

func TestUSR1ReopensLogs(t *testing.T) {
	dir := t.TempDir()
	errLog := filepath.Join(dir, "error.log")
	accessLog := filepath.Join(dir, "access.log")
	s := startNoWait(t, corralBin, []string{"-w", "1", "-b", "127.0.0.1:0", "--error-logfile", errLog, "--access-logfile", accessLog, "demo"})
	deadline := time.Now().Add(10 * time.Second)
	var addr string
	for addr == "" {
		b, _ := os.ReadFile(errLog)
		if m := regexp.MustCompile(`Ready: 1 workers`).Find(b); m != nil {
			addr = regexp.MustCompile(`Listening at: http://(\S+)`).FindStringSubmatch(string(b))[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready line in the error log: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustGet(t, addr, "/")
	os.Rename(errLog, errLog+".1")
	os.Rename(accessLog, accessLog+".1")
	s.signal(syscall.SIGUSR1)
	deadline = time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(errLog)
		// Both the arbiter's and the worker's lines land in the new file.
		if strings.Count(string(b), "Reopening log files") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new error log after USR1: %q", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	client := &http.Client{}
	req, _ := http.NewRequest("GET", "http://"+addr+"/echo?q=1", nil)
	req.Header.Set("User-Agent", "corral-test")
	req.Header.Set("Referer", "http://ref/")
	req.SetBasicAuth("alice", "x")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	time.Sleep(100 * time.Millisecond)
	old, _ := os.ReadFile(accessLog + ".1")
	cur, _ := os.ReadFile(accessLog)
	if !strings.Contains(string(old), `"GET / HTTP/1.1" 200 13 "-" "Go-http-client/1.1"`) {
		t.Errorf("rotated access log: %q", old)
	}
	re := regexp.MustCompile(`^127\.0\.0\.1 - alice \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /echo\?q=1 HTTP/1\.1" 200 \d+ "http://ref/" "corral-test"\n$`)
	if !re.Match(cur) {
		t.Errorf("access log line after USR1: %q", cur)
	}
}

func TestMaxRequestsRecyclesWithoutFailures(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "--max-requests", "50", "--max-requests-jitter", "10", "demo"})
	s.waitLog(`Ready: 2 workers`, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ka := make(chan *loadResult)
	go func() { ka <- keepAliveLoad(ctx, s.Addr, 2, 1000, "/") }()
	rc := closeLoad(ctx, "tcp", s.Addr, 4, 1500, "/")
	rk := <-ka
	t.Logf("max-requests load: keep-alive %s; close %s", rk, rc)
	if rk.failed()+rc.failed() != 0 || rk.ok+rc.ok != 2500 {
		t.Errorf("requests failed while workers recycled: keep-alive %s; close %s", rk, rc)
	}
	m := s.waitLogN(`\[\S+ (\d\d:\d\d:\d\d) [+-]\d{4}\] \[\d+\] \[INFO\] Worker \(pid:\d+\) reached its max requests`, 3, 10*time.Second)
	seen := map[string]bool{}
	for _, x := range m {
		if seen[x[1]] {
			t.Errorf("two workers recycled in the same second %s", x[1])
		}
		seen[x[1]] = true
	}
}

// TestTERMWhileWorkersBoot stops corral while its workers are still
// booting (in a slow post_worker_init hook, after they catch signals):
// the stop must reach each worker even though it came before the worker
// type had listeners to drain. It used to be lost, and the arbiter waited
// out the 30 s graceful timeout.
func TestTERMWhileWorkersBoot(t *testing.T) {
	for _, k := range []string{"goroutine", "sync", "event"} {
		s := start(t, helloBin, []string{"-w", "2", "-k", k, "-b", "127.0.0.1:0"},
			func(c *exec.Cmd) { c.Env = append(os.Environ(), "POST_WORKER_INIT_DELAY=500ms") })
		s.waitLog(`Booting worker with pid`, 5*time.Second)
		time.Sleep(200 * time.Millisecond) // in the hook
		s.signal(syscall.SIGTERM)
		began := time.Now()
		s.wait(15 * time.Second)
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("-k %s: %s from TERM to exit", k, d)
		}
	}
}

// TestDeferAccept serves with TCP_DEFER_ACCEPT on the listener: every
// worker type answers a connection per request, and a client that waits
// before its first bytes is served once they come.
func TestDeferAccept(t *testing.T) {
	for _, k := range []string{"sync", "goroutine", "event"} {
		s := start(t, corralBin, []string{"-w", "2", "-k", k, "-b", "127.0.0.1:0", "--defer-accept", "demo"})
		s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		r := closeLoad(ctx, "tcp", s.Addr, 4, 400, "/")
		cancel()
		if r.failed() != 0 || r.ok != 400 {
			t.Errorf("-k %s --defer-accept: a connection per request: %s", k, r)
		}
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		b, err := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(b), "HTTP/1.1 200 ") {
			t.Errorf("-k %s --defer-accept: a request sent 300 ms after the connect: %q, %v", k, b, err)
		}
		s.signal(syscall.SIGTERM)
		if code := s.wait(10 * time.Second); code != 0 {
			t.Errorf("-k %s: exit %d", k, code)
		}
	}
}
