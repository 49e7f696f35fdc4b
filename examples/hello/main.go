// Command hello is a Go program served by corral: one call in main gives it
// corral's command line, signals and worker types. It also shows the
// server hooks; set HOOKS_LOG=FILE to have each hook append a line there,
// and POST_WORKER_INIT_DELAY=D (a Go duration) to make each worker's boot
// that much longer, as an app that warms a cache would.
//
//	go build -o hello ./examples/hello
//	./hello -w 4 -b 127.0.0.1:8000
//	GREETING_FILE=greeting.txt ./hello   # each worker reads its greeting at boot
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/corral-server/corral"
	"github.com/corral-server/corral/arbiter"
	"github.com/corral-server/corral/worker"
)

func main() {
	s := &corral.Server{NewHandler: newHandler}
	// Each hook is set by name; corral runs it in the process it belongs
	// to, the arbiter or a worker.
	s.Hooks.OnStarting = func(a *arbiter.Arbiter) { hook("on_starting") }
	s.Hooks.WhenReady = func(a *arbiter.Arbiter) { hook("when_ready workers=%d", len(a.Workers())) }
	s.Hooks.OnReload = func(a *arbiter.Arbiter) { hook("on_reload generation=%d", a.Generation()) }
	s.Hooks.PostWorkerInit = func(p *worker.Process) {
		hook("post_worker_init pid=%d", p.Pid)
		if d, err := time.ParseDuration(os.Getenv("POST_WORKER_INIT_DELAY")); err == nil {
			time.Sleep(d)
		}
	}
	s.Hooks.WorkerExit = func(p *worker.Process) { hook("worker_exit pid=%d", p.Pid) }
	s.Hooks.ChildExit = func(a *arbiter.Arbiter, w arbiter.Worker) { hook("child_exit pid=%d", w.Pid) }
	s.Hooks.NWorkersChanged = func(a *arbiter.Arbiter, n, old int) { hook("nworkers_changed %d->%d", old, n) }
	s.Hooks.OnExit = func(a *arbiter.Arbiter) { hook("on_exit") }
	s.Main()
}

// newHandler runs in each worker as it boots. A greeting file that cannot
// be read fails the boot, which is how a broken deploy looks to corral.
func newHandler() (http.Handler, error) {
	greeting := "Hello from a corral worker"
	if path := os.Getenv("GREETING_FILE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read greeting: %w", err)
		}
		greeting = strings.TrimSpace(string(b))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, greeting+"\n")
	}), nil
}

func hook(format string, args ...any) {
	path := os.Getenv("HOOKS_LOG")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format+"\n", args...)
}
