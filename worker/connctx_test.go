package worker

import (
	"context"
	"testing"
	"time"
)

func TestConnContext(t *testing.T) {
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	var c ConnContext
	c.Parent = parent
	if c.Err() != nil {
		t.Fatal("a fresh context is done")
	}
	done := c.Done()
	c.Cancel(context.Canceled)
	c.Cancel(context.DeadlineExceeded) // only the first counts
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("cancel did not close Done")
	}
	if c.Err() != context.Canceled {
		t.Errorf("Err = %v", c.Err())
	}

	// The worker's quick stop cancels the parent: every request sees it.
	var d ConnContext
	d.Parent = parent
	derived, cancel := context.WithTimeout(&d, time.Minute)
	defer cancel()
	stop()
	select {
	case <-derived.Done():
	case <-time.After(time.Second):
		t.Fatal("the parent's cancel did not reach a derived context")
	}
	if d.Err() != context.Canceled {
		t.Errorf("Err after the parent's cancel = %v", d.Err())
	}
}
