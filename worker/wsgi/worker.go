package wsgi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/corral-server/corral/worker"
	"github.com/corral-server/corral/worker/event"
)

// Class is the worker type's name: -k wsgi.
const Class = "wsgi"

func init() { worker.Register(Class, func() worker.Worker { return new(wsgiWorker) }) }

// wsgiWorker is -k wsgi: the worker's Go side serves every front end
// through an event worker, and its handler, the App, runs each request in
// the worker's Python process, from the event loop itself. --threads is
// Python's (requests the app runs at once); the Go side has one event loop.
type wsgiWorker struct {
	app   *App
	front worker.Worker
}

// LoadApp starts Python with the app named on the command line; the boot
// fails, in one line, if it does not import.
func (w *wsgiWorker) LoadApp(p *worker.Process) (http.Handler, error) {
	cfg := p.Config
	if err := worker.CloseOnExec(); err != nil {
		return nil, err
	}
	w.front = event.New() // it speaks every front end
	threads := max(cfg.Threads, 1)
	// One event loop, which serves every request itself (App.ServeAsync:
	// the Python socket is in its epoll set, Options.Loop). GOMAXPROCS 2:
	// one P for the loop, which keeps it in a raw epoll_wait while busy
	// (see worker/event's wait), one for the rest (Python's output, --timeout's
	// watch, FastCGI connections, which are served on goroutines).
	cfg.Threads, cfg.EventInline, cfg.EventProcs = 1, false, 2
	app, err := Start(Options{
		App: cfg.App, Python: cfg.Python, PythonPath: cfg.PythonPath,
		Threads: threads, Processes: 2, // more workers may come (TTIN): wsgi.multiprocess
		ScriptName: os.Getenv("SCRIPT_NAME"), MaxBody: cfg.MaxBody, // the goroutine front end does not bound it
		Timeout: cfg.Timeout, AbortGrace: cfg.AbortGrace,
		Output: pythonOutput(p.Log), Log: p.Log, Loop: true,
	})
	if err != nil {
		return nil, err
	}
	w.app = app
	p.Log.Info(fmt.Sprintf("Booted WSGI app %s (python %s, pid %d, threads %d)", cfg.App, app.Version(), app.Pid(), threads))
	return app, nil
}

// CheckApp imports the app in a Python process and stops it, for
// --check-config; Python's output goes to stderr.
func (w *wsgiWorker) CheckApp(cfg *worker.Config) error {
	app, err := Start(Options{App: cfg.App, Python: cfg.Python, PythonPath: cfg.PythonPath})
	if err != nil {
		return err
	}
	return app.Close(5 * time.Second)
}

// Serve serves until a stop, then lets Python finish and exit. Should
// Python die first (a crash, a --timeout abort), the worker stops, through
// the runtime's own path (TERM to itself: a graceful stop, so that the
// answers to the requests Python had, 504, 500 or 503, reach their
// clients), and exits, so that the arbiter replaces it.
func (w *wsgiWorker) Serve(p *worker.Process) error {
	served := make(chan error, 1)
	go func() { served <- w.front.Serve(p) }()
	select {
	case err := <-served:
		w.app.Close(p.Config.GracefulTimeout)
		return err
	case <-w.app.Done():
		p.Log.Error(fmt.Sprintf("Worker (pid:%d) stops: %v", p.Pid, w.app.Err()))
		syscall.Kill(p.Pid, syscall.SIGTERM)
		err := <-served
		w.app.Close(time.Second)
		return err
	}
}

func (w *wsgiWorker) Stop(graceful bool) { w.front.Stop(graceful) }

// BeatsItself is the front worker's: the event loops beat, and a request
// stuck in Python is --timeout's business on the Python side (App.watch).
func (w *wsgiWorker) BeatsItself() bool {
	sb, ok := w.front.(worker.SelfBeating)
	return ok && sb.BeatsItself()
}

// pythonOutput logs each line Python writes (wsgi.errors, print, tracebacks)
// as "[python PID] line", whatever --log-level is: it is the app's own
// output, as exec mode logs a command's.
func pythonOutput(log *slog.Logger) func(pid int, line string) {
	h := log.Handler()
	return func(pid int, line string) {
		h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelInfo, fmt.Sprintf("[python %d] %s", pid, line), 0))
	}
}
