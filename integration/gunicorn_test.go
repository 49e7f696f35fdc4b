package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A Gunicorn user moves over without edits: tests of the built binary for
// Gunicorn's config file, names and command-line habits.

// gunicornConf is a Gunicorn-style gunicorn.conf.py as found in the wild.
const gunicornConf = `# gunicorn.conf.py
import multiprocessing
import os

bind = "127.0.0.1:0"
workers = 2
keepalive = 9
accesslog = os.path.join(os.path.dirname(__file__), "access.log")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s pid=%(p)s'
raw_env = ["ALLOWED_HOSTS=a.com,b.com", "DJANGO_SETTINGS_MODULE=shop.settings"]
proc_name = "shop"
loglevel = "info"
preload_app = True
max_workers = multiprocessing.cpu_count() * 2 + 1  # a helper, not a setting

def when_ready(server):
    server.log.info("Server is ready. Spawning workers")

def post_fork(server, worker):
    server.log.info("Worker spawned (pid: %s)", worker.pid)
`

// printedValue is key's value in --print-config's output.
func printedValue(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " = "); ok && k == key {
			return v
		}
	}
	return ""
}

// stderrLines is stderr as lines, without the last newline.
func stderrLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}

func TestGunicornConfPyPrintConfig(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "gunicorn.conf.py", gunicornConf)
	code, out, stderr := run(t, nil, "-c", conf, "--print-config", "demo")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for key, want := range map[string]string{
		"bind":             `["127.0.0.1:0"]`,
		"workers":          "2",
		"keep-alive":       "9",
		"access-logfile":   `"` + filepath.Join(dir, "access.log") + `"`,
		"access-logformat": `"%(h)s \"%(r)s\" %(s)s %(b)s pid=%(p)s"`,
		"env":              `["ALLOWED_HOSTS=a.com,b.com", "DJANGO_SETTINGS_MODULE=shop.settings"]`,
		"name":             `"shop"`,
		"log-level":        `"info"`,
	} {
		if got := printedValue(out, key); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	want := []string{
		"corral: warning: config file " + conf + ": preload_app is not applied: not needed: each worker runs NewHandler (Go cannot fork a loaded app); --check-config builds the app once",
		"corral: warning: config file " + conf + ": server hooks are not applied: post_fork, when_ready (corral's hooks are Go functions: corral.Server's Hooks; see docs/migrating-from-gunicorn.md)",
	}
	if got := stderrLines(stderr); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stderr:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The same file serves: the access log in its format, the name in ps,
// the warnings in the log.
func TestGunicornConfPyServes(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "gunicorn.conf.py", gunicornConf)
	s := start(t, corralBin, []string{"-c", conf, "demo"})
	s.waitLog(`Ready: 2 workers serving`, 15*time.Second)
	mustGet(t, s.Addr, "/")
	log := s.log.String()
	for _, want := range []string{"Starting corral [shop] (pid: ", "[WARNING] config file " + conf + ": server hooks are not applied: post_fork, when_ready"} {
		if !strings.Contains(log, want) {
			t.Errorf("log has no %q", want)
		}
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", s.Pid))
	if strings.TrimSpace(string(comm)) != "shop" {
		t.Errorf("arbiter comm %q, want shop", comm)
	}
	for _, pid := range s.waitWorkers(2, 5*time.Second) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if argv0, _, _ := strings.Cut(string(cmdline), "\x00"); argv0 != "corral: worker [shop] gen 1" {
			t.Errorf("worker %d argv[0] %q, want %q", pid, argv0, "corral: worker [shop] gen 1")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	re := regexp.MustCompile(`^127\.0\.0\.1 "GET / HTTP/1\.1" 200 \d+ pid=<\d+>\n`)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
		if re.Match(b) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("access log %q, want the file's format", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.signal(syscall.SIGHUP) // the gen in the title follows the reload
	s.waitReloaded("", 15*time.Second)
	for _, pid := range s.waitWorkers(2, 10*time.Second) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if argv0, _, _ := strings.Cut(string(cmdline), "\x00"); argv0 != "corral: worker [shop] gen 2" {
			t.Errorf("after HUP, worker %d argv[0] %q", pid, argv0)
		}
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// No Python: one line says so, exit 2. A broken file: one line with its line.
func TestGunicornConfPyErrors(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "gunicorn.conf.py", gunicornConf)
	broken := writeFile(t, dir, "broken.py", "workers = 2\nbind = undefined_name\n")
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"CORRAL_PYTHON=/no/python3"}, []string{"-c", conf, "demo"}, "config file " + conf + ": a .py file needs Python: CORRAL_PYTHON=/no/python3: no such file"},
		{nil, []string{"-c", broken, "demo"}, "config file " + broken + ": line 2: NameError: name 'undefined_name' is not defined"},
	} {
		code, out, stderr := run(t, c.env, c.args...)
		if lines := stderrLines(stderr); code != 2 || out != "" || len(lines) != 1 || lines[0] != "corral: error: "+c.want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, out, stderr, c.want)
		}
	}
}

// Gunicorn's names in a TOML file; short names and two spellings are
// errors; Gunicorn's flags that corral has not get their answer.
func TestGunicornNamesAndFlags(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string { return writeFile(t, dir, name, content) }
	good := file("good.toml", "keepalive = 4\nerrorlog = \"-\"\nloglevel = \"debug\"\nproc_name = \"x\"\nworker_class = \"sync\"\n")
	code, out, stderr := run(t, nil, "-c", good, "--print-config", "demo")
	if code != 0 || stderr != "" || printedValue(out, "keep-alive") != "4" || printedValue(out, "log-level") != `"debug"` ||
		printedValue(out, "name") != `"x"` || printedValue(out, "worker-class") != `"sync"` {
		t.Errorf("Gunicorn's names: exit %d, stderr %q\n%s", code, stderr, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", file("short.toml", "w = 7\n"), "demo"}, `unknown setting "w" (a short flag is no key: use the long name "workers")`},
		{[]string{"-c", file("twice.toml", "worker_class = \"sync\"\nworker-class = \"event\"\n"), "demo"}, "worker-class and worker_class both set --worker-class; keep one"},
		{[]string{"-c", file("gtwice.toml", "accesslog = \"-\"\naccess-logfile = \"-\"\n"), "demo"}, "access-logfile and accesslog both set --access-logfile; keep one"},
		{[]string{"-c", file("daemon.toml", "daemon = true\n"), "demo"}, "daemon is not supported: corral stays in the foreground"},
		{[]string{"--preload", "demo"}, "--preload (Gunicorn's preload_app) is not a corral flag: not needed: each worker runs NewHandler"},
		{[]string{"demo", "--worker-tmp-dir", "/dev/shm"}, "--worker-tmp-dir (Gunicorn's worker_tmp_dir) is not a corral flag: not needed: heartbeats are in memory"},
	} {
		code, out, stderr := run(t, nil, c.args...)
		if lines := stderrLines(stderr); code != 2 || out != "" || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and one line with %q", c.args, code, stderr, c.want)
		}
	}
}

// -e takes one value per flag: commas are data. The worker's environment
// shows it (an exec worker prints it to the captured output).
func TestEnvCommasAreData(t *testing.T) {
	s := startNoWait(t, corralBin, []string{"-b", "127.0.0.1:0", "-e", "ALLOWED_HOSTS=a.com,b.com", "-e", "A=a,B=c", "--ready", "delay:200ms",
		"--", "sh", "-c", `echo "env: [$ALLOWED_HOSTS] [$A] [${B-unset}]"; exec sleep 60`})
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	s.waitLog(`\[worker \d+\] env: \[a\.com,b\.com\] \[a,B=c\] \[unset\]`, 5*time.Second)
	s.signal(syscall.SIGTERM)
	s.wait(15 * time.Second)
}

// Flags may follow the app; CORRAL_PRINT_CONFIG prints and does not start.
func TestFlagsAfterAppAndPrintConfigVariable(t *testing.T) {
	s := start(t, corralBin, []string{"demo", "-w", "2", "-b", "127.0.0.1:0"})
	s.waitLog(`Ready: 2 workers serving`, 15*time.Second)
	mustGet(t, s.Addr, "/")
	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}

	start := time.Now()
	code, out, stderr := run(t, []string{"CORRAL_PRINT_CONFIG=true"}, "demo", "-w", "3", "-b", "127.0.0.1:0")
	if code != 0 || printedValue(out, "workers") != "3" || stderr != "" || time.Since(start) > 5*time.Second {
		t.Errorf("CORRAL_PRINT_CONFIG=true: exit %d, stderr %q, output %q", code, stderr, out)
	}
	code, out, stderr = run(t, []string{"CORRAL_CHECK_CONFIG=true"}, "demo", "-b", "127.0.0.1:0")
	if code != 0 || out != "" || stderr != "" {
		t.Errorf("CORRAL_CHECK_CONFIG=true: exit %d, %q %q", code, out, stderr)
	}
}

// What start-up would trip on exits 2 with one line naming the path, at a
// real start before any worker boots, and under --check-config.
func TestStartupPathsChecked(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--chdir", "/missing"}, "--chdir /missing: does not exist"},
		{[]string{"-p", "/missing/dir/x.pid"}, "--pid /missing/dir/x.pid: folder /missing/dir: does not exist"},
		{[]string{"--access-logfile", "/missing/x.log"}, "--access-logfile /missing/x.log: folder /missing: does not exist"},
		{[]string{"--error-logfile", "/missing/e.log"}, "--error-logfile /missing/e.log: folder /missing: does not exist"},
	} {
		for _, mode := range [][]string{nil, {"--check-config"}} {
			args := append(append(append([]string{"-b", "127.0.0.1:0"}, mode...), c.args...), "demo")
			code, out, stderr := run(t, nil, args...)
			if lines := stderrLines(stderr); code != 2 || out != "" || len(lines) != 1 || lines[0] != "corral: error: "+c.want {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, out, stderr, c.want)
			}
		}
	}
}

// Exec mode: flags that do not reach the command are refused or warned
// about, a line each; a worker that fails to boot ends with its output.
func TestExecModeGunicornFlags(t *testing.T) {
	code, _, stderr := run(t, nil, "-b", "127.0.0.1:0", "--max-requests", "100", "-k", "sync", "--", "sh", "-c", "exit 0")
	want := []string{
		"corral: error: --worker-class does not apply to a COMMAND worker: the program is the worker; drop -k",
		"corral: error: --max-requests does not apply to a COMMAND worker: corral does not see the program's requests; have it exit after N (an exited worker is replaced)",
	}
	if got := stderrLines(stderr); code != 2 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, stderr, want)
	}

	s := startNoWait(t, corralBin, []string{"-b", "127.0.0.1:0", "--keep-alive", "3", "--ready", "delay:200ms", "--", "sleep", "60"})
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	if n := strings.Count(s.log.String(), "--keep-alive does not apply to a COMMAND worker, ignored: the program keeps its own connections"); n != 1 {
		t.Errorf("%d warnings for --keep-alive, want 1:\n%s", n, s.log.String())
	}
	s.signal(syscall.SIGTERM)
	s.wait(15 * time.Second)

	s = startNoWait(t, corralBin, []string{"-b", "127.0.0.1:0", "--", python(t), "-c", "import no_such_module_corral"})
	if code := s.wait(15 * time.Second); code != 3 {
		t.Errorf("exit %d, want 3", code)
	}
	last := stderrLines(s.log.String())
	final := last[len(last)-1]
	if !strings.HasPrefix(final, "corral: error: worker (pid:") || !strings.Contains(final, "failed to boot: exited with code 1; its last output: ") ||
		!strings.HasSuffix(final, "ModuleNotFoundError: No module named 'no_such_module_corral'") {
		t.Errorf("final error %q, want the worker's reason in it", final)
	}
}

// --help fits in 100 columns, grouped as Gunicorn's docs; --version is
// the build's.
func TestHelpAndVersion(t *testing.T) {
	code, out, _ := run(t, nil, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for i, l := range strings.Split(out, "\n") {
		if len(l) > 100 {
			t.Errorf("--help line %d is %d columns", i+1, len(l))
		}
	}
	for _, g := range []string{"Server Socket:", "Worker Processes:", "Security:", "Logging:", "Process Naming:", "Server Mechanics:"} {
		if !strings.Contains(out, "\n"+g+"\n") {
			t.Errorf("--help has no group %s", g)
		}
	}
	code, out, _ = run(t, nil, "--version")
	if code != 0 || !strings.HasPrefix(out, "corral version ") || strings.TrimSpace(out) == "corral version dev" {
		t.Errorf("--version: exit %d, %q", code, out)
	}
}
