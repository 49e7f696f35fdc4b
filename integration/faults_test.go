package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The faults of issue 20, found by attacking corral: each test here failed
// before its fix.

// TestWINCHThenBrokenHUPSaysNoWorkers: after WINCH no worker runs, so a
// HUP with a config that does not load must not claim to keep "the
// current workers".
func TestWINCHThenBrokenHUPSaysNoWorkers(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "corral.toml")
	os.WriteFile(conf, []byte("workers = 2\nbind = [\"127.0.0.1:0\"]\n"), 0o644)
	s := start(t, corralBin, []string{"-c", conf, "demo"})
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	s.signal(syscall.SIGWINCH)
	s.waitWorkers(0, 5*time.Second)
	os.WriteFile(conf, []byte("workers = \n"), 0o644)
	s.signal(syscall.SIGHUP)
	line := s.waitLog(`Reload failed: config file .*corral.toml: line 1.*`, 5*time.Second)[0]
	if !strings.Contains(line, "keeping the current configuration; no workers run") {
		t.Errorf("after WINCH, the failed reload says %q; want that no workers run", line)
	}
	s.waitWorkers(0, time.Second)
}
