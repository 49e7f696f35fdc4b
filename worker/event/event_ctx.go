package event

import (
	"context"
	"sync"
	"time"
)

// connContext is the context of an event connection's requests: the
// worker's (a quick stop cancels it), and cancelled too once the client
// goes away while a handler runs, as net/http cancels a request whose
// connection reads EOF. It lives in the connection, and its Done channel
// is made only when a handler asks for it, so that a request costs no
// allocation; the connection cancels it when it closes.
type connContext struct {
	parent context.Context

	mu   sync.Mutex
	done chan struct{}
	err  error
	stop func() bool // undoes the AfterFunc on parent
}

func (c *connContext) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *connContext) Value(key any) any           { return c.parent.Value(key) }

func (c *connContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		} else {
			c.stop = context.AfterFunc(c.parent, func() { c.cancel(c.parent.Err()) })
		}
	}
	return c.done
}

func (c *connContext) Err() error {
	if err := c.parent.Err(); err != nil {
		c.cancel(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// cancel ends the context with err; only the first call counts.
func (c *connContext) cancel(err error) {
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
