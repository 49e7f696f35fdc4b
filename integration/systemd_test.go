package integration

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
