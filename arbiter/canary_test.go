package arbiter

import (
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/control"
	"github.com/corral-server/corral/internal/metrics"
)

// canaryTurn is a turn of the loop with the canary's watch, as the loop
// runs it: reap first, then the watch, then manage.
func (h *decisionTest) canaryTurn() []decision {
	h.a.reapWorkers()
	h.a.canaryReady()
	ds := h.a.watchCanary(h.sys.clock)
	h.a.apply(ds)
	return append(ds, h.turn()...)
}

func canaryConfig() *Config {
	cfg := testConfig(3)
	cfg.ReloadCanary, cfg.CanaryWindow = 1, 10*time.Second
	return cfg
}

func TestCanaryPromotesAfterWindow(t *testing.T) {
	h := newDecisionTest(t, canaryConfig())
	h.boot() // 101, 102, 103
	h.signal(syscall.SIGHUP)
	h.want(h.canaryTurn(), "spawn") // 104: one canary only
	h.want(h.canaryTurn())
	h.ready(104)
	h.want(h.canaryTurn(), "stop 101 TERM") // the canary replaces one old worker
	h.advance(9 * time.Second)
	h.want(h.canaryTurn())
	h.advance(time.Second)
	h.want(h.canaryTurn(), "promote", "spawn", "spawn") // 105, 106: the rest
	h.ready(105, 106)
	h.want(h.canaryTurn(), "stop 102 TERM", "stop 103 TERM", "complete")
	if !strings.Contains(h.log.String(), "Canary: generation 2 passed 10s; replacing the rest") {
		t.Fatalf("log:\n%s", h.log.String())
	}
}

// canaryWatched is a herd of 3 (101, 102, 103) reloaded with one canary,
// 104, ready and watched; 101 is stopping.
func canaryWatched(t *testing.T) *decisionTest {
	h := newDecisionTest(t, canaryConfig())
	h.boot()
	h.signal(syscall.SIGHUP)
	h.want(h.canaryTurn(), "spawn") // 104
	h.ready(104)
	h.want(h.canaryTurn(), "stop 101 TERM")
	return h
}

func TestCanaryCrashRollsBack(t *testing.T) {
	h := canaryWatched(t)
	h.exit(101, exitCode(0))
	h.advance(2 * time.Second)
	h.exit(104, exitCode(1))                     // the canary crashes in its window
	h.want(h.canaryTurn(), "roll back", "spawn") // 105, of the old configuration
	if gen := h.a.generation; gen != 3 || h.worker(102).Generation != 3 || h.worker(103).Generation != 3 {
		t.Fatalf("generation %d; old workers' %d, %d: want all 3", gen, h.worker(102).Generation, h.worker(103).Generation)
	}
	if !strings.Contains(h.log.String(), "Reload rolled back (after HUP): canary worker (pid:104) crashed: exited with code 1") {
		t.Fatalf("log:\n%s", h.log.String())
	}
	h.ready(105)
	h.advance(time.Minute)
	h.want(h.canaryTurn()) // nothing more: no promote, no reload complete
}

func TestCanaryRollBackReplacesTheCanaries(t *testing.T) {
	h := canaryWatched(t)
	h.a.canary.failure = "a test says so"
	h.want(h.canaryTurn(), "roll back", "spawn") // 105
	h.ready(105)
	h.want(h.canaryTurn(), "stop 104 TERM") // the canary goes once its old-configuration replacement serves
}

func TestCanaryBootFailureAbortsTheReload(t *testing.T) {
	h := newDecisionTest(t, canaryConfig())
	h.boot()
	h.signal(syscall.SIGHUP)
	h.want(h.canaryTurn(), "spawn") // 104
	h.exit(104, exitCode(3))
	h.canaryTurn()
	if h.a.canary != nil {
		t.Fatal("a canary that cannot boot leaves the canary reload on")
	}
	if !strings.Contains(h.log.String(), "Reload failed") {
		t.Fatalf("log:\n%s", h.log.String())
	}
}

func TestCanaryAskedByControl(t *testing.T) {
	cfg := testConfig(3)
	cfg.CanaryWindow = 10 * time.Second
	h := newDecisionTest(t, cfg)
	withControl(h)
	h.boot()
	ch := h.send(control.Request{Cmd: control.CmdReload, Canary: 1, Wait: 60})
	h.a.handleCommands()
	h.noAnswer(ch)
	h.want(h.canaryTurn(), "spawn") // one canary, though the configuration asks for none
	h.ready(104)
	h.want(h.canaryTurn(), "stop 101 TERM")
	h.a.canary.failure = "a test says so"
	h.want(h.canaryTurn(), "roll back", "spawn")
	if r := h.answer(ch); r.Result != control.ResultFailed || !strings.Contains(r.Error, "rolled back: a test says so") {
		t.Fatalf("answer %+v", r)
	}
	// The next reload is a whole one again (105, still booting, is
	// superseded).
	h.signal(syscall.SIGHUP)
	h.want(h.canaryTurn(), "stop 105 TERM", "spawn", "spawn", "spawn")
}

// withMetrics turns the metrics' counting on (not serving).
func withMetrics(h *decisionTest) {
	h.a.metrics.server = metrics.NewServer(slog.New(slog.DiscardHandler))
}

func TestCanaryStateAndOutcomesCounted(t *testing.T) {
	h := newDecisionTest(t, canaryConfig())
	withMetrics(h)
	h.boot()
	if s := h.a.canaryNow(); s != metrics.CanaryNone {
		t.Fatalf("before a reload: %v, want none", s)
	}
	h.signal(syscall.SIGHUP)
	h.want(h.canaryTurn(), "spawn") // 104
	if s := h.a.canaryNow(); s != metrics.CanaryBooting {
		t.Fatalf("the canary booting: %v, want booting", s)
	}
	h.ready(104)
	h.want(h.canaryTurn(), "stop 101 TERM")
	if s := h.a.snapshot(h.sys.clock).Canary; s != metrics.CanaryWatching {
		t.Fatalf("the canary ready: the snapshot says %v, want watching", s)
	}
	h.exit(101, exitCode(0))
	h.exit(104, exitCode(1))
	h.want(h.canaryTurn(), "roll back", "spawn")
	c := h.a.metrics.counters
	if c.Canaries != [len(c.Canaries)]uint64{metrics.CanaryCrashed: 1} || c.Reloads[metrics.ReloadFailed] != 1 {
		t.Fatalf("after a crash: canaries %v, reloads %v; want one crashed, one failed", c.Canaries, c.Reloads)
	}
	if s := h.a.canaryNow(); s != metrics.CanaryNone {
		t.Fatalf("after the rollback: %v, want none", s)
	}

	// The 5xx share, a boot failure and a promotion.
	h = canaryWatched(t)
	withMetrics(h)
	h.a.canary.since = h.sys.clock
	h.a.rollBack("the canaries' 5xx") // as watchCanary decides it from canaryBad: no crash, no timeout
	if c := h.a.metrics.counters.Canaries; c != [len(c)]uint64{metrics.CanaryErrors: 1} {
		t.Fatalf("a 5xx share: %v, want one 5xx", c)
	}
	h = newDecisionTest(t, canaryConfig())
	withMetrics(h)
	h.boot()
	h.signal(syscall.SIGHUP)
	h.want(h.canaryTurn(), "spawn")
	h.exit(104, exitCode(3))
	h.canaryTurn()
	if c := h.a.metrics.counters.Canaries; c[metrics.CanaryBootFailure] != 1 {
		t.Fatalf("a canary that cannot boot: %v, want one boot_failure", c)
	}
	h = canaryWatched(t)
	withMetrics(h)
	h.advance(10 * time.Second)
	h.canaryTurn()
	if c := h.a.metrics.counters.Canaries; c != [len(c)]uint64{metrics.CanaryPromoted: 1} {
		t.Fatalf("a window passed: %v, want one promoted", c)
	}
}
