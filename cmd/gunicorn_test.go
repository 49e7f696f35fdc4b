package cmd

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The table holds every setting of the installed Gunicorn (Debian's
// package), with its section and flags, and nothing else; each has a
// corral flag or an answer; a Gunicorn flag that corral has too means the
// same setting.
func TestGunicornTable(t *testing.T) {
	if _, err := os.Stat("/usr/lib/python3/dist-packages/gunicorn/config.py"); err != nil {
		t.Skip("Gunicorn is not installed (apt-get install gunicorn)")
	}
	out, err := exec.Command("/usr/bin/python3", "-c", `
import json, gunicorn.config as c
print(json.dumps([{"name": s.name, "section": s.section, "cli": s.cli or []} for s in c.KNOWN_SETTINGS]))`).Output()
	if err != nil {
		t.Fatalf("read Gunicorn's settings: %v", err)
	}
	var theirs []struct {
		Name, Section string
		CLI           []string
	}
	if err := json.Unmarshal(out, &theirs); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range theirs {
		seen[s.Name] = true
		g, ok := gunicornByName(s.Name)
		if !ok {
			t.Errorf("Gunicorn's %s (%s) is not in gunicornSettings", s.Name, s.Section)
			continue
		}
		if g.section != s.Section || !slices.Equal(g.cli, s.CLI) {
			t.Errorf("%s: section %q flags %q, Gunicorn says %q %q", s.Name, g.section, g.cli, s.Section, s.CLI)
		}
	}
	for _, g := range gunicornSettings {
		if !seen[g.name] {
			t.Errorf("%s is not a Gunicorn setting", g.name)
		}
		if g.flag == "" && g.answer == "" {
			t.Errorf("%s: neither a flag nor an answer", g.name)
		}
		if g.flag != "" && flagNamed(g.flag) == nil {
			t.Errorf("%s: no flag --%s", g.name, g.flag)
		}
		for _, f := range g.cli {
			if c := flagNamed(strings.TrimLeft(f, "-")); c != nil && c.Names()[0] != g.flag {
				t.Errorf("Gunicorn's %s is %s, corral's %s is --%s", f, g.name, f, c.Names()[0])
			}
		}
	}
}

// Every flag has its CORRAL_ variable.
func TestEveryFlagHasAnEnvironmentVariable(t *testing.T) {
	for _, f := range append(fileFlags(), cliFlags()...) {
		env := f.(interface{ GetEnvVars() []string }).GetEnvVars()
		if want := envName(f.Names()[0]); !slices.Contains(env, want) {
			t.Errorf("--%s: variables %q, want %s", f.Names()[0], env, want)
		}
	}
	t.Setenv("CORRAL_PRINT_CONFIG", "true")
	t.Setenv("CORRAL_CHECK_CONFIG", "1")
	s, err := testProgram().load([]string{"corral"}, io.Discard)
	if err != nil || !s.printConfig || !s.checkConfig {
		t.Errorf("CORRAL_PRINT_CONFIG, CORRAL_CHECK_CONFIG: %+v %v", s, err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Gunicorn's names in a TOML file mean the same; short names, unknown
// names and two spellings of one setting are errors, a line each.
func TestConfigFileGunicornNames(t *testing.T) {
	p := testProgram()
	dir := t.TempDir()
	path := writeFile(t, "c.toml", `keepalive = 7
accesslog = "`+dir+`/access.log"
errorlog = "-"
loglevel = "warning"
pidfile = "`+dir+`/x.pid"
proc_name = "shop"
raw_env = ["A=1,2", "B=3"]
access_log_format = "%(h)s %(s)s"
proxy_allow_ips = "10.0.0.1,10.0.0.2"
reload_extra_files = ["a.txt"]
proxy_protocol = true
umask = 0o027
preload_app = true
daemon = false
`)
	s, err := p.load([]string{"corral", "-c", path, "--print-config"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	w := s.arbiter.Worker
	checks := map[string]bool{
		"keepalive":          w.KeepAlive.Seconds() == 7,
		"accesslog":          w.AccessLog == dir+"/access.log",
		"loglevel":           w.LogLevel == "warning",
		"pidfile":            s.arbiter.PidFile == dir+"/x.pid",
		"proc_name":          s.arbiter.Name == "shop",
		"raw_env":            slices.Equal(s.arbiter.Env, []string{"A=1,2", "B=3"}),
		"access_log_format":  w.AccessLogFormat == "%(h)s %(s)s",
		"proxy_allow_ips":    slices.Equal(w.ProxyAllowFrom, []string{"10.0.0.1", "10.0.0.2"}),
		"reload_extra_files": s.values["reload-extra-file"] == `["a.txt"]`,
		"proxy_protocol":     w.ProxyProtocol == "auto",
		"umask":              s.umask == 0o027,
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("%s not applied: %+v", name, s.values)
		}
	}
	if want := []string{"config file " + path + ": preload_app is not applied: " + mustAnswer("preload_app")}; !slices.Equal(s.warnings, want) {
		t.Errorf("warnings %q, want %q (daemon = false is Gunicorn's default: no warning)", s.warnings, want)
	}

	// Gunicorn's user and group may be numbers; umask is octal.
	if v, _ := convertValue(int64(1000), fileKey{flag: "user", kind: "string"}); v != "1000" {
		t.Errorf("user = 1000 read as %v", v)
	}

	bad := writeFile(t, "bad.toml", "w = 7\nworker_class = \"sync\"\nworker-class = \"sync\"\nkeepalive = 1\nkeep_alive = 2\ndaemon = true\nwrokers = 1\n")
	_, err = p.load([]string{"corral", "-c", bad}, io.Discard)
	want := []string{
		"config file " + bad + ": daemon is not supported: " + mustAnswer("daemon"),
		"config file " + bad + ": keep_alive and keepalive both set --keep-alive; keep one",
		"config file " + bad + `: unknown setting "w" (a short flag is no key: use the long name "workers")`,
		"config file " + bad + ": worker-class and worker_class both set --worker-class; keep one",
		"config file " + bad + `: unknown setting "wrokers"`,
	}
	if got := errorLines(err); !slices.Equal(got, want) {
		t.Errorf("problems:\n%q\nwant\n%q", got, want)
	}
}

func mustAnswer(name string) string {
	g, _ := gunicornByName(name)
	return g.answer
}

// A gunicorn.conf.py is executed by python3; its plain values are
// settings, its hooks one warning, its other names ignored.
func TestPythonConfigFile(t *testing.T) {
	if _, err := findPython(); err != nil {
		t.Skip(err)
	}
	p := testProgram()
	path := writeFile(t, "gunicorn.conf.py", `import multiprocessing, os
bind = ["127.0.0.1:8001", "unix:/tmp/x.sock"]
workers = 2 * 2
timeout = 12.5
raw_env = ["HOSTS=a.com,b.com"]
print("printed, not parsed")
helper = os.path.join("a", "b")
forwarded_allow_ips = "*"
umask = 0o007
reuse_port = True
worker_tmp_dir = "/dev/shm"
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
keyfile = None
env = os.environ.get("APP_ENV", "prod")  # a helper: Gunicorn's name is raw_env
name = "helper"
boot_timeout = 7
def on_starting(server):
    pass
def when_ready(server):
    pass
def helper_fn():
    pass
`)
	s, err := p.load([]string{"corral", "-c", path, "--print-config"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.arbiter.Binds, []string{"127.0.0.1:8001", "unix:/tmp/x.sock"}) || s.arbiter.Workers != 4 ||
		s.arbiter.Worker.Timeout.Seconds() != 12.5 || !slices.Equal(s.arbiter.Env, []string{"HOSTS=a.com,b.com"}) ||
		!slices.Equal(s.arbiter.Worker.ForwardedAllowIPs, []string{"*"}) || s.umask != 0o007 || !s.arbiter.Socket.ReusePort ||
		s.arbiter.Name != "" || s.arbiter.BootTimeout.Seconds() != 7 {
		t.Errorf("values: %q", s.values)
	}
	want := []string{
		"config file " + path + ": secure_scheme_headers is not applied: " + mustAnswer("secure_scheme_headers"),
		"config file " + path + ": worker_tmp_dir is not applied: " + mustAnswer("worker_tmp_dir"),
		"config file " + path + ": server hooks are not applied: on_starting, when_ready (corral's hooks are Go functions: corral.Server's Hooks; see docs/migrating-from-gunicorn.md)",
	}
	if !slices.Equal(s.warnings, want) {
		t.Errorf("warnings:\n%q\nwant\n%q", s.warnings, want)
	}

	for content, want := range map[string]string{
		"workers = \n":             ": line 1: SyntaxError: invalid syntax",
		"x = 1\nworkers = nope\n":  ": line 2: NameError: name 'nope' is not defined",
		"workers = 'four'\n":       `: workers: want a whole number or "auto", got the string "four"`,
		"import no_such_module_\n": ": line 1: ModuleNotFoundError: No module named 'no_such_module_'",
	} {
		bad := writeFile(t, "bad.py", content)
		_, err := p.load([]string{"corral", "-c", bad}, io.Discard)
		if got := errorLines(err); len(got) != 1 || got[0] != "config file "+bad+want {
			t.Errorf("%q: %q, want one line ending %q", content, got, want)
		}
	}

	t.Setenv(pythonEnv, "/no/python3")
	_, err = p.load([]string{"corral", "-c", path}, io.Discard)
	if got := errorLines(err); len(got) != 1 || got[0] != "config file "+path+": a .py file needs Python: "+pythonEnv+"=/no/python3: no such file" {
		t.Errorf("no Python: %q", got)
	}
}

// python3: $CORRAL_PYTHON, else Debian's, else the one in PATH, else none.
func TestFindPython(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "python3")
	os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755)
	old := debianPython
	t.Cleanup(func() { debianPython = old })
	debianPython = filepath.Join(dir, "missing")
	t.Setenv("PATH", dir)
	if p, err := findPython(); err != nil || p != fake {
		t.Errorf("from PATH: %q %v", p, err)
	}
	debianPython = fake
	t.Setenv("PATH", "")
	if p, err := findPython(); err != nil || p != fake {
		t.Errorf("Debian's: %q %v", p, err)
	}
	debianPython = filepath.Join(dir, "missing")
	if _, err := findPython(); err == nil || !strings.HasPrefix(err.Error(), "no python3") {
		t.Errorf("none: %v", err)
	}
	path := writeFile(t, "gunicorn.conf.py", "workers = 2\n")
	_, err := testProgram().load([]string{"corral", "-c", path}, io.Discard)
	if got := errorLines(err); len(got) != 1 || !strings.HasPrefix(got[0], "config file "+path+": a .py file needs Python: no python3") {
		t.Errorf("no Python: %q", got)
	}
}

// -e and the other repeatable flags take one value each: commas are data.
// The allow lists are Gunicorn's comma lists.
func TestRepeatableFlagsKeepCommas(t *testing.T) {
	t.Setenv("CORRAL_RELOAD_EXTRA_FILE", "a,b.txt")
	s, err := testProgram().load([]string{"corral", "-e", "A=a,B=c", "-e", "HOSTS=a.com,b.com", "--forwarded-allow-ips", "10.0.0.1,10.0.0.2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.arbiter.Env, []string{"A=a,B=c", "HOSTS=a.com,b.com"}) {
		t.Errorf("env %q", s.arbiter.Env)
	}
	if got := s.values["reload-extra-file"]; got != `["a,b.txt"]` {
		t.Errorf("CORRAL_RELOAD_EXTRA_FILE=a,b.txt gave %s", got)
	}
	if !slices.Equal(s.arbiter.Worker.ForwardedAllowIPs, []string{"10.0.0.1", "10.0.0.2"}) {
		t.Errorf("forwarded-allow-ips %q", s.arbiter.Worker.ForwardedAllowIPs)
	}
}

// Flags may follow the app, as Gunicorn takes them.
func TestFlagsAfterApp(t *testing.T) {
	got := flagsFirst([]string{"corral", "demo", "-w", "2", "--reload", "-t", "-1", "--name=x", "-"}, append(fileFlags(), cliFlags()...))
	if want := []string{"corral", "-w", "2", "--reload", "-t", "-1", "--name=x", "demo", "-"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	s, err := testProgram().load([]string{"corral", "demo", "-w", "2", "--max-requests", "9"}, io.Discard)
	if err != nil || s.arbiter.Workers != 2 || s.arbiter.Worker.MaxRequests != 9 || s.app != "demo" {
		t.Errorf("corral demo -w 2: %v", err)
	}
}

// Gunicorn's flags that corral has not get their answer.
func TestGunicornFlagAnswers(t *testing.T) {
	for args, want := range map[string]string{
		"--preload":        "--preload (Gunicorn's preload_app) is not a corral flag: " + mustAnswer("preload_app"),
		"-D":               "-D (Gunicorn's daemon) is not a corral flag: " + mustAnswer("daemon"),
		"--worker-tmp-dir": "--worker-tmp-dir (Gunicorn's worker_tmp_dir) is not a corral flag: " + mustAnswer("worker_tmp_dir"),
		"--bogus":          "flag provided but not defined: -bogus",
	} {
		_, err := testProgram().load([]string{"corral", args, "demo"}, io.Discard)
		if got := errorLines(err); len(got) != 1 || got[0] != want {
			t.Errorf("%s: %q, want %q", args, got, want)
		}
	}
	_, err := testProgram().load([]string{"corral", "-k", "gevent"}, io.Discard)
	if got := errorLines(err); len(got) != 1 || !strings.HasSuffix(got[0], "; for Gunicorn's gevent, use -k goroutine or -k event") {
		t.Errorf("-k gevent: %q", got)
	}
}
