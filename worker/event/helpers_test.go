package event

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/corral-server/corral/worker"
	"github.com/corral-server/corral/worker/internal/workertest"
)

// The helpers of the event worker's tests: a Process built by
// worker.NewProcess, served as the runtime serves one. What they share
// with package worker's tests is in worker/internal/workertest.

// testProcess is a Process outside the runtime, with what the runtime
// keeps of it: when it is ready, how to begin its stop, its heartbeat.
type testProcess struct {
	*worker.Process
	ready <-chan struct{}
	drain func()
	hb    *heartbeat.Slot
}

// newTestProcess returns a Process serving h on a fresh listener on
// 127.0.0.1, as the runtime would build it, with a heartbeat slot.
func newTestProcess(t testing.TB, h http.Handler, cfg *worker.Config) *testProcess {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg == nil {
		cfg = &worker.Config{}
	}
	if cfg.DrainIdle == 0 {
		cfg.DrainIdle = 200 * time.Millisecond
	}
	hb, err := heartbeat.Create()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hb.Close)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(workertest.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, ready, drain := worker.NewProcess(cfg, h, []net.Listener{l}, log, hb)
	return &testProcess{Process: p, ready: ready, drain: drain, hb: hb}
}

// serveTest starts w on p, waits until it is ready, and returns a
// function that stops it (graceful or quick) and waits for Serve to
// return. As the runtime, it stops a type only once it is ready.
func serveTest(t testing.TB, p *testProcess, w worker.Worker) (addr string, stop func(graceful bool) error) {
	t.Helper()
	stop = workertest.Serve(t, func() error { return w.Serve(p.Process) }, p.ready, p.drain, w.Stop)
	return p.Listeners[0].Addr().String(), stop
}
