package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Exec mode: corral [flags] -- COMMAND [ARGS...] with the examples in
// examples/python, examples/node and examples/go as the workers.

// pythonExe is the real interpreter behind python3 (a pyenv shim, a
// shell script, adds half a second to every spawn).
var pythonExe = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		return "", fmt.Errorf("python3 is needed for the exec-mode tests: %v", err)
	}
	return strings.TrimSpace(string(out)), nil
})

func python(t *testing.T) string {
	t.Helper()
	p, err := pythonExe()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// goWorkerBin builds examples/go next to bin/corral.
var goWorkerBin = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(repoRoot, "bin", "go-worker")
	cmd := exec.Command("go", "build", "-o", bin, "./examples/go")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./examples/go: %v\n%s", err, out)
	}
	return bin, nil
})

// startExec starts corral in exec mode and ends, at cleanup, every worker
// it saw: the workers are python3 or node, which the harness's isOurs does
// not recognise. A worker is killed only if its start time is still the
// one recorded, so a recycled pid is never signalled.
func startExec(t *testing.T, args []string, opts ...func(*exec.Cmd)) (*server, *execTracker) {
	t.Helper()
	s := start(t, corralBin, args, opts...)
	tr := &execTracker{s: s, seen: map[int]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go tr.run()
	t.Cleanup(tr.cleanup) // runs before the harness's cleanup
	return s, tr
}

type execTracker struct {
	s    *server
	mu   sync.Mutex
	seen map[int]string // pid -> start time in /proc/PID/stat
	stop chan struct{}
	done chan struct{}
}

func (tr *execTracker) run() {
	defer close(tr.done)
	for {
		tr.record()
		select {
		case <-tr.stop:
			return
		case <-tr.s.done:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (tr *execTracker) record() {
	for _, pid := range tr.s.children() {
		if st := startTime(pid); st != "" {
			tr.mu.Lock()
			if _, ok := tr.seen[pid]; !ok {
				tr.seen[pid] = st
			}
			tr.mu.Unlock()
		}
	}
}

func (tr *execTracker) cleanup() {
	close(tr.stop)
	<-tr.done
	select {
	case <-tr.s.done:
	default:
		tr.record()
		tr.s.cmd.Process.Signal(syscall.SIGKILL)
		<-tr.s.done
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for pid, st := range tr.seen {
		if startTime(pid) == st {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// startTime is field 22 of /proc/PID/stat, or "" when pid is gone.
func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

func pidAlive(pid int) bool { return syscall.Kill(pid, 0) == nil && !isZombie(pid) }

// hupUnderLoad sends HUP every 500 ms for 4 s while keep-alive and
// Connection: close clients send requests, then one HUP on its own, and
// reports the figures. Every worker of before the storm must be gone.
func hupUnderLoad(t *testing.T, s *server, workers int, name string) {
	old := s.waitWorkers(workers, 10*time.Second)
	hups, r := s.hupStormUnderLoad(4*time.Second, 500*time.Millisecond, mixedLoad{keepAlive: 6, close: 3, requests: 1000000})
	t.Logf("%s: %d HUPs in 4 s under load: %d failed / %d requests; %s", name, hups, r.lost(), r.ok()+r.lost(), r)
	if r.lost() != 0 {
		t.Errorf("%s: requests failed during reloads: %s", name, r)
	}
	if r.ok() < 100 {
		t.Errorf("%s: too little load to mean anything: %d requests", name, r.ok())
	}
	// Two HUPs that arrive together are one signal to the kernel: the
	// generation to wait for is the last one the arbiter started.
	s.waitReloaded(fmt.Sprintf("%d workers", workers), 20*time.Second)
	var during []string
	for _, m := range regexp.MustCompile(`Reload complete: generation \d+, \d+ workers serving, (\S+) after HUP`).FindAllStringSubmatch(s.log.String(), -1) {
		during = append(during, m[1])
	}
	// One HUP with nothing else going on: HUP to the whole new generation ready.
	started := len(regexp.MustCompile(`Reloading: generation`).FindAllString(s.log.String(), -1))
	s.signal(syscall.SIGHUP)
	s.waitLogN(`Reloading: generation (\d+)`, started+1, 10*time.Second)
	// The last HUP of the storm may be logged only now, and its generation
	// superseded by this one: wait for whichever generation is the last.
	s.waitReloaded(fmt.Sprintf("%d workers", workers), 20*time.Second)
	m := s.waitLog(fmt.Sprintf(`Reload complete: generation %d, %d workers serving, (\S+) after HUP`, s.lastGeneration(), workers), time.Second)
	t.Logf("%s: HUP to the new generation of %d workers ready: %s on its own; %v for the reloads that completed during the storm",
		name, workers, m[1], during)
	now := s.waitWorkers(workers, 10*time.Second)
	for _, p := range now {
		for _, o := range old {
			if p == o {
				t.Errorf("%s: worker %d survived the reloads: old %v, new %v", name, p, old, now)
			}
		}
	}
	pid, _ := strconv.Atoi(mustGet(t, s.Addr, "/"))
	if !hasPid(now, pid) {
		t.Errorf("%s: served by pid %d, workers are %v", name, pid, now)
	}
}

func hasPid(pids []int, pid int) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}

func TestExecPythonHUPUnderLoad(t *testing.T) {
	s, _ := startExec(t, []string{"-w", "3", "-b", "127.0.0.1:0", "--ready", "notify", "--", python(t), "examples/python/app.py"},
		func(c *exec.Cmd) { c.Dir = repoRoot })
	s.waitLog(`Ready: 3 workers serving`, 15*time.Second)
	workers := s.waitWorkers(3, 5*time.Second)
	// READY=1 and STATUS= came over NOTIFY_SOCKET; stdout went to the log.
	s.waitLog(`Worker \(pid:\d+\) status: serving on fd 3`, 5*time.Second)
	s.waitLog(fmt.Sprintf(`\[INFO\] \[worker %d\] app.py \(pid %d\) serving on`, workers[0], workers[0]), 5*time.Second)
	hupUnderLoad(t, s, 3, "python")
	// A graceful stop: every worker exits 0 and says STOPPING=1.
	s.signal(syscall.SIGTERM)
	if code := s.wait(20 * time.Second); code != 0 {
		t.Errorf("exit code %d after TERM", code)
	}
	if n := strings.Count(s.log.String(), "exited with code 0"); n < 3 {
		t.Errorf("%d workers exited 0 at TERM, want at least 3:\n%s", n, s.log)
	}
	s.waitLog(`Worker \(pid:\d+\) is stopping`, time.Second)
}

func TestExecGoHUPUnderLoad(t *testing.T) {
	bin, err := goWorkerBin()
	if err != nil {
		t.Fatal(err)
	}
	s, _ := startExec(t, []string{"-w", "3", "-b", "127.0.0.1:0", "--", bin})
	s.waitLog(`Ready: 3 workers serving`, 15*time.Second)
	hupUnderLoad(t, s, 3, "go")
}

// A Python worker that never sends READY=1: a reload whose new workers
// miss --boot-timeout keeps the old workers, and the log says why.
func TestExecNeverReadyKeepsOldWorkers(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "corral.toml")
	os.WriteFile(conf, []byte("workers = 2\n"), 0o644)
	s, _ := startExec(t, []string{"-c", conf, "-b", "127.0.0.1:0", "--boot-timeout", "3", "--", python(t), "examples/python/app.py"},
		func(c *exec.Cmd) { c.Dir = repoRoot })
	s.waitLog(`Ready: 2 workers serving`, 15*time.Second)
	old := s.waitWorkers(2, 5*time.Second)
	os.WriteFile(conf, []byte("workers = 2\nenv = [\"APP_NO_READY=1\"]\n"), 0o644)
	begin := time.Now()
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload failed \(after HUP\): new worker \(pid:\d+\) could not boot: no READY=1 on NOTIFY_SOCKET within the boot timeout \(3s\).*the old workers keep serving`, 10*time.Second)
	t.Logf("reload abandoned %s after HUP (boot timeout 3 s)", time.Since(begin).Round(time.Millisecond))
	now := s.waitWorkers(2, 5*time.Second)
	if now[0] != old[0] || now[1] != old[1] {
		t.Fatalf("workers changed after a failed reload: %v -> %v", old, now)
	}
	for range 10 {
		pid, _ := strconv.Atoi(mustGet(t, s.Addr, "/"))
		if !hasPid(old, pid) {
			t.Fatalf("served by %d, not by the old workers %v", pid, old)
		}
	}
}

// A worker that stops sending WATCHDOG=1 is aborted after --timeout and
// replaced.
func TestExecWatchdogTimeout(t *testing.T) {
	s, _ := startExec(t, []string{"-w", "1", "-b", "127.0.0.1:0", "--timeout", "1", "--abort-grace", "1",
		"-e", "APP_WATCHDOG_STOP_AFTER=1.5", "--", python(t), "examples/python/app.py"},
		func(c *exec.Cmd) { c.Dir = repoRoot })
	s.waitLog(`Ready: 1 workers serving`, 15*time.Second)
	victim := s.waitWorkers(1, 5*time.Second)[0]
	begin := time.Now()
	s.waitLog(`WORKER TIMEOUT \(pid:`+strconv.Itoa(victim)+`\)`, 10*time.Second)
	s.waitLog(`Worker \(pid:`+strconv.Itoa(victim)+`\) killed by signal (ABRT|KILL) after its timeout`, 5*time.Second)
	t.Logf("worker that stopped its WATCHDOG=1 at 1.5 s was killed %s after it was ready (timeout 1 s)", time.Since(begin).Round(time.Millisecond))
	s.waitLogN(`Booting worker with pid`, 2, 5*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		w := s.children()
		if len(w) == 1 && w[0] != victim {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replacement for %d: workers %v", victim, w)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pidAlive(victim) {
		t.Errorf("timed-out worker %d still alive", victim)
	}
}

func TestExecTTINAndTTOU(t *testing.T) {
	s, _ := startExec(t, []string{"-w", "2", "-b", "127.0.0.1:0", "--", python(t), "examples/python/app.py"},
		func(c *exec.Cmd) { c.Dir = repoRoot })
	s.waitLog(`Ready: 2 workers serving`, 15*time.Second)
	s.waitWorkers(2, 5*time.Second)
	s.signal(syscall.SIGTTIN)
	s.waitWorkers(3, 5*time.Second)
	s.signal(syscall.SIGTTIN)
	now := s.waitWorkers(4, 5*time.Second)
	s.signal(syscall.SIGTTOU)
	s.waitWorkers(3, 10*time.Second)
	s.signal(syscall.SIGTTOU) // one at a time: the kernel merges a pending signal with its repeat
	s.waitWorkers(2, 10*time.Second)
	s.signal(syscall.SIGTTOU)
	s.waitWorkers(1, 10*time.Second)
	pid, _ := strconv.Atoi(mustGet(t, s.Addr, "/"))
	if !hasPid(now, pid) {
		t.Errorf("served by %d, not one of %v", pid, now)
	}
}

// SIGKILL to the arbiter: PR_SET_PDEATHSIG survives the shim's exec, so
// the Python workers die with it.
func TestExecArbiterKilledLeavesNoWorker(t *testing.T) {
	s, _ := startExec(t, []string{"-w", "3", "-b", "127.0.0.1:0", "--", python(t), "examples/python/app.py"},
		func(c *exec.Cmd) { c.Dir = repoRoot })
	s.waitLog(`Ready: 3 workers serving`, 15*time.Second)
	workers := s.waitWorkers(3, 5*time.Second)
	s.signal(syscall.SIGKILL)
	<-s.done
	// Without PDEATHSIG the workers would live on (one in five did, when
	// the shim's exec ran on a thread other than the one it was set on);
	// with it they are gone in milliseconds.
	killed := time.Now()
	deadline := killed.Add(2 * time.Second)
	for _, pid := range workers {
		for pidAlive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d outlived the arbiter by 2 s", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("all workers gone %s after the arbiter", time.Since(killed).Round(time.Millisecond))
}

// Node cannot send READY=1 (no unix datagram sockets): --ready delay. It
// never sends WATCHDOG=1 either, so --timeout never fires for it.
func TestExecNodeDelayReady(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed; make test installs it (package nodejs)")
	}
	s, _ := startExec(t, []string{"-w", "2", "-b", "127.0.0.1:0", "--ready", "delay:500ms", "--timeout", "1", "--", node, "examples/node/server.js"},
		func(c *exec.Cmd) { c.Dir = repoRoot })
	s.waitLog(`Ready: 2 workers serving`, 15*time.Second)
	workers := s.waitWorkers(2, 5*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body, err := get(s.Addr, "/")
		pid, _ := strconv.Atoi(body)
		if err == nil && code == 200 && hasPid(workers, pid) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node workers %v do not serve: %d %q %v", workers, code, body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond) // > --timeout, with no WATCHDOG=1 ever
	if now := s.waitWorkers(2, time.Second); now[0] != workers[0] || now[1] != workers[1] {
		t.Fatalf("workers that never sent WATCHDOG=1 were replaced: %v -> %v", workers, now)
	}
	if strings.Contains(s.log.String(), "WORKER TIMEOUT") {
		t.Fatalf("a worker with no WATCHDOG=1 timed out:\n%s", s.log)
	}
	s.signal(syscall.SIGHUP)
	m := s.waitLog(`Reload complete: generation 2, 2 workers serving, (\S+) after HUP`, 15*time.Second)
	t.Logf("node, --ready delay:500ms: HUP to the new generation ready: %s", m[1])
}

func TestExecUnknownCommand(t *testing.T) {
	for _, args := range [][]string{
		{"-b", "127.0.0.1:0", "--", "no-such-command-corral"},
		{"-b", "127.0.0.1:0", "--", "./no/such/path"},
		{"-b", "127.0.0.1:0", "--ready", "sometime", "--", "python3"},
		{"-b", "127.0.0.1:0", "--stop-signal", "NOPE", "--", "python3"},
		{"-b", "127.0.0.1:0", "demo", "--", "python3"},
		{"-b", "127.0.0.1:0", "--"},
	} {
		out, err := exec.Command(corralBin, args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%q: %v, want exit code 2; output %q", args, err, out)
			continue
		}
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "corral: error: ") {
			t.Errorf("%q: want one error line, got %q", args, out)
		}
	}
}

// A command that cannot be exec'd (its interpreter is missing) is a boot
// error with the reason, reported by the shim on the status pipe.
func TestExecFailureIsBootError(t *testing.T) {
	script := filepath.Join(t.TempDir(), "broken")
	writeScript(t, script, "#!/no/such/interpreter\n")
	s := startNoWait(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "--", script})
	if code := s.wait(10 * time.Second); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	if out := s.log.String(); !strings.Contains(out, "error: worker (pid:") || !strings.Contains(out, "exec "+script+": no such file or directory") {
		t.Errorf("the exec error is not in the output:\n%s", out)
	}
}

// --stop-signal replaces TERM for a graceful stop: here INT, which Python
// turns into a KeyboardInterrupt that the captured output shows.
func TestExecStopSignal(t *testing.T) {
	s, _ := startExec(t, []string{"-w", "2", "-b", "127.0.0.1:0", "--stop-signal", "INT", "--", python(t), "examples/python/app.py"},
		func(c *exec.Cmd) { c.Dir = repoRoot })
	s.waitLog(`Ready: 2 workers serving`, 15*time.Second)
	victim := s.waitWorkers(2, 5*time.Second)[0]
	s.signal(syscall.SIGTTOU)
	s.waitLog(fmt.Sprintf(`\[worker %d\] KeyboardInterrupt`, victim), 10*time.Second)
	s.waitWorkers(1, 10*time.Second)
	mustGet(t, s.Addr, "/")
}

// --capture-output=false leaves the workers' output on corral's own
// stdout and stderr, without the log prefix.
func TestExecCaptureOutputOff(t *testing.T) {
	s, _ := startExec(t, []string{"-w", "1", "-b", "127.0.0.1:0", "--capture-output=false", "--", python(t), "examples/python/app.py"},
		func(c *exec.Cmd) { c.Dir = repoRoot })
	s.waitLog(`Ready: 1 workers serving`, 15*time.Second)
	s.waitLog(`(?m)^app\.py \(pid \d+\) serving on`, 5*time.Second)
	if strings.Contains(s.log.String(), "[worker ") {
		t.Errorf("output was captured with --capture-output=false:\n%s", s.log.String())
	}
}
