package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUSR2UpgradeUnderLoad upgrades the arbiter while clients keep
// sending: the new arbiter takes the sockets, the old one drains and
// exits, no request fails, and the pid file names the new arbiter.
func TestUSR2UpgradeUnderLoad(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "corral")
	copyFile(t, corralBin, bin)
	pidfile := filepath.Join(dir, "corral.pid")
	sock := filepath.Join(dir, "c.sock")
	s := start(t, bin, []string{"-w", "2", "-b", "127.0.0.1:0", "-b", "unix:" + sock, "-p", pidfile, "demo"})
	s.waitLog(`Ready: 2 workers`, 10*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	wait := mixedLoad{keepAlive: 4, close: 4, requests: 1000000}.start(ctx, s.Addr)
	time.Sleep(500 * time.Millisecond)
	begin := time.Now()
	next := s.upgrade(1)
	newPid := next.Pid
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("old arbiter exit code %d", code)
	}
	handover := time.Since(begin)
	next.waitLog(fmt.Sprintf(`Upgrade complete: pid %d took over from pid %d`, newPid, s.Pid), 5*time.Second)
	r := wait()
	t.Logf("USR2 to the old arbiter's exit: %s; %s", handover.Round(time.Millisecond), r)
	if r.lost() != 0 {
		t.Errorf("requests failed during the upgrade: %s", r)
	}
	if r.ok() < 200 {
		t.Errorf("too little load: %d requests", r.ok())
	}
	b, _ := os.ReadFile(pidfile)
	if strings.TrimSpace(string(b)) != strconv.Itoa(newPid) {
		t.Errorf("pid file says %q, want the new arbiter %d", b, newPid)
	}
	if _, err := os.Stat(pidfile + ".2"); !os.IsNotExist(err) {
		t.Errorf("PIDFILE.2 left behind: %v", err)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("the old arbiter removed the unix socket it handed over: %v", err)
	}
	next.waitWorkers(2, 5*time.Second)
	mustGet(t, s.Addr, "/")

	// A broken binary: the upgrade fails, the arbiter keeps serving.
	broken := filepath.Join(dir, "broken")
	writeScript(t, broken, "#!/bin/sh\necho 'new build is broken' >&2\nexit 1\n")
	renameOver(t, broken, bin)
	next.signal(syscall.SIGUSR2)
	next.waitLog(`Upgrade failed: new arbiter \(pid: \d+\) exited with code 1 before it was ready; still serving`, 10*time.Second)
	mustGet(t, s.Addr, "/")
	if syscall.Kill(newPid, 0) != nil {
		t.Fatal("arbiter gone after a failed upgrade")
	}
	// The next USR2, with a good binary, works.
	copyFile(t, corralBin, bin+".new")
	renameOver(t, bin+".new", bin)
	last := next.upgrade(3)
	<-next.done
	last.waitLog(fmt.Sprintf(`Upgrade complete: pid %d took over from pid %d`, last.Pid, newPid), 15*time.Second)
	last.waitWorkers(2, 5*time.Second)
	mustGet(t, s.Addr, "/")
	last.signal(syscall.SIGTERM)
	<-last.done
	if _, err := os.Stat(pidfile); !os.IsNotExist(err) {
		t.Errorf("pid file left after the last arbiter stopped: %v", err)
	}
}

// A second USR2 while an upgrade is under way is refused.
func TestSecondUSR2IsRefused(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "corral")
	// A new arbiter that takes its time: a script that sleeps, then execs corral.
	copyFile(t, corralBin, filepath.Join(dir, "corral.real"))
	s := start(t, filepath.Join(dir, "corral.real"), []string{"-w", "1", "-b", "127.0.0.1:0", "--upgrade-binary", bin, "--boot-timeout", "5", "demo"})
	s.waitLog(`Ready: 1 workers`, 10*time.Second)
	writeScript(t, bin, "#!/bin/sh\nsleep 30\n")
	s.signal(syscall.SIGUSR2)
	m := s.waitLog(`Upgrading: started new arbiter \S+ \(pid: (\d+)\)`, 5*time.Second)
	s.signal(syscall.SIGUSR2)
	s.waitLog(`USR2 refused: an upgrade to pid `+m[1]+` is under way`, 5*time.Second)
	// Past the boot timeout the old arbiter stops the new one and serves on.
	s.waitLog(`Upgrade failed: new arbiter \(pid: `+m[1]+`\) not ready within the boot timeout`, 10*time.Second)
	mustGet(t, s.Addr, "/")
}

// TestUSR2KeepsTheWorkerCount: TTIN and TTOU move the target, and an
// upgrade hands it over: the new arbiter runs as many workers as the old
// one did, not the command line's -w.
func TestUSR2KeepsTheWorkerCount(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "demo"})
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	s.signal(syscall.SIGTTIN)
	s.waitLog(`Number of workers: 2 -> 3`, 5*time.Second)
	s.signal(syscall.SIGTTIN)
	s.waitLog(`Number of workers: 3 -> 4`, 5*time.Second)
	s.waitWorkers(4, 10*time.Second)
	next := s.upgrade(1)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("old arbiter exit code %d", code)
	}
	next.waitLog(fmt.Sprintf(`\[%d\] \[INFO\] Ready: 4 workers serving`, next.Pid), 10*time.Second)
	next.waitWorkers(4, 5*time.Second)
	mustGet(t, s.Addr, "/")
	// The count moves on from there.
	next.signal(syscall.SIGTTOU)
	next.waitLog(fmt.Sprintf(`\[%d\] \[INFO\] Number of workers: 4 -> 3`, next.Pid), 5*time.Second)
	next.waitWorkers(3, 10*time.Second)
}

// TestFailedUSR2KeepsTheUnixSocket: a new arbiter that exits before it
// took over (its binary is broken, its workers cannot boot, it misses the
// boot timeout, it is killed) leaves the unix socket file to the old
// arbiter, which serves on over it and removes a PIDFILE.2 left behind;
// the next good upgrade still goes through.
func TestFailedUSR2KeepsTheUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "c.sock")
	pidfile := filepath.Join(dir, "corral.pid")
	next := filepath.Join(dir, "next")
	s := start(t, helloBin, []string{"-w", "1", "-b", "127.0.0.1:0", "-b", "unix:" + sock, "-p", pidfile,
		"--upgrade-binary", next, "--boot-timeout", "3", "--graceful-timeout", "2"})
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	overUnix := func(after string) {
		t.Helper()
		if code, body, err := getOn("unix", sock, "/"); err != nil || code != 200 {
			t.Fatalf("after %s: GET over the unix socket: %d %q %v", after, code, body, err)
		}
		if _, err := os.Stat(pidfile + ".2"); !os.IsNotExist(err) {
			t.Errorf("after %s: PIDFILE.2 left behind: %v", after, err)
		}
	}
	failures := 0
	for _, c := range []struct{ what, script, fails string }{
		{"a broken binary", "echo 'new build is broken' >&2\nexit 1", `exited with code 1 before it was ready`},
		{"workers that cannot boot", "GREETING_FILE=/nonexistent exec " + helloBin + ` "$@"`, `exited with code 3 before it was ready`},
		// Its own boot timeout is longer: the old arbiter's gives up on it first.
		{"workers that miss the boot timeout", "POST_WORKER_INIT_DELAY=30s exec " + helloBin + ` "$@" --boot-timeout 60`, `not ready within the boot timeout`},
	} {
		writeScript(t, next, "#!/bin/sh\n"+c.script+"\n")
		u := s.upgrade(failures + 1)
		failures++
		s.waitLog(fmt.Sprintf(`Upgrade failed: new arbiter \(pid: %d\) %s`, u.Pid, c.fails), 15*time.Second)
		// Reaped: the next USR2 is not refused as one under way.
		s.waitLog(fmt.Sprintf(`new arbiter \(pid: %d\) (exited with code \d+|killed by signal \w+) before it was ready`, u.Pid), 15*time.Second)
		overUnix(c.what)
	}
	// A new arbiter killed while its workers boot leaves its PIDFILE.2.
	writeScript(t, next, "#!/bin/sh\nPOST_WORKER_INIT_DELAY=30s exec "+helloBin+` "$@"`+"\n")
	u := s.upgrade(failures + 1)
	failures++
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(pidfile + ".2"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new arbiter wrote no PIDFILE.2")
		}
		time.Sleep(20 * time.Millisecond)
	}
	syscall.Kill(u.Pid, syscall.SIGKILL)
	s.waitLog(`Upgrade failed: new arbiter \(pid: \d+\) killed by signal KILL before it was ready`, 10*time.Second)
	overUnix("a new arbiter killed")

	writeScript(t, next, "#!/bin/sh\nexec "+helloBin+` "$@"`+"\n")
	good := s.upgrade(failures + 1)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("old arbiter exit code %d", code)
	}
	good.waitLog(fmt.Sprintf(`Upgrade complete: pid %d took over from pid %d`, good.Pid, s.Pid), 10*time.Second)
	overUnix("a good upgrade")
	good.signal(syscall.SIGTERM)
	<-good.done
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket file outlived the last arbiter: %v", err)
	}
}
