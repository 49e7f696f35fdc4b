package cmd

import (
	"reflect"
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
