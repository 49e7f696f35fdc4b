package worker

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/corral-server/corral/worker/internal/workertest"
)

// newTestProcess returns a Process serving h on a fresh listener on
// 127.0.0.1, as the runtime would build it, with a heartbeat slot.
func newTestProcess(t testing.TB, h http.Handler, cfg *Config) *Process {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg == nil {
		cfg = &Config{}
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
	p, _, _ := NewProcess(cfg, h, []net.Listener{l}, log, hb)
	return p
}

// serveTest starts w on p, waits until it is ready, and returns a
// function that stops it (graceful or quick) and waits for Serve to
// return. As the runtime (see run), it stops a type only once it is ready.
func serveTest(t testing.TB, p *Process, w Worker) (addr string, stop func(graceful bool) error) {
	t.Helper()
	p.ready = make(chan struct{})
	stop = workertest.Serve(t, func() error { return w.Serve(p) }, p.ready, func() { p.draining.Store(true) }, w.Stop)
	return p.Listeners[0].Addr().String(), stop
}
