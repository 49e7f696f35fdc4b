package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LiveWithin is how recently the arbiter's loop must have turned for
// /livez to answer 200. The loop turns at least once a second.
const LiveWithin = 2 * time.Second

// Limits on the server, so that scrapers cannot hold the arbiter's memory
// or goroutines: a connection beyond MaxConns waits in the listen backlog.
const (
	MaxConns          = 8
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 30 * time.Second
	maxHeaderBytes    = 8 << 10
)

// Server serves /metrics, /livez and /readyz from the snapshots the loop
// publishes. Publish and Turned are the loop's side, cheap and never
// blocking; everything else runs on the server's goroutines.
//
// The loop turns at least once a second; a scrape that finds the latest
// snapshot older than FreshWithin wakes it (Wake) and waits, at most
// WaitFresh, for the next one, so a scrape sees what was answered up to
// a moment before it.
type Server struct {
	// Wake makes the loop turn soon; set before Serve. Nil: scrapes take
	// the latest snapshot as it is.
	Wake func()

	latest atomic.Pointer[Snapshot]
	turned atomic.Int64 // CLOCK_MONOTONIC ns of the loop's last turn
	now    func() int64 // heartbeat.Now; a test's clock
	log    *slog.Logger
	srv    *http.Server
	done   chan struct{}

	nextMu sync.Mutex
	next   chan struct{} // closed by the next Publish
}

// FreshWithin and WaitFresh bound how stale a scrape's snapshot is, and
// how long a scrape waits for a fresh one.
const (
	FreshWithin = 100 * time.Millisecond
	WaitFresh   = 250 * time.Millisecond
)

// NewServer returns a server with nothing published yet: /readyz answers
// 503 until the loop publishes a snapshot with enough workers ready.
func NewServer(log *slog.Logger) *Server {
	s := &Server{now: heartbeat.Now, log: log, done: make(chan struct{}), next: make(chan struct{})}
	s.turned.Store(s.now())
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{latest: s.fresh, now: s.now})
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 2, // a third concurrent scrape gets 503 at once
		Timeout:             5 * time.Second,
	}))
	mux.HandleFunc("GET /livez", s.livez)
	mux.HandleFunc("GET /readyz", s.readyz)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s
}

// Publish makes snap what the endpoints answer from. The caller must not
// change it afterwards.
func (s *Server) Publish(snap *Snapshot) {
	s.latest.Store(snap)
	s.nextMu.Lock()
	close(s.next)
	s.next = make(chan struct{})
	s.nextMu.Unlock()
}

// fresh is the latest snapshot if it is younger than FreshWithin, else
// the next one the loop publishes after a Wake, or the latest after
// WaitFresh.
func (s *Server) fresh() *Snapshot {
	snap := s.latest.Load()
	if s.Wake == nil || snap != nil && time.Since(snap.Taken) < FreshWithin {
		return snap
	}
	s.nextMu.Lock()
	next := s.next
	s.nextMu.Unlock()
	s.Wake()
	t := time.NewTimer(WaitFresh)
	defer t.Stop()
	select {
	case <-next:
	case <-t.C:
	}
	return s.latest.Load()
}

// Latest is the snapshot published last, or nil.
func (s *Server) Latest() *Snapshot { return s.latest.Load() }

// Turned records that the loop went round: /livez's proof.
func (s *Server) Turned() { s.turned.Store(s.now()) }

// Serve serves on l, at most MaxConns connections at once, until Close.
// It returns nil after Close.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(newLimitListener(l, MaxConns))
	if errors.Is(err, http.ErrServerClosed) {
		<-s.done
		return nil
	}
	return err
}

// Close stops serving: it closes the listener and every connection.
func (s *Server) Close() {
	select {
	case <-s.done:
		return
	default:
	}
	s.srv.Close()
	close(s.done)
}

// Shutdown stops accepting and waits, until ctx ends, for the requests
// being served.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.Close()
	return err
}

// Handler is the server's mux, for tests that serve it themselves.
func (s *Server) Handler() http.Handler { return s.srv.Handler }

func (s *Server) livez(w http.ResponseWriter, _ *http.Request) {
	if since := time.Duration(s.now() - s.turned.Load()); since > LiveWithin {
		answer(w, http.StatusServiceUnavailable, fmt.Sprintf("the arbiter's loop last turned %s ago", since.Round(time.Millisecond)))
		return
	}
	answer(w, http.StatusOK, "ok")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	code, msg := Readiness(s.fresh())
	answer(w, code, msg)
}

// Readiness is /readyz's answer for snap: 200 while at least ReadyMin
// workers are ready and the arbiter is not stopping, 503 with the reason
// otherwise.
func Readiness(snap *Snapshot) (int, string) {
	switch {
	case snap == nil:
		return http.StatusServiceUnavailable, "starting: no worker started yet"
	case snap.Stopping:
		return http.StatusServiceUnavailable, "stopping"
	}
	need := max(snap.ReadyMin, 1)
	if n := snap.ReadyWorkers(); n < need {
		return http.StatusServiceUnavailable, fmt.Sprintf("%d of the %d workers needed (--ready-min) are ready", n, need)
	}
	return http.StatusOK, fmt.Sprintf("ok: %d workers ready", snap.ReadyWorkers())
}

func answer(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// limitListener accepts at most n connections at once: Accept waits for
// one to close, and the connections beyond wait in the listen backlog.
type limitListener struct {
	net.Listener
	sem  chan struct{}
	done chan struct{}
	once sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
