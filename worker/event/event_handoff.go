package event

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// A loop runs the pool's jobs itself while they are quick, and gives the
// loop to another goroutine when one blocks.
//
// Handing a job to the pool costs a goroutine switch there and back, and
// under keep-alive load that was a tenth of a request's CPU time; behind
// nginx's uwsgi_pass, where each turn carries one request, it is paid per
// request. So, when the worker has one P per loop (Serve's default, where
// the pool's handlers run on the loop's thread anyway), a loop keeps the
// jobs of its turn (keepsJobs) and runs them at the turn's end (runKept),
// on its own goroutine, with no switch.
//
// A handler that blocks (a query, a sleep, a lock) would stall every other
// connection of the loop: while a kept job runs, the loop's goroutine is
// marked as in it (handoff.owner odd), and a watchdog that finds the same
// job still running a tick later takes the loop over, by one
// compare-and-swap that the job's goroutine, once back, also tries: the
// one that loses leaves the loop alone. The winner, a new goroutine,
// finishes the turn and runs the loop from there (resume); the old one
// finishes its handler as a pool goroutine would, posting the answer, and
// ends. A handler that streams (send) hands the loop off at once, since
// it waits for the loop to take its bytes.
//
// A job taken over, or eventKeptSlows of eventKeptWindow in a row that
// ran longer than eventKeptSlow a request, are a strike: the loop's jobs
// go to the pool for a while (eventKeptStay, doubling with each strike up to
// eventKeptStayMax), so an app whose handlers block pays for a blocked
// loop once in a while, not per request. One slow job is not: on a
// shared machine a hello world's job now and then takes 100-400us of wall
// time, the CPU taken away from it.

// Timing of the loop's kept jobs.
const (
	eventKeptSlow    = 100 * time.Microsecond // a kept job that runs longer is slow
	eventKeptSlows   = 8                      // slow jobs of a window that are a strike
	eventKeptWindow  = 1024                   // kept jobs a window counts
	eventKeptStay    = 100 * time.Millisecond // the first strike's time on the pool
	eventKeptStayMax = 10 * time.Second       // the longest, after strikes in a row
	eventKeptForgive = 10 * time.Second       // clean time after a stay that starts the next from eventKeptStay
	eventWatchTick   = time.Millisecond       // the watchdog's look at the loops running kept jobs
)

// errHandedOff ends run on a goroutine that a blocked job kept: another
// runs the loop now.
var errHandedOff = errors.New("event loop handed to another goroutine")

// handoff is a loop's state for its kept jobs; owner is the watchdog's
// too, the rest the loop's.
type handoff struct {
	// owner counts kept jobs, twice each: odd while the loop's goroutine
	// runs one. Whoever moves it from that odd value to the next has the
	// loop: the goroutine coming back from the job, or the watchdog.
	owner atomic.Uint64
	until int64         // nanotime before which jobs go to the pool
	stay  time.Duration // the last strike's time on the pool
	ran   int           // kept jobs in this window
	slow  int           // of them, those slower than eventKeptSlow
}

// keepsJobs reports whether the loop runs the jobs of this turn itself.
func (l *eventLoop) keepsJobs() bool {
	return l.e.watchdog != nil && l.now >= l.handoff.until
}

// keptLeft reports whether kept jobs wait to run.
func (l *eventLoop) keptLeft() bool { return l.keptNext < len(l.kept) }

// runKept runs the kept jobs, in order; each posts its answers to the
// inbox as on the pool. false: one blocked, and another goroutine took the
// loop over; this one must leave the loop's state alone and end.
func (l *eventLoop) runKept() bool {
	h := &l.handoff
	start := nanotime()
	for l.keptNext < len(l.kept) {
		j := l.kept[l.keptNext]
		l.kept[l.keptNext] = nil
		l.keptNext++
		o := h.owner.Add(1)
		j.kept, j.start = o, start
		l.e.watchdog.kick()
		handlers := int64(max(len(j.reqs), 1))
		j.serve()
		if !h.owner.CompareAndSwap(o, o+1) {
			return false
		}
		j.kept = 0
		end := j.q.Ended()
		if end < start {
			end = nanotime()
		}
		if h.ran++; h.ran == eventKeptWindow {
			h.ran, h.slow = 0, 0
		}
		// A batch of pipelined requests is as many handlers: slow is
		// slower than eventKeptSlow each, on average, so that a
		// preempted turn (a hypervisor's steal can take milliseconds)
		// does not count as a blocking handler as readily.
		if end-start > int64(eventKeptSlow)*handlers {
			if h.slow++; h.slow == eventKeptSlows {
				l.strike(end, fmt.Sprintf("%d of its last %d handlers ran over %s on it", h.slow, h.ran, eventKeptSlow))
			}
		}
		start = end
	}
	l.kept, l.keptNext = l.kept[:0], 0
	l.now = start
	return true
}

// strike sends the loop's jobs to the pool for a while, the kept ones not
// begun first.
func (l *eventLoop) strike(now int64, why string) {
	h := &l.handoff
	if now-h.until > int64(eventKeptForgive) {
		h.stay = 0
	}
	h.stay = min(max(2*h.stay, eventKeptStay), eventKeptStayMax)
	h.until = now + int64(h.stay)
	h.ran, h.slow = 0, 0
	for _, j := range l.kept[l.keptNext:] {
		l.e.pool.submit(j)
	}
	clear(l.kept)
	l.kept, l.keptNext = l.kept[:0], 0
	l.p.Log.Debug(fmt.Sprintf("event loop: %s; its handlers run on the pool for %s", why, h.stay))
}

// takeOver gives the loop to a new goroutine if its goroutine is still in
// the kept job that made owner o.
func (l *eventLoop) takeOver(o uint64) {
	if o%2 == 1 && l.handoff.owner.CompareAndSwap(o, o+1) {
		go l.resume()
	}
}

// resume runs a loop taken over from a blocked job: the turn it was in,
// then on.
func (l *eventLoop) resume() {
	l.strike(nanotime(), "a handler blocked it")
	l.start(true)
}

// start runs the loop on this goroutine; exited gets its end, unless
// another goroutine went on with it.
func (l *eventLoop) start(resumed bool) {
	if err := l.run(resumed); err != errHandedOff {
		l.exited(err)
	}
}

// watchdog takes a loop over from a kept job that it finds running at
// two looks in a row, a tick apart. It looks only while loops run kept
// jobs, and sleeps (parked) once a look finds that none has since the
// last: the next kept job wakes it (kick).
type watchdog struct {
	loops  []*eventLoop
	seen   []uint64 // each loop's owner at the last look
	parked atomic.Bool
	wake   chan struct{}
	stop   chan struct{}
}

func newWatchdog(loops []*eventLoop) *watchdog {
	return &watchdog{loops: loops, seen: make([]uint64, len(loops)), wake: make(chan struct{}, 1), stop: make(chan struct{})}
}

// kick wakes the watchdog if it sleeps; a loop calls it once it marked
// itself as in a kept job, so that the watchdog either sees the mark or
// is woken.
func (w *watchdog) kick() {
	if w.parked.Load() && w.parked.CompareAndSwap(true, false) {
		w.wake <- struct{}{}
	}
}

func (w *watchdog) run() {
	t := time.NewTimer(eventWatchTick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-w.stop:
			return
		}
		if !w.look() {
			// Parked, then one more look: a kept job begun before the
			// mark is seen by it, one begun after kicks.
			w.parked.Store(true)
			if !w.look() {
				select {
				case <-w.wake:
				case <-w.stop:
					return
				}
			} else if !w.parked.CompareAndSwap(true, false) {
				<-w.wake // a loop's kick came first
			}
		}
		t.Reset(eventWatchTick)
	}
}

// look takes over each loop still in the kept job it was in at the last
// look, and reports whether any loop ran kept jobs since then.
func (w *watchdog) look() (active bool) {
	for i, l := range w.loops {
		o := l.handoff.owner.Load()
		if o == w.seen[i] && o%2 == 1 {
			l.takeOver(o)
		}
		active = active || o != w.seen[i] || o%2 == 1
		w.seen[i] = o
	}
	return active
}
