package arbiter

import (
	"syscall"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/control"
)

// scaleRun feeds scale one sample every scaleEvery on a fake clock, and
// records the target after each.
type scaleRun struct {
	t      *testing.T
	st     scaler
	now    time.Time
	n      int
	lo, hi int
	delay  time.Duration
	budget int64
	held   bool // a step was held by the budget
	steps  []scaleStep
}

func newScaleRun(t *testing.T, n, lo, hi int, delay time.Duration) *scaleRun {
	return &scaleRun{t: t, now: time.Unix(1000, 0), n: n, lo: lo, hi: hi, delay: delay}
}

// feed gives the rule s for d of samples and returns the target then.
func (r *scaleRun) feed(s loadSample, d time.Duration) int {
	return r.feedFunc(func(int) loadSample { return s }, d)
}

// feedLoad gives the rule d of samples of a steady load: busy workers'
// worth of requests, spread over the herd as it is.
func (r *scaleRun) feedLoad(busy float64, d time.Duration) int {
	return r.feedFunc(func(n int) loadSample { return loadSample{share: min(1, busy/float64(n))} }, d)
}

// feedFunc gives the rule sample(target) for d of samples, one every
// scaleEvery, and returns the target then.
func (r *scaleRun) feedFunc(sample func(n int) loadSample, d time.Duration) int {
	for end := r.now.Add(d); r.now.Before(end); r.now = r.now.Add(scaleEvery) {
		var step scaleStep
		last := r.st.stepped
		r.st, step = scale(r.st, sample(r.n), r.now, r.n, r.lo, r.hi, r.delay, r.budget)
		r.held = r.held || step.why != "" && step.delta == 0
		if step.delta != 0 {
			if step.delta < -1 || step.delta > 0 && r.n+step.delta > max(r.hi, r.lo) || r.n+step.delta < 0 {
				r.t.Fatalf("a step of %d from %d within %d:%d: %+v", step.delta, r.n, r.lo, r.hi, step)
			}
			if gap := r.now.Sub(last); len(r.steps) > 0 && step.cause != "bounds" && (step.delta > 0 && gap < scaleUpCooldown || step.delta < 0 && gap < scaleCooldown) {
				r.t.Fatalf("a step of %d %s after the last: %+v", step.delta, gap, step)
			}
			if !r.st.stepped.Equal(r.now) {
				r.t.Fatalf("stepped state not updated")
			}
			r.steps = append(r.steps, step)
			r.n += step.delta
		}
	}
	return r.n
}

var (
	idle   = loadSample{}
	queued = loadSample{queued: 3, share: 1}
	busy   = loadSample{share: 0.9}
	steady = loadSample{share: 0.5}
)

func TestScaleUpByTheQueue(t *testing.T) {
	r := newScaleRun(t, 2, 1, 8, 60*time.Second)
	// Two samples of a queue under twice the herd are not enough: three
	// in a row are.
	if n := r.feed(queued, 2*scaleEvery); n != 2 {
		t.Fatalf("after two samples with a queue: %d workers, want 2", n)
	}
	// Three sync connections waiting: three workers more, in one step.
	if n := r.feed(queued, scaleEvery); n != 5 || len(r.steps) != 1 || r.steps[0].cause != "queue" {
		t.Fatalf("after three: %d workers (%+v), want 5 in one step for the queue", n, r.steps)
	}
	// A queue of twice the herd or more: its first sample is enough.
	r = newScaleRun(t, 1, 1, 4, time.Minute)
	if n := r.feed(loadSample{queued: 2, share: 1}, scaleEvery); n != 3 {
		t.Fatalf("2 waiting for 1 worker, one sample: %d workers (%+v), want 3", n, r.steps)
	}
	r = newScaleRun(t, 1, 1, 8, time.Minute)
	if n := r.feed(queued, scaleEvery); n != 4 {
		t.Fatalf("3 waiting for 1 worker, one sample: %d workers, want 4", n)
	}
	// The step's workers boot before the next one.
	if n := r.feed(loadSample{queued: 3, booting: 3}, 5*time.Second); n != 4 {
		t.Fatalf("while they boot: %d workers, want 4", n)
	}
	// A deeper queue than the maximum allows: up to the maximum.
	if n := r.feed(loadSample{queued: 64, share: 1}, scaleUpCooldown); n != 8 || len(r.steps) != 2 {
		t.Fatalf("64 waiting: %d workers (%+v), want the maximum 8", n, r.steps)
	}
	// goroutine and event workers take --worker-connections each: 150
	// waiting for workers of 100 connections ask for two more.
	r = newScaleRun(t, 1, 1, 8, time.Minute)
	if n := r.feed(loadSample{queued: 150, conns: 100, share: 1}, 2*scaleEvery); n != 1 {
		t.Fatalf("150 waiting, 100 per worker, two samples: %d workers, want 1 (not deep)", n)
	}
	if n := r.feed(loadSample{queued: 150, conns: 100, share: 1}, scaleEvery); n != 3 {
		t.Fatalf("150 waiting, 100 per worker: %d workers, want 3", n)
	}
}

func TestScaleUpOneAtATimeWithCooldown(t *testing.T) {
	r := newScaleRun(t, 1, 1, 4, 60*time.Second)
	one := loadSample{queued: 1, share: 1}
	if n := r.feed(one, 3*scaleEvery); n != 2 || r.steps[0].cause != "queue" {
		t.Fatalf("after three samples of one waiting: %d workers (%+v), want 2 for the queue", n, r.steps)
	}
	// The cooldown: no second step before scaleUpCooldown.
	if n := r.feed(one, scaleUpCooldown-scaleEvery); n != 2 {
		t.Fatalf("within the cooldown: %d workers, want 2", n)
	}
	if n := r.feed(one, 10*time.Second); n != 4 {
		t.Fatalf("after 10 s more of a queue: %d workers, want the maximum 4", n)
	}
	if len(r.steps) != 3 {
		t.Fatalf("steps %+v, want 3", r.steps)
	}
}

func TestScaleUpWaitsForBooting(t *testing.T) {
	r := newScaleRun(t, 1, 1, 4, time.Minute)
	if n := r.feed(loadSample{queued: 5, booting: 1}, 10*time.Second); n != 1 {
		t.Fatalf("with a worker booting: %d workers, want 1 (never two steps at once)", n)
	}
	if n := r.feed(queued, scaleEvery); n != 4 {
		t.Fatalf("once they are ready: %d workers, want 4", n)
	}
}

func TestScaleUpOnBusyShare(t *testing.T) {
	r := newScaleRun(t, 2, 2, 8, time.Minute)
	// A busy share asks for one worker a step, not for the queue's count.
	if n := r.feed(busy, time.Second); n != 3 || r.steps[0].cause != "busy" {
		t.Fatalf("busy share 90%%: %d workers (%+v), want 3 for busy", n, r.steps)
	}
}

func TestScaleDownAfterDelay(t *testing.T) {
	delay := 5 * time.Second
	r := newScaleRun(t, 4, 1, 4, delay)
	if n := r.feed(idle, delay-scaleEvery); n != 4 {
		t.Fatalf("idle for less than the delay: %d workers, want 4", n)
	}
	if n := r.feed(idle, 2*scaleEvery); n != 3 || r.steps[0].cause != "idle" {
		t.Fatalf("idle for the delay: %d workers (%+v), want 3", n, r.steps)
	}
	// Still idle: one less per cooldown, down to the minimum and no further.
	if n := r.feed(idle, scaleCooldown-scaleEvery); n != 3 {
		t.Fatalf("within the cooldown: %d workers, want 3", n)
	}
	if n := r.feed(idle, scaleEvery); n != 2 {
		t.Fatalf("a cooldown later: %d workers, want 2", n)
	}
	if n := r.feed(idle, time.Minute); n != 1 || len(r.steps) != 3 {
		t.Fatalf("a minute later: %d workers (%+v), want the minimum 1 in 3 steps", n, r.steps)
	}
	// A sample over the low mark starts the delay over.
	r = newScaleRun(t, 3, 1, 4, delay)
	r.feed(idle, delay-time.Second)
	r.feed(steady, 2*time.Second) // the moving mean goes over the low mark
	if n := r.feed(idle, delay-2*time.Second); n != 3 {
		t.Fatalf("load between idle periods: %d workers, want 3", n)
	}
	// So does a step up: a herd grown for a burst waits the delay again.
	r = newScaleRun(t, 2, 1, 4, delay)
	r.feed(idle, delay-time.Second)
	r.feed(loadSample{queued: 1}, 3*scaleEvery)
	if n := r.feed(idle, delay-time.Second); n != 3 {
		t.Fatalf("idle again after a step up: %d workers, want 3 until the delay", n)
	}
	if n := r.feed(idle, 2*time.Second); n != 2 {
		t.Fatalf("idle for the delay after the step up: %d workers, want 2", n)
	}
}

// A steady load that the shrinking herd concentrates stops the descent
// where its share crosses the low mark, and stays there.
func TestScaleDownStopsAtTheLoad(t *testing.T) {
	r := newScaleRun(t, 8, 1, 8, 5*time.Second)
	// One worker's worth of requests: 12% of 8, 25% of 4, 33% of 3.
	if n := r.feedLoad(1, time.Minute); n != 3 {
		t.Fatalf("one busy worker's load: %d workers (%+v), want 3", n, r.steps)
	}
	steps := len(r.steps)
	if n := r.feedLoad(1, 10*time.Minute); n != 3 || len(r.steps) != steps {
		t.Fatalf("10 minutes more of it: %d workers, steps %+v; want 3, no more", n, r.steps[steps:])
	}
	// Under the low mark of every herd from 2 up, and as high as it may be
	// for that: the herd shrinks to 1 and never steps up (its share, 59%,
	// stays under the high mark: the marks are more than 2x apart).
	for load, want := range map[float64]int{0.59: 1, 0.61: 2} {
		r = newScaleRun(t, 8, 1, 8, 5*time.Second)
		if n := r.feedLoad(load, 10*time.Minute); n != want {
			t.Fatalf("%.2f busy workers' load: %d workers (%+v), want %d", load, n, r.steps, want)
		}
		for _, s := range r.steps {
			if s.delta > 0 {
				t.Fatalf("%.2f: a step up under a steady load: %+v", load, r.steps)
			}
		}
	}
}

func TestScaleSteadyLoadDoesNotFlap(t *testing.T) {
	r := newScaleRun(t, 3, 1, 8, 5*time.Second)
	if n := r.feed(steady, 10*time.Minute); n != 3 || len(r.steps) != 0 {
		t.Fatalf("a steady 50%% share for 10 minutes: %d workers, steps %+v; want 3, none", n, r.steps)
	}
	// Alternating idle and busy samples average to steady.
	for range 1000 {
		r.feed(idle, scaleEvery)
		r.feed(loadSample{share: 1}, scaleEvery)
	}
	if len(r.steps) != 0 {
		t.Fatalf("alternating samples: steps %+v, want none", r.steps)
	}
}

func TestScaleBounds(t *testing.T) {
	r := newScaleRun(t, 0, 2, 4, time.Second)
	if n := r.feed(idle, scaleCooldown+scaleEvery); n != 2 {
		t.Fatalf("under the minimum: %d, want 2", n)
	}
	r = newScaleRun(t, 6, 2, 4, time.Second)
	if n := r.feed(queued, scaleCooldown+scaleEvery); n != 4 {
		t.Fatalf("over the maximum: %d, want 4", n)
	}
}

func TestBoundedTarget(t *testing.T) {
	a := &Arbiter{cfg: &Config{Workers: 2, MaxWorkers: 5}}
	for in, want := range map[int]int{1: 2, 3: 3, 6: 5} {
		if got := a.bounded(in); got != want {
			t.Errorf("bounded(%d) = %d, want %d", in, got, want)
		}
	}
	a.cfg = &Config{Workers: 2}
	if got := a.bounded(7); got != 7 {
		t.Errorf("a fixed count: bounded(7) = %d, want 7", got)
	}
}

func TestScaleSignalsAndControlStayWithinBounds(t *testing.T) {
	cfg := testConfig(2)
	cfg.MaxWorkers = 3
	h := newDecisionTest(t, cfg)
	withControl(h)
	h.boot() // 101, 102
	h.signal(syscall.SIGTTOU)
	if h.a.target != 2 {
		t.Fatalf("TTOU at the minimum: target %d, want 2", h.a.target)
	}
	h.signal(syscall.SIGTTIN, syscall.SIGTTIN)
	if h.a.target != 3 || h.a.scale.cause != "ttin" {
		t.Fatalf("two TTINs under a maximum of 3: target %d (cause %q), want 3 for ttin", h.a.target, h.a.scale.cause)
	}
	ch := h.send(control.Request{Cmd: control.CmdWorkers, N: 9})
	h.a.handleCommands()
	if r := h.answer(ch); !r.OK || r.Message != "workers: 3 -> 3 (-w 2:3 bounds it)" {
		t.Fatalf("workers 9: %+v", r)
	}
}

func TestScaleKeepsToTheMemoryBudget(t *testing.T) {
	r := newScaleRun(t, 2, 1, 8, time.Minute)
	r.budget = 250 << 20
	// 2 workers of 100 MiB: a third would take the herd to 300 MiB.
	heavy := loadSample{queued: 4, share: 1, memory: 200 << 20, perWorker: 100 << 20}
	if n := r.feed(heavy, 10*time.Second); n != 2 || !r.held {
		t.Fatalf("over the budget: %d workers (held %v), want 2, held", n, r.held)
	}
	// 4 waiting, room for 3 workers of 50 MiB: 3 of them.
	light := loadSample{queued: 4, share: 1, memory: 100 << 20, perWorker: 50 << 20}
	if n := r.feed(light, scaleEvery); n != 5 {
		t.Fatalf("within the budget: %d workers, want 5", n)
	}
}
