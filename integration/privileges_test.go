package integration

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// worldDir makes a folder that any user can enter, for a binary that
// workers run as another user.
func worldDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "corral-world-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func uidOf(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return -1
}

func TestWorkersRunAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root, as CI has: it checks that -u drops the workers' privileges")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	dir := worldDir(t)
	bin := filepath.Join(dir, "corral")
	copyFile(t, corralBin, bin)
	access := filepath.Join(dir, "access.log")
	s := start(t, bin, []string{"-w", "2", "-b", "127.0.0.1:0", "-u", "nobody", "--access-logfile", access, "demo"})
	s.waitLog(`Ready: 2 workers`, 10*time.Second)
	want, _ := strconv.Atoi(nobody.Uid)
	for _, pid := range s.waitWorkers(2, 5*time.Second) {
		if got := uidOf(t, pid); got != want {
			t.Errorf("worker %d runs as uid %d, want nobody (%d)", pid, got, want)
		}
	}
	if uidOf(t, s.Pid) != 0 {
		t.Error("the arbiter is not root any more")
	}
	mustGet(t, s.Addr, "/")
	// HUP and a crash keep the credentials.
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload complete`, 10*time.Second)
	for _, pid := range s.waitWorkers(2, 5*time.Second) {
		if got := uidOf(t, pid); got != want {
			t.Errorf("after HUP worker %d runs as uid %d", pid, got)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if b, _ := os.ReadFile(access); !strings.Contains(string(b), `"GET / HTTP/1.1" 200`) {
		t.Errorf("the nobody workers could not write the access log: %q", b)
	}
}

func TestNonRootCannotSwitchUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to start corral as another user")
	}
	nobody, _ := user.Lookup("nobody")
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	dir := worldDir(t)
	bin := filepath.Join(dir, "corral")
	copyFile(t, corralBin, bin)
	cmd := exec.Command(bin, "-u", "root", "-b", "127.0.0.1:0", "demo")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 || strings.Count(string(out), "\n") != 1 || !strings.Contains(string(out), "only root can run workers as another user") {
		t.Errorf("as nobody, -u root: %v, %q", err, out)
	}
	for _, args := range [][]string{{"-u", "no-such-user-x"}, {"-g", "no-such-group-x"}} {
		code, _, stderr := run(t, nil, append(args, "demo")...)
		if code != 2 || !strings.Contains(stderr, "no-such-") {
			t.Errorf("%v: exit %d, %q", args, code, stderr)
		}
	}
}
