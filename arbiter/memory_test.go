package arbiter

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/metrics"
)

// memoryTurn is a turn of the loop with the memory measured first, as
// the loop does.
func (h *decisionTest) memoryTurn() []decision {
	h.a.measureMemory()
	return h.turn()
}

func TestMemoryRecyclesAfterGrace(t *testing.T) {
	cfg := testConfig(2)
	cfg.MaxWorkerMemory, cfg.MemoryGrace = 100<<20, 10*time.Second
	h := newDecisionTest(t, cfg)
	h.boot() // 101, 102
	h.sys.procs = map[int]metrics.Proc{101: {PSS: 150 << 20}, 102: {PSS: 50 << 20}}
	h.want(h.memoryTurn()) // 101 is over: the grace begins
	h.advance(5 * time.Second)
	// A brief peak is not a leak: under the limit again, the grace starts over.
	h.sys.procs[101] = metrics.Proc{PSS: 90 << 20}
	h.want(h.memoryTurn())
	h.sys.procs[101] = metrics.Proc{PSS: 150 << 20}
	h.advance(time.Second)
	h.want(h.memoryTurn())
	h.advance(9 * time.Second)
	h.want(h.memoryTurn())
	h.advance(time.Second) // 10 s above it
	ds := h.memoryTurn()
	h.want(ds, "recycle 101", "spawn") // 103: the replacement first
	if !strings.Contains(ds[0].why, "memory") || !strings.Contains(h.log.String(), "Worker (pid:101) is over its memory: PSS 150.0 MiB above --max-worker-memory 100.0 MiB for 10s; replacing it") {
		t.Fatalf("why %q; log:\n%s", ds[0].why, h.log.String())
	}
	h.sys.procs[103] = metrics.Proc{PSS: 20 << 20}
	h.want(h.memoryTurn()) // 101 serves until 103 is ready
	h.ready(103)
	h.want(h.memoryTurn(), "stop 101 TERM")
	h.wantSent("101 TERM")
	// 102 was never over: it is never replaced; 101's exit counts as memory.
	h.exit(101, syscall.WaitStatus(0))
	h.advance(time.Minute)
	h.want(h.memoryTurn())
	if c := exitCause(h.worker(102)); c == metrics.ExitMemory {
		t.Errorf("102's cause: %v", c)
	}
}

func TestMemoryExitCause(t *testing.T) {
	w := &Worker{Ready: true, stopping: true, retiring: true, recycledFor: maxRequestsWhy}
	if c := exitCause(w); c != metrics.ExitRecycle {
		t.Errorf("--max-requests: %v, want recycle", c)
	}
	w.recycledFor = "is over its memory: ..."
	if c := exitCause(w); c != metrics.ExitMemory {
		t.Errorf("--max-worker-memory: %v, want memory", c)
	}
}

func TestMemoryOffReadsNothing(t *testing.T) {
	h := newDecisionTest(t, testConfig(1))
	h.boot()
	h.sys.procs = map[int]metrics.Proc{101: {PSS: 1 << 40}}
	h.advance(time.Hour)
	h.want(h.memoryTurn())
	h.advance(time.Hour)
	h.want(h.memoryTurn())
}

func TestMemoryLimitEnvSharesTheBudget(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOMEMLIMIT")
	cfg := testConfig(2)
	cfg.MaxMemory, cfg.MaxWorkers = 800<<20, 4
	h := newDecisionTest(t, cfg)
	h.boot()
	for _, spec := range h.sys.specs {
		if !slices.Equal(spec.env, []string{"GOMEMLIMIT=209715200"}) {
			t.Fatalf("env %q, want a quarter of 800 MiB (-w 2:4)", spec.env)
		}
	}
	cfg.Env = []string{"GOMEMLIMIT=1GiB"}
	if env := h.a.memoryLimitEnv(); env != nil {
		t.Errorf("with -e GOMEMLIMIT: %q, want none", env)
	}
	cfg.Env, cfg.Command = nil, []string{"python3"}
	if env := h.a.memoryLimitEnv(); env != nil {
		t.Errorf("an exec worker: %q, want none", env)
	}
	cfg.Command, cfg.MaxMemory = nil, 0
	if env := h.a.memoryLimitEnv(); env != nil {
		t.Errorf("no budget: %q, want none", env)
	}
}
