package frontend

import (
	"net"
	"sync"
	"syscall"
	"time"
)

// fcgiWatchDelay is how long a handler run on a connection's reading
// goroutine goes unwatched: most are done long before, and pay only a
// stopped timer.
const fcgiWatchDelay = 100 * time.Millisecond

// goneWatch looks for the peer's close while a handler runs on the
// goroutine that would otherwise read the connection: a read that peeks
// (MSG_PEEK), so that bytes which come instead stay for the reading loop.
type goneWatch struct {
	t       *time.Timer
	mu      sync.Mutex
	stopped bool
	running chan struct{} // closed when the watch read returns; nil before it starts
}

// canWatchGone reports whether watchGone can watch c: it needs the socket.
func canWatchGone(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	_, err := sc.SyscallConn()
	return err == nil
}

// watchGone calls cancel if c's peer closes while the watch runs, from
// fcgiWatchDelay on; stop ends it. c must pass canWatchGone.
func watchGone(c net.Conn, cancel func()) *goneWatch {
	w := &goneWatch{}
	w.t = time.AfterFunc(fcgiWatchDelay, func() {
		rc, err := c.(syscall.Conn).SyscallConn()
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.stopped || err != nil {
			return
		}
		w.running = make(chan struct{})
		go w.read(rc, cancel)
	})
	return w
}

// read waits for c to be readable and peeks a byte: none (the close) or
// an error cancels. A read deadline in the past (stop) ends it.
func (w *goneWatch) read(rc syscall.RawConn, cancel func()) {
	defer close(w.running)
	var b [1]byte
	gone := false
	rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			return false // wait for readiness
		}
		gone = err != nil || n == 0
		return true
	})
	if gone {
		cancel()
	}
}

// stop ends the watch before c is read again; c's read deadline is then
// cleared if the watch had started.
func (w *goneWatch) stop(c net.Conn) {
	w.t.Stop()
	w.mu.Lock()
	w.stopped = true
	running := w.running
	w.mu.Unlock()
	if running != nil {
		c.SetReadDeadline(time.Unix(1, 0))
		<-running
		c.SetReadDeadline(time.Time{})
	}
}
