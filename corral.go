// Package corral turns a Go http.Handler into a prefork server: one call in
// main gives the program corral's whole command line (workers, binds,
// timeouts, config file), its signals (HUP reload, TTIN/TTOU, TERM drain)
// and its worker types. The same binary runs as the arbiter and, started
// by the arbiter, as each worker.
//
//	func main() { corral.Main(myHandler) }
package corral

import (
	"net/http"
	"os"
	"path/filepath"

	"github.com/corral-server/corral/arbiter"
	"github.com/corral-server/corral/cmd"
	"github.com/corral-server/corral/worker"
)

// Main serves h with corral and exits. It does not return.
func Main(h http.Handler) {
	(&Server{Handler: h}).Main()
}

// Server is a Go program served by corral.
type Server struct {
	// Handler is what every worker serves. Either it or NewHandler is set.
	Handler http.Handler
	// NewHandler builds the handler in each worker as it boots, so that
	// work such as opening a database happens per worker. An error fails
	// the worker's boot: at start-up corral exits, on a reload the old
	// workers keep serving.
	NewHandler func() (http.Handler, error)
	// Hooks are Gunicorn's server hooks that make sense without fork.
	Hooks Hooks
}

// Hooks are callbacks at points of the server's life, as Gunicorn's
// server hooks: the arbiter's run in the arbiter process (OnStarting,
// WhenReady, OnReload, ChildExit, NWorkersChanged, OnExit), the worker's
// in each worker process (PostWorkerInit, WorkerExit).
//
// Set them by name, without minding which process runs them:
//
//	s := &corral.Server{Handler: h}
//	s.Hooks.WhenReady = func(a *arbiter.Arbiter) { log.Println("serving") }
//	s.Hooks.PostWorkerInit = func(p *worker.Process) { warmCache() }
//
// A composite literal names the embedded half, as Go requires:
// corral.Hooks{ArbiterHooks: corral.ArbiterHooks{WhenReady: f}}.
type Hooks struct {
	ArbiterHooks
	WorkerHooks
}

// ArbiterHooks are the hooks that run in the arbiter process.
type ArbiterHooks = arbiter.Hooks

// WorkerHooks are the hooks that run in each worker process.
type WorkerHooks = worker.Hooks

// Main runs the server with os.Args and exits.
func (s *Server) Main() {
	s.program().Main()
}

// program is the corral command line that serves s.
func (s *Server) program() *cmd.Program {
	newHandler := s.NewHandler
	if newHandler == nil {
		h := s.Handler
		newHandler = func() (http.Handler, error) { return h, nil }
	}
	return &cmd.Program{
		Name:        filepath.Base(os.Args[0]),
		Usage:       "served by corral",
		DefaultApp:  "main",
		Apps:        func(string) (http.Handler, error) { return newHandler() },
		Hooks:       s.Hooks.ArbiterHooks,
		WorkerHooks: s.Hooks.WorkerHooks,
	}
}
