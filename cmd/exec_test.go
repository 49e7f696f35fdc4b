package cmd

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSplitCommand(t *testing.T) {
	own, cmd := splitCommand([]string{"corral", "-w", "2", "--", "python3", "app.py", "--", "-x"})
	if !reflect.DeepEqual(own, []string{"corral", "-w", "2"}) || !reflect.DeepEqual(cmd, []string{"python3", "app.py", "--", "-x"}) {
		t.Errorf("got %q %q", own, cmd)
	}
	if own, cmd := splitCommand([]string{"corral", "demo"}); cmd != nil || len(own) != 2 {
		t.Errorf("no --: got %q %q", own, cmd)
	}
	if _, cmd := splitCommand([]string{"corral", "--"}); cmd == nil || len(cmd) != 0 {
		t.Errorf("empty command: got %q, want non-nil empty", cmd)
	}
}

func TestParseReady(t *testing.T) {
	for in, want := range map[string]time.Duration{"notify": 0, "delay:500ms": 500 * time.Millisecond, "delay:2": 2 * time.Second} {
		if got, err := parseReady(in); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "delay", "delay:", "delay:0", "delay:-1s", "soon"} {
		if _, err := parseReady(in); err == nil || !strings.Contains(err.Error(), "--ready") {
			t.Errorf("%q: want an error naming --ready, got %v", in, err)
		}
	}
}

func TestLookCommand(t *testing.T) {
	if p, err := lookCommand("sh", ""); err != nil || !strings.HasPrefix(p, "/") {
		t.Errorf("sh: %q %v", p, err)
	}
	if _, err := lookCommand("no-such-command-corral", ""); err == nil || !strings.Contains(err.Error(), `command "no-such-command-corral"`) {
		t.Errorf("missing command: %v", err)
	}
	if p, err := lookCommand("bin/sh", "/"); err != nil || p != "/bin/sh" {
		t.Errorf("relative to --chdir: %q %v", p, err)
	}
}

// In exec mode, a flag the command's worker would never see is refused or
// warned about, a line each.
func TestExecFlagRules(t *testing.T) {
	p := testProgram()
	_, err := p.load([]string{"corral", "-k", "sync", "--max-requests", "5", "--access-logfile", "-", "--", "sh"}, io.Discard)
	want := []string{
		"--worker-class does not apply to a COMMAND worker: the program is the worker; drop -k",
		"--max-requests does not apply to a COMMAND worker: corral does not see the program's requests; have it exit after N (an exited worker is replaced)",
		"--access-logfile does not apply to a COMMAND worker: the program writes its own access log (its output goes to the error log: --capture-output)",
	}
	if got := errorLines(err); !slices.Equal(got, want) {
		t.Errorf("refusals:\n%q\nwant\n%q", got, want)
	}
	t.Setenv("CORRAL_WORKER_CONNECTIONS", "5")
	s, err := p.load([]string{"corral", "--keep-alive", "3", "--", "sh"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{
		"--keep-alive does not apply to a COMMAND worker, ignored: the program keeps its own connections",
		"--worker-connections does not apply to a COMMAND worker, ignored: the program limits its own connections",
	}
	if !slices.Equal(s.warnings, want) {
		t.Errorf("warnings:\n%q\nwant\n%q", s.warnings, want)
	}
	// The README's exec table lists every rule as it is.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range execFlagRules {
		what := "warned, ignored"
		if r.refuse {
			what = "refused"
		}
		if row := fmt.Sprintf("| `--%s` | %s | %s |", r.flag, what, r.why); !strings.Contains(string(readme), row) {
			t.Errorf("README.md has no row %s", row)
		}
	}
}
