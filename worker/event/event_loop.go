package event

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker"
	"github.com/corral-server/corral/worker/frontend"
	"github.com/corral-server/corral/worker/http1"
)

// eventLoop is one epoll loop of an event worker. Everything but the
// inbox and alive belongs to the loop's goroutine.
type eventLoop struct {
	e      *eventWorker
	p      *worker.Process
	epfd   int
	wakefd int
	alive  atomic.Int64 // nanotime of the last iteration

	conns    connTable
	lreg     bool // the listeners are in the epoll set
	held     bool // the AsyncHandler is tied up: new connections stay in the backlog (Loop.Hold)
	heldOut  bool // the listeners are out of the epoll set because of held
	drained  bool // graceful stop: the backlog is served, the listeners left
	lastScan int64
	now      int64 // the loop's clock, read once a turn (see run)
	events   [128]unix.EpollEvent
	bufs     freeList[[]byte]               // free buffers
	rw       http1.ResponseWriter           // inline handlers'
	q        worker.InFlight                // inline handlers' request in flight
	store    http1.RequestStore             // inline handlers' requests
	ustore   frontend.UwsgiStore            // inline handlers' uwsgi requests
	parsers  freeList[*http1.Parser]        // free parsers for HTTP connections (getParser)
	uwsgis   freeList[*http1.UwsgiParser]   // free parsers for uwsgi connections
	ustores  freeList[*frontend.UwsgiStore] // free stores for uwsgi requests served after their turn
	jobFree  freeList[*eventJob]            // free jobs (getJob)
	again    []*eventConn                   // connections with input left to read
	again2   []*eventConn                   // the other half of again's double buffer
	fresh    []*eventConn                   // accepted in this turn, not yet in the epoll set
	jobs     int                            // batches on the pool or kept, not yet answered
	kept     []*eventJob                    // batches the loop runs itself at the end of the turn (see keepsJobs)
	keptNext int                            // kept[keptNext:] are not begun
	handoff  handoff                        // who runs the loop while it runs a kept job (event_handoff.go)
	exited   func(err error)                // called once the loop ends (see start)
	dirty    []*eventConn                   // connections with new output, written at the end of a turn
	async    *Loop                          // the AsyncHandler's view of the loop, if the handler is one
	lead     acceptLead                     // whether this loop or another accepts (event_lead.go)

	firstReads firstReads // whether a new connection is read before epoll reports it
	busy       bool       // the last wait found events: see wait
	yielded    int64      // the clock (now) when yield last called the scheduler

	mu       sync.Mutex
	inbox    []eventMsg
	spare    []eventMsg
	closed   bool
	sleeping bool // in epoll_wait with an empty inbox: post must wake it
	woken    bool // the eventfd holds a wake-up not yet read
}

// eventMsg is what a pool goroutine sends its connection's loop: bytes of a
// response, the last ones when final.
type eventMsg struct {
	c          *eventConn
	b          []byte
	final      bool
	closeAfter bool
	job        *eventJob  // final: returned to the pool once b is copied
	ack        chan error // not final: answered once b is taken
}

func newEventLoop(e *eventWorker) (*eventLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	l := &eventLoop{e: e, p: e.p, epfd: epfd, wakefd: wfd}
	l.now = nanotime()
	l.alive.Store(l.now)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wfd)}); err != nil {
		l.close()
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	if err := l.register(); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

// register puts the listeners in the epoll set, exclusively, unless the
// loop is a reserve that is not asked to help (event_lead.go).
func (l *eventLoop) register() error {
	if l.lreg || !l.wantListeners() {
		return nil
	}
	for i, fd := range l.e.lfds {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(fd)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			for _, f := range l.e.lfds[:i] {
				unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, f, nil)
			}
			return fmt.Errorf("epoll_ctl listener: %w", err)
		}
	}
	l.lreg = true
	return nil
}

func (l *eventLoop) unregister() {
	if !l.lreg {
		return
	}
	for _, fd := range l.e.lfds {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	l.lreg = false
}

// reconcileListeners takes the listeners out of the epoll set while the
// AsyncHandler holds new connections off (Loop.Hold), and puts them back
// once it lets them in, at the end of the turn. Listeners out for another
// reason (--worker-connections, a resource error) come back at a scan.
func (l *eventLoop) reconcileListeners() {
	switch {
	case l.held && l.lreg:
		l.unregister()
		l.heldOut = true
	case !l.held && l.heldOut:
		l.heldOut = false
		if !l.lreg && !l.e.draining.Load() && !l.atCap() {
			if err := l.register(); err != nil {
				l.p.Log.Error(err.Error()) // again at the next scan
			}
		}
	}
}

func (l *eventLoop) isListener(fd int32) bool {
	for _, f := range l.e.lfds {
		if int32(f) == fd {
			return true
		}
	}
	return false
}

// wake interrupts epoll_wait.
func (l *eventLoop) wake() {
	l.mu.Lock()
	if !l.closed {
		unix.Write(l.wakefd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
	l.mu.Unlock()
}

// post hands m to the loop; false if the loop is gone. Under load the
// loop is rarely asleep when a handler finishes, and then no eventfd write
// is needed: the loop takes its inbox before it sleeps again.
func (l *eventLoop) post(m eventMsg) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.inbox = append(l.inbox, m)
	if l.sleeping && !l.woken {
		unix.Write(l.wakefd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		l.woken = true
	}
	l.mu.Unlock()
	return true
}

// sleep reports how long epoll_wait may block: not at all while messages
// or reads are waiting; otherwise the loop is marked asleep for post.
func (l *eventLoop) sleep(ms int) int {
	if len(l.again) > 0 || l.keptLeft() {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.inbox) > 0 {
		return 0
	}
	l.sleeping = true
	return ms
}

func (l *eventLoop) awake() {
	l.mu.Lock()
	l.sleeping = false
	l.mu.Unlock()
}

// close releases the loop's fds and fails what pool goroutines wait for.
func (l *eventLoop) close() {
	l.mu.Lock()
	l.closed = true
	inbox := l.inbox
	l.inbox = nil
	if l.epfd >= 0 {
		unix.Close(l.epfd)
		unix.Close(l.wakefd)
		l.epfd, l.wakefd = -1, -1
	}
	l.mu.Unlock()
	l.resign()
	for _, m := range inbox {
		if m.ack != nil {
			m.ack <- errConnClosed
		}
	}
	for c := range l.conns.all() {
		c.close()
	}
}

// waitMs is epoll_wait's timeout: the timer tick, shorter for a short
// --timeout so that the loop beats in time.
func (l *eventLoop) waitMs() int {
	d := eventTick
	if t := l.p.Config.Timeout; t > 0 {
		d = min(d, max(t/4, 10*time.Millisecond))
	}
	return int(d / time.Millisecond)
}

// idleWaitMs is epoll_wait's timeout for a loop with nothing to time (see
// idle): long, to wake the runtime seldom, but within half the heartbeat's
// limit (see beat).
func (l *eventLoop) idleWaitMs() int {
	d := eventIdleTick
	if t := l.p.Config.Timeout; t > 0 {
		d = min(d, max(t/4, 10*time.Millisecond))
	}
	return max(int(d/time.Millisecond), l.waitMs())
}

// idle reports whether the loop has nothing for its timer scans: no
// connection, no handler out, its listeners in the epoll set and the
// handler not holding them off.
func (l *eventLoop) idle() bool {
	return l.conns.len() == 0 && l.jobs == 0 && l.e.gos.count() == 0 && l.lreg && !l.held
}

// run runs the loop on the calling goroutine until the worker stops it,
// or until a handler the loop ran itself blocked it and another goroutine
// took the loop over (errHandedOff, see event_handoff.go); resumed is that
// goroutine's start, in the turn the handler stopped.
func (l *eventLoop) run(resumed bool) error {
	wait, idle := l.waitMs(), l.idleWaitMs()
	for {
		if !resumed {
			if exit, err := l.poll(wait, idle); exit {
				return err
			}
			if l.e.quick.Load() {
				continue
			}
		}
		resumed = false
		if !l.serve() {
			return errHandedOff
		}
		if now := nanotime(); now-l.lastScan >= int64(eventTick) {
			l.lastScan = now
			l.scan(now)
		}
	}
}

// poll begins a turn: the stops, then epoll's wait (wait ms, idle ms for
// an idle loop) and what it reports. exit (with the loop's error, if any)
// ends the loop.
func (l *eventLoop) poll(wait, idle int) (exit bool, err error) {
	now := nanotime()
	l.alive.Store(now)
	l.e.beat(now)
	if l.e.quick.Load() {
		l.unregister()
		for c := range l.conns.all() {
			c.close()
		}
		l.e.gos.closeAll()
		return true, nil
	}
	if l.e.draining.Load() {
		l.drain()
		if l.drained && l.conns.len() == 0 && l.e.gos.count() == 0 {
			return true, nil
		}
	}
	l.registerFresh()
	l.reconcileListeners()
	ms := wait
	if l.idle() {
		ms = idle
	}
	n, err := l.wait(l.sleep(ms))
	// A connection's progress is timed by the turn's clock: one
	// clock read a turn, not several a request.
	l.now = nanotime()
	l.awake()
	if err == unix.EINTR {
		n, err = 0, nil // a signal (the runtime's): the turn still runs the timers
	}
	if err != nil {
		return true, fmt.Errorf("epoll_wait: %w", err)
	}
	if l.e.quick.Load() {
		return false, nil
	}
	for i := range n {
		ev := &l.events[i]
		switch fd := ev.Fd; {
		case fd == int32(l.wakefd):
			var b [8]byte
			readFD(l.wakefd, b[:])
			l.mu.Lock()
			l.woken = false // what was posted is handled below
			l.mu.Unlock()
		case l.isListener(fd):
			if l.lreg && !l.e.draining.Load() {
				l.accept(int(fd))
			}
		default:
			if c := l.conns.get(fd); c != nil {
				c.ready(ev.Events)
			} else if !l.leadReady(fd) && l.async != nil {
				l.async.ready(fd, ev.Events)
			}
		}
	}
	return false, nil
}

// eventYields bounds the hand-offs to the pool in one turn of a loop, so
// that connections with pipelined requests do not keep the others from
// epoll's next report.
const eventYields = 16

// serve finishes a turn of the loop: it takes the pool's answers, gives
// the again list its reads, runs the jobs it keeps for itself (see
// keepsJobs) and, while requests are out on the pool, lets their handlers
// run (on the loop's own P, see Serve, they run right then) and takes
// their answers, so a hand-off wakes no other thread and no epoll_wait.
// Then it writes each connection's output of the turn in one write: for
// pipelined requests, one write answers them all. false: a job it ran
// blocked, and another goroutine has the loop now (see runKept).
func (l *eventLoop) serve() bool {
	if l.async != nil {
		l.async.runPosted()
	}
	for range eventYields {
		l.handleInbox()
		l.readAgain()
		if l.keptLeft() {
			if !l.runKept() {
				return false
			}
			continue // their answers are in the inbox
		}
		if l.jobs == 0 {
			break
		}
		runtime.Gosched()
		l.now = nanotime() // the handlers that ran took their time
		l.mu.Lock()
		answered := len(l.inbox) > 0
		l.mu.Unlock()
		if !answered {
			break // the handlers block; their answers wake the loop
		}
	}
	if l.async != nil {
		l.async.endTurn()
	}
	for i, c := range l.dirty {
		l.dirty[i] = nil
		c.dirty = false
		if !c.closed {
			c.flush()
			c.update()
		}
	}
	l.dirty = l.dirty[:0]
	return true
}

// readAgain gives each queued connection one more read, in turn; those
// with still more to read queue again, for the next turn.
func (l *eventLoop) readAgain() {
	conns := l.again
	l.again = l.again2[:0]
	for i, c := range conns {
		conns[i] = nil
		c.queued = false
		c.pump()
	}
	l.again2 = conns[:0]
}

// atCap reports whether the worker holds --worker-connections connections.
func (l *eventLoop) atCap() bool {
	return l.e.maxConns > 0 && l.e.conns.Load() >= l.e.maxConns
}

// accept takes up to eventAccepts connections from listener lfd. It
// reports false when the backlog is empty.
func (l *eventLoop) accept(lfd int) bool {
	taken := 0
	l.accepting()
	for range eventAccepts {
		if l.atCap() {
			l.ring()       // a lead at the cap needs its reserves
			l.unregister() // back when a connection closes, see scan
			return true
		}
		nfd, remote, err := accept4(lfd)
		if err != nil {
			switch err {
			case unix.EINTR, unix.ECONNABORTED:
				continue
			case unix.EAGAIN:
				return false
			}
			l.p.AcceptFailed(err)
			if worker.IsResourceError(err) {
				l.unregister() // back at the next scan, within eventTick
			}
			return false
		}
		l.e.conns.Add(1)
		i := slices.Index(l.e.lfds, lfd)
		fe := l.e.fronts[i]
		if fe.Protocol == frontend.ProtocolFastCGI {
			l.e.serveGo(fe, nfd)
			if taken++; l.accepted(taken) {
				return true
			}
			continue
		}
		c := &eventConn{l: l, fd: int32(nfd), remote: remote, last: nanotime()}
		c.ctx.Parent = l.e.ctx
		c.rctx = &c.ctx
		if !c.wantProxy(fe) {
			unix.Close(nfd)
			l.e.conns.Add(-1)
			continue
		}
		if fe.Protocol == frontend.ProtocolUwsgi {
			if !c.remote.allowedBy(fe.UwsgiAllow) {
				l.p.Log.Warn(fmt.Sprintf("uwsgi: refused connection from %s, which --uwsgi-allow-from does not allow", c.remote.String()))
				unix.Close(nfd)
				l.e.conns.Add(-1)
				continue
			}
			c.uwsgi = l.getUwsgi()
		}
		if l.e.nodelay[i] {
			unix.SetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		// Read in this turn if first reads mostly find bytes, and into
		// the epoll set only if still open at its end (event_accept.go).
		c.canWrite = true
		c.firstRead = l.firstReads.try()
		c.canRead = c.firstRead
		l.conns.put(c)
		l.fresh = append(l.fresh, c)
		c.update()
		if b := l.p.Board(); b != nil {
			b.ConnOpened()
		}
		if taken++; l.accepted(taken) {
			return true // the rest at the next turn, or by the reserves
		}
	}
	return true
}

// drain, in a graceful stop, takes the listeners out of the epoll set and
// accepts what is left in their backlog; the last loop to finish closes
// them.
func (l *eventLoop) drain() {
	if l.drained {
		return
	}
	l.resign()
	l.unregister()
	for _, fd := range l.e.lfds {
		for l.accept(fd) {
			if l.atCap() {
				return // the rest once connections have closed
			}
		}
	}
	l.drained = true
	if l.e.drainLeft.Add(-1) == 0 {
		l.e.closeListeners()
	}
}

func (l *eventLoop) handleInbox() {
	l.mu.Lock()
	msgs := l.inbox
	l.inbox = l.spare[:0]
	l.mu.Unlock()
	// A quick stop sends nothing more. The check comes after taking the
	// inbox: a handler cancelled by the stop posts after quick was set.
	if l.e.quick.Load() {
		for _, m := range msgs {
			if m.ack != nil {
				m.ack <- errConnClosed
			}
		}
		return
	}
	for i := range msgs {
		m := &msgs[i]
		c := m.c
		if m.final {
			l.jobs--
			c.busy = false
			c.rctx = c.rctx.Ended()
			c.handlerDone()
			if !c.closed {
				c.takeOutput(m)
				c.closeAfter = c.closeAfter || m.closeAfter
				if err := m.job.fail; err != nil && !m.closeAfter {
					c.fail(err) // the request after the batch
				}
				c.last = c.l.now
				c.process()
			}
			m.job.release()
		} else if c.closed {
			m.ack <- errConnClosed
		} else {
			c.out = append(c.getOut(), m.b...)
			c.ack = m.ack
			c.flush()
			c.update()
		}
		*m = eventMsg{}
	}
	l.spare = msgs[:0]
}

// scan runs the timers: header and body read timeouts, keep-alive, the
// drain's idle rule, lingering closes, and listeners back after a cap.
func (l *eventLoop) scan(now int64) {
	if l.async != nil {
		l.async.scanned()
	}
	l.leadScan(now)
	l.reconcileLead() // listeners out for the cap, a resource error or a reserve's rest
	cfg := l.p.Config
	draining := l.e.draining.Load()
	if draining {
		l.e.gos.closeIdle(cfg.DrainIdle)
	}
	for c := range l.conns.all() {
		switch {
		case c.busy:
		case c.lingering:
			if now >= c.lingerUntil {
				c.close()
			}
		case c.pending() > 0:
			if now-c.last > int64(eventWriteStall) {
				c.close() // the client reads nothing
			}
		case c.proxy != "" && c.reqStart != 0:
			if now-c.reqStart > int64(frontend.ProxyHeaderTimeout) {
				c.close()
			}
		case c.reqStart != 0:
			// A request is arriving: its head within the header timeout,
			// its body by --body-timeout's rule. It did not: 408.
			inHead := c.uwsgi == nil && (c.parser == nil || c.parser.Head() == nil)
			if (inHead && now-c.reqStart > int64(worker.HeaderReadTimeout)) || (!inHead && worker.BodyTimedOut(now, c.reqStart, c.last, c.got, cfg.BodyTimeout)) {
				c.fail(http1.ErrRequestTimeout)
				c.flush()
			}
		default: // idle between requests
			limit := cfg.KeepAlive
			if c.served == 0 || limit <= 0 {
				limit = worker.HeaderReadTimeout
			}
			if draining && cfg.DrainIdle < limit {
				limit = cfg.DrainIdle
			}
			if now-c.last >= int64(limit) && !worker.FDHasUnread(int(c.fd)) {
				c.close()
			}
		}
	}
}

// getBuf returns an empty buffer from the loop's free list.
func (l *eventLoop) getBuf() []byte {
	if b, ok := l.bufs.pop(); ok {
		return b
	}
	return make([]byte, 0, eventReadBuf)
}

func (l *eventLoop) putBuf(b []byte) {
	if cap(b) == 0 || cap(b) > eventKeepBuf || l.bufs.len() >= 256 {
		return
	}
	l.bufs.push(b[:0])
}

// eventConn is one connection of an event loop. Between requests it holds
// no buffer.
type eventConn struct {
	l      *eventLoop
	fd     int32
	remote peer
	ctx    worker.ConnContext   // its first requests' context
	rctx   *worker.ConnContext  // its requests' context now: &ctx, until a handler uses it (see ConnContext.Ended)
	parser *http1.Parser        // while a request is read or served: see getParser
	uwsgi  *http1.UwsgiParser   // instead of parser, on a uwsgi listener
	ustore *frontend.UwsgiStore // its uwsgi request's, until the handler is done with it
	proxy  string               // the PROXY header mode, until the header is read
	in     []byte               // bytes read, not yet parsed
	out    []byte               // response bytes from outOff on are unsent
	outOff int
	ack    chan error // a pool goroutine's streamed bytes wait for room
	batch  *eventJob  // requests parsed for the pool, not yet handed to it

	last        int64 // the loop's clock (eventLoop.now) at the last progress
	reqStart    int64 // nanotime of a partial request's first byte, 0 if none
	got         int64 // bytes read of the request since reqStart
	lingerUntil int64
	served      int

	busy       bool // its handler runs on the pool
	closeAfter bool // close once the output is out
	lingerOn   bool // close with a lingering close
	lingering  bool // write side shut, waiting for the client's FIN
	eof        bool // the client sent FIN
	closed     bool
	watched    bool // in the epoll set (see registerFresh)
	unwatched  bool // left out of it while its answer is awaited (see watch)

	// Edge-triggered readiness: set by epoll's report, cleared once a
	// read or write finds the socket drained or full.
	canRead  bool
	canWrite bool
	peerShut bool // epoll saw the client's FIN: read on until EOF
	queued   bool // in the loop's again list
	dirty    bool // in the loop's dirty list

	backlogged bool // process stopped for output room with requests left in in
	firstRead  bool // read in the turn that accepted it, before any epoll report
}

func (c *eventConn) pending() int { return len(c.out) - c.outOff }

// takeOutput appends a job's final output to the connection's: with none
// pending, the job's buffer becomes the connection's, so the bytes the
// handler wrote go to the socket with no copy.
func (c *eventConn) takeOutput(m *eventMsg) {
	if len(c.out) == 0 && len(m.b) > 0 && cap(m.b) <= eventKeepBuf {
		c.l.putBuf(c.out)
		c.out, c.outOff = m.b, 0
		m.job.out = nil
		return
	}
	c.out = append(c.getOut(), m.b...)
}

func (c *eventConn) getOut() []byte {
	if c.out == nil {
		c.out = c.l.getBuf()
	}
	return c.out
}

// ready handles epoll's report for the connection.
func (c *eventConn) ready(ev uint32) {
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		// A reset, or both directions shut: nothing more can be
		// written, and the report will not come again.
		c.close()
		return
	}
	if ev&unix.EPOLLOUT != 0 {
		c.canWrite = true
		c.flush()
		if c.closed {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 {
		c.canRead = true
	}
	if ev&unix.EPOLLRDHUP != 0 {
		c.peerShut = true
		if c.busy && !worker.FDHasUnread(int(c.fd)) {
			// The client went away while its handler runs (and sent no
			// further request): the handler may stop.
			c.rctx.Cancel(context.Canceled)
		}
	}
	c.pump()
}

// wantsInput reports whether the connection reads now: not while its
// handler runs, its output is backed up, or it is about to close.
func (c *eventConn) wantsInput() bool {
	return c.lingering || (!c.busy && !c.closeAfter && !c.eof && c.pending() <= eventOutHigh)
}

// pump reads once if the connection wants input and has some.
func (c *eventConn) pump() {
	if c.backlogged && !c.closed && c.wantsInput() {
		c.backlogged = false
		c.process()
	}
	if !c.closed && c.canRead && c.wantsInput() {
		c.read()
	}
	c.update()
}

func (c *eventConn) read() {
	if c.lingering {
		var b [4096]byte
		n, err := readFD(int(c.fd), b[:])
		c.counted(n, 0)
		if n <= 0 && err != unix.EAGAIN && err != unix.EINTR {
			c.close()
		}
		if n < len(b) && err != unix.EINTR && !c.peerShut {
			c.canRead = false
		}
		return
	}
	if c.in == nil {
		c.in = c.l.getBuf()
	}
	if len(c.in) == cap(c.in) {
		c.in = append(c.in, 0)[:len(c.in)]
	}
	room := cap(c.in) - len(c.in)
	n, err := readFD(int(c.fd), c.in[len(c.in):cap(c.in)])
	c.counted(n, 0)
	// A short read emptied the socket, and an edge reports the next bytes;
	// but a FIN already reported waits behind the bytes just read.
	if n < room && err != unix.EINTR && !c.peerShut {
		c.canRead = false
	}
	switch {
	case n > 0:
		c.in = c.in[:len(c.in)+n]
		c.last = c.l.now
		if c.reqStart == 0 {
			c.reqStart, c.got = c.last, 0
		}
		c.got += int64(n)
	case n == 0 && err == nil:
		c.eof = true
	case err == unix.EAGAIN || err == unix.EINTR:
		return
	default:
		c.close()
		return
	}
	c.process()
}

// process parses and serves the requests that have arrived, one at a
// time, until one runs on the pool, the input is used up, the connection
// is to close, or its unsent output passes eventOutHigh.
func (c *eventConn) process() {
	if c.proxy != "" && !c.readProxy() {
		return
	}
	if c.uwsgi != nil {
		c.processUwsgi()
	} else {
		c.processHTTP()
	}
	if c.closed {
		return
	}
	c.backlogged = c.pending() > eventOutHigh && len(c.in) > 0
	if !c.busy && len(c.in) == 0 && c.reqStart == 0 {
		// Idle: nothing held but the struct.
		c.l.putBuf(c.in)
		c.in = nil
		c.putParser()
	}
	if !c.dirty {
		c.dirty = true
		c.l.dirty = append(c.l.dirty, c)
	}
}

// processHTTP parses the requests that have arrived and serves them:
// inline, one by one; on the pool, those that arrived together as one
// batch, one hand-off for all (a client pipelining gets one write of all
// their responses, see eventLoop.serve). What a request after a batch
// needs answered at once (a parse error, 100 Continue, the EOF) waits
// until the batch is: the Parser's error is sticky, and the others are
// found again by the next Parse.
func (c *eventConn) processHTTP() {
	served := c.served
	off := 0 // c.in[:off] is parsed: moved out at the end, not per request
	for !c.closed && !c.busy && !c.closeAfter && c.pending() <= eventOutHigh {
		c.getParser()
		used, req, err := c.parser.Parse(c.in[off:])
		off += used
		if err != nil || req == nil {
			c.in = c.in[:copy(c.in, c.in[off:])]
			off = 0
		}
		if err != nil {
			if c.batch == nil {
				c.fail(err)
			}
			break
		}
		if req == nil {
			if c.batch != nil {
				break
			}
			if c.parser.NeedContinue() {
				c.parser.ContinueSent()
				c.out = http1.AppendContinue(c.getOut())
			}
			if c.eof {
				if err := c.parser.EOF(); err != nil {
					c.fail(err)
				}
				c.closeAfter = true
			}
			break
		}
		c.served++
		c.reqStart = 0
		if !c.dispatch(req) {
			break
		}
	}
	// (A request that failed emptied c.in.)
	c.in = c.in[:copy(c.in, c.in[min(off, len(c.in)):])]
	c.submit()
	if c.served != served {
		c.last = c.l.now
		if len(c.in) > 0 && c.reqStart == 0 {
			c.reqStart, c.got = c.last, int64(len(c.in)) // a pipelined request has begun
		}
	}
}

// processUwsgi serves a uwsgi connection's one request, as nginx's
// uwsgi_pass sends it: the packet, then CONTENT_LENGTH bytes of body,
// answered with an HTTP/1.x response ended by the close.
func (c *eventConn) processUwsgi() {
	if c.closed || c.busy || c.closeAfter {
		return
	}
	used, u, err := c.uwsgi.Parse(c.in)
	c.in = c.in[:copy(c.in, c.in[used:])]
	if err == nil && u == nil && c.eof {
		err = c.uwsgi.EOF() // nil: closed before a packet began
		c.closeAfter = true
	}
	var hr *http.Request
	if err == nil && u != nil {
		if c.l.async == nil && c.l.e.pool == nil {
			hr, err = c.l.ustore.Request(c.rctx, u, &c.remote) // served in this turn
		} else {
			// Answered after the turn: a store of its own until then.
			c.ustore = c.l.getUwsgiStore()
			hr, err = c.ustore.Request(c.rctx, u, &c.remote)
		}
		c.uwsgi.Release()
	}
	if err != nil {
		c.handlerDone()
	}
	if err != nil {
		c.l.p.Log.Warn(fmt.Sprintf("uwsgi: bad request from %s, closing the connection: %v", c.remote.String(), err))
		if http1.Status(err) == http.StatusRequestEntityTooLarge {
			c.fail(err) // over --max-body: the client should hear of it
			return
		}
		// Anything else is closed without an answer, as by the other
		// worker types: nginx answers its client 502.
		c.l.p.ParseError(0)
		c.in = c.in[:0]
		c.closeAfter, c.lingerOn = true, true
		return
	}
	if hr == nil {
		return
	}
	c.served++
	c.reqStart = 0
	c.in = c.in[:0] // one request per connection
	// HTTP/1.0 framing whatever the client spoke: nginx reads a uwsgi
	// response to the close and passes chunked coding through undecoded.
	c.serve(hr, hr.Method, 1, 0, true)
	c.last = c.l.now
}

// counted counts bytes read from and written to the connection on the
// scoreboard.
func (c *eventConn) counted(read, written int) {
	if b := c.l.p.Board(); b != nil {
		b.AddRead(read)
		b.AddWritten(written)
	}
}

// fail answers a request that cannot be parsed, then closes.
func (c *eventConn) fail(err error) {
	if code := http1.Status(err); code != 0 {
		c.l.p.ParseError(code)
		c.out = http1.AppendError(c.getOut(), code)
		c.l.p.Log.Debug(fmt.Sprintf("bad request from %s: %v", c.remote.String(), err))
	}
	c.in = c.in[:0]
	c.closeAfter = true
	c.lingerOn = true
}

// dispatch serves req (inline, or on the loop's AsyncHandler), or adds it
// to the connection's batch for the pool; false ends the batch: the
// connection closes after req, or the batch is full.
func (c *eventConn) dispatch(req *http1.Request) bool {
	l := c.l
	p := l.p
	closeConn := req.Close || p.Draining() || l.e.draining.Load() || p.Config.KeepAlive <= 0
	if l.async != nil || l.e.pool == nil {
		var hr *http.Request
		var err error
		if l.async != nil {
			// Answered later, by another process: the request must
			// outlive the turn, so it is one of its own.
			hr, err = http1.ToHTTP(c.rctx, req, c.remote.String())
		} else {
			hr, err = l.store.ToHTTP(c.rctx, req, c.remote.String())
		}
		if err != nil {
			c.fail(err)
			return false
		}
		c.serve(hr, req.Method, req.Major, req.Minor, closeConn)
		return !closeConn
	}
	j := c.getBatch()
	r := j.add()
	hr, err := r.store.ToHTTP(c.rctx, req, c.remote.String())
	if err != nil {
		j.reqs = j.reqs[:len(j.reqs)-1]
		if len(j.reqs) == 0 {
			c.batch = nil
			j.release()
			c.fail(err)
		} else {
			j.fail = err // answered after the batch
		}
		return false
	}
	r.hr, r.method, r.major, r.minor, r.closeConn = hr, req.Method, req.Major, req.Minor, closeConn
	return !closeConn && len(j.reqs) < eventBatch
}

// eventBatch is the most requests one hand-off to the pool carries: as
// many as the pipelining clients (wrk's pipeline.lua) send at once.
const eventBatch = 16

func (c *eventConn) getBatch() *eventJob {
	if c.batch == nil {
		c.batch = c.l.getJob(c)
	}
	return c.batch
}

// serve runs the handler on hr: on the loop, or on the pool (in a batch
// of one, for a front end whose connection carries one request).
func (c *eventConn) serve(hr *http.Request, method string, major, minor int, closeConn bool) {
	l := c.l
	p := l.p
	if l.async != nil {
		c.serveAsync(hr, method, major, minor, closeConn)
		return
	}
	if l.e.pool == nil {
		rw := &l.rw
		rw.Send = nil
		start := len(c.getOut())
		rw.Reset(c.out, method, major, minor, closeConn)
		rw.Gateway = c.uwsgi != nil
		ok := worker.ServeRecover(p, &l.q, rw, hr)
		c.rctx = c.rctx.Ended()
		if !ok {
			c.out = http1.AppendError(c.out[:start], http.StatusInternalServerError)
			c.closeAfter = true
			return
		}
		c.out, _ = rw.Finish()
		c.closeAfter = c.closeAfter || rw.Close()
		return
	}
	r := c.getBatch().add()
	r.hr, r.method, r.major, r.minor, r.closeConn = hr, method, major, minor, closeConn
	c.submit()
}

// submit hands the connection's batch to the pool, or keeps it for the
// loop to run at the end of the turn.
func (c *eventConn) submit() {
	j := c.batch
	if j == nil {
		return
	}
	c.batch = nil
	c.busy = true
	c.l.jobs++
	if c.l.keepsJobs() {
		c.l.kept = append(c.l.kept, j)
		return
	}
	c.l.e.pool.submit(j)
}

// flush writes what it can of the output; once all is out, a connection
// marked to close is closed.
func (c *eventConn) flush() {
	write := writeFD
	if c.closeAfter && !c.busy && !c.lingering {
		write = writeLastFD // shut follows: its FIN rides on the last segment
	}
	for c.canWrite && c.outOff < len(c.out) {
		n, err := write(int(c.fd), c.out[c.outOff:])
		if n > 0 {
			c.counted(0, n)
			c.outOff += n
			c.last = c.l.now
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			c.canWrite = false // until epoll reports room
			if !c.watch() {
				return
			}
			break
		}
		if err != nil {
			c.close()
			return
		}
	}
	if c.ack != nil && c.pending() <= eventOutHigh {
		c.ack <- nil
		c.ack = nil
	}
	if c.pending() > 0 {
		return
	}
	c.l.putBuf(c.out)
	c.out, c.outOff = nil, 0
	if c.closeAfter && !c.busy && !c.lingering {
		c.shut()
	}
}

// shut closes a connection whose last response is out: at once, unless
// bytes from the client wait unread, which a close would answer with a
// reset that can destroy the response before the client reads it. Then
// the write side is shut and the loop reads until the client's FIN, for
// at most eventLinger.
func (c *eventConn) shut() {
	// Nothing can wait unread when the last read found the socket empty
	// and epoll has reported no input since: then no FIONREAD is needed.
	// (Epoll reports nothing to a connection outside its set.) Nor after
	// a uwsgi connection's one request, read whole and answered: whatever
	// follows its packet is dropped unread (processUwsgi), so a peer that
	// sent more broke the protocol, and the reset is its own. That is
	// nginx's uwsgi_pass, a connection per request, whose answer comes
	// from an AsyncHandler after the turn.
	quiet := (!c.canRead && (!c.unwatched || c.uwsgi != nil && c.served > 0)) || !worker.FDHasUnread(int(c.fd))
	if (!c.lingerOn && len(c.in) == 0 && quiet) || c.eof {
		c.close()
		return
	}
	if !c.watch() { // for the client's FIN
		return
	}
	if unix.Shutdown(int(c.fd), unix.SHUT_WR) != nil {
		c.close()
		return
	}
	c.lingering = true
	c.lingerUntil = nanotime() + int64(eventLinger)
	c.l.putBuf(c.in)
	c.in = nil
	c.putParser()
	c.update()
}

// update queues the connection for another turn of the loop when it wants
// input that epoll will not report again: with edge triggering, bytes left
// unread after a full buffer, or bytes that arrived while the connection
// was not reading, raise no new event; nor do requests already read whose
// turn came once the output drained.
func (c *eventConn) update() {
	if c.closed || c.queued || (!c.canRead && !c.backlogged) || !c.wantsInput() {
		return
	}
	c.queued = true
	c.l.again = append(c.l.again, c)
}

func (c *eventConn) close() {
	if c.closed {
		return
	}
	c.closed = true
	c.rctx.Cancel(context.Canceled)
	l := c.l
	closeSocket(int(c.fd)) // also leaves the epoll set
	l.conns.remove(c.fd)
	l.e.conns.Add(-1)
	if b := l.p.Board(); b != nil {
		b.ConnClosed()
	}
	if c.ack != nil {
		c.ack <- errConnClosed
		c.ack = nil
	}
	l.putBuf(c.in)
	l.putBuf(c.out)
	c.in, c.out = nil, nil
	c.putParser()
	if c.uwsgi != nil {
		c.uwsgi.Reset()
		c.uwsgi.Release()
		l.uwsgis.push(c.uwsgi)
		c.uwsgi = nil
	}
}

// getParser gives the connection a parser, if it has none: a free one of
// the loop's, if any. A connection holds one only while a request is read
// or served, so that an idle kept-alive connection, or a uwsgi one, which
// never needs it, is 384 bytes smaller (an eventConn is 320 bytes), and a
// connection per request allocates none.
func (c *eventConn) getParser() {
	if c.parser != nil {
		return
	}
	l := c.l
	p, ok := l.parsers.pop()
	if !ok {
		p = new(http1.Parser)
	}
	p.Config = l.e.cfg
	c.parser = p
}

// putParser gives the connection's parser back to the loop, its storage
// released and its state reset for the next connection (a sticky error
// included); the caches of the last target and Host stay, for the next
// connection to hit. A parser with a request partly parsed (a head read
// with the request before it, its body to come) stays, unless the
// connection closes.
func (c *eventConn) putParser() {
	p := c.parser
	if p == nil || (!c.closed && !p.Idle()) {
		return
	}
	c.parser = nil
	p.Release()
	p.Reset()
	if c.l.parsers.len() < eventFreeParsers {
		c.l.parsers.push(p)
	}
}

// eventFreeParsers bounds the free parsers a loop keeps, as eventFreeJobs
// bounds its jobs.
const eventFreeParsers = 256

// getUwsgiStore returns a store for a uwsgi request that is served after
// the turn that read it: a free one, if any. Pooled, since a connection per
// request would otherwise build each into a new request, URL and header
// map, most of what the uwsgi path allocated (3.7 KB a request).
func (l *eventLoop) getUwsgiStore() *frontend.UwsgiStore {
	if s, ok := l.ustores.pop(); ok {
		return s
	}
	return new(frontend.UwsgiStore)
}

// handlerDone gives back the store of the request whose handler returned
// (or whose request failed): the next uwsgi request is built into it, as
// a keep-alive connection's next HTTP request is built into its
// http1.RequestStore.
func (c *eventConn) handlerDone() {
	if c.ustore != nil {
		c.l.ustores.push(c.ustore)
		c.ustore = nil
	}
}

// getUwsgi returns a parser for a new uwsgi connection: a free one of a
// connection that closed, if any.
func (l *eventLoop) getUwsgi() *http1.UwsgiParser {
	if p, ok := l.uwsgis.pop(); ok {
		return p
	}
	return &http1.UwsgiParser{MaxBody: l.e.cfg.Limits.MaxBody}
}

// eventJob serves a batch of a connection's requests on the pool, in
// order, and streams their responses back to the connection's loop.
type eventJob struct {
	c    *eventConn
	rw   http1.ResponseWriter
	q    worker.InFlight // the request being served
	out  []byte
	ack  chan error
	reqs []eventReq
	fail error // what the request after the batch is answered with

	// kept is the loop's owner count (handoff.owner, odd) while the loop's
	// goroutine runs the job itself (runKept), 0 otherwise: send hands off
	// that turn of the loop, and no later one.
	kept uint64
	// start is when the loop began the job it runs itself, by
	// heartbeat.Now (runKept's reading), 0 on the pool: the first
	// request's start, without a clock read of its own.
	start int64
}

// eventReq is one request of a batch, and the memory it is built in,
// kept for the next batch.
type eventReq struct {
	store        http1.RequestStore
	hr           *http.Request
	method       string
	major, minor int
	closeConn    bool
}

// getJob returns an empty job for a batch of c's: a free one of the
// loop's, if any. The loop's own list, not a sync.Pool: a job is taken
// and given back on the loop's goroutine, a request apiece on kept
// connections, and the list needs no per-P pinning or lock.
func (l *eventLoop) getJob(c *eventConn) *eventJob {
	j, ok := l.jobFree.pop()
	if !ok {
		j = &eventJob{ack: make(chan error, 1)}
		j.rw.Send = j.send
	}
	if j.out == nil {
		j.out = l.getBuf() // given to c with the answer, see takeOutput
	}
	j.c = c
	return j
}

// eventFreeJobs bounds the free jobs a loop keeps: a burst of batches
// on the pool leaves no more than this many behind for the collector to
// spare.
const eventFreeJobs = 256

// add appends a request to the batch and returns it.
func (j *eventJob) add() *eventReq {
	if len(j.reqs) < cap(j.reqs) {
		j.reqs = j.reqs[:len(j.reqs)+1]
	} else {
		j.reqs = append(j.reqs, eventReq{})
	}
	return &j.reqs[len(j.reqs)-1]
}

func (j *eventJob) serve() {
	c := j.c
	l := c.l
	m := eventMsg{c: c, final: true, job: j}
	out := j.out[:0]
	for i := range j.reqs {
		r := &j.reqs[i]
		start := len(out)
		j.rw.Reset(out, r.method, r.major, r.minor, r.closeConn)
		j.rw.Gateway = c.uwsgi != nil
		var ok bool
		if i > 0 {
			ok = worker.ServeNext(l.p, &j.q, &j.rw, r.hr) // one clock read a request
		} else {
			ok = worker.ServeFrom(l.p, &j.q, &j.rw, r.hr, j.start)
		}
		if !ok {
			// What was sent went with the earlier responses; what was
			// not is this response's beginning, or theirs.
			m.closeAfter = true
			if !j.rw.Started() {
				out = http1.AppendError(out[:start], http.StatusInternalServerError)
			} else {
				out = out[:0]
			}
			break
		}
		out, _ = j.rw.Finish()
		if j.rw.Close() {
			m.closeAfter = true // the requests after it go unanswered
			break
		}
	}
	j.q.Flush()
	j.out = out
	m.b = out
	l.post(m) // the loop is closed if not: j is garbage
}

// send streams b to the connection; it blocks until the loop has taken it
// and the connection's unsent output is below eventOutHigh.
func (j *eventJob) send(b []byte) error {
	if o := j.kept; o != 0 {
		// The loop itself runs this handler, and would wait for itself
		// to take b: it goes on on another goroutine instead (unless
		// the watchdog has done that already).
		j.kept = 0
		j.c.l.takeOver(o)
	}
	if !j.c.l.post(eventMsg{c: j.c, b: b, ack: j.ack}) {
		return errConnClosed
	}
	return <-j.ack
}

// release gives j back to its loop's free list, on the loop's goroutine.
func (j *eventJob) release() {
	l := j.c.l
	for i := range j.reqs {
		j.reqs[i].hr = nil
	}
	j.c, j.reqs, j.fail, j.kept, j.start = nil, j.reqs[:0], nil, 0, 0
	l.putBuf(j.out) // a free job holds no buffer
	j.out = nil
	if l.jobFree.len() < eventFreeJobs {
		l.jobFree.push(j)
	}
}
