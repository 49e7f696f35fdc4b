package arbiter

import (
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/logging"
	"github.com/corral-server/corral/internal/scoreboard"
	"github.com/corral-server/corral/signals"
	"github.com/corral-server/corral/worker"
)

// fakeSystem is a process table and a clock for the decision tests, in
// place of osSystem: spawnWorker hands out pids from 101, signal records
// what was sent, reap returns the exits a test queued, and the clock moves
// only when a test advances it.
type fakeSystem struct {
	clock    time.Time
	nextPid  int
	specs    []spawnSpec // every worker spawned, in order
	pids     []int       // and their pids
	sent     []string    // "101 TERM", in order, since the test last looked
	exits    []fakeExit  // for reap, in order
	spawnErr error       // when set, spawnWorker fails with it
}

type fakeExit struct {
	pid    int
	status syscall.WaitStatus
}

func (s *fakeSystem) now() time.Time { return s.clock }

func (s *fakeSystem) spawnWorker(spec spawnSpec) (spawned, error) {
	if s.spawnErr != nil {
		return spawned{}, s.spawnErr
	}
	s.specs = append(s.specs, spec)
	pid := s.nextPid
	s.nextPid++
	s.pids = append(s.pids, pid)
	return spawned{pid: pid, statusFd: -1, heartbeat: &fakeBeat{sys: s, last: s.clock}}, nil
}

func (s *fakeSystem) startArbiter(string, []string, []string, []uintptr) (int, error) {
	return 0, syscall.ENOSYS
}

func (s *fakeSystem) signal(pid int, sig syscall.Signal) error {
	s.sent = append(s.sent, strconv.Itoa(pid)+" "+signals.Name(sig))
	return nil
}

func (s *fakeSystem) reap() (int, syscall.WaitStatus, bool) {
	if len(s.exits) == 0 {
		return 0, 0, false
	}
	e := s.exits[0]
	s.exits = s.exits[1:]
	return e.pid, e.status, true
}

// fakeBeat is a heartbeat on the fake clock.
type fakeBeat struct {
	sys  *fakeSystem
	last time.Time
}

func (b *fakeBeat) Beat()                { b.last = b.sys.clock }
func (b *fakeBeat) Since() time.Duration { return b.sys.clock.Sub(b.last) }
func (b *fakeBeat) Close()               {}

func (b *fakeBeat) Board() *scoreboard.Board { return nil }

// exitCode and killedBy are wait statuses, as wait4 reports them.
func exitCode(code int) syscall.WaitStatus           { return syscall.WaitStatus(code << 8) }
func killedBy(sig syscall.Signal) syscall.WaitStatus { return syscall.WaitStatus(sig) }

// decisionTest is an arbiter on a fakeSystem, driven a turn at a time.
type decisionTest struct {
	t   *testing.T
	a   *Arbiter
	sys *fakeSystem
	log strings.Builder
}

// testConfig is a configuration for n workers with corral's default
// graceful timeout (30 s) and the other timeouts off.
func testConfig(n int) *Config {
	return &Config{Workers: n, Executable: "/nonexistent/worker", GracefulTimeout: 30 * time.Second,
		Worker: worker.Config{Class: "sync"}}
}

func newDecisionTest(t *testing.T, cfg *Config) *decisionTest {
	t.Helper()
	t.Setenv("NOTIFY_SOCKET", "") // no sd_notify messages to a real systemd
	h := &decisionTest{t: t, sys: &fakeSystem{clock: time.Unix(1_000_000, 0), nextPid: 101}}
	cfg.Log = logging.New(&h.log, slog.LevelDebug)
	h.a = New(cfg)
	h.a.sys = h.sys
	h.a.pid = 100 // not 1: as PID 1 the arbiter ignores WINCH
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("arbiter log:\n" + h.log.String())
		}
	})
	return h
}

// turn runs one turn of the loop less its sleep and signals (reap, then
// the overdue and manage rules, applied) and returns what the rules
// decided. Boot failures are decided and applied inside the reap.
func (h *decisionTest) turn() []decision {
	ds := h.a.delayOver(h.sys.clock)
	h.a.apply(ds)
	h.a.reapWorkers()
	late := h.a.overdue(h.sys.clock)
	h.a.apply(late)
	ds = append(ds, late...)
	if !h.a.stopping {
		more := h.a.manage(h.sys.clock)
		h.a.apply(more)
		ds = append(ds, more...)
	}
	return ds
}

// boot starts the configured workers, all ready, and returns their pids.
func (h *decisionTest) boot() []int {
	h.t.Helper()
	before := len(h.sys.pids)
	for _, d := range h.turn() {
		if d.verb != spawn {
			h.t.Fatalf("boot: decided %v", d)
		}
	}
	pids := slices.Clone(h.sys.pids[before:])
	h.ready(pids...)
	h.want(h.turn(), "complete")
	return pids
}

// signal delivers signals to the arbiter as the loop does: queued, then
// handled.
func (h *decisionTest) signal(sigs ...syscall.Signal) {
	if h.a.queue == nil {
		h.a.queue = signals.NewQueue(64)
	}
	for _, s := range sigs {
		h.a.queue.Push(s)
	}
	h.a.handleSignals()
}

// ready has the workers report "ready" on their status pipes.
func (h *decisionTest) ready(pids ...int) {
	for _, pid := range pids {
		h.a.handleStatus(h.worker(pid), worker.StatusReady)
	}
}

func (h *decisionTest) worker(pid int) *Worker {
	h.t.Helper()
	w, ok := h.a.workers[pid]
	if !ok {
		h.t.Fatalf("no worker with pid %d", pid)
	}
	return w
}

// exit queues the exit of pid for the next reap.
func (h *decisionTest) exit(pid int, status syscall.WaitStatus) {
	h.sys.exits = append(h.sys.exits, fakeExit{pid, status})
}

func (h *decisionTest) advance(d time.Duration) { h.sys.clock = h.sys.clock.Add(d) }

// want checks the decisions against their String forms.
func (h *decisionTest) want(ds []decision, want ...string) {
	h.t.Helper()
	var got []string
	for _, d := range ds {
		got = append(got, d.String())
	}
	if !slices.Equal(got, want) {
		h.t.Fatalf("decided %q, want %q", got, want)
	}
}

// wantSent checks the signals sent since the last check.
func (h *decisionTest) wantSent(want ...string) {
	h.t.Helper()
	if !slices.Equal(h.sys.sent, want) {
		h.t.Fatalf("sent %q, want %q", h.sys.sent, want)
	}
	h.sys.sent = nil
}

// wantLog checks that the arbiter logged a line containing s.
func (h *decisionTest) wantLog(s string) {
	h.t.Helper()
	if !strings.Contains(h.log.String(), s) {
		h.t.Fatalf("the log has no %q", s)
	}
}
