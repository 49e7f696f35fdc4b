package cmd

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// What start-up would trip on is a bad configuration, a line naming the
// path: the chdir, and the folders of the pid file and the logs.
func TestPreflight(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	readOnly := filepath.Join(dir, "ro")
	os.Mkdir(readOnly, 0o555)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--chdir", "/missing"}, "--chdir /missing: does not exist"},
		{[]string{"--chdir", file}, "--chdir " + file + ": not a folder"},
		{[]string{"-p", "/missing/dir/x.pid"}, "--pid /missing/dir/x.pid: folder /missing/dir: does not exist"},
		{[]string{"--access-logfile", "/missing/x.log"}, "--access-logfile /missing/x.log: folder /missing: does not exist"},
		{[]string{"--error-logfile", file + "/x.log"}, "--error-logfile " + file + "/x.log: " + file + " is not a folder"},
		{[]string{"--access-logfile", dir}, "--access-logfile " + dir + ": is a folder"},
		{[]string{"--chdir", dir, "-p", "nodir/x.pid"}, "--pid nodir/x.pid: folder " + dir + "/nodir: does not exist"},
	} {
		_, err := testProgram().load(append([]string{"corral"}, c.args...), io.Discard)
		if got := errorLines(err); !slices.Equal(got, []string{c.want}) {
			t.Errorf("%q: %q, want %q", c.args, got, c.want)
		}
	}
	if os.Geteuid() != 0 { // root writes anywhere
		_, err := testProgram().load([]string{"corral", "-p", readOnly + "/x.pid"}, io.Discard)
		if got := errorLines(err); !slices.Equal(got, []string{"--pid " + readOnly + "/x.pid: folder " + readOnly + " is not writable"}) {
			t.Errorf("read-only folder: %q", got)
		}
	}
	// A bad --chdir is reported once, not again for each path under it.
	_, err := testProgram().load([]string{"corral", "--chdir", "/missing", "-p", "x.pid", "--access-logfile", "a.log"}, io.Discard)
	if got := errorLines(err); len(got) != 1 {
		t.Errorf("bad --chdir with relative paths: %q", got)
	}
	// Good paths pass, relative ones from --chdir.
	os.Mkdir(filepath.Join(dir, "logs"), 0o755)
	if _, err := testProgram().load([]string{"corral", "--chdir", dir, "-p", "x.pid", "--access-logfile", "logs/a.log",
		"--error-logfile", filepath.Join(dir, "e.log")}, io.Discard); err != nil {
		t.Errorf("good paths: %v", err)
	}
}
