package arbiter

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/corral-server/corral/signals"
	"golang.org/x/sys/unix"
)

// Backoff for workers that keep dying before they are ready.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// apply carries the decisions out, in order: the one place where the
// loop's rules (decide.go) reach processes.
func (a *Arbiter) apply(ds []decision) {
	spawnFailed := false
	for _, d := range ds {
		switch d.verb {
		case spawn:
			if spawnFailed {
				continue // the backoff holds the rest back
			}
			if err := a.spawnWorker(); err != nil {
				a.log.Error(err.Error())
				a.apply(a.afterSpawnFailure(err))
				spawnFailed = true
			}
		case stop:
			a.stopWorker(d.w, d.sig)
		case kill:
			if d.why != "" {
				a.log.Warn(fmt.Sprintf("Worker (pid:%d) %s; killing it", d.w.Pid, d.why))
			}
			if a.stopping && !d.w.timedOut {
				a.cutShort++
			}
			a.killWorker(d.w)
		case expire:
			d.w.lastError = d.why
			a.killWorker(d.w)
		case abort:
			a.abortWorker(d.w)
		case recycle:
			d.w.retiring, d.w.recycledFor = true, d.why
			if d.why == maxRequestsWhy || strings.HasPrefix(d.why, memoryWhy) {
				a.lastRecycle = a.sys.now() // manage's recycles: at most one a second
			}
			a.log.Info(fmt.Sprintf("Worker (pid:%d) %s; replacing it", d.w.Pid, d.why))
		case backOff:
			delay := a.backOff()
			a.log.Warn(fmt.Sprintf("Next worker spawn in %s (%d boot failures in a row)", delay, a.bootFailures))
		case abortReload:
			a.abortReload(d.w, d.why)
		case failBoot:
			a.failBoot(d.w, d.why)
		case complete:
			a.generationReady()
		case rollBack:
			a.rollBack(d.why)
		case promote:
			a.promote()
		case delayStop:
			a.delayStop()
		case drain:
			a.stop(false)
		case quickStop:
			a.stop(true)
		}
	}
}

// failBoot ends the arbiter at start-up: w could not boot or, when nil,
// a worker could not be started at all.
func (a *Arbiter) failBoot(w *Worker, why string) {
	e, reason := &BootError{Reason: why}, "Reason: no worker could be started; shutting down"
	if w != nil {
		e.Pid, e.Reason = w.Pid, why+lastOutput(w)
		reason = "Reason: no worker could boot; shutting down"
	}
	a.exitErr = e
	a.log.Error(reason)
	a.stop(true)
}

// send signals w. A worker already gone (ESRCH) is no error: the reaper
// sees it.
func (a *Arbiter) send(w *Worker, sig syscall.Signal) {
	if err := a.sys.signal(w.Pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		a.log.Warn(fmt.Sprintf("kill %s worker (pid:%d): %v", signals.Name(sig), w.Pid, err))
	}
}

// stopWorker sends w sig and, the first time, starts its deadline.
func (a *Arbiter) stopWorker(w *Worker, sig syscall.Signal) {
	a.send(w, sig)
	w.killed = w.killed || sig == syscall.SIGKILL
	if !w.stopping {
		w.stopping = true
		// SIGKILL comes at --graceful-timeout, not a second later (the
		// loop wakes for it: see sleep): that is the bound the flag
		// promises ("seconds a stopping worker gets to finish, then
		// SIGKILL"), the one a service manager's stop timeout is sized
		// to, and Gunicorn's; a reload's retirement and a stop of the
		// whole arbiter keep the same one. The worker's own timer of
		// the same length (it closes its connections) starts when the
		// TERM arrives; whichever ends it first, no stop outlasts the
		// flag.
		w.killAt = a.sys.now().Add(a.cfg.GracefulTimeout)
		w.killWhy = "did not stop within the graceful timeout"
	}
}

// killWorker sends w SIGKILL, once.
func (a *Arbiter) killWorker(w *Worker) {
	a.send(w, syscall.SIGKILL)
	w.killed = true
}

// abortWorker handles a worker silent past --timeout: SIGABRT, so that it
// logs what it was stuck in, and SIGKILL after --abort-grace.
func (a *Arbiter) abortWorker(w *Worker) {
	a.log.Error(fmt.Sprintf("WORKER TIMEOUT (pid:%d)%s", w.Pid, currentRequest(w)), "worker", w.Pid, "generation", w.Generation)
	a.send(w, syscall.SIGABRT)
	// Stopping: its replacement spawns now, and its exit is expected.
	w.stopping, w.timedOut = true, true
	w.killAt = a.sys.now().Add(a.cfg.AbortGrace)
	w.killWhy = fmt.Sprintf("still alive %s after SIGABRT", a.cfg.AbortGrace)
}

// backOff counts one more boot failure in a row and puts the next spawn
// off by 100 ms after the first, doubling up to 30 s; it returns the wait.
func (a *Arbiter) backOff() time.Duration {
	a.bootFailures++
	delay := min(minBackoff<<min(a.bootFailures-1, 20), maxBackoff)
	a.nextSpawn = a.sys.now().Add(delay)
	return delay
}
