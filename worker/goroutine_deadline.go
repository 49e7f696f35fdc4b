package worker

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// lazyDeadline is a trackedConn's read deadline, set on the socket only
// when it must be. net/http sets a connection's read deadline about seven
// times a request (the header timeout, its end, the idle timeout, the
// background read's start and end); each one reaches the poller, and a
// deadline in the future arms a runtime timer, which costs more than the
// rest of corral's share of a request. Most of them are no-ops here:
//
//   - a deadline at or after the one the socket has (armed) waits: if the
//     socket's fires first, the read finds the deadline it was asked for
//     still ahead (want), sets that one and reads on (rearm);
//   - no deadline (the zero time) waits too: an armed one that fires finds
//     none wanted and is cleared.
//
// So the socket's deadline is never later than the one asked for, and a
// read fails with os.ErrDeadlineExceeded only once that one has passed.
// An earlier deadline, the past one that ends net/http's background read
// included, goes to the socket at once.
//
// The deadlines that wait, all but about one a request, take no lock:
// want and armed are atomics, and a set that sees armed at or before what
// it asks for returns. mu only orders the socket's changes, a set's that
// goes to the socket and a rearm's, and a rearm that has set the socket
// reads want again, after, so that a set that skipped the socket while
// armed was changing still gets its earlier deadline (both sides store
// before they load: one of them sees the other).
type lazyDeadline struct {
	mu    sync.Mutex
	want  atomic.Int64 // asked for, in deadlineNanos; 0: none
	armed atomic.Int64 // the socket's, in deadlineNanos; 0: none; stored under mu
}

// deadlineNanos is t as a lazyDeadline holds it: Unix nanoseconds, and 0
// for no deadline (the zero time).
func deadlineNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixNano(), 1)
}

// readDeadliner is the socket whose deadline a lazyDeadline sets (an
// interface, not a method value, which would cost an allocation a call).
type readDeadliner interface{ SetReadDeadline(time.Time) error }

// waits reports whether want, asked for while the socket has armed, can
// wait for the socket's to fire.
func waits(want, armed int64) bool { return want == 0 || (armed != 0 && want >= armed) }

// set asks for read deadline t, and sets it on sock if the socket's must
// change now.
func (d *lazyDeadline) set(t time.Time, sock readDeadliner) error {
	want := deadlineNanos(t)
	d.want.Store(want)
	if waits(want, d.armed.Load()) {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if waits(want, d.armed.Load()) {
		return nil // a rearm has set it meanwhile
	}
	d.armed.Store(want)
	return sock.SetReadDeadline(t)
}

// rearm is called when a read of sock failed with err: it reports whether
// the socket's deadline fired before the one asked for, in which case it
// has set that one, and the read should be retried.
func (d *lazyDeadline) rearm(err error, sock readDeadliner) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	armed, want := d.armed.Load(), d.want.Load()
	if armed == 0 || (want != 0 && want <= armed) {
		return false // not ours, or what was asked for has passed
	}
	for {
		d.armed.Store(want)
		if sock.SetReadDeadline(nanosDeadline(want)) != nil {
			return false
		}
		// A set while armed was changing may have skipped the socket.
		now := d.want.Load()
		if waits(now, want) {
			return true
		}
		want = now
	}
}

// nanosDeadline is deadlineNanos's inverse.
func nanosDeadline(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// SetReadDeadline is lazy: see lazyDeadline. The one that ends net/http's
// background read need not reach the socket: see abortWatch.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if c.screen != nil && t.Equal(aLongTimeAgo) && c.screen.isBackgroundRead(nil) && c.screen.abortWatch() {
		return nil
	}
	return c.readDeadline.set(t, c.Conn)
}

// SetWriteDeadline skips clearing a write deadline that was never set:
// net/http clears it after every request.
func (c *trackedConn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() && !c.writeDeadline.Load() {
		return nil
	}
	c.writeDeadline.Store(!t.IsZero())
	return c.Conn.SetWriteDeadline(t)
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	c.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}
