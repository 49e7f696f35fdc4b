package integration

import (
	"context"
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
	s.signal(syscall.SIGUSR2)
	m := s.waitLog(`Upgrading: started new arbiter \S+ \(pid: (\d+)\)`, 5*time.Second)
	newPid, _ := strconv.Atoi(m[1])
	next := adopt(t, newPid, s.log)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("old arbiter exit code %d", code)
	}
	handover := time.Since(begin)
	next.waitLog(`Upgrade complete: pid `+m[1]+` took over from pid `+strconv.Itoa(s.Pid), 5*time.Second)
	r := wait()
	t.Logf("USR2 to the old arbiter's exit: %s; %s", handover.Round(time.Millisecond), r)
	if r.lost() != 0 {
		t.Errorf("requests failed during the upgrade: %s", r)
	}
	if r.ok() < 200 {
		t.Errorf("too little load: %d requests", r.ok())
	}
	b, _ := os.ReadFile(pidfile)
	if strings.TrimSpace(string(b)) != m[1] {
		t.Errorf("pid file says %q, want the new arbiter %s", b, m[1])
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
	next.signal(syscall.SIGUSR2)
	started := next.waitLogN(`Upgrading: started new arbiter \S+ \(pid: (\d+)\)`, 3, 10*time.Second)
	third, _ := strconv.Atoi(started[2][1])
	last := adopt(t, third, s.log)
	<-next.done
	last.waitLog(`Upgrade complete: pid `+started[2][1]+` took over from pid `+m[1], 15*time.Second)
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
