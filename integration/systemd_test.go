package integration

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notifyListener is systemd's end of NOTIFY_SOCKET, for the tests.
type notifyListener struct {
	t    *testing.T
	conn *net.UnixConn
	path string
}

func listenNotify(t *testing.T) *notifyListener {
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifyListener{t: t, conn: c, path: path}
}

// expect reads messages until one holds every line in want.
func (n *notifyListener) expect(want ...string) string {
	n.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 4096)
	var seen []string
	for {
		n.conn.SetReadDeadline(deadline)
		k, err := n.conn.Read(buf)
		if err != nil {
			n.t.Fatalf("no sd_notify message with %q; saw %q: %v", want, seen, err)
		}
		msg := string(buf[:k])
		seen = append(seen, msg)
		ok := true
		for _, w := range want {
			if !strings.Contains("\n"+msg+"\n", "\n"+w) {
				ok = false
			}
		}
		if ok {
			return msg
		}
	}
}

func TestSystemdNotify(t *testing.T) {
	n := listenNotify(t)
	s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "demo"},
		func(c *exec.Cmd) { c.Env = append(c.Env, "NOTIFY_SOCKET="+n.path) })
	n.expect("READY=1", "STATUS=2 workers serving")
	// The workers do not get systemd's socket: it is the arbiter's alone.
	for _, pid := range s.waitWorkers(2, 5*time.Second) {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if bytes.Contains(env, []byte("NOTIFY_SOCKET=")) {
			t.Errorf("worker %d has NOTIFY_SOCKET in its environment", pid)
		}
	}
	s.signal(syscall.SIGHUP)
	n.expect("RELOADING=1", "MONOTONIC_USEC=")
	n.expect("READY=1", "STATUS=2 workers serving, generation 2")
	s.signal(syscall.SIGTTIN)
	n.expect("STATUS=3 workers wanted")
	s.signal(syscall.SIGTERM)
	n.expect("STOPPING=1")
	s.wait(10 * time.Second)
}

// mainPIDSocket is systemd's NOTIFY_SOCKET under NotifyAccess=main: it
// learns each datagram's sender from SCM_CREDENTIALS (SO_PASSCRED), as
// systemd does, accepts a message only from the service's main pid, and
// moves the main pid when the main process sends MAINPID=.
type mainPIDSocket struct {
	t       *testing.T
	conn    *net.UnixConn
	path    string
	main    int
	dropped []string // "pid 123: READY=1"
}

func listenMainPID(t *testing.T) *mainPIDSocket {
	n := listenNotify(t)
	raw, err := n.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	if serr != nil {
		t.Fatalf("SO_PASSCRED: %v", serr)
	}
	return &mainPIDSocket{t: t, conn: n.conn, path: n.path}
}

// expect reads messages until an accepted one (from the main pid) holds
// every line in want, and returns its sender.
func (m *mainPIDSocket) expect(want ...string) int {
	m.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		m.conn.SetReadDeadline(deadline)
		n, oobn, _, _, err := m.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			m.t.Fatalf("no message with %q from the main pid %d; dropped: %q: %v", want, m.main, m.dropped, err)
		}
		pid := senderPid(m.t, oob[:oobn])
		msg := string(buf[:n])
		if pid != m.main {
			m.dropped = append(m.dropped, fmt.Sprintf("pid %d: %q", pid, msg))
			continue
		}
		lines := "\n" + msg + "\n"
		if i := strings.Index(lines, "\nMAINPID="); i >= 0 {
			v, _, _ := strings.Cut(lines[i+len("\nMAINPID="):], "\n")
			m.main, _ = strconv.Atoi(v)
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(lines, "\n"+w)
		}
		if ok {
			return pid
		}
	}
}

// senderPid is the pid in a datagram's SCM_CREDENTIALS.
func senderPid(t *testing.T, oob []byte) int {
	t.Helper()
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("no SCM_CREDENTIALS (%d messages): %v", len(msgs), err)
	}
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	return int(cred.Pid)
}

// TestSystemdMainPIDThroughUSR2: after a USR2 upgrade systemd still has
// the service's main pid, under the shipped unit's NotifyAccess=main. The
// old arbiter, still main, names the new one (MAINPID=) before it exits;
// every message after comes from the new main pid, none is dropped.
func TestSystemdMainPIDThroughUSR2(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join(repoRoot, "examples/nginx/corral.service"))
	if err != nil || !bytes.Contains(unit, []byte("\nNotifyAccess=main\n")) {
		t.Fatalf("examples/nginx/corral.service: want NotifyAccess=main, the rule this test plays (%v)", err)
	}
	m := listenMainPID(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "corral")
	copyFile(t, corralBin, bin)
	s := start(t, bin, []string{"-w", "2", "-b", "127.0.0.1:0", "-p", filepath.Join(dir, "pid"), "demo"},
		func(c *exec.Cmd) { c.Env = append(c.Env, "NOTIFY_SOCKET="+m.path) })
	m.main = s.Pid // systemd's main pid: the process it started
	m.expect("READY=1")
	s.signal(syscall.SIGUSR2)
	match := s.waitLog(`Upgrading: started new arbiter \S+ \(pid: (\d+)\)`, 5*time.Second)
	newPid, _ := strconv.Atoi(match[1])
	next := adopt(t, newPid, s.log)
	if from := m.expect("MAINPID=" + match[1]); from != s.Pid {
		t.Fatalf("MAINPID=%d came from pid %d, want the old arbiter %d", newPid, from, s.Pid)
	}
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("old arbiter exit code %d", code)
	}
	m.expect("READY=1") // the new arbiter's, once it took over
	next.waitLog(`Upgrade complete`, 5*time.Second)
	mustGet(t, s.Addr, "/")
	next.signal(syscall.SIGTERM)
	if from := m.expect("STOPPING=1"); from != newPid {
		t.Errorf("STOPPING=1 from pid %d, want the new main pid %d", from, newPid)
	}
	next.wait(15 * time.Second)
	if len(m.dropped) > 0 {
		t.Errorf("systemd would drop these messages (not from the main pid): %q", m.dropped)
	}
}
