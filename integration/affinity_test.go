package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// cpusOf returns the Cpus_allowed_list of every thread of pid, deduplicated.
func cpusOf(t *testing.T, pid string) []string {
	t.Helper()
	files, _ := filepath.Glob("/proc/" + pid + "/task/*/status")
	seen := map[string]bool{}
	var lists []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that ended
		}
		m := regexp.MustCompile(`(?m)^Cpus_allowed_list:\s*(\S+)$`).FindSubmatch(b)
		if m != nil && !seen[string(m[1])] {
			seen[string(m[1])] = true
			lists = append(lists, string(m[1]))
		}
	}
	return lists
}

// TestCPUAffinity: with --cpu-affinity on, and auto (the default) for
// wsgi workers when there is one for every CPU, every thread of a worker runs
// on the one CPU its log line names, workers in turn on the CPUs there
// are, and a wsgi worker's Python process on its Go process's CPU.
func TestCPUAffinity(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"pinned.py": `from wsgiref.validate import validator

def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"pinned"]

application = validator(hello)
`})
	n := runtime.NumCPU() // the CPUs of this process's mask
	for _, args := range [][]string{
		{"-k", "event", "--cpu-affinity", "on", "demo"},
		{"-k", "wsgi", "--python", wsgiPython, "--chdir", dir, "pinned:application"},
	} {
		s := start(t, corralBin, append([]string{"-w", fmt.Sprint(n), "-b", "127.0.0.1:0"}, args...))
		s.waitLog(fmt.Sprintf(`Ready: %d workers serving`, n), 30*time.Second)
		booted := map[string]string{} // pid -> CPU, from the log
		for _, m := range s.waitLogN(`Booting worker with pid: (\d+) on CPU (\d+)`, n, 5*time.Second) {
			booted[m[1]] = m[2]
		}
		cpus := map[string]bool{}
		for _, w := range s.waitWorkers(n, 5*time.Second) {
			pid := fmt.Sprint(w)
			want, ok := booted[pid]
			if !ok {
				t.Fatalf("%v: worker %s has no \"on CPU\" boot line: %v", args, pid, booted)
			}
			cpus[want] = true
			if got := cpusOf(t, pid); len(got) != 1 || got[0] != want {
				t.Errorf("%v: worker %s runs on %v, want CPU %s alone", args, pid, got, want)
			}
			if args[1] == "wsgi" {
				kids := childrenOf(w) // docker_test.go's
				if len(kids) != 1 {
					t.Fatalf("%v: worker %s has children %v, want its Python", args, pid, kids)
				}
				for py := range kids {
					if got := cpusOf(t, fmt.Sprint(py)); len(got) != 1 || got[0] != want {
						t.Errorf("%v: Python %d of worker %s runs on %v, want CPU %s", args, py, pid, got, want)
					}
				}
			}
		}
		if len(cpus) != n {
			t.Errorf("%v: %d workers on CPUs %v, want one each", args, n, cpus)
		}
		want := "Hello, World!"
		if args[1] == "wsgi" {
			want = "pinned"
		}
		if got := mustGet(t, s.Addr, "/"); !strings.Contains(got, want) {
			t.Errorf("%v: GET / = %q", args, got)
		}
	}
	// auto (the default) leaves Go workers to the kernel, and wsgi
	// workers when there are fewer than CPUs; off every worker.
	for _, args := range [][]string{
		{"-w", fmt.Sprint(n), "-k", "event", "demo"},
		{"-w", fmt.Sprint(max(n-1, 1)), "-k", "wsgi", "--python", wsgiPython, "--chdir", dir, "pinned:application"},
		{"-w", fmt.Sprint(n), "-k", "wsgi", "--cpu-affinity", "off", "--python", wsgiPython, "--chdir", dir, "pinned:application"},
	} {
		s := start(t, corralBin, append([]string{"-b", "127.0.0.1:0"}, args...))
		s.waitLog(`Ready: \d+ workers serving`, 30*time.Second)
		if strings.Contains(s.log.String(), " on CPU ") {
			t.Errorf("%v: a worker was pinned: %s", args, s.log)
		}
	}
}
