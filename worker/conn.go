package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker/frontend"
)

// The listener and connection calls the worker types share, this
// package's and those registered from their own (worker/event). They
// reach the sockets through syscall.Conn, never os.File.Fd, which would
// make the shared sockets blocking.

// listenerAddr returns a printable local address for l.
func listenerAddr(l net.Listener) string { return l.Addr().String() }

// errNoFD is the error of a listener that is not a socket of this process.
func errNoFD(l net.Listener) error {
	return fmt.Errorf("listener %s: %w", listenerAddr(l), frontend.ErrNoFD)
}

// ListenerFD returns l's descriptor, still owned by l: a type that polls
// it itself duplicates it. It fails, wrapping frontend.ErrNoFD, for a
// listener that is not a socket of this process.
func ListenerFD(l net.Listener) (int, error) {
	sc, ok := l.(syscall.Conn)
	if !ok {
		return -1, errNoFD(l)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// acceptNow accepts one connection that is already in the backlog, without
// waiting; it fails with EAGAIN when the backlog is empty.
func acceptNow(l net.Listener) (net.Conn, error) {
	sc, ok := l.(syscall.Conn)
	if !ok {
		return nil, errNoFD(l)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var aerr error
	if err := rc.Control(func(fd uintptr) {
		for {
			nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if aerr != unix.EINTR && aerr != unix.ECONNABORTED {
				return
			}
		}
	}); err != nil {
		return nil, err
	}
	if aerr != nil {
		return nil, aerr
	}
	f := os.NewFile(uintptr(nfd), "accepted")
	c, err := net.FileConn(f)
	if err != nil && IsResourceError(err) && spare.free() {
		c, err = net.FileConn(f)
	}
	f.Close()
	spare.hold()
	return c, err
}

// spare is a descriptor held in reserve for acceptNow. net.FileConn dups
// the accepted socket, so a connection takes two fds for a moment: at the
// fd limit the accept could succeed and the dup fail, and the connection,
// accepted, was lost with a reset. acceptNow then frees the spare for the
// dup, and takes it back in the slot the accepted fd leaves.
var spare = spareFD{fd: -1}

type spareFD struct {
	mu sync.Mutex
	fd int // -1: none held
}

// free closes the spare; false if none was held.
func (s *spareFD) free() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return false
	}
	unix.Close(s.fd)
	s.fd = -1
	return true
}

// hold opens the spare if it is not held; at the fd limit it stays free.
func (s *spareFD) hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		if fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			s.fd = fd
		}
	}
}

// acceptPause is how long a worker stops accepting after an accept failed
// for want of a resource: the fault lasts until connections close, and an
// accept retried at once would fail again, on a core spinning at 100%.
const acceptPause = 100 * time.Millisecond

// IsResourceError reports whether an accept failed for want of fds or
// kernel memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the worker pauses its
// accepts for acceptPause, and the connection waits in the backlog.
func IsResourceError(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
		errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}

// AcceptFailed logs an accept error on p's error log, at most a line a
// minute however often it recurs (see rateLog): at the fd limit every
// wake-up of every loop fails to accept. A type calls it for every
// accept error but EINTR, ECONNABORTED and EAGAIN, and after one that
// IsResourceError reports stops accepting for about acceptPause.
func (p *Process) AcceptFailed(err error) {
	msg := fmt.Sprintf("accept: %v", err)
	if IsResourceError(err) {
		msg += fmt.Sprintf("; pausing accepts for %s each time", acceptPause)
	}
	p.acceptLog.print(p.Log, slog.LevelError, msg)
}

// HasUnread reports whether the kernel holds bytes the server has not read:
// a request on its way, which closing now would lose.
func HasUnread(c net.Conn) bool {
	sc, ok := netConn(c).(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	unread := false
	rc.Control(func(fd uintptr) { unread = FDHasUnread(int(fd)) })
	return unread
}

// FDHasUnread is HasUnread for a socket the caller holds by its fd; a
// type closes an idle connection only when it reports false.
func FDHasUnread(fd int) bool {
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	return err == nil && n > 0
}

// closeConn closes c. With linger, c may hold bytes the server will never
// read (the rest of a refused request); closing over them would reset the
// connection and could destroy the response before the client reads it,
// so the write side is shut first and the client gets a moment to see the
// response and close.
func closeConn(c net.Conn, linger bool) {
	if linger {
		lingerRead(c)
	}
	c.Close()
}

// lingerRead shuts c's write side and reads what the client still sends,
// for at most half a second and 256 KiB, so that a close after it resets
// nothing the client has yet to read.
func lingerRead(c net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.(closeWriter); ok && cw.CloseWrite() == nil {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		var b [4096]byte
		for total := 0; total < 256<<10; {
			n, err := c.Read(b[:])
			total += n
			if err != nil {
				break
			}
		}
	}
}
