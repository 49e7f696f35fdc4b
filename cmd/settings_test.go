package cmd

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every problem in a command line is reported, a line each, in the order
// checked: the app, the core flags, then each flag group.
func TestSettingsReportsEveryProblem(t *testing.T) {
	p := testProgram()
	p.AppNames = []string{"demo"}
	_, err := p.load([]string{"corral", "-w", "0", "-t", "-1", "--env", "X", "--threads", "0", "--protocol", "scgi",
		"--reload-delay", "99", "nosuchapp"}, io.Discard)
	want := []string{
		`unknown app "nosuchapp" (known: demo)`,
		"--workers must be 1 or more, got 0",
		"--timeout must be a number of seconds from 0 up, got -1",
		`--env wants KEY=VALUE, got "X"`,
		"--threads must be from 1 to 256, got 0",
		`--protocol must be one of http, uwsgi, fastcgi, got "scgi"`,
		"--reload-delay must be 60 seconds at most, got 99",
	}
	if got := errorLines(err); !slices.Equal(got, want) {
		t.Errorf("problems:\n%q\nwant\n%q", got, want)
	}
	if err == nil || err.Error() != strings.Join(want, "; ") {
		t.Errorf("one-line form (a failed reload's log): %v", err)
	}

	// One problem reads as before: one line, no separator.
	_, err = p.load([]string{"corral", "-w", "0"}, io.Discard)
	if got := errorLines(err); !slices.Equal(got, []string{"--workers must be 1 or more, got 0"}) {
		t.Errorf("one problem: %q", got)
	}
}

// A command line with problems opens no log file; a good one opens it
// once checking is done, and --print-config never does.
func TestErrorLogOpensAfterChecking(t *testing.T) {
	p := testProgram()
	log := filepath.Join(t.TempDir(), "error.log")
	if _, err := p.load([]string{"corral", "--error-logfile", log, "-w", "0"}, io.Discard); err == nil {
		t.Fatal("-w 0 accepted")
	}
	if _, err := os.Stat(log); !os.IsNotExist(err) {
		t.Errorf("a bad command line created the error log: %v", err)
	}
	if _, err := p.load([]string{"corral", "--error-logfile", log, "--print-config"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(log); !os.IsNotExist(err) {
		t.Errorf("--print-config created the error log: %v", err)
	}
	s, err := p.load([]string{"corral", "--error-logfile", log}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.arbiter.ErrorLog == nil || s.arbiter.ErrorLog.Path() != log || s.arbiter.Log == nil {
		t.Errorf("error log %v, logger %v", s.arbiter.ErrorLog, s.arbiter.Log)
	}
	if _, err := os.Stat(log); err != nil {
		t.Errorf("the error log was not opened: %v", err)
	}
}
