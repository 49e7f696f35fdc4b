package worker

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/corral-server/corral/worker/frontend"
)

// TestLazyDeadlineArmsOnlyEarlierDeadlines: a later deadline or none waits
// for the socket's to fire; an earlier one is set at once; a read that
// times out early is told to retry with the deadline asked for, one that
// timed out at it is not.
func TestLazyDeadlineArmsOnlyEarlierDeadlines(t *testing.T) {
	var d lazyDeadline
	arm := &armRecorder{}
	base := time.Now()
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	past := time.Unix(1, 0)
	timeout := &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}

	d.set(at(10), arm)      // armed: the first
	d.set(at(12), arm)      // later: waits
	d.set(time.Time{}, arm) // none: waits
	d.set(past, arm)        // earlier: at once
	if d.rearm(timeout, arm) {
		t.Fatal("a read that timed out at the deadline asked for is told to retry")
	}
	d.set(time.Time{}, arm)
	d.set(at(2), arm) // after the past one the socket has: waits
	if !d.rearm(timeout, arm) {
		t.Fatal("a read that timed out before the deadline asked for is not told to retry")
	}
	if d.rearm(io.EOF, arm) {
		t.Fatal("a read that failed otherwise is told to retry")
	}
	if want := []time.Time{at(10), past, at(2)}; !equalTimes(arm.set, want) {
		t.Fatalf("armed %v, want %v", arm.set, want)
	}
	var none lazyDeadline
	if none.rearm(timeout, arm) {
		t.Fatal("a timeout with no deadline of ours armed is told to retry")
	}
}

// socketPair is both ends of a connection over loopback, closed at the
// end of the test.
func socketPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if server, err = l.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// armRecorder records the deadlines set on it.
type armRecorder struct{ set []time.Time }

func (a *armRecorder) SetReadDeadline(t time.Time) error {
	a.set = append(a.set, t)
	return nil
}

func equalTimes(a, b []time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// TestTrackedConnDeadlinesOnASocket: over a real socket, a read outlives
// an early deadline that a later one replaced, and times out at the
// deadline asked for, not before.
func TestTrackedConnDeadlinesOnASocket(t *testing.T) {
	client, sc := socketPair(t)
	c := &trackedConn{BaseConn: frontend.BaseConn{Conn: sc}}

	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // later: replaces it
	go func() {
		time.Sleep(200 * time.Millisecond)
		client.Write([]byte("x"))
	}()
	var b [8]byte
	if n, err := c.Read(b[:]); n != 1 || err != nil {
		t.Fatalf("read past the replaced deadline: %d, %v; want the byte", n, err)
	}

	start := time.Now()
	c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	_, err := c.Read(b[:])
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read at the deadline: %v, want a timeout", err)
	}
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("timed out after %s, before the deadline", took)
	}

	c.SetReadDeadline(time.Time{}) // none: the next read waits for the byte
	go func() {
		time.Sleep(100 * time.Millisecond)
		client.Write([]byte("y"))
	}()
	if n, err := c.Read(b[:]); n != 1 || err != nil || b[0] != 'y' {
		t.Fatalf("read with no deadline: %d, %v", n, err)
	}
}
