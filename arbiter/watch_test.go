package arbiter

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestMatchGlob(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"/a/*.go", "/a/x.go", true},
		{"/a/*.go", "/a/b/x.go", false},
		{"/a/**/*.go", "/a/x.go", true},
		{"/a/**/*.go", "/a/b/c/x.go", true},
		{"/a/**/*.go", "/a/b/c/x.txt", false},
		{"/a/**", "/a", true},
		{"/a/**", "/a/b/c", true},
		{"/a/**/b/*.toml", "/a/x/y/b/c.toml", true},
		{"/a/**/b/*.toml", "/a/b/c.toml", true},
		{"/a/**/b/*.toml", "/a/b/x/c.toml", false},
		{"/a/[xy]/?.txt", "/a/y/z.txt", true},
		{"/a/*/c", "/b/x/c", false},
	} {
		if got := matchGlob(c.pattern, c.name); got != c.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
	if err := ValidGlob("/a/[x/b"); err == nil {
		t.Error("ValidGlob accepted an unclosed [")
	}
	if err := ValidGlob("/a/**/b/*.go"); err != nil {
		t.Error(err)
	}
}

func TestIgnoredAndCounts(t *testing.T) {
	w := NewFileWatcher(WatchOptions{
		Paths:       []string{"/srv/app", "/etc/app.conf", "/srv/tmpl/**/*.html", "/tmp/x~/named.swp"},
		Ignore:      append(slices.Clone(DefaultIgnore), "node_modules", "/srv/app/static/**"),
		IgnoreFiles: []string{"/srv/app/log/access.log"},
	})
	for p, want := range map[string]bool{
		"/srv/app/main.go":                true,
		"/srv/app/sub/dir/x.txt":          true,
		"/srv/app/.git/index":             false, // .git/
		"/srv/app/.main.go.swp":           false,
		"/srv/app/main.go~":               false,
		"/srv/app/#main.go#":              false,
		"/srv/app/4913":                   false, // vim's probe
		"/srv/app/node_modules/x/y.js":    false,
		"/srv/app/static/css/a.css":       false,
		"/srv/app/log/access.log":         false,
		"/srv/app/log/access.log.1":       false, // rotated
		"/srv/app/log/error.log":          true,
		"/etc/app.conf":                   true,
		"/etc/other.conf":                 false,
		"/srv/tmpl/a/b/page.html":         true,
		"/srv/tmpl/a/b/page.txt":          false,
		"/srv/application/x":              false, // a prefix of the name is not the folder
		"/tmp/x~/named.swp":               true,  // named files are never ignored
		"/tmp/x~/other":                   false,
		"/srv/app/.git":                   false,
		"/srv/app/a.swp/inside-a-folder":  false,
		"/srv/app/static-not-ignored/a.c": true,
	} {
		if got := w.counts(p); got != want {
			t.Errorf("counts(%q) = %v, want %v", p, got, want)
		}
	}
}

// watchHarness runs a FileWatcher on real inotify and polls it as the
// arbiter's loop does: when woken, or at the time Changes asked for.
type watchHarness struct {
	t     *testing.T
	w     *FileWatcher
	wakes atomic.Int32
	woke  chan struct{}
}

func startWatch(t *testing.T, opts WatchOptions) *watchHarness {
	t.Helper()
	if opts.Delay == 0 {
		opts.Delay = 100 * time.Millisecond
	}
	h := &watchHarness{t: t, w: NewFileWatcher(opts), woke: make(chan struct{}, 1)}
	if err := h.w.Start(func() {
		h.wakes.Add(1)
		select {
		case h.woke <- struct{}{}:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.w.Close() })
	return h
}

// changes waits up to timeout for a report; nil if none came.
func (h *watchHarness) changes(timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		files, next := h.w.Changes()
		if files != nil {
			return files
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil
		}
		if !next.IsZero() {
			wait = max(min(wait, time.Until(next)), time.Millisecond)
		}
		select {
		case <-h.woke:
		case <-time.After(wait):
		}
	}
}

func (h *watchHarness) want(timeout time.Duration, files ...string) time.Time {
	h.t.Helper()
	got := h.changes(timeout)
	if !slices.Equal(got, files) {
		h.t.Fatalf("changes %q, want %q", got, files)
	}
	return time.Now()
}

func (h *watchHarness) none(d time.Duration) {
	h.t.Helper()
	if got := h.changes(d); got != nil {
		h.t.Fatalf("changes %q, want none", got)
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchDebouncesABurst(t *testing.T) {
	dir := t.TempDir()
	h := startWatch(t, WatchOptions{Paths: []string{dir}, Delay: 150 * time.Millisecond})
	f := filepath.Join(dir, "data.txt")
	start := time.Now()
	var last time.Time
	for i := range 100 {
		last = time.Now()
		write(t, f, fmt.Sprint(i))
		time.Sleep(time.Millisecond)
		if i%20 == 0 {
			if files, _ := h.w.Changes(); files != nil {
				t.Fatalf("reported %q in the middle of the burst", files)
			}
		}
	}
	h.want(3*time.Second, f)
	t.Logf("100 writes in %s; reported %s after the last one; %d wakes",
		last.Sub(start).Round(time.Millisecond), time.Since(last).Round(time.Millisecond), h.wakes.Load())
	if d := time.Since(last); d < 150*time.Millisecond {
		t.Errorf("reported %s after the last write, before the delay", d)
	}
	if n := h.wakes.Load(); n > 2 {
		t.Errorf("%d wakes for one burst: the loop should be woken once", n)
	}
	h.none(400 * time.Millisecond)
}

// TestWatchEditorSaves plays vim's and a rename-over save in a watched
// folder: only the edited file is reported, once per save.
func TestWatchEditorSaves(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "app.conf")
	write(t, f, "v1")
	h := startWatch(t, WatchOptions{Paths: []string{dir}, Ignore: DefaultIgnore})

	// vim: swap file, the 4913 probe, backup by rename, new file, backup gone.
	write(t, filepath.Join(dir, ".app.conf.swp"), "swap")
	write(t, filepath.Join(dir, "4913"), "")
	os.Remove(filepath.Join(dir, "4913"))
	os.Rename(f, f+"~")
	write(t, f, "v2")
	os.Remove(f + "~")
	os.Remove(filepath.Join(dir, ".app.conf.swp"))
	h.want(2*time.Second, f)

	// Write a temporary file, rename it over: the temporary file came and
	// went within the period, so it is left out.
	tmp := filepath.Join(dir, ".app.conf.tmp123")
	write(t, tmp, "v3")
	os.Rename(tmp, f)
	h.want(2*time.Second, f)
	h.none(300 * time.Millisecond)
}

// TestWatchNamedFile watches a file by name: its folder is watched, and
// only that file counts, however it is replaced.
func TestWatchNamedFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "settings.toml")
	write(t, f, "a")
	h := startWatch(t, WatchOptions{Paths: []string{f}})
	write(t, filepath.Join(dir, "other.toml"), "x")
	h.none(300 * time.Millisecond)
	write(t, f+".new", "b")
	os.Rename(f+".new", f)
	h.want(2*time.Second, f)
	os.Remove(f)
	h.want(2*time.Second, f) // removal is a change too
	write(t, f, "c")
	h.want(2*time.Second, f)
	if got := h.w.Watched(); !slices.Equal(got, []string{dir}) {
		t.Errorf("watching %q, want only the folder %q", got, dir)
	}
}

// TestWatchNewSubfolder: a folder created later is watched, and a file
// written into it at once (before its watch could exist) is seen. A new
// empty folder alone is no change.
func TestWatchNewSubfolder(t *testing.T) {
	dir := t.TempDir()
	h := startWatch(t, WatchOptions{Paths: []string{dir}})
	os.MkdirAll(filepath.Join(dir, "empty", "too"), 0o755)
	h.none(300 * time.Millisecond)
	sub := filepath.Join(dir, "a", "b", "c")
	os.MkdirAll(sub, 0o755)
	x := filepath.Join(sub, "x.txt")
	write(t, x, "1")
	h.want(2*time.Second, x)
	write(t, x, "2") // now through the new folder's own watch
	h.want(2*time.Second, x)
	y := filepath.Join(dir, "empty", "too", "y.txt")
	write(t, y, "1")
	h.want(2*time.Second, y)
}

// TestWatchFolderComesBack: a watched folder removed and made again is
// watched again (through its parent's watch).
func TestWatchFolderComesBack(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf.d")
	os.Mkdir(conf, 0o755)
	a := filepath.Join(conf, "a.conf")
	write(t, a, "1")
	h := startWatch(t, WatchOptions{Paths: []string{conf}})
	os.RemoveAll(conf)
	h.want(2*time.Second, conf, a)
	os.Mkdir(conf, 0o755)
	b := filepath.Join(conf, "b.conf")
	write(t, b, "1")
	h.want(2*time.Second, b)
	write(t, b, "2")
	h.want(2*time.Second, b)

	// Moved away and back: the watch follows the name, not the folder.
	os.Rename(conf, conf+".old")
	h.want(2*time.Second, conf) // what was watched went
	write(t, filepath.Join(conf+".old", "c.conf"), "x")
	h.none(300 * time.Millisecond)
	os.Rename(conf+".old", conf)
	h.want(2*time.Second, b, filepath.Join(conf, "c.conf"))
}

// TestWatchPathCreatedLater: a named file whose folders do not exist yet is
// seen when they and it are made.
func TestWatchPathCreatedLater(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "x", "y", "late.toml")
	h := startWatch(t, WatchOptions{Paths: []string{f}})
	os.MkdirAll(filepath.Dir(f), 0o755)
	write(t, f, "1")
	h.want(2*time.Second, f)
	write(t, f, "2")
	h.want(2*time.Second, f)
}

func TestWatchGlob(t *testing.T) {
	dir := t.TempDir()
	h := startWatch(t, WatchOptions{Paths: []string{filepath.Join(dir, "templates", "**", "*.html")}})
	os.MkdirAll(filepath.Join(dir, "templates", "a", "b"), 0o755)
	write(t, filepath.Join(dir, "templates", "a", "b", "x.go"), "")
	write(t, filepath.Join(dir, "notes.html"), "")
	h.none(300 * time.Millisecond)
	p := filepath.Join(dir, "templates", "a", "b", "page.html")
	write(t, p, "<p>")
	h.want(2*time.Second, p)
}

// TestWatchIgnoresLogs: the logs corral writes, and their rotated copies,
// are no change even inside a watched folder.
func TestWatchIgnoresLogs(t *testing.T) {
	dir := t.TempDir()
	logf := filepath.Join(dir, "logs", "access.log")
	os.Mkdir(filepath.Dir(logf), 0o755)
	h := startWatch(t, WatchOptions{Paths: []string{dir}, IgnoreFiles: []string{logf}})
	for i := range 50 {
		f, _ := os.OpenFile(logf, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		fmt.Fprintf(f, "request %d\n", i)
		f.Close()
	}
	os.Rename(logf, logf+".1")
	write(t, logf, "")
	h.none(400 * time.Millisecond)
	write(t, filepath.Join(dir, "logs", "app.conf"), "")
	h.want(2*time.Second, filepath.Join(dir, "logs", "app.conf"))
}

// TestWatchRunningAnExecutableIsNoChange: exec reads the file (access
// time); it must not look like a change, or every reload would cause the
// next one.
func TestWatchRunningAnExecutableIsNoChange(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "true")
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip(err)
	}
	os.WriteFile(exe, b, 0o755)
	h := startWatch(t, WatchOptions{Paths: []string{dir}, Executables: []string{exe}})
	for range 3 {
		if err := exec.Command(exe).Run(); err != nil {
			t.Fatal(err)
		}
	}
	h.none(400 * time.Millisecond)
}

// TestWatchWaitsForExecutable: an executable that is not executable yet,
// or empty, or still changing, is waited for.
func TestWatchWaitsForExecutable(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "app")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	h := startWatch(t, WatchOptions{Executables: []string{exe}})

	// Half written, and not executable yet: no report however long.
	os.Remove(exe)
	os.WriteFile(exe, []byte("#!/bin/sh\n# half"), 0o644)
	h.none(600 * time.Millisecond)
	f, _ := os.OpenFile(exe, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(" and the rest\n")
	f.Close()
	os.Chmod(exe, 0o755)
	start := time.Now()
	h.want(2*time.Second, exe)
	t.Logf("reported %s after the executable was complete", time.Since(start).Round(time.Millisecond))
	if d := time.Since(start); d < 100*time.Millisecond+settleCheck {
		t.Errorf("reported %s after the last change: before the delay and the settle check", d)
	}

	// Empty: waited for too.
	os.WriteFile(exe, nil, 0o755)
	h.none(500 * time.Millisecond)
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	h.want(2*time.Second, exe)
}

// TestSettledSeesAChangeBetweenTwoLooks drives the settle check by hand: a
// size that changes between the two looks (no event needed) restarts it.
func TestSettledSeesAChangeBetweenTwoLooks(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "app")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	w := NewFileWatcher(WatchOptions{Executables: []string{exe}})
	now := time.Now()
	last := now.Add(-time.Second)
	if _, ok := w.settled(exe, now, last); ok {
		t.Fatal("settled on the first look")
	}
	if _, ok := w.settled(exe, now.Add(settleCheck/2), last); ok {
		t.Fatal("settled before settleCheck passed")
	}
	os.WriteFile(exe, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	if _, ok := w.settled(exe, now.Add(settleCheck), last); ok {
		t.Fatal("settled though the size changed between the looks")
	}
	if _, ok := w.settled(exe, now.Add(2*settleCheck), last); !ok {
		t.Fatal("not settled after two equal looks")
	}
	// An event after the first look restarts the check.
	w.settle = map[string]fileState{}
	w.settled(exe, now, last)
	if _, ok := w.settled(exe, now.Add(2*settleCheck), now.Add(settleCheck)); ok {
		t.Fatal("settled on a look taken before the latest event")
	}
}
