// Package event is the event worker type (-k event): HTTP/1.1 and uwsgi
// served from epoll loops on non-blocking sockets, with no goroutine per
// connection, and FastCGI on goroutines. It registers itself with
// worker.Register; a program gets it by importing this package (cmd does),
// and the wsgi type serves its front ends through it (New).
package event

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/corral-server/corral/worker"
	"github.com/corral-server/corral/worker/frontend"
	"github.com/corral-server/corral/worker/http1"
)

// Class is the worker type's name: -k event.
const Class = "event"

func init() { worker.Register(Class, New) }

// New returns an event worker: what -k event runs, and what the wsgi type
// serves its front ends through.
func New() worker.Worker { return new(eventWorker) }

// eventWorker serves HTTP/1.1 from epoll loops (--threads of them, one
// goroutine each) on non-blocking sockets, with no goroutine per
// connection.
//
// A connection is read first in the turn that accepted it, and registered
// once, if it outlives that turn, edge-triggered, for input and output;
// a connection remembers what epoll reported until a read comes back
// short or a write meets EAGAIN, and a loop reads it only while it wants
// its bytes (not while its handler runs, nor while more than eventOutHigh
// of its output is unsent). What an edge will not report again (a full
// buffer, bytes that came while it did not read) puts the connection on
// the loop's again list, one read per turn. The inherited listeners are
// registered level-triggered with EPOLLEXCLUSIVE, so a new connection
// wakes one waiter, not all of them, in the loops that wait on them: the
// herd's lead alone while it keeps up, every loop while it asks for help
// (event_lead.go); a loop at the --worker-connections cap takes its
// listeners out of its epoll set (EXCLUSIVE registrations cannot be
// modified) and puts them back once below it.
//
// The loops serve HTTP and uwsgi, with or without a PROXY protocol header
// before a connection's first bytes (read by the loop too, see
// eventConn.readProxy). FastCGI connections go to goroutines instead (see
// eventGoConns): they are the web server's few kept connections, not the
// clients' many, and the ConnServer that the other worker types use serves
// them alike.
//
// A connection between requests holds its fd, a small struct and nothing
// else: its read buffer, output buffer and parser storage go back to
// pools when it goes idle. Requests are parsed with worker/http1 and
// read whole, body included (up to --max-body, else 413), before the
// handler runs: on the loop with --event-inline (an app that never
// blocks), otherwise on a bounded goroutine pool. Responses are written
// back by the loop, in request order.
type eventWorker struct {
	p      *worker.Process
	cfg    *http1.Config
	loops  []*eventLoop
	lfds   []int                // our duplicates of the listeners
	fronts []*frontend.FrontEnd // how to serve lfds[i]
	ctx    context.Context
	cancel context.CancelFunc
	pool   *eventPool

	gos eventGoConns // the FastCGI connections, served on goroutines

	watchdog *watchdog // the loops run the pool's jobs themselves, see event_handoff.go; nil if not

	nodelay []bool // lfds[i] does not hand TCP_NODELAY down: set it per connection

	conns    atomic.Int64 // open connections, against --worker-connections
	maxConns int64        // 0: no cap

	draining  atomic.Bool
	quick     atomic.Bool
	drainLeft atomic.Int32 // loops still draining the backlog
	closeOnce sync.Once
}

// Timing of the event loops.
const (
	eventTick       = 100 * time.Millisecond   // most time between two timer scans
	eventIdleTick   = 500 * time.Millisecond   // between two turns of a loop with nothing to time
	eventReadBuf    = 16 << 10                 // a read buffer, from the pool
	eventOutHigh    = 64 << 10                 // unsent output that stops reading
	eventKeepBuf    = 64 << 10                 // larger buffers are not pooled
	eventAccepts    = 64                       // accepts per listener per wake-up (leadBatch in a herd's loops)
	eventLinger     = 500 * time.Millisecond   // a closing connection's wait for the client's FIN
	eventPoolMax    = 256                      // handler goroutines per worker process
	eventWriteStall = worker.HeaderReadTimeout // most time a client may read nothing of its response
)

func (e *eventWorker) BeatsItself() bool { return true }

func (e *eventWorker) Serve(p *worker.Process) error {
	e.p = p
	e.cfg = worker.ParserConfig(p)
	cfg := p.Config
	for i := range p.Listeners {
		e.fronts = append(e.fronts, p.FrontEnd(i))
	}
	e.maxConns = int64(cfg.WorkerConnections)
	threads := max(cfg.Threads, 1)
	if !cfg.EventInline {
		// One P per loop unless the user chose: a request handed to the
		// pool then runs on its loop's thread when the loop yields, so the
		// hand-off wakes no other thread. A handler that blocks parks only
		// its goroutine; a CPU-bound one shares the loop's thread (Go
		// preempts it), as a gevent worker's greenlets share theirs.
		if os.Getenv("GOMAXPROCS") == "" {
			procs := threads
			if cfg.EventProcs > 0 {
				procs = cfg.EventProcs
			}
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		}
		size := eventPoolMax
		if e.maxConns > 0 && e.maxConns < int64(size) {
			size = int(e.maxConns)
		}
		e.pool = newEventPool(size)
		defer e.pool.close()
	}
	// Our own duplicates of the listeners, and the originals closed: that
	// takes them out of Go's netpoller, which would otherwise be woken by
	// every new connection in every worker.
	for _, l := range p.Listeners {
		fd, err := worker.ListenerFD(l)
		if err == nil {
			fd, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		}
		if err != nil {
			e.closeListeners()
			return fmt.Errorf("listener %s: %w", l.Addr(), err)
		}
		e.lfds = append(e.lfds, fd)
		e.nodelay = append(e.nodelay, listenerNoDelay(fd))
	}
	for _, l := range p.Listeners {
		l.Close()
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	defer e.cancel()
	for range threads {
		l, err := newEventLoop(e)
		if err != nil {
			for _, l := range e.loops {
				l.close()
			}
			e.closeListeners()
			return err
		}
		e.loops = append(e.loops, l)
	}
	if err := e.attachAsync(); err != nil {
		for _, l := range e.loops {
			l.close()
		}
		e.closeListeners()
		return err
	}
	for _, l := range e.loops {
		l.joinHerd() // after attachAsync: the wsgi type's loops stay out
	}
	e.drainLeft.Store(int32(len(e.loops)))
	if _, async := p.Handler().(AsyncHandler); e.pool != nil && !async && runtime.GOMAXPROCS(0) <= len(e.loops) {
		// One P per loop: the pool's handlers would run on the loop's
		// thread anyway, so the loops run them (event_handoff.go).
		e.watchdog = newWatchdog(e.loops)
		go e.watchdog.run()
		defer close(e.watchdog.stop)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(e.loops))
	for _, l := range e.loops {
		wg.Add(1)
		l.exited = func(err error) {
			defer wg.Done()
			if err != nil {
				errs <- err
				e.Stop(false)
			}
		}
		go l.start(false)
	}
	p.Ready()
	wg.Wait()
	e.gos.wait()
	e.closeListeners()
	for _, l := range e.loops {
		l.close()
	}
	close(errs)
	return <-errs
}

// Stop comes only once Serve is ready, with its loops (see Worker): the
// runtime holds an earlier stop until then.
func (e *eventWorker) Stop(graceful bool) {
	e.draining.Store(true)
	if !graceful {
		e.quick.Store(true)
	}
	for _, l := range e.loops {
		l.wake()
	}
	if !graceful {
		e.cancel() // after quick is set: see handleInbox
	}
}

// closeListeners closes our listener fds once no loop uses them.
func (e *eventWorker) closeListeners() {
	e.closeOnce.Do(func() {
		for _, fd := range e.lfds {
			unix.Close(fd)
		}
	})
}

// beat beats the heartbeat only if every loop went round recently, so
// that one wedged loop stops the heartbeat even while the others run.
func (e *eventWorker) beat(now int64) {
	limit := int64(time.Second)
	if t := e.p.Config.Timeout; t > 0 {
		limit = int64(t / 2)
	}
	for _, l := range e.loops {
		if now-l.alive.Load() > limit {
			return
		}
	}
	e.p.Beat()
}

// eventPool runs handlers on at most size goroutines, started as
// needed and kept. Its queue is a slice: the loop never blocks on it.
// Since a connection has at most one request on the pool at a time, the
// queue is bounded by --worker-connections.
//
// A submit wakes a goroutine only when none is already on its way to the
// queue (waking), and a goroutine that takes a job and leaves more behind
// wakes the next, as the Go scheduler wakes its spinning threads: a loop
// that hands the pool one job per connection of a turn, tens under
// keep-alive load, wakes one goroutine for them, not one each. On the
// loop's own P (see Serve) the one woken runs them all when the loop
// yields, one goroutine switch a turn instead of one a request; with more
// Ps each goroutine woken brings in another while work is left, and a
// handler that blocks leaves the rest to the one it woke.
type eventPool struct {
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []job
	head    int
	running int
	idle    int // waiting in cond
	waking  int // signaled or started, not yet at the queue
	size    int
	closed  bool
}

func newEventPool(size int) *eventPool {
	p := &eventPool{size: size}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// job is what the pool runs: an *eventJob, without a closure to allocate.
type job interface{ serve() }

func (p *eventPool) submit(j job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		go j.serve()
		return
	}
	p.queue = append(p.queue, j)
	p.wake()
}

// wake brings a goroutine to the queue unless one is on its way. p.mu is
// held.
func (p *eventPool) wake() {
	if p.waking > 0 {
		return
	}
	switch {
	case p.idle > 0:
		p.idle--
		p.waking++
		p.cond.Signal()
	case p.running < p.size:
		p.running++
		p.waking++
		go p.work()
	}
}

func (p *eventPool) work() {
	p.mu.Lock()
	p.waking--
	for {
		for p.head == len(p.queue) && !p.closed {
			p.idle++
			p.cond.Wait()
			if p.closed {
				break // woken by close's Broadcast, not by a wake
			}
			p.waking--
		}
		if p.head == len(p.queue) {
			p.running--
			p.mu.Unlock()
			return
		}
		j := p.queue[p.head]
		p.queue[p.head] = nil
		if p.head++; p.head == len(p.queue) {
			p.queue, p.head = p.queue[:0], 0
		} else {
			p.wake() // for the rest, in case j blocks
		}
		p.mu.Unlock()
		j.serve()
		p.mu.Lock()
	}
}

// close lets the goroutines finish the queue and exit.
func (p *eventPool) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// nanotime is the monotonic clock the heartbeat uses too.
func nanotime() int64 { return heartbeat.Now() }

var errConnClosed = errors.New("connection closed")
