package worker

import (
	"context"
	"sync"
)

// The fast path's watch for a client that goes away while its handler
// runs, which cancels the request's context as net/http's background read
// does. net/http pays that read, on a goroutine of its own, for every
// request; most handlers are done long before a client could be seen to
// go away. So the fast path reads nothing while a handler runs, and only
// a handler still running at a tick of watchTicks (the clock of
// goroutine_watch.go, at most watchDelay away) gets a watch read, started
// then, on a goroutine of its own. The connection ends it before it reads
// again, with a read deadline in the past, and keeps whatever it read (a
// pipelined request's first bytes).
//
// The requests in flight reach the tick through one list for the worker
// (watchList): a connection puts itself on it at a request's start unless
// it is on it already, so a connection whose requests follow each other
// takes the list's lock about once a tick, not once a request, and no
// request arms a timer.

// The states of a connection's run word, below its request's number.
const (
	runIdle     = iota // no handler runs
	runServing         // a handler runs, unwatched
	runWatching        // a handler runs, and a watch read with it
)

// watchList is the worker's connections with a handler that may outlive
// the next tick, each with the number of the request it had.
type watchList struct {
	mu    sync.Mutex
	conns []watched
	spare []watched // the last tick's list, for the next
	armed bool      // a goroutine waits for the tick
}

type watched struct {
	c   *fastConn
	seq uint64
}

// add puts c, serving request seq, on the list for the next tick.
func (w *watchList) add(c *fastConn, seq uint64) {
	w.mu.Lock()
	w.conns = append(w.conns, watched{c, seq})
	arm := !w.armed
	w.armed = true
	w.mu.Unlock()
	if arm {
		go w.fire(watchTicks.tick())
	}
}

// fire waits for tick, then looks at every connection on the list.
func (w *watchList) fire(tick <-chan struct{}) {
	<-tick
	w.mu.Lock()
	list := w.conns
	w.conns, w.spare = w.spare[:0], nil
	w.armed = false
	w.mu.Unlock()
	for i, e := range list {
		e.c.atTick(e.seq)
		list[i] = watched{}
	}
	w.mu.Lock()
	if w.spare == nil {
		w.spare = list[:0]
	}
	w.mu.Unlock()
}

// watchBegin numbers the request whose handler runs now, and puts the
// connection on the watch list if it is not on it.
func (c *fastConn) watchBegin() {
	c.seq++
	c.run.Store(c.seq<<2 | runServing)
	if !c.listed.Load() && c.listed.CompareAndSwap(false, true) {
		c.g.watch.add(c, c.seq)
	}
}

// watchEnd marks the handler done (or the connection hijacked), and ends
// the watch read that began while it ran, if any, before the connection
// reads again.
func (c *fastConn) watchEnd() {
	if c.run.Swap(c.seq<<2|runIdle)&3 == runWatching {
		c.stopWatch()
	}
}

// atTick is the tick's look at c, listed while serving request seq: the
// same request, still running, gets its watch read; a later one stays on
// the list for the next tick; an idle connection leaves it.
func (c *fastConn) atTick(seq uint64) {
	r := c.run.Load()
	switch {
	case r == seq<<2|runServing:
		c.watch.Add(1)
		if c.run.CompareAndSwap(r, seq<<2|runWatching) {
			go c.watchRead()
		} else {
			c.watch.Done() // the handler returned meanwhile
		}
	case r&3 == runServing:
		c.g.watch.add(c, r>>2)
		return
	}
	c.unlist(r >> 2)
}

// unlist takes c off the list; a request begun since seen, which may
// have seen it listed and not put it on, is put on now. (Both sides store
// before they load: one of them sees the other.)
func (c *fastConn) unlist(seen uint64) {
	c.listed.Store(false)
	if r := c.run.Load(); r&3 == runServing && r>>2 != seen && c.listed.CompareAndSwap(false, true) {
		c.g.watch.add(c, r>>2)
	}
}

// watchRead is the watch read: a read of the socket while the handler
// runs. Bytes are the next request's, kept in peek; an end of the
// connection (EOF, a reset, or a read deadline the handler set) cancels
// the request's context, as net/http's background read does, and the
// connection closes after the response. A read stopWatch ended is none of
// these.
func (c *fastConn) watchRead() {
	defer c.watch.Done()
	n, _ := c.tc.raw().Read(c.peek[:])
	c.peekN = n
	if n == 0 && !c.aborted.Load() {
		c.gone = true
		c.rctx.Cancel(context.Canceled)
	}
}

// stopWatch ends the watch read with a read deadline in the past, waits
// for it, and keeps what it read. The next read's deadline replaces that
// one (lazyDeadline.rearm).
func (c *fastConn) stopWatch() {
	c.aborted.Store(true)
	c.tc.readDeadline.set(aLongTimeAgo, c.tc.Conn)
	c.watch.Wait()
	c.aborted.Store(false)
	if c.peekN > 0 {
		c.keep(c.peek[:c.peekN])
		c.peekN = 0
	}
}
