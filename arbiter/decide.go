package arbiter

import (
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/corral-server/corral/signals"
)

// Decide, then act. The loop's rules (which workers to spawn, stop, kill
// or recycle, and what a failed boot means) are the functions in this file:
// they read the arbiter's state and the clock and return decisions as
// data, changing nothing. apply (apply.go) is the one place that carries
// decisions out. The unit tests run the rules on a fake system.

// A verb is what a decision does.
type verb int

const (
	spawn       verb = iota // start a worker of the current generation
	stop                    // send sig (TERM, --stop-signal, QUIT, or KILL for a quick stop of a worker not ready); SIGKILL follows at --graceful-timeout
	kill                    // SIGKILL, once; why, if set, goes into the log
	expire                  // SIGKILL at --boot-timeout; why is what the reaper reports
	abort                   // SIGABRT for a missed heartbeat (--timeout); SIGKILL after --abort-grace
	recycle                 // replace the worker, which reached --max-requests, once its replacement is ready
	backOff                 // a worker could not boot: put the next spawn off
	abortReload             // give up on the generation being rolled out; the worker is the one that failed
	failBoot                // no worker ever booted, or one could not be started: the arbiter stops, Run returns a *BootError
	complete                // the current generation serves whole: the reload is complete, or the start
	delayStop               // TERM with --shutdown-delay: /readyz says 503, the herd serves on until the delay ends
	drain                   // the graceful stop: the intake stops, the workers get TERM and drain
	quickStop               // INT, QUIT: the workers get QUIT and close everything at once
)

var verbNames = [...]string{"spawn", "stop", "kill", "expire", "abort", "recycle", "back off",
	"abort reload", "fail boot", "complete", "delay stop", "drain", "quick stop"}

// A decision is one thing the loop decided to do.
type decision struct {
	verb verb
	w    *Worker        // the worker it is about; nil for spawn, backOff, complete, the arbiter's stops, and failBoot after a failed spawn
	sig  syscall.Signal // stop's signal
	why  string         // for kill, expire, abortReload and failBoot; a recycle's, when not --max-requests
}

// String is the decision as the tests write it: "stop 102 TERM", "spawn".
func (d decision) String() string {
	s := verbNames[d.verb]
	if d.w != nil {
		s += " " + strconv.Itoa(d.w.Pid)
	}
	if d.verb == stop {
		s += " " + signals.Name(d.sig)
	}
	return s
}

// stopDecision is a stop of w by sig, TERM meaning its graceful stop.
func (a *Arbiter) stopDecision(w *Worker, sig syscall.Signal) decision {
	return decision{verb: stop, w: w, sig: a.stopSignal(w, sig)}
}

// stopAll decides a stop of every worker, for TERM, INT and QUIT, and for
// an upgrade's handover.
//
// A quick stop (QUIT) sends SIGKILL to the workers not ready yet. A Go
// worker catches signals only once it has built its app, and a QUIT before
// that takes the Go runtime's default action: a dump of every goroutine,
// tens to hundreds of lines around the one that says why the arbiter
// stops (a failed start or upgrade ends in a quick stop); another
// program's default for QUIT is a core dump. TERM would not do: its
// default action is quiet, but a worker that already catches it holds a
// graceful stop until it is ready, and the quick stop would wait out the
// boot. SIGKILL loses nothing a quick stop keeps: a worker the arbiter
// has not seen ready was promised no request, and a quick stop closes
// every connection anyway.
func (a *Arbiter) stopAll(sig syscall.Signal) []decision {
	var ds []decision
	for _, w := range a.sortedWorkers() {
		if sig == syscall.SIGQUIT && !w.Ready {
			ds = append(ds, decision{verb: stop, w: w, sig: syscall.SIGKILL})
			continue
		}
		ds = append(ds, a.stopDecision(w, sig))
	}
	return ds
}

// manage decides how to bring the workers to the target: spawn what is
// missing, retire old-generation and recycled workers one for one as their
// replacements become ready, trim the surplus after TTOU or WINCH, and
// note when the current generation serves whole.
func (a *Arbiter) manage(now time.Time) []decision {
	var ds []decision
	var cur, replaceable []*Worker
	recycled := false
	for _, w := range a.sortedWorkers() {
		if w.stopping {
			continue
		}
		retiring := w.retiring
		// One recycle a second at most, so workers that reach
		// --max-requests together do not all restart together.
		if w.recycleAsked && !retiring && !recycled && w.Generation == a.generation && now.Sub(a.lastRecycle) >= time.Second {
			ds = append(ds, decision{verb: recycle, w: w})
			retiring, recycled = true, true
		}
		switch {
		case w.Generation != a.generation && !w.Ready:
			ds = append(ds, a.stopDecision(w, syscall.SIGTERM)) // superseded before it served
		case w.Generation != a.generation || retiring:
			replaceable = append(replaceable, w)
		default:
			cur = append(cur, w)
		}
	}
	// TTOU or WINCH: stop the surplus, those not ready first, then the oldest.
	if extra := len(cur) - a.target; extra > 0 {
		sort.SliceStable(cur, func(i, j int) bool { return !cur[i].Ready && cur[j].Ready })
		for _, w := range cur[:extra] {
			ds = append(ds, a.stopDecision(w, syscall.SIGTERM))
		}
		cur = cur[extra:]
	}
	ready := 0
	for _, w := range cur {
		if w.Ready {
			ready++
		}
	}
	// An old worker stops only when a new one is ready to take its place.
	kept := replaceable
	for i, w := range replaceable {
		if len(replaceable)-i+ready <= a.target {
			break
		}
		ds = append(ds, a.stopDecision(w, syscall.SIGTERM))
		kept = replaceable[i+1:]
	}
	if missing := a.target - len(cur); missing > 0 && !now.Before(a.nextSpawn) {
		for range missing {
			ds = append(ds, decision{verb: spawn})
		}
	}
	if ready == a.target && a.target > 0 && !olderIn(kept, a.generation) && a.completing() {
		ds = append(ds, decision{verb: complete})
	}
	return ds
}

// olderIn reports whether one of ws is of an older generation than gen.
func olderIn(ws []*Worker, gen int) bool {
	for _, w := range ws {
		if w.Generation != gen {
			return true
		}
	}
	return false
}

// completing reports whether the current generation's serving whole has
// yet to be acted on: the first time, after a reload, or under a
// configuration that has not booted before.
func (a *Arbiter) completing() bool {
	return !a.calledReady || !a.reloadAt.IsZero() || a.stableCfg != a.cfg
}

// overdue decides which workers overstayed: booting past --boot-timeout,
// stopping past their deadline (--graceful-timeout, or --abort-grace after
// a timeout's SIGABRT), or silent past --timeout. A silent worker gets
// SIGABRT first, so it can log what it was stuck in.
func (a *Arbiter) overdue(now time.Time) []decision {
	var ds []decision
	timeout, boot := a.cfg.Worker.Timeout, a.cfg.BootTimeout
	for _, w := range a.sortedWorkers() {
		switch {
		case w.killed:
			// SIGKILL goes once; the reaper does the rest.
		case w.stopping && now.After(w.killAt):
			ds = append(ds, decision{verb: kill, w: w, why: w.killWhy})
		case w.Ready && !w.stopping && timeout > 0 && w.heartbeat.Since() > timeout:
			ds = append(ds, decision{verb: abort, w: w})
		case !w.stopping && !w.Ready && boot > 0 && now.Sub(w.Started) > boot:
			ds = append(ds, decision{verb: expire, w: w, why: a.bootTimeoutError(w)})
		}
	}
	return ds
}

// afterBootFailure decides what the death of w before it was ready means:
// the end of the arbiter at start-up, the end of a reload while older
// workers still serve (the workers still booting stop), and otherwise a
// longer wait before the next spawn.
func (a *Arbiter) afterBootFailure(w *Worker, why string) []decision {
	switch {
	case !a.everReady && !a.stopping:
		return []decision{{verb: failBoot, w: w, why: why}}
	case w.Generation == a.generation && a.olderGenerationServes():
		ds := []decision{{verb: abortReload, w: w, why: why}}
		for _, b := range a.sortedWorkers() {
			if !b.stopping && !b.Ready {
				ds = append(ds, a.stopDecision(b, syscall.SIGTERM))
			}
		}
		return ds
	}
	return []decision{{verb: backOff}}
}

// afterSpawnFailure decides what a worker that could not even be started
// (fork, exec, its pipe or heartbeat failed: an fd limit, a missing
// binary) means: at start-up, the end of the arbiter, as for a worker that
// cannot boot, since retrying would hold the port with no worker behind
// it; later, a longer wait before the next spawn, as for a boot failure.
func (a *Arbiter) afterSpawnFailure(err error) []decision {
	if !a.everReady && !a.stopping {
		return []decision{{verb: failBoot, why: err.Error()}}
	}
	return []decision{{verb: backOff}}
}

func (a *Arbiter) olderGenerationServes() bool {
	for _, w := range a.workers {
		if w.Generation != a.generation && w.Ready && !w.stopping {
			return true
		}
	}
	return false
}

// onStopSignal decides what TERM, INT or QUIT means now. TERM begins the
// shutdown delay when --shutdown-delay is set and no stop has begun: the
// load balancer sees /readyz turn 503 and takes this endpoint out while
// it still serves. A second TERM skips what is left of the delay. INT and
// QUIT stop quickly, delay or not.
func (a *Arbiter) onStopSignal(sig syscall.Signal) decision {
	switch {
	case sig != syscall.SIGTERM:
		return decision{verb: quickStop}
	case a.cfg.ShutdownDelay > 0 && !a.delaying() && !a.stopping && !a.handedOver:
		return decision{verb: delayStop}
	}
	return decision{verb: drain}
}

// delayOver decides the drain once the shutdown delay has run out.
func (a *Arbiter) delayOver(now time.Time) []decision {
	if a.delaying() && !a.stopping && !now.Before(a.delayUntil) {
		return []decision{{verb: drain}}
	}
	return nil
}

// delaying reports whether the shutdown delay began (it stays true once
// the drain follows it).
func (a *Arbiter) delaying() bool { return !a.delayUntil.IsZero() }
