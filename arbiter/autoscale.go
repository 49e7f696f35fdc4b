package arbiter

import (
	"fmt"
	"math"
	"time"

	"github.com/corral-server/corral/internal/scoreboard"
)

// -w MIN:MAX: the arbiter moves its target between the bounds from the
// load it measures (the accept queues of its own listeners, and the
// workers' scoreboards). The rule (scale) is a pure function of a load
// sample, the scaler's state and the clock; the loop samples every
// scaleEvery and applies the step it returns.

// The rule's constants (docs/architecture.md, "Worker count from load").
const (
	scaleEvery      = 100 * time.Millisecond // a sample of the load
	scaleUpTicks    = 3                      // samples in a row that want a worker more
	deepQueue       = 2                      // a queue this many times what the herd serves at once wants workers on its first sample
	scaleUpCooldown = 1 * time.Second        // from a step to a step up
	scaleCooldown   = 2 * time.Second        // from a step to a step down
	highMark        = 0.8                    // busy share above which a worker more is wanted
	lowMark         = 0.3                    // busy share the herd stays under before one less
	shareWeight     = 0.13                   // the weight of a new sample in the busy share's moving mean (0.3 a quarter second)
)

// A loadSample is the herd's load at one instant.
type loadSample struct {
	queued  int     // connections waiting in the listeners' accept queues
	conns   int     // the connections one worker serves at once: 1 for sync and exec workers, --worker-connections for goroutine and event; 0 counts as 1
	share   float64 // sync: the share of ready workers with a request in flight; goroutine, event: the share of --worker-connections open
	booting int     // workers of the target's count not ready yet
	// The herd's PSS, and what one worker more would add (the mean of
	// theirs), when --max-memory sets a budget; 0 without one.
	memory, perWorker uint64
}

// scaler is the rule's state between samples, owned by the loop.
type scaler struct {
	sampled  time.Time // the last sample
	mean     float64   // the busy share's moving mean
	high     int       // samples in a row that wanted a worker more
	lowSince time.Time // since when every sample was under the low mark; zero: the last was not
	held     bool      // a step up is held back by --max-memory (and the log said so)
	stepped  time.Time // the last step, or the start
	cause    string    // why the target last changed, in a word: queue, busy, idle, bounds, ttin, ttou, ctl, winch, reload; "" for never
	why      string    // the same, as the log says it
	changed  time.Time // when
}

// A scaleStep is the rule's verdict: move the target by delta (-1, 0, or
// +1 up to the maximum) because of why.
type scaleStep struct {
	delta int
	cause string // as scaler.cause
	why   string
}

// scale decides, from the sample s taken at now, whether the target n
// moves within [lo, hi]; it returns the scaler's next state.
//
// Up: when work waits (a non-empty accept queue, or a busy share above
// highMark) scaleUpTicks samples in a row, or a queue deepQueue times what
// the herd serves at once (n × conns) waits in one; no worker is still
// booting, and scaleUpCooldown has passed since the last step. A queue
// asks for as many workers as it takes to serve what waits at once
// (queued / conns, rounded up: with sync workers, one per waiting
// connection), a busy share for one; at most up to hi, and none that
// would take the herd's memory over budget (--max-memory; 0 for none): a
// step held for it has a why and no delta. The workers of one step boot
// together, and the next step waits for them: steps never overlap.
//
// Down: one worker, when every sample for delay was under lowMark with an
// empty queue, and scaleCooldown has passed since the last step; while the
// herd stays that low, one more per scaleCooldown. A step up, or a sample
// over the mark, starts the delay anew.
//
// After a step the busy share's mean is rescaled to the new herd (the
// same load over n+delta workers), so that the next samples neither
// inherit the old herd's share nor take seconds to wash it out.
func scale(st scaler, s loadSample, now time.Time, n, lo, hi int, delay time.Duration, budget int64) (scaler, scaleStep) {
	if st.sampled.IsZero() {
		st.mean = s.share
	} else {
		st.mean += shareWeight * (s.share - st.mean)
	}
	st.sampled = now
	waits := s.queued > 0 || st.mean > highMark
	if waits {
		st.high++
	} else {
		st.high, st.held = 0, false
	}
	if !waits && s.queued == 0 && st.mean < lowMark {
		if st.lowSince.IsZero() {
			st.lowSince = now
		}
	} else {
		st.lowSince = time.Time{}
	}
	var step scaleStep
	since := now.Sub(st.stepped)
	deep := s.queued >= deepQueue*max(n, 1)*max(s.conns, 1)
	up := n < hi && (st.high >= scaleUpTicks || deep) && s.booting == 0 && since >= scaleUpCooldown
	switch want := min(wanted(s), hi-n, fitting(s, budget)); {
	case n < lo:
		step = scaleStep{1, "bounds", fmt.Sprintf("under the minimum %d", lo)}
	case n > hi:
		step = scaleStep{-1, "bounds", fmt.Sprintf("over the maximum %d", hi)}
	case up && want <= 0:
		// Held: one worker more would cross --max-memory. Said once per hold.
		if !st.held {
			step.why = fmt.Sprintf("held at %d workers: one more (%s) would take the herd's %s over --max-memory %s",
				n, mib(s.perWorker), mib(s.memory), mib(uint64(budget)))
		}
		st.held = true
	case up && s.queued > 0:
		step = scaleStep{want, "queue", fmt.Sprintf("%d connections waiting in the accept queue", s.queued)}
	case up:
		step = scaleStep{1, "busy", fmt.Sprintf("busy share %.0f%% above %.0f%%", 100*st.mean, 100*highMark)}
	case n > lo && !st.lowSince.IsZero() && now.Sub(st.lowSince) >= delay && since >= scaleCooldown:
		step = scaleStep{-1, "idle", fmt.Sprintf("busy share under %.0f%% for %s", 100*lowMark, delay)}
	}
	if step.delta > 0 {
		st.lowSince = time.Time{}
	}
	if step.delta != 0 {
		// The same load over the new herd: the mean so far, rescaled,
		// rather than samples of the old one that would take seconds to
		// wash out (and could let a step down follow the step that
		// already took the share over the low mark).
		if n+step.delta > 0 {
			st.mean = min(1, st.mean*float64(n)/float64(n+step.delta))
		}
		st.high, st.stepped = 0, now
		st.cause, st.why, st.changed = step.cause, step.why, now
	}
	return st, step
}

// wanted is how many workers more the sample s asks for when work waits:
// enough to serve the accept queue at once, at least one.
func wanted(s loadSample) int {
	conns := max(s.conns, 1)
	return max((s.queued+conns-1)/conns, 1)
}

// fitting is how many workers more the herd's memory budget (0: none)
// leaves room for, counting each as the herd's mean.
func fitting(s loadSample, budget int64) int {
	switch {
	case budget <= 0:
		return math.MaxInt
	case s.memory > uint64(budget):
		return 0
	case s.perWorker == 0:
		return math.MaxInt
	}
	return int((uint64(budget) - s.memory) / s.perWorker)
}

// scaling reports whether the configuration asks for a worker count from
// the load (-w MIN:MAX).
func (c *Config) scaling() bool { return c.MaxWorkers > c.Workers }

// sampleLoad measures the herd: the listeners' accept queues, and the
// busy share of the ready workers that count toward the target.
func (a *Arbiter) sampleLoad() loadSample {
	var s loadSample
	for _, l := range a.listeners {
		if q, err := l.Queue(); err == nil {
			s.queued += q.Depth
		}
	}
	s.conns = 1 // sync and exec: one request at a time
	if conns := a.cfg.Worker.WorkerConnections; a.cfg.Worker.Class != "sync" && a.cfg.Command == nil && conns > 0 {
		s.conns = conns
	}
	perWorker := float64(s.conns)
	ready, used := 0, 0.0
	for _, w := range a.workers {
		if !a.counts(w) {
			continue
		}
		if !w.Ready {
			s.booting++
			continue
		}
		ready++
		s.memory += w.proc.PSS
		b := w.heartbeat.Board()
		if b == nil {
			continue // an exec worker: the queue tells
		}
		c := b.Read()
		switch {
		case !c.Valid:
		case perWorker == 1:
			if c.InFlight > 0 || c.State == scoreboard.Busy {
				used++
			}
		default:
			used += float64(c.ConnsOpen)
		}
	}
	if ready > 0 {
		s.share = used / (float64(ready) * perWorker)
		s.perWorker = s.memory / uint64(ready)
	}
	if a.cfg.MaxMemory <= 0 {
		s.memory, s.perWorker = 0, 0
	}
	return s
}

// autoscale samples the load every scaleEvery and moves the target as
// scale decides, logging each step with its reason.
func (a *Arbiter) autoscale() {
	now := a.sys.now()
	if !a.cfg.scaling() || a.stopping || a.target == 0 || now.Sub(a.scale.sampled) < scaleEvery {
		return
	}
	st, step := scale(a.scale, a.sampleLoad(), now, a.target, a.cfg.Workers, a.cfg.MaxWorkers, a.cfg.ScaleDownDelay, a.cfg.MaxMemory)
	a.scale = st
	if step.delta == 0 {
		if step.why != "" {
			a.log.Warn("Scaling: " + step.why)
		}
		return
	}
	old := a.target
	a.moveTarget(old+step.delta, step.cause, step.why)
	a.log.Info(fmt.Sprintf("Scaling: %d -> %d workers: %s", old, a.target, step.why), "target", a.target)
}

// nextSample is when autoscale wants the loop to wake; zero for never.
func (a *Arbiter) nextSample() time.Time {
	if !a.cfg.scaling() || a.stopping {
		return time.Time{}
	}
	return a.scale.sampled.Add(scaleEvery)
}

// bounded is n within the configured bounds when scaling (TTIN, TTOU and
// a reload move the target within them); n otherwise.
func (a *Arbiter) bounded(n int) int {
	if !a.cfg.scaling() {
		return n
	}
	return min(max(n, a.cfg.Workers), a.cfg.MaxWorkers)
}
