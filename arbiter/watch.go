package arbiter

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultIgnore are the --reload-ignore patterns that always apply: git's
// folder, and the files editors write next to the one being edited (vim's
// swap and backup files and its "4913" probe, emacs' autosave files).
var DefaultIgnore = []string{".git/", "*.swp", "*~", "#*#", "4913"}

// settleCheck is the interval between the two looks at a changed
// executable: the same size and mtime on both, and executable, or wait.
const settleCheck = 150 * time.Millisecond

// WatchOptions configure a FileWatcher. Paths are absolute.
type WatchOptions struct {
	// Paths are what to watch: files, folders (recursively, folders
	// created later included) and globs ("*", "?", "[...]" within a path
	// element, "**" for any number of folders).
	Paths []string
	// Executables are files a change to which is reported only once they
	// have settled: present, not empty, executable, with the same size
	// and mtime on two looks settleCheck apart. They are watched too.
	Executables []string
	// Ignore are globs for what folders and globs pick up (a file named
	// in Paths or Executables is always watched). A pattern without a
	// slash matches any path element below the watched folder ("*.swp",
	// "node_modules"); one that ends in a slash, a folder (".git/");
	// any other, the absolute path and everything under it.
	Ignore []string
	// IgnoreFiles are files never reported, with their rotated copies
	// (FILE.1, FILE.2.gz): the logs corral itself writes.
	IgnoreFiles []string
	// Delay is the quiet time after the last event before the changes are
	// reported: a burst of writes gives one reload.
	Delay time.Duration
	// Log gets the watcher's warnings; they are logged from Changes, in
	// the arbiter's loop.
	Log *slog.Logger
}

// FileWatcher is the Watcher for --reload. It watches folders, not files,
// so that a file replaced by a rename (editors, go build) is seen, and a
// folder that is removed and comes back is watched again.
type FileWatcher struct {
	opts  WatchOptions
	roots []*watchRoot
	exes  map[string]bool

	fsw  *fsnotify.Watcher
	wake func()
	done chan struct{}

	// Owned by the event goroutine (and Start, before it runs).
	watched map[string]bool // folders with an inotify watch
	full    bool            // the watch limit was hit; warned once

	mu       sync.Mutex
	pending  map[string]*pendingChange
	last     time.Time // of the last event that counted
	warnings []string

	// Owned by Changes, in the arbiter's loop.
	settle  map[string]fileState
	waiting map[string]string // executable -> why it is waited for, as logged
}

type pendingChange struct {
	created bool // the episode created it: gone again at the end means a temporary file
}

type fileState struct {
	at    time.Time
	size  int64
	mtime time.Time
	ino   uint64
}

// watchRoot is one entry of Paths. A named path counts itself (never
// ignored) and, if it is or becomes a folder, everything below it; while it
// is not a folder, its parent is watched. A glob watches the folder its
// pattern starts from, as deep as the pattern reaches.
type watchRoot struct {
	dir     string // the named path, or the folder a glob starts from
	depth   int    // folder levels below dir to watch: -1 all
	pattern string // a glob: the paths it matches count
}

// NewFileWatcher returns a watcher for opts; Start begins watching.
func NewFileWatcher(opts WatchOptions) *FileWatcher {
	w := &FileWatcher{opts: opts, exes: map[string]bool{}, watched: map[string]bool{},
		pending: map[string]*pendingChange{}, settle: map[string]fileState{}, waiting: map[string]string{}}
	seen := map[string]bool{}
	add := func(p string) {
		p = filepath.Clean(p)
		if !seen[p] {
			seen[p] = true
			w.roots = append(w.roots, newWatchRoot(p))
		}
	}
	for _, p := range opts.Executables {
		w.exes[filepath.Clean(p)] = true
		add(p)
	}
	for _, p := range opts.Paths {
		add(p)
	}
	return w
}

func newWatchRoot(p string) *watchRoot {
	if hasMeta(p) {
		segs := strings.Split(p, "/")
		i := 0
		for i < len(segs) && !hasMeta(segs[i]) {
			i++
		}
		base := strings.Join(segs[:i], "/")
		if base == "" {
			base = "/"
		}
		rest := segs[i:]
		depth := len(rest) - 1
		for _, s := range rest {
			if s == "**" {
				depth = -1
			}
		}
		return &watchRoot{dir: base, depth: depth, pattern: p}
	}
	return &watchRoot{dir: p, depth: -1}
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// ValidGlob checks a watch or ignore pattern's syntax.
func ValidGlob(pattern string) error {
	for _, s := range strings.Split(pattern, "/") {
		if _, err := path.Match(s, ""); err != nil {
			return fmt.Errorf("bad pattern %q: %v", pattern, err)
		}
	}
	return nil
}

// matchGlob reports whether name matches pattern, both split at slashes;
// "**" matches any number of path elements, none included.
func matchGlob(pattern, name string) bool {
	return matchElems(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func matchElems(p, n []string) bool {
	for len(p) > 0 {
		if p[0] == "**" {
			for len(p) > 0 && p[0] == "**" {
				p = p[1:]
			}
			if len(p) == 0 {
				return true
			}
			for i := range len(n) + 1 {
				if matchElems(p, n[i:]) {
					return true
				}
			}
			return false
		}
		if len(n) == 0 {
			return false
		}
		if ok, err := path.Match(p[0], n[0]); err != nil || !ok {
			return false
		}
		p, n = p[1:], n[1:]
	}
	return len(n) == 0
}

// under reports whether p is strictly below dir.
func under(p, dir string) bool {
	if dir == "/" {
		return p != "/" && strings.HasPrefix(p, "/")
	}
	return strings.HasPrefix(p, dir+"/")
}

// level is how many folders below r.dir p is, -1 if it is not below.
func (r *watchRoot) level(p string) int {
	if p == r.dir {
		return 0
	}
	if !under(p, r.dir) {
		return -1
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, r.dir), "/")
	return strings.Count(rel, "/") + 1
}

// counts reports whether a change to p is one r watches for.
func (w *FileWatcher) counts(p string) bool {
	for _, f := range w.opts.IgnoreFiles {
		if p == f || strings.HasPrefix(p, f+".") {
			return false
		}
	}
	for _, r := range w.roots {
		switch {
		case r.pattern != "":
			if matchGlob(r.pattern, p) && !w.ignored(r, p) {
				return true
			}
		default:
			if p == r.dir || under(p, r.dir) && !w.ignored(r, p) {
				return true
			}
		}
	}
	return false
}

// ignored reports whether p, found below r.dir, matches an ignore pattern.
func (w *FileWatcher) ignored(r *watchRoot, p string) bool {
	rel := strings.TrimPrefix(strings.TrimPrefix(p, r.dir), "/")
	elems := strings.Split(rel, "/")
	for _, pat := range w.opts.Ignore {
		name := strings.TrimSuffix(pat, "/")
		if !strings.Contains(name, "/") {
			for _, e := range elems {
				if ok, _ := path.Match(name, e); ok {
					return true
				}
			}
			continue
		}
		for q := p; ; q = filepath.Dir(q) {
			if matchGlob(name, q) {
				return true
			}
			if q == "/" || q == "." {
				break
			}
		}
	}
	return false
}

// Start creates the inotify watches and the goroutine that records events;
// it calls wake when a change is first recorded.
func (w *FileWatcher) Start(wake func()) error {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("--reload: %w", err)
	}
	w.fsw, w.wake, w.done = fsw, wake, make(chan struct{})
	for _, r := range w.roots {
		w.ensure(r, false)
	}
	go w.run()
	return nil
}

// Close stops watching; the goroutine is gone when it returns.
func (w *FileWatcher) Close() error {
	if w.fsw == nil {
		return nil
	}
	err := w.fsw.Close()
	<-w.done
	return err
}

// Watched lists the folders with a watch, sorted.
func (w *FileWatcher) Watched() []string {
	if w.fsw == nil {
		return nil
	}
	out := w.fsw.WatchList()
	sort.Strings(out)
	return out
}

func (w *FileWatcher) run() {
	defer close(w.done)
	events, errs := w.fsw.Events, w.fsw.Errors
	for events != nil || errs != nil {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			w.handle(ev)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: look at everything again, and reload,
				// as something did change.
				w.warn("Reload: the kernel dropped file events (too many at once); reloading to be safe")
				for _, r := range w.roots {
					w.ensure(r, false)
				}
				w.record("(file events lost)", false)
			} else {
				w.warn("Reload: watching files: " + err.Error())
			}
		}
	}
}

func (w *FileWatcher) handle(ev fsnotify.Event) {
	p := filepath.Clean(ev.Name)
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		// A watched folder that goes away takes its watches, and those of
		// the folders below it, with it; watch the nearest folder that is
		// left, to see it come back.
		for d := range w.watched {
			if d == p || under(d, p) {
				w.fsw.Remove(d)
				delete(w.watched, d)
			}
		}
		for _, r := range w.roots {
			if r.dir == p || under(r.dir, p) {
				w.ensure(r, false)
			}
		}
	}
	isDir := false
	if ev.Has(fsnotify.Create) {
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			isDir = true
			for _, r := range w.roots {
				switch lv := r.level(p); {
				case r.dir == p || under(r.dir, p):
					w.ensure(r, true) // a folder on the way to a watched one came (back)
				case lv > 0 && (r.depth < 0 || lv <= r.depth) && !w.ignored(r, p):
					w.addTree(r, p, lv, true)
				}
			}
		}
	}
	if isDir || ev.Op == 0 {
		return // a folder itself is no change; the files in it are
	}
	if ev.Op&^fsnotify.Chmod == 0 {
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			return
		}
	}
	if w.counts(p) {
		w.record(p, ev.Has(fsnotify.Create))
	}
}

// ensure watches r's folder and the folders below it, or, while the
// folder does not exist, the nearest folder above it that does. fresh: the
// folder just came (back), so the files in it count as changes.
func (w *FileWatcher) ensure(r *watchRoot, fresh bool) {
	prev := ""
	for {
		d := nearestDir(r.dir)
		if d == "" {
			return
		}
		if prev != "" && d != prev {
			fresh = true // a folder came while we looked
		}
		if d == r.dir {
			w.addTree(r, d, 0, fresh)
			return
		}
		if d == prev {
			// A named file that came with its folders, before their
			// watches were in place.
			if fi, err := os.Lstat(r.dir); fresh && err == nil && !fi.IsDir() && w.counts(r.dir) {
				w.record(r.dir, true)
			}
			return
		}
		// A folder below d may come between the look and the watch: look
		// again until nothing changes.
		w.addWatch(d)
		prev = d
	}
}

// nearestDir is dir, or the nearest folder above it that exists.
func nearestDir(dir string) string {
	for {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			return ""
		}
		dir = up
	}
}

// addTree watches dir, at level lv below r.dir, and the folders below it
// down to r.depth. For a folder that just appeared, the files already in it
// are changes: they may have been written before its watch was in place.
func (w *FileWatcher) addTree(r *watchRoot, dir string, lv int, fresh bool) {
	if !w.addWatch(dir) && !fresh {
		return
	}
	deeper := r.depth < 0 || lv < r.depth
	if !deeper && !fresh {
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if deeper && !w.ignored(r, p) {
				w.addTree(r, p, lv+1, fresh)
			}
		} else if fresh && w.counts(p) {
			w.record(p, true)
		}
	}
}

// addWatch watches one folder; it reports whether the watch is new.
func (w *FileWatcher) addWatch(dir string) bool {
	if w.watched[dir] {
		return false
	}
	if err := w.fsw.Add(dir); err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR):
			// gone already; its parent's events bring it back
		case errors.Is(err, syscall.ENOSPC):
			if !w.full {
				w.full = true
				w.warn(fmt.Sprintf("Reload: cannot watch %s: the inotify watch limit is reached (sysctl fs.inotify.max_user_watches); changes below it are missed", dir))
			}
		default:
			w.warn(fmt.Sprintf("Reload: cannot watch %s: %v", dir, err))
		}
		return false
	}
	w.watched[dir] = true
	return true
}

func (w *FileWatcher) warn(msg string) {
	w.mu.Lock()
	if len(w.warnings) < 20 {
		w.warnings = append(w.warnings, msg)
	}
	w.mu.Unlock()
	if w.wake != nil {
		w.wake()
	}
}

// record notes a change; the first of a quiet period wakes the loop.
func (w *FileWatcher) record(p string, created bool) {
	w.mu.Lock()
	first := len(w.pending) == 0
	c := w.pending[p]
	if c == nil {
		c = &pendingChange{}
		w.pending[p] = c
	}
	c.created = c.created || created
	w.last = time.Now()
	w.mu.Unlock()
	if first && w.wake != nil {
		w.wake()
	}
}

// Changes returns the files changed since the last report once no event
// came for Delay and every changed executable has settled; until then it
// returns nil and when to ask again. Files created and gone again within
// the period (an editor's temporary file) are left out.
func (w *FileWatcher) Changes() ([]string, time.Time) {
	now := time.Now()
	w.mu.Lock()
	warnings := w.warnings
	w.warnings = nil
	var quiet, last time.Time
	var names []string
	if len(w.pending) > 0 {
		last = w.last
		quiet = last.Add(w.opts.Delay)
		for p := range w.pending {
			names = append(names, p)
		}
	}
	w.mu.Unlock()
	for _, m := range warnings {
		w.logWarn(m)
	}
	if len(names) == 0 {
		return nil, time.Time{}
	}
	if now.Before(quiet) {
		return nil, quiet
	}
	for _, p := range names {
		if !w.exes[p] {
			continue
		}
		if next, ok := w.settled(p, now, last); !ok {
			return nil, next
		}
	}
	w.mu.Lock()
	if w.last.Add(w.opts.Delay).After(now) { // more came meanwhile
		next := w.last.Add(w.opts.Delay)
		w.mu.Unlock()
		return nil, next
	}
	pending := w.pending
	w.pending = map[string]*pendingChange{}
	w.mu.Unlock()
	clear(w.settle)
	clear(w.waiting)
	var files []string
	for p, c := range pending {
		if c.created {
			if _, err := os.Lstat(p); err != nil {
				continue // came and went: a temporary file
			}
		}
		files = append(files, p)
	}
	sort.Strings(files)
	return files, time.Time{}
}

// settled reports whether the executable p can be started: present, not
// empty, executable, and unchanged between two looks settleCheck apart,
// both after the last event.
func (w *FileWatcher) settled(p string, now, last time.Time) (time.Time, bool) {
	var why string
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		why = "it is missing"
	case !fi.Mode().IsRegular():
		why = "it is not a regular file"
	case fi.Size() == 0:
		why = "it is empty"
	case fi.Mode().Perm()&0o111 == 0:
		why = "it is not executable"
	}
	next := now.Add(settleCheck)
	if why != "" {
		delete(w.settle, p)
		if w.waiting[p] != why {
			w.waiting[p] = why
			w.logWarn(fmt.Sprintf("Reload: waiting for %s: %s", p, why))
		}
		return next, false
	}
	st := fileState{at: now, size: fi.Size(), mtime: fi.ModTime()}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = s.Ino
	}
	prev, ok := w.settle[p]
	if ok && prev.at.Before(last) {
		ok = false // taken before the latest events
	}
	if ok && now.Sub(prev.at) < settleCheck {
		return prev.at.Add(settleCheck), false
	}
	if !ok || prev.size != st.size || !prev.mtime.Equal(st.mtime) || prev.ino != st.ino {
		w.settle[p] = st
		return next, false
	}
	return time.Time{}, true
}

func (w *FileWatcher) logWarn(msg string) {
	if w.opts.Log != nil {
		w.opts.Log.Warn(msg)
	}
}

var _ Watcher = (*FileWatcher)(nil)

// Options returns the options the watcher was made with.
func (w *FileWatcher) Options() WatchOptions { return w.opts }
