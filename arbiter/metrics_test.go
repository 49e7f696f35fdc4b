package arbiter

import (
	"log/slog"
	"slices"
	"syscall"
	"testing"

	"github.com/corral-server/corral/internal/metrics"
	"github.com/corral-server/corral/worker"
)

// slots lists the slots of the workers spawned since the first n.
func (h *decisionTest) slots(n int) []int {
	var out []int
	for _, s := range h.sys.specs[n:] {
		out = append(out, s.wc.Slot)
	}
	return out
}

// TestSlotsStayFew: a replacement takes the slot of the worker it
// replaces, whether it replaces it for --max-requests, a reload, a crash
// or TTOU; TTIN adds the next slot.
func TestSlotsStayFew(t *testing.T) {
	h := newDecisionTest(t, testConfig(3))
	h.boot() // 101, 102, 103
	if got := h.slots(0); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("first slots %v, want [0 1 2]", got)
	}
	h.a.handleStatus(h.worker(102), worker.StatusRecycle)
	h.want(h.turn(), "recycle 102", "spawn") // 104
	if got := h.slots(3); !slices.Equal(got, []int{1}) {
		t.Fatalf("the recycled worker's replacement has slot %v, want [1]", got)
	}
	h.ready(104)
	h.want(h.turn(), "stop 102 TERM")
	h.exit(102, exitCode(0))
	h.turn()
	h.exit(101, killedBy(syscall.SIGKILL)) // a crash
	h.want(h.turn(), "spawn")              // 105
	if got := h.slots(4); !slices.Equal(got, []int{0}) {
		t.Fatalf("the crashed worker's replacement has slot %v, want [0]", got)
	}
	h.ready(105)
	h.turn()
	h.a.reload("HUP")
	h.want(h.turn(), "spawn", "spawn", "spawn") // 106, 107, 108
	if got := h.slots(5); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("a reload's slots %v, want [0 1 2]", got)
	}
	h.ready(106, 107, 108)
	h.turn()
	h.a.setTarget(4)
	h.want(h.turn(), "spawn")
	if got := h.slots(8); !slices.Equal(got, []int{3}) {
		t.Fatalf("TTIN's slot %v, want [3]", got)
	}
}

func TestExitCause(t *testing.T) {
	for want, w := range map[metrics.ExitCause]Worker{
		metrics.ExitTimeout:     {Ready: true, stopping: true, timedOut: true, Status: killedBy(syscall.SIGKILL)},
		metrics.ExitRecycle:     {Ready: true, stopping: true, retiring: true},
		metrics.ExitStopped:     {Ready: true, stopping: true, Status: killedBy(syscall.SIGKILL)},
		metrics.ExitBootFailure: {Status: exitCode(3)},
		metrics.ExitMemory:      {Ready: true, Status: killedBy(syscall.SIGKILL)},
		metrics.ExitSignal:      {Ready: true, Status: killedBy(syscall.SIGSEGV)},
		metrics.ExitCode:        {Ready: true, Status: exitCode(1)},
	} {
		if got := exitCause(&w); got != want {
			t.Errorf("%+v: cause %s, want %s", w, got, want)
		}
	}
}

// TestCountersOfExitsAndReloads: what the reaper and the reload rules
// count for the metrics.
func TestCountersOfExitsAndReloads(t *testing.T) {
	cfg := testConfig(2)
	h := newDecisionTest(t, cfg)
	h.a.metrics.server = metrics.NewServer(slog.New(slog.DiscardHandler)) // on, not serving
	h.boot()                                                              // 101, 102
	h.a.reload("HUP")
	h.turn() // 103, 104
	h.ready(103, 104)
	h.turn()
	h.exit(101, exitCode(0))
	h.exit(102, exitCode(0))
	h.exit(103, killedBy(syscall.SIGKILL))
	h.turn()
	c := h.a.snapshot(h.sys.clock).Counters
	if c.Exits[metrics.ExitStopped] != 2 || c.Exits[metrics.ExitMemory] != 1 || c.Reloads[metrics.ReloadComplete] != 1 {
		t.Fatalf("exits %v, reloads %v; want 2 stopped, 1 memory, 1 complete reload", c.Exits, c.Reloads)
	}
	var ready uint64
	for _, n := range c.SpawnToReady.Counts {
		ready += n
	}
	if ready != 4 {
		t.Fatalf("%d workers in the spawn-to-ready histogram, want 4", ready)
	}
}
