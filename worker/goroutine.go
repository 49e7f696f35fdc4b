package worker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/corral-server/corral/internal/scoreboard"
	"github.com/corral-server/corral/worker/frontend"
	"github.com/corral-server/corral/worker/http1"
)

func init() { Register("goroutine", func() Worker { return new(goroutineWorker) }) }

// goroutineWorker serves a goroutine per connection, with keep-alive, and
// at most --worker-connections connections at once.
//
// A clear HTTP/1.x listener's connections (not TLS, not --http2 h2c) it
// serves itself, on its fast path (goroutine_fast.go): worker/http1's
// Parser and ResponseWriter, as the sync and event types, with a
// request's memory reused from one to the next. A connection whose next
// request the fast path does not serve (a body still on its way or too
// large to hold, 100-continue, an Upgrade) goes to net/http from that
// request on (goroutine_handoff.go). net/http serves the TLS listeners
// (HTTP/1.1 and HTTP/2), h2c, and those handed-over connections, and the
// front ends' ConnServer uwsgi and FastCGI.
//
// net/http reads clear HTTP/1.x requests through an http1.Screen (see
// screenedConn), so that it serves only what worker/http1 accepts, as the
// fast path and the other worker types do: the same --limit-request-*
// limits, Transfer-Encoding and Content-Length rules and field syntax,
// with the same answers.
//
// It does not use http.Server.Shutdown, which closes idle keep-alive
// connections at once and so races a client that is just sending its next
// request on one. It tracks connection states itself instead, net/http's
// and the fast path's alike, and closes a connection only once it has
// been idle for DrainIdle with nothing unread.
type goroutineWorker struct {
	p       *Process
	srv     *http.Server
	slots   chan struct{} // one token per open connection
	stopped chan struct{} // closed by a quick stop

	// The fast path's (goroutine_fast.go): the context its requests'
	// contexts derive from (a quick stop cancels it), the listener that
	// hands its connections to srv, and its requests' watch.
	ctx     context.Context
	abort   context.CancelFunc
	connCtx context.Context // ctx with srv, as net/http's request contexts carry it
	handoff *handoffListener
	watch   watchList
	// netHTTP serves every listener with net/http, as before the fast
	// path, for the benchmarks that compare the two; headerTimeout is
	// HeaderReadTimeout but in tests (0: HeaderReadTimeout).
	netHTTP       bool
	headerTimeout time.Duration

	mu        sync.Mutex
	conns     map[net.Conn]*trackedConn // keyed as net/http reports them (a TLS connection by its tls.Conn)
	listeners []*drainListener
	open      int // listeners still accepting
	draining  bool
	done      chan struct{}
	doneOnce  sync.Once
}

func (g *goroutineWorker) Serve(p *Process) error {
	cfg := p.Config
	g.p = p
	g.conns = map[net.Conn]*trackedConn{}
	g.done = make(chan struct{})
	g.stopped = make(chan struct{})
	g.ctx, g.abort = context.WithCancel(context.Background())
	defer g.abort()
	if cfg.WorkerConnections > 0 {
		g.slots = make(chan struct{}, cfg.WorkerConnections)
	}
	// --max-body is guardBody's: this type streams a body to the handler.
	pcfg := ParserConfig(p)
	pcfg.Limits.MaxBody = 0
	if g.headerTimeout == 0 {
		g.headerTimeout = HeaderReadTimeout
	}
	g.srv = &http.Server{
		Handler:           guardBody(cfg, p),
		ReadHeaderTimeout: g.headerTimeout,
		// The Screen applies --limit-request-*; this only keeps net/http's
		// own limit from coming first.
		MaxHeaderBytes: cfg.maxHeaderBytes(),
		IdleTimeout:    cfg.KeepAlive,
		ConnState:      g.track,
		ErrorLog:       log.New(logWriter{p}, "", 0),
	}
	if cfg.KeepAlive <= 0 {
		g.srv.SetKeepAlivesEnabled(false)
	}
	configureHTTP2(g.srv, cfg)
	g.connCtx = context.WithValue(g.ctx, http.ServerContextKey, g.srv)
	errs := make(chan error, len(p.Listeners)+1)
	g.mu.Lock()
	for i, l := range p.Listeners {
		// The front end (protocol, PROXY header) of each listener; its
		// connections go through the same drain and cap logic.
		fe := p.FrontEnd(i)
		dl := &drainListener{Listener: l, g: g, wrap: fe.WrapConn, http: fe.Protocol == frontend.ProtocolHTTP, tls: p.listenerTLS(i)}
		if dl.http && fe.Count != nil && (fe.Proxy == frontend.ProxyOff || fe.Proxy == "") {
			// The front end would only count: the trackedConn counts
			// itself, one wrapper where there would be two.
			dl.wrap, dl.board = nil, p.board
		}
		// The Screen reads clear HTTP/1.x: not TLS records (net/http's
		// rules apply inside TLS), nor h2c's preface (--http2 h2c).
		if dl.http && dl.tls == nil && cfg.HTTP2 != HTTP2H2C {
			dl.screen = pcfg
		}
		g.listeners = append(g.listeners, dl)
		g.open++
		if dl.screen != nil && !g.netHTTP {
			// Clear HTTP/1.x: served by the fast path, which hands
			// what it does not serve itself to srv through handoff.
			if g.handoff == nil {
				g.handoff = newHandoffListener(l.Addr())
				go g.srv.Serve(g.handoff)
			}
			go func() { errs <- g.serveFast(dl) }()
			continue
		}
		go func() { errs <- fe.Serve(g.srv, dl) }()
	}
	g.mu.Unlock()
	// The listeners were listening before this process started: from the
	// moment Serve runs, every connection in their backlog gets accepted.
	p.Ready()
	var first error
	for range p.Listeners {
		if err := <-errs; err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) && first == nil {
			first = err
			g.Stop(true) // a broken listener: drain the others and exit
		}
	}
	<-g.done
	if g.handoff != nil {
		g.handoff.Close() // ends its Serve, which a quick stop has ended already
	}
	return first
}

func (g *goroutineWorker) Stop(graceful bool) {
	if !graceful {
		select {
		case <-g.stopped:
		default:
			close(g.stopped)
		}
		g.abort()
		g.mu.Lock()
		ls := g.listeners
		g.mu.Unlock()
		for _, l := range ls {
			l.Close() // the fast path's; srv closes its own
		}
		g.srv.Close()
		g.mu.Lock()
		g.open = 0
		for _, tc := range g.conns {
			tc.Close() // the fast path's; srv has closed its own (beneath TLS: no alert)
		}
		g.mu.Unlock()
		g.finish()
		return
	}
	g.mu.Lock()
	if g.draining {
		g.mu.Unlock()
		return
	}
	g.draining = true
	ls := g.listeners
	g.mu.Unlock()
	for _, l := range ls {
		l.startDrain()
	}
	go g.closeIdle()
}

// closeIdle closes connections that have been idle for DrainIdle, until the
// last connection is gone.
func (g *goroutineWorker) closeIdle() {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-g.done:
			return
		}
		now := heartbeat.Now()
		g.mu.Lock()
		for c, tc := range g.conns {
			s := tc.connState()
			idle := (s == http.StateIdle || s == http.StateNew) && closesWhenIdle(c, s)
			if idle && now-tc.idleSince(now) >= int64(g.p.Config.DrainIdle) && !HasUnread(c) {
				c.Close()
			}
		}
		g.mu.Unlock()
		g.maybeDone()
	}
}

// track is net/http's ConnState hook. A request's two changes (Active,
// Idle) touch only the connection's own fields: no lock, and one clock
// read, when it turns idle. Only the end of a connection takes the
// worker's lock, to take it out of conns (forget).
func (g *goroutineWorker) track(c net.Conn, s http.ConnState) {
	if tc, ok := netConn(c).(*trackedConn); ok {
		tc.inState(s)
	}
	if s == http.StateClosed || s == http.StateHijacked {
		g.forget(c)
	}
}

// forget takes c, closed or hijacked, out of conns, and gives its slot
// back.
func (g *goroutineWorker) forget(c net.Conn) {
	g.mu.Lock()
	if _, ok := g.conns[c]; ok {
		delete(g.conns, c)
		if g.slots != nil {
			<-g.slots
		}
	}
	g.mu.Unlock()
	g.maybeDone()
}

// maybeDone ends Serve once draining has closed every listener and every
// connection.
func (g *goroutineWorker) maybeDone() {
	g.mu.Lock()
	done := g.draining && g.open == 0 && len(g.conns) == 0
	g.mu.Unlock()
	if done {
		g.finish()
	}
}

func (g *goroutineWorker) finish() { g.doneOnce.Do(func() { close(g.done) }) }

func (g *goroutineWorker) listenerClosed() {
	g.mu.Lock()
	g.open--
	g.mu.Unlock()
	g.maybeDone()
}

// drainListener is a listener that, once draining, accepts what is left in
// the kernel's backlog and then reports itself closed, so a stop loses no
// connection the kernel has already accepted. It also holds Accept back
// while the worker is at its connection cap.
type drainListener struct {
	net.Listener
	g        *goroutineWorker
	wrap     func(net.Conn) net.Conn // the front end's wrapper (counting, PROXY header), or nil
	http     bool                    // served by net/http, whose own error answers are counted
	tls      *tls.Config             // a TLS listener's config, or nil
	screen   *http1.Config           // a clear HTTP/1.x listener's: its requests go through a Screen
	board    *scoreboard.Board       // where its trackedConns count themselves, in wrap's place; nil: they do not
	draining atomic.Bool
	once     sync.Once
}

func (l *drainListener) startDrain() {
	l.draining.Store(true)
	// Wake an Accept blocked in the kernel; it drains from then on.
	if d, ok := l.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		d.SetDeadline(time.Now())
	}
}

func (l *drainListener) Accept() (net.Conn, error) {
	tc, err := l.acceptConn()
	if err != nil {
		return nil, err
	}
	if l.screen != nil {
		tc.screen = newScreenedConn(l.screen, l.g.p.Log, tc.p)
	}
	tc.inState(http.StateNew)
	sc := serverTLS(tc, l.tls) // keyed as net/http will report it
	l.g.add(sc, tc)
	return sc, nil
}

// add puts tc, which net/http reports as c, in conns.
func (g *goroutineWorker) add(c net.Conn, tc *trackedConn) {
	g.mu.Lock()
	g.conns[c] = tc
	g.mu.Unlock()
}

// acceptConn accepts the next connection within the worker's cap and the
// drain's rules, wrapped by the front end and tracked, counted open.
func (l *drainListener) acceptConn() (*trackedConn, error) {
	if l.g.slots != nil {
		select {
		case l.g.slots <- struct{}{}:
		case <-l.g.stopped:
			return nil, l.closed()
		}
	}
	c, err := l.accept()
	for err != nil && IsResourceError(err) && !l.draining.Load() {
		// Handled here rather than by net/http's retry, which logs each
		// attempt: the same pause and rate-limited log as the other types.
		l.g.p.AcceptFailed(err)
		select {
		case <-time.After(acceptPause):
		case <-l.g.stopped:
		}
		c, err = l.accept()
	}
	if err != nil && l.g.slots != nil {
		<-l.g.slots
	}
	if err != nil {
		return nil, err
	}
	if l.wrap != nil {
		c = l.wrap(c)
	}
	tc := &trackedConn{BaseConn: frontend.BaseConn{Conn: c}, tls: l.tls != nil, board: l.board}
	if tc.board != nil {
		tc.board.ConnOpened()
	}
	if l.http && l.g.p.board != nil {
		tc.p = l.g.p
	}
	return tc, nil
}

// trackedConn follows net/http's state of the connection (inState), or
// the fast path's (enterState), and counts what the server read from it.
// The fast path reads and writes its socket side (raw) itself, and sets
// a screen only when it hands the connection to net/http. net/http marks
// a connection active only once it has read a whole request head (the
// fast path, once it has one to serve), so a connection can look idle
// while its next request already sits in a buffer; a drain must not close
// it then (see idleSince).
//
// Its BaseConn lets net/http half-close after an error response and
// HasUnread reach the socket.
//
// It also answers a request head that does not arrive within the header
// timeout with 408, as the other types do, where net/http closes without
// a word or answers 400, depending on where the head was cut.
type trackedConn struct {
	frontend.BaseConn
	state    atomic.Int32  // net/http's http.ConnState
	since    atomic.Int64  // when it turned New or Idle, heartbeat.Now's ns
	read     atomic.Int64  // bytes read so far
	headFrom atomic.Int64  // read when the current head began; -1 while a request is served
	timedOut atomic.Bool   // answered 408: drop net/http's own answer
	p        *Process      // counts net/http's answers to requests it could not parse; nil: off
	tls      bool          // under TLS: no 408 in clear text (headTimedOut)
	h2c      atomic.Bool   // the first bytes were HTTP/2's preface: see closesWhenIdle
	screen   *screenedConn // nil but on clear HTTP/1.x listeners net/http reads
	// board counts the connection and the bytes read and written, as a
	// countedConn would (nil: off, or a countedConn beneath does it).
	board  *scoreboard.Board
	closed atomic.Bool // counted closed on board

	readDeadline  lazyDeadline // see goroutine_deadline.go
	writeDeadline atomic.Bool  // one is set

	// replay is what the fast path had read of the connection when it
	// handed it to net/http (handOver): its reads return these bytes
	// before the socket's.
	replay []byte

	// closeIdle's own, under the worker's lock: the read count it last
	// saw grow while the connection was idle, and when.
	seenRead int64
	seenAt   int64
}

// netHTTPErrorHeaders follow the status line of every answer net/http's
// server writes by itself, and of no response from a handler (those carry
// a Date, and Connection sorts before Content-Type).
const netHTTPErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// netHTTPErrorStatus is the status of b if b is such an answer, else 0.
func netHTTPErrorStatus(b []byte) int {
	const prefix = "HTTP/1.1 "
	if len(b) < len(prefix)+4 || string(b[:len(prefix)]) != prefix || b[len(prefix)+3] != ' ' {
		return 0
	}
	code := 0
	for _, d := range b[len(prefix) : len(prefix)+3] {
		if d < '0' || d > '9' {
			return 0
		}
		code = code*10 + int(d-'0')
	}
	if code < 400 {
		return 0 // every response a handler sends: no need to look further
	}
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 || !bytes.HasPrefix(b[i:], []byte(netHTTPErrorHeaders)) {
		return 0
	}
	return code
}

func (c *trackedConn) Read(b []byte) (n int, err error) {
	switch {
	case c.screen == nil:
		n, err = c.raw().Read(b)
	case c.screen.isBackgroundRead(b) && c.screen.watchRead(b):
		return 0, errWatchAborted
	case c.screen.watching(b):
		if m, err := c.raw().Read(c.screen.small[:]); m > 0 {
			c.screen.hold(m)
		} else if err != nil {
			return 0, err
		}
		return 0, nil
	default:
		n, err = c.screen.read(c.raw(), c.Conn, c.raw(), b)
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.headTimedOut()
	}
	return n, err
}

// rawConn is a trackedConn's socket side, which counts what it reads.
type rawConn trackedConn

func (c *trackedConn) raw() *rawConn { return (*rawConn)(c) }

func (r *rawConn) Read(b []byte) (int, error) {
	if len(r.replay) > 0 {
		// Counted on the board when the fast path read them; read
		// counts them again, as bytes net/http reads (see idleSince).
		n := copy(b, r.replay)
		if r.replay = r.replay[n:]; len(r.replay) == 0 {
			r.replay = nil
		}
		r.read.Add(int64(n))
		return n, nil
	}
	n, err := r.Conn.Read(b)
	for n == 0 && err != nil && r.readDeadline.rearm(err, r.Conn) {
		n, err = r.Conn.Read(b)
	}
	if n > 0 {
		if r.read.Add(int64(n)) == int64(n) {
			r.h2c.Store(isH2CPreface(b[:n]))
		}
		if r.board != nil {
			r.board.AddRead(n)
		}
	}
	return n, err
}

// Write writes b to the socket, and counts it.
func (r *rawConn) Write(b []byte) (int, error) {
	n, err := r.Conn.Write(b)
	if r.board != nil {
		r.board.AddWritten(n)
	}
	return n, err
}

// Close closes the socket, and counts the connection closed once.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	if c.board != nil && c.closed.CompareAndSwap(false, true) {
		c.board.ConnClosed()
	}
	return err
}

// Write drops net/http's own answer after a 408 (headTimedOut), and
// counts its answers to requests it refused (400, 431, 501, 505): net/http
// writes them straight to the connection, in one write.
func (c *trackedConn) Write(b []byte) (int, error) {
	if c.timedOut.Load() {
		return len(b), nil
	}
	if c.p != nil {
		if code := netHTTPErrorStatus(b); code != 0 {
			c.p.ParseError(code)
		}
	}
	return c.raw().Write(b)
}

// inState follows net/http's view of the connection: a head is read in
// StateNew and StateIdle, a request served in StateActive.
func (c *trackedConn) inState(s http.ConnState) {
	var now int64
	if s == http.StateNew || s == http.StateIdle {
		now = heartbeat.Now()
	}
	c.enterState(s, now, 0)
}

// enterState is inState at now (heartbeat.Now's ns; read for StateNew and
// StateIdle only), with the last buffered bytes read the beginning of the
// next head (the fast path's, which a drain must see as a head begun: see
// idleSince). The state is stored last, after what goes with it, for
// closeIdle's reads.
func (c *trackedConn) enterState(s http.ConnState, now int64, buffered int) {
	switch s {
	case http.StateNew, http.StateIdle:
		c.headFrom.Store(c.read.Load() - int64(buffered))
		c.since.Store(now)
	case http.StateActive:
		c.headFrom.Store(-1)
	}
	if c.screen != nil {
		c.screen.setState(s)
	}
	c.state.Store(int32(s))
}

// connState is net/http's state of the connection.
func (c *trackedConn) connState() http.ConnState { return http.ConnState(c.state.Load()) }

// headTimedOut answers 408 when a read for a head timed out with part of
// the head read; a connection that sent nothing closes silently. Under
// TLS it says nothing: these are the record layer's bytes, and a 408 in
// clear text would break the stream (net/http closes the connection).
func (c *trackedConn) headTimedOut() {
	from := c.headFrom.Load()
	if c.tls || from < 0 || c.read.Load() == from || !c.timedOut.CompareAndSwap(false, true) {
		return
	}
	writeError(c.Conn, c.raw(), nil, http.StatusRequestTimeout)
	if c.p != nil {
		c.p.ParseError(http.StatusRequestTimeout)
	}
}

// idleSince is when the idle connection last showed any sign of a
// request, for closeIdle, called at now and under the worker's lock: when
// it turned idle, or, if bytes of a next head have come since, the first
// of closeIdle's calls that saw the count of bytes read where it is (so
// no read costs a clock read; a drain waits at most one call longer).
func (c *trackedConn) idleSince(now int64) int64 {
	since := c.since.Load()
	if r := c.read.Load(); r != c.headFrom.Load() {
		if r != c.seenRead {
			c.seenRead, c.seenAt = r, now
		}
		since = max(since, c.seenAt)
	}
	return since
}

// ReadFrom keeps net/http's sendfile path.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(c.Conn, r)
	}
	if c.board != nil {
		c.board.AddWritten(int(n))
	}
	return n, err
}

func (l *drainListener) accept() (net.Conn, error) {
	if !l.draining.Load() {
		c, err := l.Listener.Accept()
		if err == nil || !l.draining.Load() {
			return c, err
		}
	}
	c, err := acceptNow(l.Listener)
	if err != nil {
		return nil, l.closed()
	}
	return c, nil
}

// closed closes the listener once and reports net.ErrClosed.
func (l *drainListener) closed() error {
	l.once.Do(func() {
		l.Listener.Close()
		l.g.listenerClosed()
	})
	return net.ErrClosed
}

func (l *drainListener) Close() error {
	l.closed()
	return nil
}

// logWriter sends net/http's own error lines to the worker's error log.
type logWriter struct{ p *Process }

func (w logWriter) Write(b []byte) (int, error) {
	line := trimNewline(b)
	if !strings.HasPrefix(line, "http: ") { // most of net/http's lines have it
		line = "http: " + line
	}
	w.p.Log.Warn(line)
	return len(b), nil
}

func trimNewline(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return string(b)
}
