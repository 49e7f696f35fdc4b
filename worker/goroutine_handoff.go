package worker

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// handOver gives the connection to net/http, from the current request
// on, for the rest of its life: what the fast path owes goes out first,
// and the bytes it has read from that request's first on are replayed to
// net/http before the socket's (trackedConn.replay), through a Screen of
// its own, as every clear HTTP/1.x connection was read before the fast
// path. From then on the connection is net/http's, tracked by its
// ConnState as any other (New first).
func (c *fastConn) handOver() {
	c.q.Flush()
	if c.flush() != nil {
		c.close(false)
		return
	}
	tc := c.tc
	tc.replay = bytes.Clone(c.buf[c.lo:c.hi])
	c.release()
	c.rctx.Cancel(context.Canceled) // the fast path's requests are over
	// Active until net/http reports it New: not an idle connection to a
	// drain.
	tc.enterState(http.StateActive, 0, 0)
	tc.readDeadline.set(time.Time{}, tc.Conn) // net/http sets its own
	tc.screen = newScreenedConn(c.l.screen, c.g.p.Log, tc.p)
	if !c.g.handoff.give(tc) { // stopped quickly meanwhile
		tc.Close()
		tc.enterState(http.StateClosed, 0, 0)
		c.g.forget(tc)
	}
}

// handoffListener is the listener through which the fast path gives
// connections to the worker's http.Server (whose Serve accepts from it):
// Accept returns what give hands it.
type handoffListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), closed: make(chan struct{}), addr: addr}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// give hands c to the server's Accept; false once the listener is closed
// (the server's Close closes it).
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
