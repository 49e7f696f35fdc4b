package corral

import (
	"net/http"
	"slices"
	"testing"

	"github.com/corral-server/corral/arbiter"
	"github.com/corral-server/corral/worker"
)

// Each hook set on a Server reaches the side of the program that runs it.
func TestHooksReachTheProgram(t *testing.T) {
	var ran []string
	s := &Server{Handler: http.NotFoundHandler()}
	s.Hooks.OnStarting = func(*arbiter.Arbiter) { ran = append(ran, "on_starting") }
	s.Hooks.WhenReady = func(*arbiter.Arbiter) { ran = append(ran, "when_ready") }
	s.Hooks.OnReload = func(*arbiter.Arbiter) { ran = append(ran, "on_reload") }
	s.Hooks.ChildExit = func(*arbiter.Arbiter, arbiter.Worker) { ran = append(ran, "child_exit") }
	s.Hooks.NWorkersChanged = func(*arbiter.Arbiter, int, int) { ran = append(ran, "nworkers_changed") }
	s.Hooks.OnExit = func(*arbiter.Arbiter) { ran = append(ran, "on_exit") }
	s.Hooks.PostWorkerInit = func(*worker.Process) { ran = append(ran, "post_worker_init") }
	s.Hooks.WorkerExit = func(*worker.Process) { ran = append(ran, "worker_exit") }
	p := s.program()
	a, w := p.Hooks, p.WorkerHooks
	a.OnStarting(nil)
	a.WhenReady(nil)
	a.OnReload(nil)
	a.ChildExit(nil, arbiter.Worker{})
	a.NWorkersChanged(nil, 2, 1)
	a.OnExit(nil)
	w.PostWorkerInit(nil)
	w.WorkerExit(nil)
	want := []string{"on_starting", "when_ready", "on_reload", "child_exit", "nworkers_changed", "on_exit", "post_worker_init", "worker_exit"}
	if !slices.Equal(ran, want) {
		t.Errorf("hooks ran %q, want %q", ran, want)
	}
	if h, err := p.Apps("main"); err != nil || h == nil {
		t.Errorf("the handler did not reach the program: %v %v", h, err)
	}
}
