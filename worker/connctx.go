package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// ConnContext is the context of a connection's requests, for a worker
// type that reads requests itself (the event loop, the goroutine type's
// fast path): Parent's (a quick stop cancels it), and cancelled too once
// the client goes away while a handler runs (Cancel), as net/http cancels
// a request whose connection reads EOF. It lives in the connection, and
// its Done channel is made only when a handler asks for it, so that a
// request costs no allocation; the connection cancels it when it closes.
//
// A request whose handler used its context (any of its methods) by the
// time it returned has it cancelled then, as net/http's is (Ended), and
// the connection's next requests get a new one; a request that never uses
// it costs nothing more. A goroutine the handler left that first uses the
// context later shares the next request's, which ends with that request
// (net/http's would have ended already). Set Parent before the first
// request; the zero value is not ready otherwise.
type ConnContext struct {
	Parent context.Context

	used atomic.Bool // a method was called: Ended cancels

	mu   sync.Mutex
	done chan struct{}
	err  error
	stop func() bool // undoes the AfterFunc on Parent
}

func (c *ConnContext) Deadline() (time.Time, bool) {
	c.use()
	return c.Parent.Deadline()
}

func (c *ConnContext) Value(key any) any {
	c.use()
	return c.Parent.Value(key)
}

// use notes that the context was used: a load, and a store only the first
// time.
func (c *ConnContext) use() {
	if !c.used.Load() {
		c.used.Store(true)
	}
}

func (c *ConnContext) Done() <-chan struct{} {
	c.use()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		} else {
			c.stop = context.AfterFunc(c.Parent, func() { c.Cancel(c.Parent.Err()) })
		}
	}
	return c.done
}

func (c *ConnContext) Err() error {
	c.use()
	if err := c.Parent.Err(); err != nil {
		c.Cancel(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Cancel ends the context with err; only the first call counts.
func (c *ConnContext) Cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	if c.stop != nil {
		c.stop()
	}
}

// Ended is called once the handlers of the requests served with c have
// returned. If one used c, c is cancelled (context.Canceled), as net/http
// cancels a request's context when its handler returns, so that what a
// handler left waiting on it (a goroutine, a context.AfterFunc, a derived
// context and its timer) ends with its request, not with the connection;
// Ended then returns a new context, with c's Parent, for the connection's
// next requests. Otherwise it returns c.
func (c *ConnContext) Ended() *ConnContext {
	if !c.used.Load() {
		return c
	}
	c.Cancel(context.Canceled)
	return &ConnContext{Parent: c.Parent}
}
