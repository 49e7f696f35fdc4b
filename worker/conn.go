package worker

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker/frontend"
)

// The listener and connection calls the worker types share. They reach
// the sockets through syscall.Conn, never os.File.Fd, which would make
// the shared sockets blocking.

// listenerAddr returns a printable local address for l.
func listenerAddr(l net.Listener) string { return l.Addr().String() }

// errNoFD is the error of a listener that is not a socket of this process.
func errNoFD(l net.Listener) error {
	return fmt.Errorf("listener %s: %w", listenerAddr(l), frontend.ErrNoFD)
}

// listenerFD returns l's descriptor.
func listenerFD(l net.Listener) (int, error) {
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
	defer f.Close()
	return net.FileConn(f)
}

// hasUnread reports whether the kernel holds bytes the server has not read:
// a request on its way, which closing now would lose.
func hasUnread(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	unread := false
	rc.Control(func(fd uintptr) { unread = fdHasUnread(int(fd)) })
	return unread
}

// fdHasUnread is hasUnread for a socket the caller holds by its fd.
func fdHasUnread(fd int) bool {
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
