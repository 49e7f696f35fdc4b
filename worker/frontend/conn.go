package frontend

import (
	"errors"
	"net"
	"syscall"
)

// ErrNoFD is the error of a listener or connection with no file
// descriptor to reach, such as one that is not a socket.
var ErrNoFD = errors.New("no file descriptor")

// BaseConn is the base of connection wrappers: embedded in a wrapper, it
// passes CloseWrite and SyscallConn on to the wrapped connection, so
// that a half-close and checks on the socket (unread bytes) reach it
// through any number of wrappers.
type BaseConn struct{ net.Conn }

// CloseWrite half-closes the connection when the wrapped one can.
func (c BaseConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn reaches the socket; ErrNoFD if there is none.
func (c BaseConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, ErrNoFD
}

// RemoteAddr is c's peer as a request's RemoteAddr: "IP:port", or ""
// when there is none to name (a unix socket peer).
func RemoteAddr(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// peerName names a connection's peer for logs: the PROXY client if any.
func peerName(c net.Conn) string {
	if a := RemoteAddr(c); a != "" {
		return a
	}
	return "a unix socket peer"
}
