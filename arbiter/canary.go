package arbiter

import (
	"fmt"
	"time"

	"github.com/corral-server/corral/internal/metrics"
	"github.com/corral-server/corral/internal/scoreboard"
)

// --reload-canary N: a reload first replaces N workers only (manage
// spawns no more of the new generation), and watches them for
// --canary-window once all N are ready, against the old generation:
//
//   - a canary that cannot boot aborts the reload, as any reload's
//     (afterBootFailure);
//   - a canary that crashes or misses its --timeout while watched, or
//     whose 5xx share is over the threshold (canaryBad), rolls the reload
//     back: the old workers become the current generation under the last
//     configuration that booted, and the canaries, now older, are replaced
//     by workers of it, each stopping once its replacement is ready;
//   - a window that passes promotes the generation: the rest is rolled.

// The 5xx threshold: the canaries roll back when, with at least
// canaryMinAnswers answered in the window, their share of 5xx answers is
// over the old generation's share (over its life) by canaryMargin.
const (
	canaryMinAnswers = 20
	canaryMargin     = 0.10
)

// canaryState is a canary reload under way.
type canaryState struct {
	gen     int                       // the generation on trial
	n       int                       // how many canaries
	since   time.Time                 // the window's start, once all n are ready; zero before
	failure string                    // a canary crashed or timed out: why; "" for none
	cause   metrics.CanaryOutcome     // with a failure: crashed or timed out
	base    map[int]scoreboard.Totals // each canary's counts at the window's start, by pid
}

// canaryLimit is how many workers of the current generation manage may
// keep: n during a canary reload, the target otherwise.
func (a *Arbiter) canaryLimit() int {
	if a.canary == nil {
		return a.target
	}
	return min(a.canary.n, a.target)
}

// watchCanary decides a canary reload's fate: rollBack (why says why),
// promote once the window passed, or nothing yet.
func (a *Arbiter) watchCanary(now time.Time) []decision {
	c := a.canary
	if c == nil || a.stopping {
		return nil
	}
	if c.failure != "" {
		return []decision{{verb: rollBack, why: c.failure}}
	}
	if c.since.IsZero() {
		return nil // the canaries are booting; a boot failure aborts the reload
	}
	if why := a.canaryBad(); why != "" {
		return []decision{{verb: rollBack, why: why}}
	}
	if now.Sub(c.since) >= a.cfg.CanaryWindow {
		return []decision{{verb: promote}}
	}
	return nil
}

// canaryBad is why the canaries' answers fail the threshold, "" if they
// do not: their 5xx share in the window against the old generation's.
func (a *Arbiter) canaryBad() string {
	var canary, old scoreboard.Totals
	for _, w := range a.workers {
		b := w.heartbeat.Board()
		if b == nil || w.stopping {
			continue
		}
		r := b.Read()
		if !r.Valid {
			continue
		}
		if w.Generation != a.canary.gen {
			old.Add(r.Totals)
			continue
		}
		t := r.Totals
		for i, base := range a.canary.base[w.Pid].Requests {
			t.Requests[i] -= min(base, t.Requests[i])
		}
		canary.Add(t)
	}
	share := func(t scoreboard.Totals) (float64, uint64) {
		n := t.RequestCount()
		if n == 0 {
			return 0, 0
		}
		return float64(t.Requests[4]) / float64(n), n
	}
	cs, cn := share(canary)
	os, _ := share(old)
	if cn < canaryMinAnswers || cs <= os+canaryMargin {
		return ""
	}
	return fmt.Sprintf("the canaries answered %.0f%% of %d requests with 5xx, the old workers %.0f%% (threshold: %.0f points more)",
		100*cs, cn, 100*os, 100*canaryMargin)
}

// canaryReady starts the window once all the canaries are ready, with
// each one's counts so far as its base.
func (a *Arbiter) canaryReady() {
	c := a.canary
	if c == nil || !c.since.IsZero() {
		return
	}
	ready := 0
	for _, w := range a.workers {
		if w.Generation == c.gen && w.Ready && !w.stopping {
			ready++
		}
	}
	if ready < a.canaryLimit() {
		return
	}
	c.since, c.base = a.sys.now(), map[int]scoreboard.Totals{}
	for _, w := range a.workers {
		if b := w.heartbeat.Board(); b != nil && w.Generation == c.gen {
			c.base[w.Pid] = b.Read().Totals
		}
	}
	a.log.Info(fmt.Sprintf("Canary: %d workers of generation %d ready; watching them for %s", ready, c.gen, a.cfg.CanaryWindow))
}

// canaryExited notes a canary that died while watched (not asked to stop,
// after it was ready): a crash or a timeout.
func (a *Arbiter) canaryExited(w *Worker) {
	c := a.canary
	if c == nil || w.Generation != c.gen || !w.Ready || (w.stopping && !w.timedOut) || c.failure != "" {
		return
	}
	what, cause := "crashed: "+exitReason(w.Status), metrics.CanaryCrashed
	if w.timedOut {
		what, cause = "missed its timeout", metrics.CanaryTimedOut
	}
	c.cause = cause
	c.failure = fmt.Sprintf("canary worker (pid:%d) %s", w.Pid, what)
}

// rollBack ends a canary reload that failed: the old workers carry on as
// the current generation under the last configuration that booted; the
// canaries, now of an older one, are replaced by workers of it.
func (a *Arbiter) rollBack(why string) {
	gen := a.canary.gen
	if a.canary.failure != "" {
		a.canaryEnded(a.canary.cause)
	} else {
		a.canaryEnded(metrics.CanaryErrors)
	}
	why += "; the old workers keep serving, the canaries are replaced"
	a.log.Error(fmt.Sprintf("Reload rolled back (after %s): %s", a.reloadReason, why), "generation", gen, "reason", why)
	a.fallBack("rolled back: "+why, func(w *Worker) bool { return w.Generation != gen })
}

// promote ends a canary reload that passed: the rest of the herd rolls.
func (a *Arbiter) promote() {
	a.log.Info(fmt.Sprintf("Canary: generation %d passed %s; replacing the rest", a.canary.gen, a.cfg.CanaryWindow))
	a.canaryEnded(metrics.CanaryPromoted)
	a.canary = nil
}
