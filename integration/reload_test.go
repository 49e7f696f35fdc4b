package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// --reload: the arbiter watches its worker binary, its config file and
// --reload-extra-file paths, and rolls the workers when they change.

const greetingFlag = "-X github.com/corral-server/corral/internal/demo.Greeting="

var (
	reloadedOnce sync.Once
	reloadedBin  string // the demo binary answering "Reloaded", built once
	reloadedErr  error
)

// reloaded returns bin/corral-reloaded, built once per run. Building it
// also fills the build cache, so the tests' own go build only links.
func reloaded(t *testing.T) string {
	t.Helper()
	reloadedOnce.Do(func() {
		reloadedBin = filepath.Join(repoRoot, "bin", "corral-reloaded")
		_, reloadedErr = goBuild(reloadedBin, "Reloaded")
	})
	if reloadedErr != nil {
		t.Fatal(reloadedErr)
	}
	return reloadedBin
}

// goBuild builds the demo binary to out with GET / answering greeting.
func goBuild(out, greeting string) (time.Duration, error) {
	start := time.Now()
	cmd := exec.Command("go", "build", "-ldflags", greetingFlag+greeting, "-o", out, "./cmd/corral")
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("go build: %v\n%s", err, b)
	}
	return time.Since(start), nil
}

// startReload runs a copy of bin/corral from its own folder with --reload.
func startReload(t *testing.T, args ...string) (*server, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "corral")
	copyFile(t, corralBin, bin)
	s := start(t, bin, append([]string{"--reload", "-b", "127.0.0.1:0", "--reload-delay", "0.2"}, append(args, "demo")...))
	s.waitLog(`Ready: \d+ workers serving`, 10*time.Second)
	return s, bin
}

func (s *server) reloads() int {
	return len(regexp.MustCompile(`Reloading: generation`).FindAllString(s.log.String(), -1))
}

// waitGreeting polls GET / on fresh connections until it answers want.
func waitGreeting(t *testing.T, s *server, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if _, body, err := get(s.Addr, "/"); err == nil && body == want {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			_, body, err := get(s.Addr, "/")
			t.Fatalf("GET / still answers %q (%v) %s after the change, want %q", body, err, timeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReloadOnRebuild rebuilds the worker binary in place, under load, as
// a developer does: to a temporary name then renamed over, and straight
// onto the path as go build does. The new greeting is served within 3 s
// of the build finishing, and no request fails during the switch.
func TestReloadOnRebuild(t *testing.T) {
	reloaded(t) // warms the build cache
	for _, how := range []string{"rename", "in-place"} {
		t.Run(how, func(t *testing.T) {
			s, bin := startReload(t, "-w", "2")
			greeting := "Reloaded-" + how
			var took time.Duration
			var err error
			if how == "rename" {
				took, err = goBuild(bin+".tmp", greeting)
				if err == nil {
					renameOver(t, bin+".tmp", bin)
				}
			} else {
				took, err = goBuild(bin, greeting)
			}
			if err != nil {
				t.Fatal(err)
			}
			// The load starts as the build ends: the reload waits for the
			// delay and the settle check, so it runs through the switch
			// (and the build is not slowed down by it).
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wait := mixedLoad{keepAlive: 4, close: 2, requests: 1 << 30}.start(ctx, s.Addr)
			d := waitGreeting(t, s, greeting, 3*time.Second)
			s.waitLog(`Reload complete: generation 2, 2 workers`, 10*time.Second)
			time.Sleep(200 * time.Millisecond)
			cancel()
			r := wait()
			t.Logf("go build (%s) took %s; new greeting served %s after it finished; %s",
				how, took.Round(time.Millisecond), d.Round(time.Millisecond), r)
			if r.lost() != 0 {
				t.Errorf("requests failed during the reload: %s", r)
			}
			if r.keepAlive.ok < 50 || r.close.ok < 50 {
				t.Errorf("too little load to mean anything: %s", r)
			}
			s.waitLog(`Changed: `+regexp.QuoteMeta(bin)+`; reloading`, time.Second)
			if n := s.reloads(); n != 1 {
				t.Errorf("%d reloads for one build, want 1", n)
			}
		})
	}
}

// TestReloadEditorSaves plays vim's save (swap file, "4913" probe, backup
// by rename) and a write-temporary-then-rename save in a watched folder:
// one reload each, naming only the edited file.
func TestReloadEditorSaves(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "conf")
	os.Mkdir(conf, 0o755)
	f := filepath.Join(conf, "app.conf")
	os.WriteFile(f, []byte("v1\n"), 0o644)
	s, _ := startReload(t, "--reload-extra-file", conf)

	start := time.Now()
	swp := filepath.Join(conf, ".app.conf.swp")
	os.WriteFile(swp, []byte("swap"), 0o644)
	os.WriteFile(filepath.Join(conf, "4913"), nil, 0o644)
	os.Remove(filepath.Join(conf, "4913"))
	os.Rename(f, f+"~")
	os.WriteFile(f, []byte("v2\n"), 0o644)
	os.Remove(f + "~")
	os.Remove(swp)
	s.waitLog(`Reload complete: generation 2`, 5*time.Second)
	t.Logf("vim-style save to reload complete: %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	tmp := filepath.Join(conf, ".app.conf.tmp42")
	os.WriteFile(tmp, []byte("v3\n"), 0o644)
	renameOver(t, tmp, f)
	s.waitLog(`Reload complete: generation 3`, 5*time.Second)
	t.Logf("rename-over save to reload complete: %s", time.Since(start).Round(time.Millisecond))

	time.Sleep(800 * time.Millisecond)
	changed := regexp.MustCompile(`Changed: (.*); reloading`).FindAllStringSubmatch(s.log.String(), -1)
	if len(changed) != 2 || s.reloads() != 2 {
		t.Fatalf("%d reloads, changes %q: want one per save", s.reloads(), changed)
	}
	for _, m := range changed {
		if m[1] != f {
			t.Errorf("the log blames %q, want only %s", m[1], f)
		}
	}
	mustGet(t, s.Addr, "/")
}

// TestReloadDebouncesABurst: 100 writes in 100 ms give one reload.
func TestReloadDebouncesABurst(t *testing.T) {
	dir := t.TempDir()
	s, _ := startReload(t, "--reload-extra-file", dir)
	start := time.Now()
	var last time.Time
	pauses := 0 // gaps between writes near the delay: a loaded machine's, each may end a burst
	for i := range 100 {
		if now := time.Now(); i > 0 && now.Sub(last) >= 150*time.Millisecond {
			pauses++
		}
		last = time.Now()
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("gen-%d.txt", i%7)), []byte(fmt.Sprint(i)), 0o644)
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * time.Millisecond)))
	}
	burst := last.Sub(start)
	s.waitLog(`Reloading: generation 2`, 5*time.Second)
	d := time.Since(last)
	s.waitLog(`Reload complete: generation 2`, 5*time.Second)
	time.Sleep(time.Second)
	t.Logf("100 writes in %s; reload started %s after the last (delay 0.2 s)", burst.Round(time.Millisecond), d.Round(time.Millisecond))
	if burst > 300*time.Millisecond {
		t.Logf("the burst took %s: a slow machine", burst)
	}
	if slow := burst > 300*time.Millisecond; pauses > 0 || slow {
		// The writes were not one burst: each pause near the 0.2 s delay
		// may end one, and on a machine this slow the watcher may take
		// the events late and bunched (it times them on arrival), which
		// can make one more pause; each may give a reload, never more.
		most := 1 + pauses
		if slow {
			most++
		}
		t.Logf("%d pauses of 150 ms or more between the writes", pauses)
		if n := s.reloads(); n < 1 || n > most {
			t.Fatalf("%d reloads for 100 writes in %s with %d pauses, want 1 to %d", n, burst, pauses, most)
		}
		return
	}
	if n := s.reloads(); n != 1 {
		t.Fatalf("%d reloads for one burst, want 1", n)
	}
	s.waitLog(`Changed: \S+/gen-0.txt, \S+/gen-1.txt, \S+/gen-2.txt and 4 more; reloading`, time.Second)
}

// TestReloadNewSubfolder: a file written into a folder made after the
// start, inside a watched folder, triggers a reload; the empty folder alone
// does not.
func TestReloadNewSubfolder(t *testing.T) {
	dir := t.TempDir()
	s, _ := startReload(t, "--reload-extra-file", dir)
	sub := filepath.Join(dir, "a", "b")
	os.MkdirAll(sub, 0o755)
	time.Sleep(600 * time.Millisecond)
	if n := s.reloads(); n != 0 {
		t.Fatalf("%d reloads for an empty folder", n)
	}
	x := filepath.Join(sub, "x.html")
	os.WriteFile(x, []byte("<p>"), 0o644)
	s.waitLog(`Changed: `+regexp.QuoteMeta(x)+`; reloading`, 5*time.Second)
	s.waitLog(`Reload complete: generation 2`, 5*time.Second)
	// And now through the new folder's own watch.
	os.WriteFile(x, []byte("<p>2"), 0o644)
	s.waitLog(`Reload complete: generation 3`, 5*time.Second)
}

// TestReloadIgnoresItsOwnLogs serves requests with the access log, and
// rotates it, inside a watched folder: no reload. A real change still is.
func TestReloadIgnoresItsOwnLogs(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.Mkdir(logs, 0o755)
	access := filepath.Join(logs, "access.log")
	s, _ := startReload(t, "-w", "2", "--reload-extra-file", dir, "--access-logfile", access)
	for range 100 {
		mustGet(t, s.Addr, "/")
	}
	os.Rename(access, access+".1")
	s.signal(syscall.SIGUSR1)
	s.waitLog(`Reopening log files`, 2*time.Second)
	time.Sleep(100 * time.Millisecond)
	for range 100 {
		mustGet(t, s.Addr, "/")
	}
	time.Sleep(700 * time.Millisecond)
	old, _ := os.ReadFile(access + ".1")
	cur, _ := os.ReadFile(access)
	lines := strings.Count(string(old), "\n") + strings.Count(string(cur), "\n")
	if lines < 200 {
		t.Fatalf("the access log has %d lines, want 200", lines)
	}
	if n := s.reloads(); n != 0 {
		t.Fatalf("%d reloads from corral's own access log", n)
	}
	if n := inotifyFDs(s.Pid); n != 1 {
		t.Errorf("the arbiter has %d inotify descriptors, want 1", n)
	}
	os.WriteFile(filepath.Join(logs, "app.conf"), nil, 0o644)
	s.waitLog(`Reload complete: generation 2`, 5*time.Second)
	t.Logf("%d access log lines, no reload; a real change reloaded", lines)
}

// TestReloadOffHasNoWatcher: without --reload, no inotify descriptor.
func TestReloadOffHasNoWatcher(t *testing.T) {
	s := start(t, corralBin, []string{"-b", "127.0.0.1:0", "demo"})
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	if n := inotifyFDs(s.Pid); n != 0 {
		t.Fatalf("the arbiter has %d inotify descriptors without --reload", n)
	}
}

func inotifyFDs(pid int) int {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	n := 0
	for _, fd := range fds {
		if l, _ := os.Readlink(fd); l == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// TestReloadBrokenExecutable puts a worker binary that cannot boot in
// place: the old workers keep serving, the log says which file changed and
// why the new workers failed; the next change, a good binary, goes through.
func TestReloadBrokenExecutable(t *testing.T) {
	good := reloaded(t)
	s, bin := startReload(t, "-w", "2", "--boot-timeout", "5")
	old := s.waitWorkers(2, 5*time.Second)

	writeScript(t, bin+".new", "#!/bin/sh\necho 'cannot start: missing library' >&2\nexit 1\n")
	renameOver(t, bin+".new", bin)
	s.waitLog(`Reload failed \(after change of `+regexp.QuoteMeta(bin)+`\): new worker \(pid:\d+\) could not boot: exited with code 1; the old workers keep serving`, 5*time.Second)
	for range 20 {
		if body := mustGet(t, s.Addr, "/"); body != "Hello, World!" {
			t.Fatalf("GET / = %q from the old workers", body)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if now := s.waitWorkers(2, 5*time.Second); now[0] != old[0] || now[1] != old[1] {
		t.Fatalf("workers changed after a failed reload: %v -> %v", old, now)
	}

	copyFile(t, good, bin+".new")
	renameOver(t, bin+".new", bin)
	d := waitGreeting(t, s, "Reloaded", 3*time.Second)
	s.waitLog(`Reload complete: generation \d+, 2 workers`, 5*time.Second)
	t.Logf("after a failed reload, a good binary served %s after it was put in place", d.Round(time.Millisecond))
}

// TestReloadWaitsForHalfWrittenExecutable writes the new binary in two
// halves a second apart, not executable until the end: no worker starts
// from the half-written file.
func TestReloadWaitsForHalfWrittenExecutable(t *testing.T) {
	b, err := os.ReadFile(reloaded(t))
	if err != nil {
		t.Fatal(err)
	}
	s, bin := startReload(t, "-w", "1")
	os.Remove(bin)
	f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(b[:len(b)/2])
	s.waitLog(`Reload: waiting for `+regexp.QuoteMeta(bin)+`: it is not executable`, 3*time.Second)
	time.Sleep(time.Second)
	if n := s.reloads(); n != 0 {
		t.Fatalf("reloaded %d times from a half-written binary", n)
	}
	f.Write(b[len(b)/2:])
	f.Chmod(0o755)
	f.Close()
	d := waitGreeting(t, s, "Reloaded", 3*time.Second)
	t.Logf("whole binary served %s after it was complete", d.Round(time.Millisecond))
	if n := s.reloads(); n != 1 {
		t.Errorf("%d reloads, want 1", n)
	}
	if strings.Contains(s.log.String(), "failed to boot") {
		t.Errorf("a worker failed to boot:\n%s", s.log.String())
	}
}
