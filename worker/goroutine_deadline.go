package worker

import (
	"errors"
	"os"
	"sync"
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
type lazyDeadline struct {
	mu    sync.Mutex
	want  time.Time // asked for; zero: none
	armed time.Time // the socket's; zero: none
}

// readDeadliner is the socket whose deadline a lazyDeadline sets (an
// interface, not a method value, which would cost an allocation a call).
type readDeadliner interface{ SetReadDeadline(time.Time) error }

// set asks for read deadline t, and sets it on sock if the socket's must
// change now.
func (d *lazyDeadline) set(t time.Time, sock readDeadliner) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.want = t
	if t.IsZero() || (!d.armed.IsZero() && !t.Before(d.armed)) {
		return nil
	}
	d.armed = t
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
	if d.armed.IsZero() || (!d.want.IsZero() && !d.want.After(d.armed)) {
		return false // not ours, or what was asked for has passed
	}
	d.armed = d.want
	return sock.SetReadDeadline(d.want) == nil
}

// SetReadDeadline is lazy: see lazyDeadline.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
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
