package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadInputExitsTwoWithOneLine(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string { return writeFile(t, dir, name, content) }
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"-w", "abc", "demo"}, `--workers must be a number or auto, got "abc"`},
		{[]string{"--bogus", "demo"}, "flag provided but not defined: -bogus"},
		{[]string{"-w", "0", "demo"}, "--workers must be 1 or more, got 0"},
		{[]string{"-k", "fibers", "demo"}, `--worker-class: unknown worker type "fibers"`},
		{[]string{"-b", "unix:", "demo"}, "empty unix socket path"},
		{[]string{"-b", "127.0.0.1:99999", "demo"}, "port must be a number from 0 to 65535"},
		{[]string{"-b", "127.0.0.1:18431", "-b", "tcp://127.0.0.1:18431", "demo"}, "--bind 127.0.0.1:18431 given twice"},
		{[]string{"-b", "unix:" + filepath.Join(dir, "x.sock"), "-b", "unix:" + dir + "/./x.sock", "demo"}, "--bind unix:" + filepath.Join(dir, "x.sock") + " given twice"},
		{[]string{"--log-level", "loud", "demo"}, `unknown log level "loud"`},
		{[]string{"-t", "-1", "demo"}, "--timeout must be a number of seconds from 0 up"},
		{[]string{"--umask", "999", "demo"}, "--umask must be an octal mask"},
		{[]string{"--access-logformat", "%(zz)s", "demo"}, "unknown atom %(zz)s"},
		{[]string{"-e", "NOEQUALS", "demo"}, `--env wants KEY=VALUE, got "NOEQUALS"`},
		{[]string{"nosuchapp"}, `unknown app "nosuchapp"`},
		{[]string{}, "no app named"},
		{[]string{"-c", filepath.Join(dir, "missing.toml"), "demo"}, "missing.toml: no such file"},
		{[]string{"-c", file("syntax.toml", "workers = = 2\n"), "demo"}, "syntax.toml: line 1:"},
		{[]string{"-c", file("unknown.toml", "wrokers = 2\n"), "demo"}, `unknown.toml: unknown setting "wrokers"`},
		{[]string{"-c", file("type.toml", "workers = \"four\"\n"), "demo"}, `type.toml: workers: want a whole number, "auto" or "MIN:MAX", got the string "four"`},
		{[]string{"-c", file("bind.toml", "bind = [1]\n"), "demo"}, "bind.toml: bind: item 1: want a string"},
		{[]string{"-c", file("zero.toml", "workers = 0\n"), "demo"}, "--workers must be 1 or more"},
	}
	for _, c := range cases {
		code, stdout, stderr := run(t, nil, c.args...)
		lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "corral: error: ") || !strings.Contains(lines[0], c.want) {
			t.Errorf("corral %q: exit %d, stderr %q; want exit 2 and one line with %q", c.args, code, stderr, c.want)
		}
		if stdout != "" {
			t.Errorf("corral %q: printed on stdout: %q", c.args, stdout)
		}
	}
}

// Several bad inputs at once: each gets its line, in the order corral
// checks them (the app, the core flags, the other groups), and nothing runs.
func TestCLIReportsEveryBadInput(t *testing.T) {
	log := filepath.Join(t.TempDir(), "error.log")
	code, stdout, stderr := run(t, nil, "-w", "0", "--log-level", "loud", "-e", "NOEQUALS", "--threads", "0",
		"--error-logfile", log, "nosuchapp")
	want := []string{
		`unknown app "nosuchapp" (known: demo)`,
		"--workers must be 1 or more, got 0",
		`unknown log level "loud"`,
		`--env wants KEY=VALUE, got "NOEQUALS"`,
		"--threads must be from 1 to 256, got 0",
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if code != 2 || len(lines) != len(want) || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 and %d lines", code, stdout, stderr, len(want))
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, "corral: error: ") || !strings.Contains(l, want[i]) {
			t.Errorf("line %d: %q, want %q", i+1, l, "corral: error: "+want[i])
		}
	}
	if _, err := os.Stat(log); !os.IsNotExist(err) {
		t.Errorf("a bad command line created the error log: %v", err)
	}
}

func TestAddressInUseIsOneLine(t *testing.T) {
	s := start(t, corralBin, []string{"-b", "127.0.0.1:0", "demo"})
	code, _, stderr := run(t, nil, "-b", s.Addr, "demo")
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "corral: error: bind "+s.Addr+": address already in use") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestConfigPrecedence(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(conf, []byte("workers = 3\nworker_class = \"goroutine\"\nkeep-alive = 2.5\nbind = \"127.0.0.1:9\"\numask = 0o022\n"), 0o644)
	value := configValue
	_, out, _ := run(t, nil, "-c", conf, "--print-config", "demo")
	if value(out, "workers") != "3" || value(out, "keep-alive") != "2.5" || value(out, "bind") != `["127.0.0.1:9"]` || value(out, "umask") != `"0o22"` {
		t.Errorf("file values not applied:\n%s", out)
	}
	_, out, _ = run(t, []string{"CORRAL_WORKERS=2"}, "-c", conf, "--print-config", "demo")
	if value(out, "workers") != "2" {
		t.Errorf("env does not override the file: workers = %s", value(out, "workers"))
	}
	_, out, _ = run(t, []string{"CORRAL_WORKERS=2"}, "-c", conf, "-w", "4", "--print-config", "demo")
	if value(out, "workers") != "4" {
		t.Errorf("flag does not override env: workers = %s", value(out, "workers"))
	}
	// Gunicorn's defaults from the environment.
	_, out, _ = run(t, []string{"WEB_CONCURRENCY=5", "PORT=9999"}, "--print-config", "demo")
	if value(out, "workers") != "5" || value(out, "bind") != `["0.0.0.0:9999"]` {
		t.Errorf("WEB_CONCURRENCY/PORT defaults: workers %s bind %s", value(out, "workers"), value(out, "bind"))
	}
	_, out, _ = run(t, []string{"WEB_CONCURRENCY=", "PORT="}, "--print-config", "demo")
	if value(out, "workers") != "1" || value(out, "bind") != `["127.0.0.1:8000"]` {
		t.Errorf("defaults: workers %s bind %s", value(out, "workers"), value(out, "bind"))
	}
}

func TestCheckConfigAndHelp(t *testing.T) {
	if code, out, errOut := run(t, nil, "--check-config", "demo"); code != 0 || out != "" || errOut != "" {
		t.Errorf("--check-config: exit %d, %q %q", code, out, errOut)
	}
	code, out, _ := run(t, nil, "--help")
	if code != 0 {
		t.Errorf("--help exit %d", code)
	}
	for _, flag := range []string{"--workers", "--bind", "--worker-class", "--timeout", "--graceful-timeout", "--keep-alive",
		"--max-requests", "--max-requests-jitter", "--backlog", "--worker-connections", "--pid", "--access-logfile",
		"--error-logfile", "--log-level", "--access-logformat", "--config", "--check-config", "--print-config",
		"--env", "--chdir", "--umask", "--name", "--reuse-port", "--boot-timeout", "CORRAL_WORKERS", "WEB_CONCURRENCY",
		"not a slow request"} {
		if !strings.Contains(out, flag) {
			t.Errorf("--help does not mention %s", flag)
		}
	}
}
