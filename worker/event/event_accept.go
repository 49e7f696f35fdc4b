package event

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker/frontend"
)

// What a new connection costs the loop in system calls. With a connection
// per request (nginx's uwsgi_pass, clients that say "Connection: close")
// that is most of what a request costs, so a connection gets no more than
// it needs: accept4(2), read(2), write(2) and close(2), and epoll_ctl(2)
// only if it outlives its first turn of the loop.
//
//   - accept4 makes the socket non-blocking and close-on-exec itself, and
//     is called directly: x/sys's Accept4 asks the listener for its
//     protocol on every call (getsockopt SO_PROTOCOL, to tell L2TP from
//     TCP) and allocates the peer's address.
//   - TCP_NODELAY is set once on the listener (see listenerNoDelay): Linux
//     copies it to every socket accepted from it.
//   - A new connection is read at once, in the turn that accepted it,
//     rather than after an epoll report, while such first reads mostly
//     find the request there already (see firstReads). Only a connection
//     still open at the end of the turn, waiting for bytes, room or its
//     handler, joins the epoll set (see registerFresh); one that is
//     answered and closed in that turn never does. An EPOLL_CTL_ADD
//     reports what is ready already, so nothing that came in the meantime
//     is missed.
//   - With --defer-accept (socket.Options.DeferAccept), the listener has
//     TCP_DEFER_ACCEPT and accept returns only connections whose bytes
//     came: every first read finds them. Without it, a loop that keeps up
//     with its clients accepts most connections before their bytes, so
//     firstReads skips the read, and such a connection costs an
//     epoll_ctl and a wake-up more (6.3 system calls a request on the
//     close path, 4.2 with it). It is not the default, because a
//     connection whose bytes have not come is not in the backlog that a
//     graceful stop drains, and closing the listener resets it.
//   - close(2) alone ends it (and leaves the epoll set): no shutdown(2),
//     no SO_LINGER, and no FIONREAD ioctl when the last read found the
//     socket empty and epoll reported nothing since (see shut).

// accept4 accepts a connection from lfd, non-blocking and close-on-exec,
// and returns its fd and the peer's address (see rawPeer). The listener is
// non-blocking, so the call does not block and needs no hand-off of the
// thread's P.
func accept4(lfd int) (int, peer, error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	fd, _, errno := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, peer{}, errno
	}
	return int(fd), rawPeer(&rsa, n), nil
}

// peer is a connection's remote address. An IP peer's is formatted only
// once a request or a log line asks (String): behind nginx over uwsgi the
// request's RemoteAddr is the client's, from REMOTE_ADDR, and the allow
// lists read the IP itself (allowedBy), so a connection per request need
// not format nginx's address and parse it back. The loop's goroutine alone
// uses it.
type peer struct {
	addr netip.AddrPort // an IP peer's; invalid for a unix socket's
	name string         // String's result: a unix socket peer's from the start
}

// String is the address as "IP:port" ("[IPv6]:port"), or a unix socket
// peer's name (see rawPeer).
func (p *peer) String() string {
	if p.name == "" && p.addr.IsValid() {
		p.name = p.addr.String()
	}
	return p.name
}

// allowedBy reports whether list allows the peer, as list.AllowsRemote
// reports for its String.
func (p *peer) allowedBy(list frontend.AllowList) bool {
	if p.addr.IsValid() {
		return list.AllowsIP(p.addr.Addr())
	}
	return list.AllowsRemote(p.name)
}

// rawPeer reads the n bytes of address rsa: an IP address and port, or a
// unix socket's name: its path, "@name" for an abstract one, or "@" for an
// unnamed one.
func rawPeer(rsa *unix.RawSockaddrAny, n uint32) peer {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return peer{addr: netip.AddrPortFrom(netip.AddrFrom4(a.Addr), netPort(&a.Port))}
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return peer{addr: netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), netPort(&a.Port))}
	case unix.AF_UNIX:
		a := (*unix.RawSockaddrUnix)(unsafe.Pointer(rsa))
		path := unsafe.Slice((*byte)(unsafe.Pointer(&a.Path[0])), len(a.Path))
		if l := int(n) - int(unsafe.Offsetof(a.Path)); l >= 0 && l < len(path) {
			path = path[:l]
		}
		prefix := ""
		if len(path) == 0 || path[0] == 0 {
			prefix, path = "@", path[min(1, len(path)):]
		}
		for i, b := range path {
			if b == 0 {
				path = path[:i]
				break
			}
		}
		return peer{name: prefix + string(path)}
	}
	return peer{}
}

// netPort reads a port in network byte order.
func netPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// listenerNoDelay sets TCP_NODELAY on listener lfd, for every connection
// accepted from it to inherit, and reports whether each accepted socket
// must still be given it itself: only when a TCP listener refused it. A
// keep-alive response must not wait for the client's ACK of the last one,
// nor a streamed response's next write for the ACK of its first; a unix
// socket has no Nagle algorithm and refuses the option.
func listenerNoDelay(lfd int) (perConn bool) {
	err := unix.SetsockoptInt(lfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	return err != nil && err != unix.EOPNOTSUPP
}

// registerFresh puts the connections accepted in this turn that are still
// open into the epoll set, before the loop waits: for input and output,
// edge-triggered; the add reports at once what is ready already. One that
// waits for its first bytes gives its empty read buffer back, as an idle
// connection does.
func (l *eventLoop) registerFresh() {
	for i, c := range l.fresh {
		l.fresh[i] = nil
		if c.firstRead {
			l.firstReads.record(c.closed || c.served > 0 || c.reqStart != 0 || c.eof)
		}
		if c.closed {
			continue
		}
		if len(c.in) == 0 && c.reqStart == 0 && !c.busy {
			l.putBuf(c.in)
			c.in = nil
		}
		if c.uwsgi != nil && c.busy && l.async != nil {
			// Its one request is with the AsyncHandler, which nothing
			// from the peer can cancel: the loop waits for the answer,
			// not for events (see watch).
			c.unwatched = true
			continue
		}
		c.watch()
	}
	l.fresh = l.fresh[:0]
}

// watch puts the connection into the epoll set, for input and output,
// edge-triggered, unless it is there: false if that failed, which closes
// it. A uwsgi connection whose request went to an AsyncHandler joins only
// once it must wait for room to write or for the peer's FIN.
func (c *eventConn) watch() bool {
	if c.watched {
		return true
	}
	c.watched, c.unwatched = true, false
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: c.fd}
	if err := epollAdd(c.l.epfd, int(c.fd), &ev); err != nil {
		c.close()
		return false
	}
	return true
}

// firstReads decides whether the loop reads a new connection in the turn
// that accepted it. A first read that finds the request saves the
// connection its epoll_ctl and its wait for a report; one that finds
// nothing (EAGAIN) costs a read(2) more. Which one is likelier depends on
// the load: a loop that accepts the moment a handshake completes is often
// ahead of the client's first bytes, one working through a backlog is
// not. So the loop keeps a score of its recent first reads, up by one for
// each that found bytes, down by one for each that did not: it reads
// first while the score is above zero, that is while more have found
// bytes than not, and otherwise tries one connection in
// firstReadProbe to see whether that has changed.
type firstReads struct {
	score int // 0..firstReadMax
	skip  int // connections accepted since the last try, at score 0
}

const (
	firstReadMax   = 16
	firstReadProbe = 8
)

// try reports whether to read the connection just accepted at once.
func (f *firstReads) try() bool {
	if f.score > 0 {
		return true
	}
	if f.skip++; f.skip >= firstReadProbe {
		f.skip = 0
		return true
	}
	return false
}

// record notes what a first read found.
func (f *firstReads) record(found bool) {
	if found {
		f.score = min(f.score+1, firstReadMax)
	} else {
		f.score = max(f.score-1, 0)
	}
}
