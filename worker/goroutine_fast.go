package worker

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-server/corral/worker/frontend"
	"github.com/corral-server/corral/worker/http1"
)

// The goroutine worker's own HTTP/1 path. On a clear HTTP/1.x listener
// (not TLS, not --http2 h2c) each connection is a goroutine that reads
// into a buffer of its own, parses with worker/http1's Parser, builds each
// request into the connection's http1.RequestStore (one struct copy a
// request) and answers it with http1.ResponseWriter through ServeRecover,
// as the sync and event types do: none of net/http's per-request state,
// deadlines or background read. A client that pipelines gets the answers
// to the requests it had sent by the time of a read in one write.
//
// What the fast path does not serve itself goes to net/http, for the rest
// of the connection, at that request's start (handOver, in
// goroutine_handoff.go): a request that may switch protocols (Upgrade,
// CONNECT), a body that has not arrived whole when its head has (a
// streamed upload, one waiting for 100 Continue) or is larger than
// fastMaxRequest or --max-body allows, and OPTIONS *, which net/http
// answers itself. net/http then reads what the fast path had read first,
// through the connection's Screen, and serves it as it serves every
// connection of a TLS listener, so streamed bodies, 100-continue,
// --body-timeout, --max-body's answers and WebSockets behave as they do
// there.
//
// The connection goes through the same bookkeeping as net/http's: the
// trackedConn counts its bytes, and its states (New, Active while requests
// are served, Idle between them, Closed, Hijacked) reach conns and the
// slots as net/http's ConnState reports do, so the cap and the drain
// (closeIdle) treat both alike.

const (
	// fastSmall is the read buffer of a connection waiting for a
	// request, in the connection itself: most request heads fit, and an
	// idle connection holds no buffer of the pool's.
	fastSmall = 1 << 10
	// fastBufSize is the size of the pool's buffers: a request that
	// outgrows fastSmall is read into one, and responses are written
	// from one. Pipelined responses are written once they fill one.
	fastBufSize = 4 << 10
	// fastMaxRequest is the most of one request, head and body, the fast
	// path holds to read a body whose rest has already arrived: a larger
	// one is net/http's to stream.
	fastMaxRequest = 64 << 10
)

// fastBufs holds the fast path's read and write buffers, each of
// fastBufSize bytes, while their connections are idle.
var fastBufs = sync.Pool{New: func() any { b := make([]byte, fastBufSize); return &b }}

// fastConn is a connection the fast path serves. Only its goroutine
// touches it, but for what the watch of its requests (goroutine_fast_watch.go)
// shares: run, listed and, while a watch read runs, peek.
type fastConn struct {
	g      *goroutineWorker
	l      *drainListener
	tc     *trackedConn
	remote string // the requests' RemoteAddr

	parser http1.Parser
	store  http1.RequestStore
	w      fastWriter
	q      InFlight     // the request in flight, reused
	ctx    ConnContext  // the first requests' context
	rctx   *ConnContext // the requests' context now: &ctx, until a handler uses it (see ConnContext.Ended)

	// buf is the read buffer: small, or a pool's (pooled) or a larger one
	// while a request outgrows it; its len is its size. buf[lo:hi] is
	// what was read and not yet served, from the current request's first
	// byte on (what a hand-over replays); the Parser has consumed
	// buf[lo:parsed].
	small          [fastSmall]byte
	buf            []byte
	pooled         *[]byte
	lo, parsed, hi int
	out            []byte  // responses not yet written
	outPooled      *[]byte // out's pool entry, if it has one

	head     time.Time // the header timeout of the head being read, zero until one is partly read
	served   int       // requests served
	active   bool      // in StateActive
	serving  bool      // in a handler
	hijacked bool      // a handler took the connection over
	gone     bool      // the watch read saw the client go away: close after the response

	// The watch of a request whose handler outlives a tick (see
	// goroutine_fast_watch.go).
	seq     uint64        // the current request's number
	run     atomic.Uint64 // seq<<2 | runIdle, runServing or runWatching
	listed  atomic.Bool   // on the worker's watch list
	aborted atomic.Bool   // the watch read is being ended
	watch   sync.WaitGroup
	peek    [16]byte // what the watch read read, peekN bytes
	peekN   int
}

func newFastConn(g *goroutineWorker, l *drainListener, tc *trackedConn) *fastConn {
	c := &fastConn{g: g, l: l, tc: tc, remote: frontend.RemoteAddr(tc)}
	c.buf = c.small[:]
	c.parser.Config = l.screen
	// As net/http's request contexts: the server and the local address.
	c.ctx.Parent = context.WithValue(g.connCtx, http.LocalAddrContextKey, tc.LocalAddr())
	c.rctx = &c.ctx
	c.w.c = c
	c.w.Send = c.send
	return c
}

// serveFast accepts l's connections, as net/http's Serve would, and serves
// each on the fast path, on a goroutine of its own.
func (g *goroutineWorker) serveFast(l *drainListener) error {
	for {
		tc, err := l.acceptConn()
		if err != nil {
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() && !errors.Is(err, net.ErrClosed) {
				// net/http's Serve retries these too.
				g.p.AcceptFailed(err)
				select {
				case <-time.After(acceptPause):
				case <-g.stopped:
				}
				continue
			}
			return err
		}
		tc.inState(http.StateNew)
		g.add(tc, tc)
		go newFastConn(g, l, tc).serve()
	}
}

// serve reads, parses and serves c's requests in order until the
// connection closes, is hijacked or goes to net/http.
func (c *fastConn) serve() {
	next := false // the request parsed next was read with the one served before it
	for {
		n, req, err := c.parser.Parse(c.buf[c.parsed:c.hi])
		c.parsed += n
		switch {
		case err != nil:
			c.fail(err)
			return
		case req != nil:
			c.head = time.Time{}
			if c.forNetHTTP(req) {
				c.handOver()
				return
			}
			if !c.serveRequest(req, next) {
				return
			}
			c.lo = c.parsed
			next = true
			if len(c.out) >= fastBufSize {
				if c.flush() != nil {
					c.close(false)
					return
				}
			}
			continue
		}
		if h := c.parser.Head(); h != nil && !c.bodyArriving(h) {
			c.handOver()
			return
		}
		if !c.readMore() {
			return
		}
		next = false
	}
}

// forNetHTTP reports whether req, read whole, is net/http's to serve: one
// that may switch protocols (the handler hijacks, and net/http's 101
// handling and its Screen's bypass apply), one over --max-body (guardBody
// answers it), and OPTIONS *, which net/http's server answers itself.
func (c *fastConn) forNetHTTP(req *http1.Request) bool {
	return req.Upgrade || req.Method == http.MethodConnect || c.overMaxBody(int64(len(req.Body))) ||
		(req.Method == http.MethodOptions && req.Target == "*")
}

// bodyArriving reports whether the fast path reads on for the body of h,
// whose head is complete: the rest of a body that fits fastMaxRequest has
// already arrived (it waits in the kernel), so the read does not wait.
// Any other body (on its way, waiting for 100 Continue, over --max-body)
// net/http streams to the handler.
func (c *fastConn) bodyArriving(h *http1.Request) bool {
	if h.Upgrade || h.Method == http.MethodConnect || c.parser.NeedContinue() ||
		c.overMaxBody(max(h.ContentLength, int64(len(h.Body)))) {
		return false
	}
	size := int64(c.hi - c.lo)
	if h.ContentLength >= 0 {
		size += h.ContentLength - int64(len(h.Body))
	}
	return size <= fastMaxRequest && HasUnread(c.tc)
}

// overMaxBody reports whether a body of n bytes is over --max-body.
func (c *fastConn) overMaxBody(n int64) bool {
	max := c.g.p.Config.MaxBody
	return max > 0 && n > max
}

// readMore writes what the connection owes, then reads more of it: with
// nothing of a next request read, after --keep-alive of silence (the
// header timeout for a connection's first request) it closes silently; a
// head begun gets the header timeout, then 408. It reports whether there
// is more to parse.
func (c *fastConn) readMore() bool {
	c.q.Flush()
	if c.flush() != nil {
		c.close(false)
		return false
	}
	if c.active {
		c.active = false
		c.tc.enterState(http.StateIdle, c.q.Ended(), c.hi-c.lo)
	}
	var deadline time.Time
	if c.lo == c.hi {
		c.idle()
		wait := c.g.headerTimeout
		if c.served > 0 {
			wait = c.g.p.Config.KeepAlive
		}
		deadline = time.Now().Add(wait)
	} else {
		if c.head.IsZero() {
			c.head = time.Now().Add(c.g.headerTimeout)
		}
		deadline = c.head
	}
	c.tc.readDeadline.set(deadline, c.tc.Conn)
	c.room(1)
	n, err := c.tc.raw().Read(c.buf[c.hi:])
	c.hi += n
	if n > 0 {
		return true
	}
	switch {
	case err == io.EOF:
		if err := c.parser.EOF(); err != nil {
			c.fail(err)
		} else {
			c.close(false)
		}
	case errors.Is(err, os.ErrDeadlineExceeded) && c.lo < c.hi:
		// A head begun and not finished in time; a connection that
		// sent nothing closes without an answer.
		c.fail(http1.ErrRequestTimeout)
	default:
		c.close(false)
	}
	return false
}

// serveRequest serves req, parsed whole, through the handler, and appends
// its response to out; next says that it was read with the request before
// it, served with nothing between them (ServeNext's clock). It reports
// whether the connection serves on.
func (c *fastConn) serveRequest(req *http1.Request, next bool) bool {
	p := c.g.p
	hr, err := c.store.ToHTTP(c.rctx, req, c.remote)
	if err != nil {
		c.fail(err)
		return false
	}
	if !c.active {
		c.active = true
		c.tc.enterState(http.StateActive, 0, 0)
		// No read deadline while handlers run (net/http's, without a
		// ReadTimeout): one the handler sets is its own.
		c.tc.readDeadline.set(time.Time{}, c.tc.Conn)
	}
	if c.out == nil {
		c.outPooled = fastBufs.Get().(*[]byte)
		c.out = (*c.outPooled)[:0]
	}
	start := len(c.out)
	closeConn := req.Close || p.Draining() || p.Config.KeepAlive <= 0
	c.w.Reset(c.out, req.Method, req.Major, req.Minor, closeConn)
	c.served++
	var begun int64
	if next {
		begun = c.q.Ended()
	}
	c.watchBegin()
	c.serving = true
	ok := serveRecover(p, &c.q, &c.w, hr, begun, begun != 0)
	c.serving = false
	c.watchEnd()
	c.rctx = c.rctx.Ended()
	if c.hijacked {
		c.release()
		c.rctx.Cancel(context.Canceled) // as net/http cancels a hijacked request's
		return false
	}
	if !ok {
		// What was sent went with the earlier responses; what was not
		// is this response's beginning, or theirs.
		if c.w.Started() {
			c.out = c.out[:0]
		} else {
			c.out = http1.AppendError(c.out[:start], http.StatusInternalServerError)
		}
		c.closeAfterResponse()
		return false
	}
	out, err := c.w.Finish()
	c.out = out
	if err != nil {
		c.close(false) // a write failed: the client is gone
		return false
	}
	if c.w.Close() || c.gone {
		c.closeAfterResponse()
		return false
	}
	return true
}

// send writes b, a response streaming (Flush, or past the writer's
// buffer) with the responses before it, to the connection.
func (c *fastConn) send(b []byte) error {
	_, err := c.tc.raw().Write(b)
	return err
}

// flush writes out.
func (c *fastConn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.tc.raw().Write(c.out)
	c.out = c.out[:0]
	return err
}

// room makes room in buf for n more bytes past hi (for a read, 1: what
// fits): the bytes before lo go, and a buffer still too small moves into
// a pool's, or one twice its size.
func (c *fastConn) room(n int) {
	for len(c.buf)-c.hi < n {
		buf, old := c.buf, c.pooled
		if c.lo == 0 {
			if c.pooled == nil && len(c.buf) < fastBufSize {
				c.pooled = fastBufs.Get().(*[]byte)
				buf, old = *c.pooled, nil
			} else {
				buf = make([]byte, 2*len(c.buf))
				c.pooled = nil
			}
		} else {
			old = nil // moved within buf
		}
		c.hi = copy(buf, c.buf[c.lo:c.hi])
		c.parsed -= c.lo
		c.lo = 0
		c.buf = buf
		if old != nil {
			fastBufs.Put(old) // only once its bytes are copied out
		}
	}
}

// keep adds b, read by the watch read, to what was read.
func (c *fastConn) keep(b []byte) {
	c.room(len(b))
	c.hi += copy(c.buf[c.hi:], b)
}

// putBuf gives a pool's read buffer back.
func (c *fastConn) putBuf() {
	if c.pooled != nil {
		fastBufs.Put(c.pooled)
		c.pooled = nil
	}
}

// idle gives back what a connection between requests does not need: the
// read buffer of the pool's (or a larger one), the write buffer, the
// Parser's storage and a large body the store kept.
func (c *fastConn) idle() {
	c.putBuf()
	c.buf = c.small[:]
	c.lo, c.parsed, c.hi = 0, 0, 0
	if c.outPooled != nil {
		fastBufs.Put(c.outPooled)
	}
	c.out, c.outPooled = nil, nil
	c.parser.Release()
	c.store.Idle()
}

// release gives back all that idle does, for a connection that is done:
// closed, hijacked or handed over, whatever its Parser was in.
func (c *fastConn) release() {
	c.parser.Reset()
	c.idle()
}

// fail answers a request that failed to parse (nothing, for one whose
// status is 0: the client went away) after the responses before it, and
// closes.
func (c *fastConn) fail(err error) {
	c.q.Flush()
	if c.flush() != nil || http1.Status(err) == 0 {
		c.close(false)
		return
	}
	c.out = c.g.p.refuse(c.tc, c.tc.raw(), c.out, err)
	c.close(true)
}

// closeAfterResponse writes out and closes, with a linger if the client
// sent more that the kernel holds unread: a close over it would reset the
// connection, and could destroy the response before the client reads it.
func (c *fastConn) closeAfterResponse() {
	c.q.Flush()
	if c.flush() != nil {
		c.close(false)
		return
	}
	c.close(HasUnread(c.tc))
}

// close closes the connection (see closeConn for linger), cancels its
// requests' context and reports it closed.
func (c *fastConn) close(linger bool) {
	c.q.Flush()
	closeConn(c.tc, linger)
	c.rctx.Cancel(context.Canceled)
	c.release()
	c.tc.enterState(http.StateClosed, 0, 0)
	c.g.forget(c.tc)
}
