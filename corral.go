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
// server hooks. The arbiter's run in the arbiter process; PostWorkerInit
// and WorkerExit run in each worker process.
type Hooks struct {
	OnStarting      func(a *arbiter.Arbiter)                   // before the arbiter binds
	WhenReady       func(a *arbiter.Arbiter)                   // once the first workers all serve
	OnReload        func(a *arbiter.Arbiter)                   // on HUP, before the new workers spawn
	PostWorkerInit  func(p *worker.Process)                    // in a worker, before it serves
	WorkerExit      func(p *worker.Process)                    // in a worker, before it exits
	ChildExit       func(a *arbiter.Arbiter, w arbiter.Worker) // in the arbiter, after a worker exited
	NWorkersChanged func(a *arbiter.Arbiter, newN, oldN int)   // when TTIN, TTOU or a reload change the count
	OnExit          func(a *arbiter.Arbiter)                   // before the arbiter exits
}

// Main runs the server with os.Args and exits.
func (s *Server) Main() {
	newHandler := s.NewHandler
	if newHandler == nil {
		h := s.Handler
		newHandler = func() (http.Handler, error) { return h, nil }
	}
	p := &cmd.Program{
		Name:       filepath.Base(os.Args[0]),
		Usage:      "served by corral",
		DefaultApp: "main",
		Apps:       func(string) (http.Handler, error) { return newHandler() },
		Hooks: arbiter.Hooks{
			OnStarting: s.Hooks.OnStarting, WhenReady: s.Hooks.WhenReady, OnReload: s.Hooks.OnReload,
			ChildExit: s.Hooks.ChildExit, NWorkersChanged: s.Hooks.NWorkersChanged, OnExit: s.Hooks.OnExit,
		},
		WorkerHooks: worker.Hooks{PostWorkerInit: s.Hooks.PostWorkerInit, WorkerExit: s.Hooks.WorkerExit},
	}
	p.Main()
}
