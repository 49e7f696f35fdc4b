package arbiter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/corral-server/corral/internal/metrics"
	"github.com/corral-server/corral/internal/scoreboard"
	"github.com/corral-server/corral/socket"
	"golang.org/x/sys/unix"
)

// --metrics-bind: the loop reads every worker's scoreboard and what it
// knows of each process into a metrics.Snapshot each turn, and publishes
// it; a metrics.Server on its own goroutines answers /metrics, /livez and
// /readyz from the latest one. When a worker is reaped, its last counts
// are folded into the herd's totals (metrics.Herd), which a new arbiter
// inherits at a USR2 upgrade.

// Intervals of the work publish does: the snapshot at most this often
// (the loop may turn many times a second under a storm of signals), the
// /proc reads of each worker at most once a second.
const (
	publishEvery = 50 * time.Millisecond
	procEvery    = time.Second
)

// metricsState is the arbiter's side of the metrics, owned by the loop.
type metricsState struct {
	server    *metrics.Server  // nil: no --metrics-bind
	listener  *socket.Listener // the --metrics-bind socket
	adopted   *socket.Listener // the socket of the arbiter this one takes over from
	serving   bool             // Serve runs; a new arbiter starts it once it took over
	serveDone chan error
	herd      metrics.Herd
	counters  metrics.Counters // exits, reloads, spawn-to-ready; Requests is herd's
	published time.Time
}

// openMetrics binds --metrics-bind, or takes the socket over from the
// arbiter that started this one (USR2), and starts serving, except while
// taking over: the old arbiter serves until it exits, with its totals.
func (a *Arbiter) openMetrics() error {
	m := &a.metrics
	if m.adopted == nil && a.cfg.MetricsBind == "" {
		return nil
	}
	m.listener = m.adopted
	if m.listener == nil {
		ls, err := socket.Bind([]string{a.cfg.MetricsBind}, a.cfg.Socket)
		if err != nil {
			return fmt.Errorf("--metrics-bind: %w", err)
		}
		m.listener = ls[0]
	}
	m.server = metrics.NewServer(a.log)
	m.server.Wake = a.pipe.Wake
	if a.parent == nil {
		return a.serveMetrics()
	}
	return nil
}

// serveMetrics starts the server's goroutines on the metrics socket.
func (a *Arbiter) serveMetrics() error {
	m := &a.metrics
	nl, err := m.listener.NetListener()
	if err != nil {
		return fmt.Errorf("--metrics-bind: %w", err)
	}
	m.serving = true
	m.serveDone = make(chan error, 1)
	go func() { m.serveDone <- m.server.Serve(nl) }()
	a.log.Info(fmt.Sprintf("Serving metrics at: %s", m.listener.URL()))
	return nil
}

// closeMetrics stops the server and closes the socket (removing a unix
// socket file this arbiter owns).
func (a *Arbiter) closeMetrics() {
	m := &a.metrics
	if m.server == nil {
		return
	}
	m.server.Close()
	if m.serving {
		if err := <-m.serveDone; err != nil && !errors.Is(err, net.ErrClosed) {
			a.log.Warn(fmt.Sprintf("metrics server: %v", err))
		}
	}
	m.listener.Close()
}

// assignSlot is the lowest slot that no worker counting toward the target
// holds: a replacement takes the slot of the worker it replaces, which no
// longer counts once it is retiring, stopping or of an older generation.
func (a *Arbiter) assignSlot() int {
	held := map[int]bool{}
	for _, w := range a.workers {
		if a.counts(w) {
			held[w.Slot] = true
		}
	}
	slot := 0
	for held[slot] {
		slot++
	}
	return slot
}

// counts reports whether w counts toward the target, as manageWorkers
// sees it.
func (a *Arbiter) counts(w *Worker) bool {
	return !w.stopping && !w.retiring && w.Generation == a.generation
}

// exitCause classifies a reaped worker's exit for corral_worker_exits_total.
func exitCause(w *Worker) metrics.ExitCause {
	switch {
	case w.timedOut:
		return metrics.ExitTimeout
	case w.stopping && w.retiring && strings.HasPrefix(w.recycledFor, memoryWhy):
		return metrics.ExitMemory
	case w.stopping && w.retiring:
		return metrics.ExitRecycle
	case w.stopping:
		return metrics.ExitStopped
	case !w.Ready:
		return metrics.ExitBootFailure
	case w.Status.Signaled() && w.Status.Signal() == syscall.SIGKILL:
		return metrics.ExitMemory
	case w.Status.Signaled():
		return metrics.ExitSignal
	}
	return metrics.ExitCode
}

// foldWorker counts a reaped worker's exit and folds its scoreboard's last
// counts into the herd's totals, before its memory is unmapped.
func (a *Arbiter) foldWorker(w *Worker) {
	m := &a.metrics
	if m.server == nil {
		return
	}
	m.counters.Exits[exitCause(w)]++
	if b := w.heartbeat.Board(); b != nil {
		if c := b.Read(); c.Valid {
			m.herd.Fold(c.Totals)
		}
	}
}

// currentRequest is " in METHOD target (running for D)" when w's
// scoreboard shows a request: what a worker too wedged to log its own
// requests was stuck in.
func currentRequest(w *Worker) string {
	b := w.heartbeat.Board()
	if b == nil {
		return ""
	}
	c := b.Read()
	if !c.Valid || c.Current == "" {
		return ""
	}
	return fmt.Sprintf(" in %s (running for %s)", c.Current, time.Duration(heartbeat.Now()-c.CurrentStart).Round(time.Millisecond))
}

// workerReady records a worker's spawn-to-ready time.
func (a *Arbiter) workerReady(w *Worker) {
	if a.metrics.server != nil {
		a.metrics.counters.SpawnToReady.Observe(w.ReadyAt.Sub(w.Started))
	}
}

// reloadEnded counts a reload by how it ended.
func (a *Arbiter) reloadEnded(r metrics.ReloadResult) {
	if a.metrics.server != nil {
		a.metrics.counters.Reloads[r]++
	}
}

// canaryEnded counts a canary reload by how it ended.
func (a *Arbiter) canaryEnded(o metrics.CanaryOutcome) {
	if a.metrics.server != nil {
		a.metrics.counters.Canaries[o]++
	}
}

// canaryNow is where the canary reload under way is.
func (a *Arbiter) canaryNow() metrics.CanaryState {
	switch {
	case a.canary == nil:
		return metrics.CanaryNone
	case a.canary.since.IsZero():
		return metrics.CanaryBooting
	}
	return metrics.CanaryWatching
}

// publish tells the server that the loop turned and, at most every
// publishEvery (or now, when force), publishes a new snapshot.
func (a *Arbiter) publish(force bool) {
	m := &a.metrics
	if m.server == nil {
		return
	}
	m.server.Turned()
	now := time.Now()
	if !force && now.Sub(m.published) < publishEvery {
		return
	}
	m.published = now
	m.server.Publish(a.snapshot(now))
}

// snapshot reads everything the metrics tell into a new Snapshot.
func (a *Arbiter) snapshot(now time.Time) *metrics.Snapshot {
	m := &a.metrics
	s := &metrics.Snapshot{Taken: now, Generation: a.generation, Target: a.target, ReadyMin: a.cfg.ReadyMin,
		Stopping: a.stopping || a.delaying(), TargetCause: a.scale.cause, TargetWhy: a.scale.why, TargetChanged: a.scale.changed,
		Canary: a.canaryNow()}
	if a.cfg.scaling() {
		s.MinWorkers, s.MaxWorkers = a.cfg.Workers, a.cfg.MaxWorkers
	}
	live := make([]scoreboard.Totals, 0, len(a.workers))
	for _, w := range a.sortedWorkers() {
		if now.Sub(w.procAt) >= procEvery {
			w.proc, _ = a.sys.proc(w.Pid) // gone meanwhile: the last values
			w.procAt = now
		}
		mw := metrics.Worker{Slot: w.Slot, Pid: w.Pid, Generation: w.Generation, Age: w.Age, Exec: w.exec != nil,
			Started: w.Started, Ready: w.Ready, Stopping: w.stopping, Current: a.counts(w),
			LastBeat: w.heartbeat.Since(), Proc: w.proc}
		if w.Ready {
			mw.ReadyAfter = w.ReadyAt.Sub(w.Started)
		}
		if b := w.heartbeat.Board(); b != nil {
			mw.Board = b.Read()
			if mw.Board.Valid {
				live = append(live, mw.Board.Totals)
			}
		}
		s.Workers = append(s.Workers, mw)
	}
	s.Counters = m.counters
	s.Counters.Requests = m.herd.Total(live)
	for _, l := range a.listeners {
		q, err := l.Queue()
		s.Listeners = append(s.Listeners, metrics.Listener{Name: l.URL(), Depth: q.Depth, Limit: q.Limit, Err: err != nil})
	}
	return s
}

// handoverCounters is what an arbiter that handed over to a new one (USR2)
// writes on the upgrade socket as it exits, once its last worker is gone:
// its counters, which the new one adds to its own.
func (a *Arbiter) handoverCounters() {
	m := &a.metrics
	if m.server == nil || a.upgrade == nil {
		return
	}
	c := m.counters
	c.Requests = m.herd.Gone()
	b, _ := json.Marshal(c)
	msg := append(append([]byte("counters "), b...), '\n')
	// The socketpair's buffer holds far more than this one line.
	if n, err := unix.Write(a.upgrade.conn, msg); err != nil || n != len(msg) {
		a.log.Warn(fmt.Sprintf("Upgrade: cannot hand the metrics' counters over to pid %d: wrote %d of %d bytes: %v", a.upgrade.pid, n, len(msg), err))
	}
}

// takeCounters folds in the counters the old arbiter handed over (the
// "counters" line it wrote before its end of the socket closed) and starts
// serving the metrics: from now on this arbiter speaks for the herd.
func (a *Arbiter) takeCounters(data []byte) {
	m := &a.metrics
	if m.server == nil {
		return
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("counters "))
		if !ok {
			continue
		}
		var c metrics.Counters
		if err := json.Unmarshal(rest, &c); err != nil {
			a.log.Warn(fmt.Sprintf("Upgrade: the old arbiter's metrics counters do not parse: %v", err))
			continue
		}
		m.herd.Fold(c.Requests)
		c.Requests = scoreboard.Totals{}
		m.counters.Add(c)
	}
	if !m.serving {
		if err := a.serveMetrics(); err != nil {
			a.log.Error(err.Error())
		}
	}
}
