package cmd

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-server/corral/arbiter"
)

func TestReloadFlags(t *testing.T) {
	p := testProgram()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--reload", "--reload-delay", "-1"}, "--reload-delay must be a number of seconds from 0 up, got -1"},
		{[]string{"--reload", "--reload-delay", "61"}, "--reload-delay must be 60 seconds at most, got 61"},
		{[]string{"--reload-ignore", "[x"}, `--reload-ignore: bad pattern "[x"`},
		{[]string{"--reload-extra-file", " "}, "--reload-extra-file: empty path"},
	} {
		_, err := p.load(append([]string{"corral"}, c.args...), io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line starting %q", c.args, err, c.want)
		}
	}

	// Without --reload there is no watcher at all.
	s, err := p.load([]string{"corral", "--reload-extra-file", "x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if w := reloadWatcher(s); w != nil {
		t.Fatalf("a watcher without --reload: %#v", w)
	}

	dir := t.TempDir()
	conf := filepath.Join(dir, "corral.toml")
	os.WriteFile(conf, []byte("reload-extra-file = [\"templates\", \"static/**/*.css\"]\nreload-delay = 0.5\n"), 0o644)
	t.Chdir(dir)
	p = testProgram() // relative paths are from where it starts
	os.Mkdir(filepath.Join(dir, "logs"), 0o755)
	os.Mkdir(filepath.Join(dir, "run"), 0o755)
	t.Setenv("CORRAL_RELOAD", "true")
	s, err = p.load([]string{"corral", "-c", "corral.toml", "--reload-ignore", "build/out/", "--reload-ignore", "*.tmp",
		"--access-logfile", "logs/access.log", "--pid", "run/corral.pid"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	w, ok := reloadWatcher(s).(*arbiter.FileWatcher)
	if !ok {
		t.Fatalf("CORRAL_RELOAD=true gave no FileWatcher")
	}
	o := w.Options()
	if o.Delay != 500*time.Millisecond {
		t.Errorf("delay %s, want the file's 0.5 s", o.Delay)
	}
	wantPaths := []string{conf, filepath.Join(dir, "templates"), filepath.Join(dir, "static/**/*.css")}
	if !slices.Equal(o.Paths, wantPaths) {
		t.Errorf("paths %q, want %q", o.Paths, wantPaths)
	}
	if len(o.Executables) == 0 || o.Executables[0] != s.arbiter.Executable {
		t.Errorf("executables %q, want the worker binary %q first", o.Executables, s.arbiter.Executable)
	}
	wantIgnore := append(slices.Clone(arbiter.DefaultIgnore), filepath.Join(dir, "build/out"), "*.tmp")
	if !slices.Equal(o.Ignore, wantIgnore) {
		t.Errorf("ignore %q, want %q", o.Ignore, wantIgnore)
	}
	wantFiles := []string{filepath.Join(dir, "logs/access.log"), filepath.Join(dir, "run/corral.pid")}
	if !slices.Equal(o.IgnoreFiles, wantFiles) {
		t.Errorf("ignored files %q, want %q", o.IgnoreFiles, wantFiles)
	}
	// The watcher's warnings go to the latest configuration's log.
	if o.Log == nil || !o.Log.Enabled(t.Context(), 8) {
		t.Errorf("no logger for the watcher's warnings")
	}
}
