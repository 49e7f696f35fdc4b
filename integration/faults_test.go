package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// TestSpawnFailureAtStartExits: with an fd limit too low to start any
// worker, the arbiter binds and then cannot spawn. At start-up that is
// fatal, as a worker that cannot boot is: exit 3 with the reason, not a
// retry loop with the port bound and no worker.
func TestSpawnFailureAtStartExits(t *testing.T) {
	// The lowest limit the arbiter starts under leaves no fd to spawn
	// with; below it the Go runtime itself cannot start.
	for n := 8; n <= 32; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		cmd := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf(`ulimit -n %d; exec "$0" "$@"`, n),
			corralBin, "-w", "2", "-b", "127.0.0.1:0", "demo")
		b, err := cmd.CombinedOutput()
		cancel()
		out := string(b)
		if !strings.Contains(out, "Listening at:") {
			continue
		}
		if code := cmd.ProcessState.ExitCode(); code != 3 {
			t.Fatalf("ulimit -n %d: exit code %d (%v), want 3; output:\n%s", n, code, err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "corral: error: ") || !strings.Contains(last, "too many open files") {
			t.Fatalf("ulimit -n %d: the last line is %q, want the reason; output:\n%s", n, last, out)
		}
		if c := strings.Count(out, "too many open files"); c > 3 {
			t.Errorf("ulimit -n %d: %d failed spawns: it retried", n, c)
		}
		return
	}
	t.Fatal("the arbiter started under no fd limit up to 32")
}

// TestQuickStopWhileWorkersBoot: a quick stop (INT, QUIT) that comes while
// Go workers build their app, before they catch signals, must not have the
// Go runtime dump their goroutines into the log, and must still be quick.
// The workers block at boot reading their greeting from a FIFO.
func TestQuickStopWhileWorkersBoot(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "greeting")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	dump := regexp.MustCompile(`(?m)^goroutine \d+ `)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT} {
		s := start(t, helloBin, []string{"-w", "3", "-b", "127.0.0.1:0"},
			func(c *exec.Cmd) { c.Env = append(c.Env, "GREETING_FILE="+fifo) })
		s.waitLogN(`Booting worker with pid`, 3, 5*time.Second)
		time.Sleep(300 * time.Millisecond) // in the app's constructor
		s.signal(sig)
		began := time.Now()
		if code := s.wait(10 * time.Second); code != 128+int(sig) { // 130, 131: stopped by the signal
			t.Errorf("%v: exit code %d, want %d", sig, code, 128+int(sig))
		}
		if d := time.Since(began); d > 3*time.Second {
			t.Errorf("%v: quick stop took %s", sig, d)
		}
		if out := s.log.String(); dump.MatchString(out) {
			t.Errorf("%v: the workers dumped their goroutines:\n%s", sig, out)
		}
	}
}

// TestTERMOnUnixBindRefusesNewClients: during a graceful stop a client of
// a unix socket is served or refused at connect, never accepted into a
// backlog no worker drains any more and then reset when the listener
// closes, whichever worker type drains it.
func TestTERMOnUnixBindRefusesNewClients(t *testing.T) {
	for _, class := range workerClasses {
		t.Run(class, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "c.sock")
			s := start(t, corralBin, []string{"-w", "2", "-k", class, "-b", "unix:" + sock, "--backlog", "64", "demo"})
			s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
			if r := termUnderLoad(t, s, class+" over unix", 50); r.refused == 0 {
				t.Errorf("no client was refused at connect during the drain: %s", r)
			}
			if _, err := os.Stat(sock); !os.IsNotExist(err) {
				t.Errorf("socket file left behind: %v", err)
			}
		})
	}
}
