package worker

import (
	"context"
	"sync"
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
// Unlike net/http's request contexts it is not cancelled when a handler
// returns: it lasts as long as the connection. Set Parent before the
// first request; the zero value is not ready otherwise.
type ConnContext struct {
	Parent context.Context

	mu   sync.Mutex
	done chan struct{}
	err  error
	stop func() bool // undoes the AfterFunc on Parent
}

func (c *ConnContext) Deadline() (time.Time, bool) { return c.Parent.Deadline() }
func (c *ConnContext) Value(key any) any           { return c.Parent.Value(key) }

func (c *ConnContext) Done() <-chan struct{} {
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
