package cmd

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

// --help groups the flags as Gunicorn's docs, fits in 100 columns, and
// says each default once.
func TestHelp(t *testing.T) {
	var out bytes.Buffer
	p := testProgram()
	p.Usage = "a prefork server"
	if s, err := p.load([]string{"corral", "--help"}, &out); err != nil || s != nil {
		t.Fatalf("--help: %v %v", s, err)
	}
	help := out.String()
	last := -1
	for _, g := range []string{"\nConfig File:\n", "\nServer Socket:\n", "\nWorker Processes:\n", "\nSecurity:\n", "\nLogging:\n",
		"\nProcess Naming:\n", "\nServer Mechanics:\n", "\nDebugging:\n"} {
		i := strings.Index(help, g)
		if i < last {
			t.Errorf("group %q missing or out of order", strings.TrimSpace(g))
		}
		last = i
	}
	for i, line := range strings.Split(help, "\n") {
		if len(line) > 100 {
			t.Errorf("line %d is %d columns: %q", i+1, len(line), line)
		}
	}
	// Each flag's entry (its lines up to the next) says its default once.
	for _, entry := range strings.Split(help, "\n  -") {
		if n := strings.Count(entry, "(default"); n > 1 {
			t.Errorf("%d defaults in %q", n, entry)
		}
	}
	for _, want := range []string{"-w, --workers N|auto", "(default: $WEB_CONCURRENCY, else 1)", "--backlog N", "2048)",
		"-n, --name VALUE", "CORRAL_<NAME>", "--limit-request-line N"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help has no %q", want)
		}
	}
	if strings.Contains(help, "(default: false)") || strings.Contains(help, `(default: "`) {
		t.Errorf("--help says a false or quoted default")
	}
}

func TestVersion(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/corral-server/corral", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}
	if got := versionOf("dev", bi); got != "v1.2.3, revision abc123 (modified)" {
		t.Errorf("dev build: %q", got)
	}
	if got := versionOf("1.0", bi); got != "1.0, revision abc123 (modified)" {
		t.Errorf("-X main.version=1.0: %q", got)
	}
	app := &debug.BuildInfo{Main: debug.Module{Path: "example.com/app", Version: "(devel)"},
		Deps: []*debug.Module{{Path: "github.com/corral-server/corral", Version: "v0.4.0"}}}
	if got := versionOf("", app); got != "(devel), corral v0.4.0" {
		t.Errorf("a program importing corral: %q", got)
	}
	if got := versionOf("", nil); got != "dev" {
		t.Errorf("no build info: %q", got)
	}
}
