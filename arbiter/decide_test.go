package arbiter

import (
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-server/corral/worker"
)

// The arbiter's rules on a fake process table and clock (helpers_test.go):
// no binaries, no processes; integration/ has the real thing.

func TestDecisionReloadRetiresOneOldWorkerPerReadyNewOne(t *testing.T) {
	h := newDecisionTest(t, testConfig(3))
	old := h.boot()
	h.a.reload("HUP")
	h.want(h.turn(), "spawn", "spawn", "spawn")
	for _, s := range h.sys.specs[3:] {
		if s.wc.Generation != 2 {
			t.Fatalf("a new worker of generation %d, want 2", s.wc.Generation)
		}
	}
	fresh := h.sys.pids[3:]
	h.want(h.turn()) // no old worker stops before a new one is ready
	h.ready(fresh[0])
	h.want(h.turn(), "stop 101 TERM")
	h.want(h.turn())
	h.ready(fresh[1])
	h.want(h.turn(), "stop 102 TERM")
	h.ready(fresh[2])
	h.want(h.turn(), "stop 103 TERM", "complete")
	h.wantSent("101 TERM", "102 TERM", "103 TERM")
	h.wantLog("Reload complete: generation 2, 3 workers serving")
	for _, pid := range old {
		h.exit(pid, exitCode(0))
	}
	h.want(h.turn()) // retired as planned: nothing to replace
	if n := len(h.a.workers); n != 3 {
		t.Fatalf("%d workers, want 3", n)
	}
}

func TestDecisionAbortedReloadKeepsTheOldGeneration(t *testing.T) {
	cfg := testConfig(2)
	h := newDecisionTest(t, cfg)
	broken := *cfg
	broken.Worker.App = "broken"
	h.a.Reload = func() (*Config, error) { return &broken, nil }
	h.boot() // 101, 102
	h.a.reload("HUP")
	h.want(h.turn(), "spawn", "spawn") // 103, 104
	// What the reaper does with 103, dead before it was ready.
	failed := h.worker(103)
	delete(h.a.workers, 103)
	ds := h.a.afterBootFailure(failed, "exited with code 3")
	h.want(ds, "abort reload 103", "stop 104 TERM")
	h.a.apply(ds)
	h.wantSent("104 TERM")
	h.wantLog("Reload failed (after HUP): new worker (pid:103) could not boot: exited with code 3")
	if h.a.cfg != cfg {
		t.Fatalf("configuration %q after the abort, want the old one", h.a.cfg.Worker.App)
	}
	for _, pid := range []int{101, 102} {
		if w := h.worker(pid); w.Generation != h.a.generation || w.stopping {
			t.Fatalf("old worker %d: generation %d of %d, stopping %v", pid, w.Generation, h.a.generation, w.stopping)
		}
	}
	h.exit(104, exitCode(0))
	h.want(h.turn()) // the old workers are the target: nothing to spawn or stop
	h.wantSent()
	// The next HUP tries again.
	h.a.reload("HUP")
	h.want(h.turn(), "spawn", "spawn")
}

func TestDecisionBootBackoffDoublesTo30s(t *testing.T) {
	h := newDecisionTest(t, testConfig(1))
	h.boot() // 101: a worker was ready once, so boot failures are no longer fatal
	h.exit(101, killedBy(syscall.SIGSEGV))
	h.want(h.turn(), "spawn")
	var waits []time.Duration
	for range 12 {
		pid := h.sys.pids[len(h.sys.pids)-1]
		h.exit(pid, exitCode(3))
		h.want(h.turn()) // reaped, backed off
		wait := h.a.nextSpawn.Sub(h.sys.clock)
		waits = append(waits, wait)
		h.advance(wait - time.Millisecond)
		h.want(h.turn())
		h.advance(time.Millisecond)
		h.want(h.turn(), "spawn")
	}
	ms := time.Millisecond
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms,
		12800 * ms, 25600 * ms, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	if !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	h.wantLog("Next worker spawn in 30s (12 boot failures in a row)")
	// A ready worker ends the run of failures; a failed spawn backs off
	// by the same rule.
	h.ready(h.sys.pids[len(h.sys.pids)-1])
	h.sys.spawnErr = errors.New("spawn worker: exec /nonexistent/worker: no such file")
	h.a.setTarget(2)
	h.want(h.turn(), "spawn")
	if wait := h.a.nextSpawn.Sub(h.sys.clock); wait != 100*ms || h.a.bootFailures != 1 {
		t.Fatalf("after a failed spawn: wait %s, %d failures; want 100ms, 1", wait, h.a.bootFailures)
	}
}

func TestDecisionRecycleOneASecond(t *testing.T) {
	h := newDecisionTest(t, testConfig(3))
	h.boot() // 101, 102, 103
	for _, pid := range []int{101, 102, 103} {
		h.a.handleStatus(h.worker(pid), worker.StatusRecycle) // all at their --max-requests at once
	}
	h.want(h.turn(), "recycle 101", "spawn") // 104
	h.want(h.turn())
	h.ready(104)
	h.want(h.turn(), "stop 101 TERM")
	h.advance(999 * time.Millisecond)
	h.want(h.turn())
	h.advance(time.Millisecond)
	h.want(h.turn(), "recycle 102", "spawn") // 105
	h.ready(105)
	h.advance(time.Second)
	h.want(h.turn(), "recycle 103", "stop 102 TERM", "spawn")
	h.wantSent("101 TERM", "102 TERM")
}

func TestDecisionTimeoutAbortsThenKills(t *testing.T) {
	cfg := testConfig(1)
	cfg.Worker.Timeout, cfg.AbortGrace = 2*time.Second, time.Second
	h := newDecisionTest(t, cfg)
	h.boot() // 101
	h.advance(2 * time.Second)
	h.want(h.turn()) // silent for --timeout exactly: not past it
	h.advance(time.Millisecond)
	h.want(h.turn(), "abort 101", "spawn") // its replacement (102) spawns at once
	h.wantSent("101 ABRT")
	h.wantLog("WORKER TIMEOUT (pid:101)")
	h.ready(102)
	h.advance(time.Second)
	h.want(h.turn())
	h.advance(time.Millisecond)
	h.want(h.turn(), "kill 101")
	h.wantSent("101 KILL")
	h.wantLog("Worker (pid:101) still alive 1s after SIGABRT; killing it")
	h.worker(102).heartbeat.Beat()
	h.advance(time.Second)
	h.want(h.turn()) // SIGKILL goes once
	h.exit(101, killedBy(syscall.SIGKILL))
	h.want(h.turn())
	h.wantSent()
	h.wantLog("Worker (pid:101) killed by signal KILL after its timeout")
}

func TestDecisionStopKillsAtTheGracefulTimeout(t *testing.T) {
	cfg := testConfig(2)
	cfg.GracefulTimeout = 5 * time.Second
	h := newDecisionTest(t, cfg)
	h.boot() // 101, 102
	h.a.stop(false)
	h.wantSent("101 TERM", "102 TERM")
	h.exit(102, exitCode(0))
	h.advance(5 * time.Second)
	h.want(h.turn())
	h.advance(time.Millisecond) // --graceful-timeout, not a second more
	h.want(h.turn(), "kill 101")
	h.wantSent("101 KILL")
	h.advance(time.Second)
	h.want(h.turn())
}

func TestDecisionBootTimeoutKillsOnce(t *testing.T) {
	cfg := testConfig(1)
	cfg.BootTimeout = 10 * time.Second
	h := newDecisionTest(t, cfg)
	h.want(h.turn(), "spawn") // 101
	started := h.worker(101).Started
	h.advance(10 * time.Second)
	h.want(h.turn())
	h.advance(time.Millisecond)
	h.want(h.turn(), "expire 101")
	h.want(h.turn())
	h.wantSent("101 KILL")
	if w := h.worker(101); !w.Started.Equal(started) {
		t.Fatalf("Started moved from %v to %v", started, w.Started)
	}
	// Never a worker ready: the arbiter ends, with the reason.
	h.exit(101, killedBy(syscall.SIGKILL))
	h.turn()
	var boot *BootError
	if !errors.As(h.a.exitErr, &boot) || !strings.Contains(boot.Reason, "not ready within the boot timeout (10s)") {
		t.Fatalf("exit error %v, want a BootError for the boot timeout", h.a.exitErr)
	}
	if !h.a.stopping || !h.a.quick {
		t.Fatal("the arbiter does not stop quickly after the only worker failed to boot")
	}
}

func TestDecisionSurplusStopsThoseNotReadyFirst(t *testing.T) {
	h := newDecisionTest(t, testConfig(2))
	h.boot() // 101, 102
	h.a.setTarget(3)
	h.want(h.turn(), "spawn") // 103, still booting
	h.a.setTarget(1)          // two TTOUs
	h.want(h.turn(), "stop 103 TERM", "stop 101 TERM")
}

func TestDecisionSpawnFailureAtStartFailsBoot(t *testing.T) {
	h := newDecisionTest(t, testConfig(2))
	h.sys.spawnErr = errors.New("spawn worker: status pipe: too many open files")
	h.want(h.turn(), "spawn", "spawn") // the first fails; the second is held back
	var boot *BootError
	if !errors.As(h.a.exitErr, &boot) || boot.Pid != 0 || boot.Error() != "spawn worker: status pipe: too many open files" {
		t.Fatalf("exit error %#v, want a BootError with the spawn's error", h.a.exitErr)
	}
	if !h.a.stopping || !h.a.quick {
		t.Fatal("the arbiter does not stop after a failed spawn at start-up")
	}
	if len(h.a.workers) != 0 {
		t.Fatalf("%d workers", len(h.a.workers))
	}
}

// A quick stop kills the workers not ready yet instead of sending them a
// QUIT that, before a Go worker catches it, dumps its goroutines.
func TestDecisionQuickStopKillsWorkersNotReady(t *testing.T) {
	h := newDecisionTest(t, testConfig(2))
	h.boot() // 101, 102
	h.a.setTarget(3)
	h.want(h.turn(), "spawn") // 103, booting
	h.a.stop(true)
	h.wantSent("101 QUIT", "102 QUIT", "103 KILL")
	h.advance(time.Minute)
	h.want(h.turn(), "kill 101", "kill 102") // SIGKILL goes once
	h.wantSent("101 KILL", "102 KILL")
	h.exit(103, killedBy(syscall.SIGKILL))
	h.want(h.turn())
	h.wantLog("Worker (pid:103) killed by signal KILL")
	if strings.Contains(h.log.String(), "failed to boot") {
		t.Fatal("a worker killed by the quick stop counts as a boot failure")
	}
	// A stop that was graceful and turns quick does the same.
	h = newDecisionTest(t, testConfig(1))
	h.boot() // 101
	h.a.setTarget(2)
	h.want(h.turn(), "spawn") // 102
	h.a.stop(false)
	h.wantSent("101 TERM", "102 TERM")
	h.a.stop(true)
	h.wantSent("101 QUIT", "102 KILL")
}
