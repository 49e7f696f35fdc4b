package worker

import (
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// net/http's background read: while a handler runs, net/http reads the
// connection on a goroutine of its own, a byte at a time, to learn if the
// client goes away (and cancel the request's context), and ends that read
// when the handler is done (abortPendingRead) with a read deadline in the
// past, which it then clears. On a socket that costs a read that finds
// nothing, and two deadline changes, which stop the runtime timer of the
// socket's deadline and arm it again for the next read: more than the
// rest of corral's share of a kept-alive request.
//
// Most handlers are done long before a client could be seen to go away.
// So on a screened connection the background read first waits off the
// socket, parked (watchRead), and goes to the socket only once it has
// waited for a tick of watchTicks (at most watchDelay); net/http's past
// deadline ends a parked read, or one not yet started, without reaching
// the socket (abortWatch). A client that goes away during a long
// handler is still seen, up to watchDelay later.

// watchDelay is how long at most a background read waits off the socket.
const watchDelay = 100 * time.Millisecond

// The states of a screenedConn's background read (screenedConn.watch).
// Each request's starts idle (inState, before the read begins).
const (
	watchIdle    int32 = iota // not begun
	watchParked               // waiting off the socket: abortWatch wakes it through abort
	watchAborted              // ended by net/http before it reached the socket
	watchSocket               // on the socket: net/http's deadline goes there
)

// aLongTimeAgo is the deadline net/http's server ends its background read
// with (net/http's own aLongTimeAgo).
var aLongTimeAgo = time.Unix(1, 0)

// watchTicks is the clock background reads wait on: a channel closed
// every watchDelay while one is wanted, and no timer at all otherwise.
var watchTicks tickClock

// tickClock hands out a channel closed at its next tick; the first ask
// after a tick starts the next one.
type tickClock struct {
	next atomic.Pointer[chan struct{}]
	mu   sync.Mutex
}

// tick returns a channel closed within watchDelay.
func (t *tickClock) tick() <-chan struct{} {
	if ch := t.next.Load(); ch != nil {
		return *ch
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ch := t.next.Load(); ch != nil {
		return *ch
	}
	ch := make(chan struct{})
	t.next.Store(&ch)
	time.AfterFunc(watchDelay, func() {
		t.next.Store(nil)
		close(ch)
	})
	return ch
}

// isBackgroundRead reports whether a read into b is net/http's background
// read: a small one while a handler runs, on a connection not hijacked.
func (c *screenedConn) isBackgroundRead(b []byte) bool {
	return len(b) < len(c.small) && c.active.Load() && !c.hijacked.Load()
}

// watchRead is the background read's start: it reports whether net/http
// has ended the read (abortWatch) before it reached the socket, else
// the read goes on to the socket. One that finds the Screen holding
// nothing (watching) first waits off the socket, for an abort or a tick.
func (c *screenedConn) watchRead(b []byte) (aborted bool) {
	if !c.watching(b) {
		return !c.watch.CompareAndSwap(watchIdle, watchSocket)
	}
	if !c.watch.CompareAndSwap(watchIdle, watchParked) {
		return true // aborted before it began
	}
	select {
	case <-c.abort:
		return true
	case <-watchTicks.tick():
		if c.watch.CompareAndSwap(watchParked, watchSocket) {
			return false
		}
		<-c.abort // aborted meanwhile: its token is on its way
		return true
	}
}

// abortWatch ends the background read for net/http's past deadline, and
// reports whether it did so off the socket; false: the read is on the
// socket, and the deadline must go there.
func (c *screenedConn) abortWatch() bool {
	for {
		switch s := c.watch.Load(); s {
		case watchIdle:
			if c.watch.CompareAndSwap(s, watchAborted) {
				return true
			}
		case watchParked:
			if c.watch.CompareAndSwap(s, watchAborted) {
				c.abort <- struct{}{} // buffered: one token a request
				return true
			}
		default:
			return false
		}
	}
}

// errWatchAborted is a background read's error when net/http ended it:
// the timeout it would have had from the socket, which net/http expects.
var errWatchAborted error = os.ErrDeadlineExceeded
