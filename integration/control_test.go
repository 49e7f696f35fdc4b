package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/control"
)

// The control socket and `corral ctl`, against live arbiters.

// startControlled starts bin/corral serving the demo app with its control
// socket at a path of the test's; it returns the server and the socket.
func startControlled(t *testing.T, args ...string) (*server, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "corral.ctl")
	s := start(t, corralBin, append([]string{"-b", "127.0.0.1:0", "--control-socket", sock}, append(args, "demo")...))
	s.waitLog(`Ready: \d+ workers serving`, 10*time.Second)
	return s, sock
}

// ctl runs `corral ctl --socket sock ARGS` and returns its exit code,
// stdout and stderr.
func ctl(t *testing.T, sock string, args ...string) (int, string, string) {
	t.Helper()
	return run(t, nil, append([]string{"ctl", "--socket", sock}, args...)...)
}

// mustCtl runs ctl and fails the test unless it exits 0.
func mustCtl(t *testing.T, sock string, args ...string) string {
	t.Helper()
	code, out, errOut := ctl(t, sock, args...)
	if code != 0 {
		t.Fatalf("corral ctl %s: exit %d, %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// statusOf is `corral ctl --json status`, decoded.
func statusOf(t *testing.T, sock string) *control.Status {
	t.Helper()
	var r control.Response
	if err := json.Unmarshal([]byte(mustCtl(t, sock, "--json", "status")), &r); err != nil || r.Status == nil {
		t.Fatalf("status --json: %v %+v", err, r)
	}
	return r.Status
}

func workerPids(st *control.Status) []int {
	var pids []int
	for _, w := range st.Workers {
		pids = append(pids, w.Pid)
	}
	sort.Ints(pids)
	return pids
}

// pgrepChildren is what `pgrep -P PID` finds.
func pgrepChildren(t *testing.T, pid int) []int {
	t.Helper()
	out, _ := exec.Command("pgrep", "-P", strconv.Itoa(pid)).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		n, _ := strconv.Atoi(f)
		pids = append(pids, n)
	}
	sort.Ints(pids)
	return pids
}

// waitStatus polls status until ok says it is what the test waits for.
func waitStatus(t *testing.T, sock string, timeout time.Duration, what string, ok func(*control.Status) bool) *control.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := statusOf(t, sock)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed %s within %s; last: %+v", what, timeout, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func allReady(n int) func(*control.Status) bool {
	return func(st *control.Status) bool {
		if len(st.Workers) != n {
			return false
		}
		for _, w := range st.Workers {
			if w.State == "booting" || w.State == "draining" {
				return false
			}
		}
		return true
	}
}

// rawClient speaks the protocol itself, as a script would.
type rawClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialControl(sock string) (*rawClient, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawClient{c: c, br: bufio.NewReader(c)}, nil
}

func (rc *rawClient) do(req string) (control.Response, error) {
	var r control.Response
	rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := rc.c.Write([]byte(req + "\n")); err != nil {
		return r, err
	}
	line, err := rc.br.ReadBytes('\n')
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(line, &r)
}

// TestControlCommands runs every command against one live arbiter.
func TestControlCommands(t *testing.T) {
	s, sock := startControlled(t, "-w", "2")
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket %s: %v, mode %v; want a socket, 0600", sock, err, fi.Mode())
	}
	if out := mustCtl(t, sock, "ping"); !strings.Contains(out, "ready: 2 of 2 workers ready") {
		t.Errorf("ping: %q", out)
	}

	checkCtlStatus(t, s, sock)
	st := checkCtlWorkers(t, s, sock)
	checkCtlWorkerStop(t, s, sock, st.Workers[0].Pid)
	checkCtlMisc(t, s, sock)
	checkCtlScript(t, sock)
	// stop: answered, then the arbiter exits 0 and removes the socket.
	if out := mustCtl(t, sock, "stop"); !strings.Contains(out, "stopping (graceful)") {
		t.Errorf("stop: %q", out)
	}
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after ctl stop", code)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
	if code, _, errOut := ctl(t, sock, "ping"); code != 2 || !strings.Contains(errOut, "cannot connect") {
		t.Errorf("ping with no arbiter: exit %d, %q; want 2", code, errOut)
	}
}

// checkCtlStatus: status, with a request in flight, and listeners.
func checkCtlStatus(t *testing.T, s *server, sock string) {
	// status: the arbiter's line and a row per worker.
	out := mustCtl(t, sock, "status")
	if !strings.Contains(out, fmt.Sprintf("arbiter pid %d, version ", s.Pid)) || !strings.Contains(out, "generation 1, target 2 workers, running") {
		t.Errorf("status's arbiter line:\n%s", out)
	}
	for _, col := range []string{"SLOT", "PID", "GEN", "STATE", "AGE", "UPTIME", "REQUESTS", "IN FLIGHT", "REQUEST", "FOR", "RSS", "PSS", "HEARTBEAT"} {
		if !strings.Contains(out, col) {
			t.Errorf("status has no %s column:\n%s", col, out)
		}
	}
	for _, pid := range s.children() {
		if !regexp.MustCompile(`(?m)^\d+\s+` + strconv.Itoa(pid) + `\s+1\s+idle\s`).MatchString(out) {
			t.Errorf("status has no idle row for worker %d:\n%s", pid, out)
		}
	}

	// A request in flight shows, with its worker's counts.
	for range 5 {
		mustGet(t, s.Addr, "/")
	}
	slow := make(chan error, 1)
	go func() { _, _, err := get(s.Addr, "/sleep?seconds=1.5"); slow <- err }()
	st := waitStatus(t, sock, 3*time.Second, "the request in flight", func(st *control.Status) bool {
		for _, w := range st.Workers {
			if w.Request == "GET /sleep?seconds=1.5" && w.InFlight == 1 && w.State == "busy" && w.RequestFor > 0 {
				return true
			}
		}
		return false
	})
	var served uint64
	for _, w := range st.Workers {
		served += w.Requests
		if w.RSS == 0 || w.PSS == 0 || !w.Scoreboard || w.Uptime <= 0 {
			t.Errorf("worker %+v: no memory, scoreboard or uptime", w)
		}
	}
	if served != 5 {
		t.Errorf("status counts %d requests answered, want 5", served)
	}
	if err := <-slow; err != nil {
		t.Errorf("the slow request: %v", err)
	}

	// listeners
	out = mustCtl(t, sock, "listeners")
	if !regexp.MustCompile(regexp.QuoteMeta(s.Addr) + `\s+http\s+0\s+2048`).MatchString(out) {
		t.Errorf("listeners:\n%s", out)
	}

}

// checkCtlWorkers: workers N, +N, -N; status lists what pgrep finds.
func checkCtlWorkers(t *testing.T, s *server, sock string) *control.Status {
	// workers 4, then status lists exactly the processes pgrep finds.
	if out := mustCtl(t, sock, "workers", "4"); !strings.Contains(out, "workers: 2 -> 4") {
		t.Errorf("workers 4: %q", out)
	}
	st := waitStatus(t, sock, 10*time.Second, "4 ready workers", allReady(4))
	if got, want := workerPids(st), pgrepChildren(t, s.Pid); !slices.Equal(got, want) || len(got) != 4 {
		t.Errorf("status lists %v, pgrep -P %d finds %v", got, s.Pid, want)
	}
	mustCtl(t, sock, "workers", "-1")
	waitStatus(t, sock, 10*time.Second, "3 workers", allReady(3))
	mustCtl(t, sock, "workers", "+1")
	st = waitStatus(t, sock, 10*time.Second, "4 workers", allReady(4))
	if st.Target != 4 {
		t.Errorf("target %d, want 4", st.Target)
	}
	if code, _, errOut := ctl(t, sock, "workers", "-9"); code != 1 || !strings.Contains(errOut, "one at least") {
		t.Errorf("workers -9: exit %d, %q; want 1 and the reason", code, errOut)
	}
	if code, _, errOut := ctl(t, sock, "workers", "0"); code != 2 || !strings.Contains(errOut, "1 or more") {
		t.Errorf("workers 0: exit %d, %q; want 2 and the reason", code, errOut)
	}

	return st
}

// checkCtlWorkerStop: worker stop PID replaces the worker, replacement first.
func checkCtlWorkerStop(t *testing.T, s *server, sock string, victim int) {
	// worker stop PID: a replacement first, then the worker goes.
	mustCtl(t, sock, "worker", "stop", strconv.Itoa(victim))
	s.waitLog(fmt.Sprintf(`Worker \(pid:%d\) exited with code 0`, victim), 10*time.Second)
	st := waitStatus(t, sock, 10*time.Second, "4 workers again", allReady(4))
	if slices.Contains(workerPids(st), victim) {
		t.Errorf("worker %d still listed after worker stop", victim)
	}
	log := s.log.String()
	if i, j := strings.LastIndex(log, "Booting worker"), strings.Index(log, fmt.Sprintf("Worker (pid:%d) exited", victim)); i < 0 || j < i {
		t.Errorf("worker %d exited before its replacement booted", victim)
	}
	if code, _, errOut := ctl(t, sock, "worker", "stop", strconv.Itoa(victim)); code != 1 || !strings.Contains(errOut, "no worker with pid") {
		t.Errorf("worker stop of a gone pid: exit %d, %q", code, errOut)
	}

}

// checkCtlMisc: reopen-logs, config, reload with and without --wait, --json.
func checkCtlMisc(t *testing.T, s *server, sock string) {
	// reopen-logs, config
	mustCtl(t, sock, "reopen-logs")
	s.waitLog(`Reopening log files`, 5*time.Second)
	out := mustCtl(t, sock, "config")
	if !strings.Contains(out, `control-socket = "`+sock+`"`) || !strings.Contains(out, `workers = 2`) || !strings.Contains(out, `# app: "demo"`) {
		t.Errorf("config:\n%s", out)
	}

	// reload --wait answers once complete; without --wait, once started.
	if out := mustCtl(t, sock, "reload", "--wait=30s"); !regexp.MustCompile(`^complete: generation 2, 4 workers serving, \d+ms`).MatchString(out) {
		t.Errorf("reload --wait: %q", out)
	}
	if out := mustCtl(t, sock, "reload"); !strings.Contains(out, "reloading: generation 3, 4 workers") {
		t.Errorf("reload: %q", out)
	}
	s.waitReloaded("4 workers", 10*time.Second)
	waitStatus(t, sock, 10*time.Second, "the old generation gone", allReady(4))

	// --json is the raw answer.
	code, out, _ := ctl(t, sock, "--json", "ping")
	var r control.Response
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || !r.OK || r.V != control.Version || r.Arbiter != s.Pid {
		t.Errorf("ping --json: exit %d, %q", code, out)
	}

}

// checkCtlScript: hand-written requests, as socat sends them.
func checkCtlScript(t *testing.T, sock string) {
	// A script's request: no "v", by socat's way of a line.
	rc, err := dialControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := rc.do(`{"cmd": "status"}`); err != nil || !r.OK || r.Status == nil || len(r.Status.Workers) != 4 {
		t.Errorf("hand-written status: %+v %v", r, err)
	}
	if r, err := rc.do(`{"v": 9, "cmd": "status"}`); err != nil || r.OK || !strings.Contains(r.Error, "newer") {
		t.Errorf("a newer version: %+v %v", r, err)
	}
	if r, err := rc.do(`{"cmd": "launch"}`); err != nil || r.OK || !strings.Contains(r.Error, "unknown command") {
		t.Errorf("an unknown command: %+v %v", r, err)
	}
	if r, err := rc.do(`not json`); err != nil || r.OK || !strings.Contains(r.Error, "bad request") {
		t.Errorf("not JSON: %+v %v", r, err)
	}
	rc.c.Close()

}

// TestControlStopQuick: stop --quick is a quick stop.
func TestControlStopQuick(t *testing.T) {
	s, sock := startControlled(t, "-w", "1")
	if out := mustCtl(t, sock, "stop", "--quick"); !strings.Contains(out, "stopping (quick)") {
		t.Errorf("stop --quick: %q", out)
	}
	if code := s.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	s.waitLog(`Stop \(quick\) asked by corral ctl`, time.Second)
}

// TestControlReloadWaitReportsFailure: the new workers cannot boot, and
// reload --wait says so, with the reason; the old workers serve on.
func TestControlReloadWaitReportsFailure(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "corral")
	copyFile(t, corralBin, bin)
	sock := filepath.Join(dir, "c.ctl")
	s := start(t, bin, []string{"-w", "2", "-b", "127.0.0.1:0", "--boot-timeout", "5", "--control-socket", sock, "demo"})
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	old := s.waitWorkers(2, 5*time.Second)
	writeScript(t, filepath.Join(dir, "broken"), "#!/bin/sh\necho 'cannot start: missing library' >&2\nexit 1\n")
	renameOver(t, filepath.Join(dir, "broken"), bin)

	code, out, errOut := ctl(t, sock, "reload", "--wait")
	if code != 1 || !regexp.MustCompile(`failed: new worker \(pid:\d+\) could not boot: .*exited with code 1.*the old workers keep serving`).MatchString(errOut) {
		t.Fatalf("reload --wait of a broken build: exit %d, %q %q; want 1 and why", code, out, errOut)
	}
	if now := s.waitWorkers(2, 5*time.Second); !slices.Equal(now, old) {
		t.Errorf("workers changed after a failed reload: %v -> %v", old, now)
	}
	mustGet(t, s.Addr, "/")
	copyFile(t, corralBin, bin+".new")
	renameOver(t, bin+".new", bin)
	if out := mustCtl(t, sock, "reload", "--wait=30s"); !strings.HasPrefix(out, "complete: ") {
		t.Errorf("reload --wait with a good build: %q", out)
	}
}

// TestControlRefusesOtherUsers: the socket is 0600, and a peer of another
// uid that reaches it anyway is refused with the reason.
func TestControlRefusesOtherUsers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as nobody")
	}
	dir, err := os.MkdirTemp("", "corral-ctl-uid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "corral") // a binary nobody may run
	copyFile(t, corralBin, bin)
	sock := filepath.Join(dir, "c.ctl")
	s := start(t, bin, []string{"-w", "1", "-b", "127.0.0.1:0", "--control-socket", sock, "demo"})
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	asNobody := func() (int, string) {
		cmd := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", bin, "ctl", "--socket", sock, "status")
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	// Mode 0600: nobody cannot even connect.
	if code, out := asNobody(); code != 2 || !strings.Contains(out, "permission denied") {
		t.Errorf("nobody on a 0600 socket: exit %d, %q; want 2, permission denied", code, out)
	}
	// Opened up by hand, the arbiter still refuses the peer's uid.
	os.Chmod(sock, 0o666)
	code, out := asNobody()
	if code != 1 || !regexp.MustCompile(`refused: uid \d+ is neither the arbiter's \(0\) nor root`).MatchString(out) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("nobody on an open socket: exit %d, %q; want 1 and a line saying why", code, out)
	}
	mustCtl(t, sock, "ping") // root still gets in
}

// TestControlSocketPaths: the default path, none, a stale socket file
// replaced, a live one refused at start.
func TestControlSocketPaths(t *testing.T) {
	dir := t.TempDir()
	pid := filepath.Join(dir, "app.pid")
	s := start(t, corralBin, []string{"-w", "1", "-b", "127.0.0.1:0", "-p", pid, "demo"})
	s.waitLog(`Ready: 1 workers`, 10*time.Second)
	_, port, _ := net.SplitHostPort(s.Addr)
	def := filepath.Join(dir, "corral-127.0.0.1_"+port+".ctl")
	s.waitLog(`Control socket at: `+regexp.QuoteMeta(def), time.Second)
	mustCtl(t, def, "ping")
	s.signal(syscall.SIGTERM)
	s.wait(10 * time.Second)

	named := start(t, corralBin, []string{"-w", "1", "-b", "127.0.0.1:0", "-p", pid, "-n", "shop api", "demo"})
	named.waitLog(`Control socket at: `+regexp.QuoteMeta(filepath.Join(dir, "corral-shop_api.ctl")), 10*time.Second)
	named.signal(syscall.SIGTERM)
	named.wait(10 * time.Second)

	off := start(t, corralBin, []string{"-w", "1", "-b", "127.0.0.1:0", "--control-socket", "none", "demo"})
	off.waitLog(`Ready: 1 workers`, 10*time.Second)
	if strings.Contains(off.log.String(), "Control socket") {
		t.Errorf("--control-socket none still opened one:\n%s", off.log)
	}
	off.signal(syscall.SIGTERM)
	off.wait(10 * time.Second)

	// A stale file: a socket nothing listens on any more.
	sock := filepath.Join(dir, "c.ctl")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	a := start(t, corralBin, []string{"-w", "1", "-b", "127.0.0.1:0", "--control-socket", sock, "demo"})
	a.waitLog(`Ready: 1 workers`, 10*time.Second)
	mustCtl(t, sock, "ping")

	// A live one: another arbiter answers there.
	code, _, errOut := run(t, nil, "-w", "1", "-b", "127.0.0.1:0", "--control-socket", sock, "demo")
	want := fmt.Sprintf("corral: error: --control-socket %s: in use: another arbiter answers on it (pid %d)\n", sock, a.Pid)
	if code != 2 || !strings.HasSuffix(errOut, want) {
		t.Errorf("a second arbiter on a live control socket: exit %d, %q; want 2, ending %q", code, errOut, want)
	}
	mustCtl(t, sock, "ping") // the first one is untouched
}

// TestControlDuringHUPStorm: commands sent while HUPs rain are all
// answered.
func TestControlDuringHUPStorm(t *testing.T) {
	s, sock := startControlled(t, "-w", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var mu sync.Mutex
	answered, failed := 0, []string{}
	var wg sync.WaitGroup
	for i := range 4 { // raw clients: status, listeners, ping, workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			reqs := []string{`{"cmd":"status"}`, `{"cmd":"listeners"}`, `{"cmd":"ping"}`, `{"cmd":"workers","n":2}`}
			rc, err := dialControl(sock)
			if err != nil {
				mu.Lock()
				failed = append(failed, err.Error())
				mu.Unlock()
				return
			}
			defer rc.c.Close()
			for n := 0; n < 2000 && ctx.Err() == nil; n++ {
				r, err := rc.do(reqs[i])
				mu.Lock()
				if err != nil || !r.OK && !strings.Contains(r.Error, "not ready") {
					failed = append(failed, fmt.Sprintf("%s: %v %+v", reqs[i], err, r))
				} else {
					answered++
				}
				mu.Unlock()
			}
		}()
	}
	ctlRuns := 0
	wg.Add(1)
	go func() { // the binary too, one run after another
		defer wg.Done()
		for ctx.Err() == nil {
			if code, out, errOut := ctl(t, sock, "status"); code != 0 || !strings.Contains(out, "arbiter pid") {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("ctl status: exit %d %q", code, errOut))
				mu.Unlock()
			}
			ctlRuns++
		}
	}()
	hups := s.hupStorm(ctx, 50*time.Millisecond)
	wg.Wait()
	t.Logf("%d HUPs; %d requests answered, %d ctl runs, %d failed", hups, answered, ctlRuns, len(failed))
	if len(failed) > 0 {
		t.Errorf("%d requests not answered during the HUP storm, e.g. %q", len(failed), failed[:min(3, len(failed))])
	}
	if answered < 100 || hups < 20 {
		t.Errorf("too little: %d answered, %d HUPs", answered, hups)
	}
	s.waitReloaded("2 workers", 15*time.Second)
	// After the storm, a reload --wait still reports its outcome.
	if out := mustCtl(t, sock, "reload", "--wait=30s"); !strings.HasPrefix(out, "complete: ") {
		t.Errorf("reload --wait after the storm: %q", out)
	}
}

// TestControlUpgrade: upgrade --wait answers once the new arbiter serves;
// it takes the socket over, and commands sent meanwhile are answered by
// one of the two.
func TestControlUpgrade(t *testing.T) {
	s, sock := startControlled(t, "-w", "2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	by := map[int]int{} // answers by arbiter pid
	var lost []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 500 && ctx.Err() == nil; n++ {
				select {
				case <-stop:
					return
				default:
				}
				code, out, errOut := ctl(t, sock, "--json", "workers", "2")
				var r control.Response
				mu.Lock()
				if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
					lost = append(lost, fmt.Sprintf("exit %d %q %q", code, out, errOut))
				} else {
					by[r.Arbiter]++
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	code, out, errOut := ctl(t, sock, "upgrade", "--wait=30s")
	m := regexp.MustCompile(`^complete: new arbiter \(pid (\d+)\) serves; this one \(pid (\d+)\) stops`).FindStringSubmatch(out)
	if code != 0 || m == nil || m[2] != strconv.Itoa(s.Pid) {
		t.Fatalf("upgrade --wait: exit %d, %q %q", code, out, errOut)
	}
	newPid, _ := strconv.Atoi(m[1])
	next := adopt(t, newPid, s.log)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("old arbiter exit code %d", code)
	}
	next.waitLog(`Upgrade complete: pid `+m[1], 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("answers by arbiter: %v; lost %d", by, len(lost))
	if len(lost) > 0 {
		t.Errorf("%d commands lost during the upgrade, e.g. %q", len(lost), lost[:min(3, len(lost))])
	}
	if by[s.Pid] == 0 || by[newPid] == 0 {
		t.Errorf("answers by arbiter %v: want some from the old (%d) and the new (%d)", by, s.Pid, newPid)
	}
	st := statusOf(t, sock)
	if st.Pid != newPid || st.State != "running" {
		t.Errorf("after the upgrade status says pid %d, %s; want %d, running", st.Pid, st.State, newPid)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("control socket after the upgrade: %v", err)
	}
	// Without --wait, the answer comes once the new arbiter started.
	out = mustCtl(t, sock, "upgrade")
	m = regexp.MustCompile(`^upgrading: new arbiter \(pid (\d+)\) started`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("upgrade: %q", out)
	}
	third, _ := strconv.Atoi(m[1])
	last := adopt(t, third, s.log)
	next.wait(15 * time.Second)
	last.waitLog(`Upgrade complete: pid `+m[1], 5*time.Second)
	mustCtl(t, sock, "stop")
	last.wait(15 * time.Second)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the last arbiter left the control socket behind: %v", err)
	}
}

// TestControlTop drives `corral ctl top` in tmux for a few seconds, with
// traffic, and reads its screen.
func TestControlTop(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("no tmux")
	}
	s, sock := startControlled(t, "-w", "2")
	tm := func(args ...string) (string, error) {
		out, err := exec.Command("tmux", append([]string{"-L", fmt.Sprintf("corral-top-%d", os.Getpid())}, args...)...).CombinedOutput()
		return string(out), err
	}
	session := "top"
	if out, err := tm("new-session", "-d", "-s", session, "-x", "200", "-y", "40", corralBin+" ctl --socket "+sock+" top"); err != nil {
		t.Fatalf("tmux new-session: %v %s", err, out)
	}
	t.Cleanup(func() { tm("kill-server") })
	// Traffic all along, a request every 5 ms, for top to count.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	loaded := make(chan int)
	go func() {
		n := 0
		for ctx.Err() == nil && n < 1000 {
			if _, _, err := get(s.Addr, "/"); err == nil {
				n++
			}
			time.Sleep(5 * time.Millisecond)
		}
		loaded <- n
	}()
	time.Sleep(3500 * time.Millisecond)
	screen, err := tm("capture-pane", "-p", "-t", session)
	if err != nil {
		t.Fatalf("capture-pane: %v %s", err, screen)
	}
	cancel()
	served := <-loaded
	t.Logf("top's screen, %d requests in:\n%s", served, screen)
	if !strings.Contains(screen, fmt.Sprintf("arbiter pid %d", s.Pid)) || !strings.Contains(screen, "REQ/S") || !strings.Contains(screen, "q or Ctrl-C to quit") {
		t.Errorf("top's screen lacks the arbiter line, the REQ/S column or the hint")
	}
	rates := 0
	for _, pid := range s.children() {
		m := regexp.MustCompile(`(?m)^\d+\s+` + strconv.Itoa(pid) + `\s+1\s+(idle|busy)\s+\d+\s+\S+\s+(\d+)\s+([\d.]+|-)\s`).FindStringSubmatch(screen)
		if m == nil {
			t.Errorf("top shows no row with requests and a rate for worker %d", pid)
			continue
		}
		if r, _ := strconv.ParseFloat(m[3], 64); r > 0 {
			rates++
		}
	}
	if rates == 0 && served > 100 {
		t.Errorf("no worker shows requests per second under load")
	}
	if !regexp.MustCompile(`the herd: [\d.]+ requests a second`).MatchString(screen) {
		t.Errorf("top shows no total rate")
	}
	if out, err := tm("send-keys", "-t", session, "q"); err != nil {
		t.Fatalf("send-keys: %v %s", err, out)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, err := tm("has-session", "-t", session); err != nil {
			break // top ended, and its session with it
		}
		if time.Now().After(deadline) {
			t.Fatalf("top still runs 3 s after q")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestControlFiftyClientsKeepTheLoopResponsive: 50 clients sending status
// in a loop do not slow the loop down: a reload completes as it does
// without them, in the same run. The figures are logged; the test asserts
// that every request is answered and every reload completes.
func TestControlFiftyClientsKeepTheLoopResponsive(t *testing.T) {
	_, sock := startControlled(t, "-w", "2")
	reloads := func(what string) []time.Duration {
		var ds []time.Duration
		for range 3 {
			begin := time.Now()
			out := mustCtl(t, sock, "reload", "--wait=30s")
			if !strings.HasPrefix(out, "complete: ") {
				t.Fatalf("reload --wait %s: %q", what, out)
			}
			ds = append(ds, time.Since(begin))
		}
		return ds
	}
	quiet := reloads("alone")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var failed []string
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := dialControl(sock)
			if err != nil {
				mu.Lock()
				failed = append(failed, err.Error())
				mu.Unlock()
				return
			}
			defer rc.c.Close()
			for n := 0; n < 2000 && ctx.Err() == nil; n++ {
				// The answer is read, not decoded: the clients share the
				// machine's cores with the arbiter and its workers.
				begin := time.Now()
				rc.c.SetDeadline(begin.Add(20 * time.Second))
				_, err := rc.c.Write([]byte(`{"v":1,"cmd":"status"}` + "\n"))
				var line []byte
				if err == nil {
					line, err = rc.br.ReadSlice('\n')
				}
				d := time.Since(begin)
				mu.Lock()
				if err != nil || !bytes.HasPrefix(line, []byte(`{"v":1,"ok":true,`)) || !bytes.Contains(line, []byte(`"workers":[{`)) {
					failed = append(failed, fmt.Sprintf("%v %q", err, line))
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // the clients at full speed
	busy := reloads("with 50 clients")
	cancel()
	wg.Wait()

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))].Round(10 * time.Microsecond)
	}
	t.Logf("reload --wait alone: %v; with 50 clients sending status: %v", quiet, busy)
	t.Logf("status answers: %d (%d failed), latency p50 %s, p99 %s, max %s", len(lat), len(failed), pct(0.5), pct(0.99), pct(1))
	if len(failed) > 0 {
		t.Errorf("%d status requests failed, e.g. %q", len(failed), failed[:min(3, len(failed))])
	}
	if len(lat) < 1000 {
		t.Errorf("only %d status answers: the clients did not load the loop", len(lat))
	}
	mustCtl(t, sock, "ping")
}

// TestControlExecWorkers: exec workers (corral -- COMMAND) keep no
// scoreboard; status lists them with what the arbiter knows, and says the
// rest is unknown.
func TestControlExecWorkers(t *testing.T) {
	bin, err := goWorkerBin()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "c.ctl")
	s, _ := startExec(t, []string{"-w", "2", "-b", "127.0.0.1:0", "--control-socket", sock, "--", bin})
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	st := waitStatus(t, sock, 5*time.Second, "2 idle exec workers", allReady(2))
	for _, w := range st.Workers {
		if w.Scoreboard || w.State != "idle" || w.RSS == 0 {
			t.Errorf("exec worker %+v: want no scoreboard, idle, its memory", w)
		}
	}
	out := mustCtl(t, sock, "status")
	if !regexp.MustCompile(`(?m)^\d+\s+\d+\s+1\s+idle\s+\d+\s+\S+\s+-\s+-\s+-\s+-\s`).MatchString(out) {
		t.Errorf("status of exec workers: want - for requests, in flight, request and for:\n%s", out)
	}
	if got, want := workerPids(st), pgrepChildren(t, s.Pid); !slices.Equal(got, want) {
		t.Errorf("status lists %v, pgrep -P finds %v", got, want)
	}
}
