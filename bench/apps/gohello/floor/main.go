// Command floor is the "floor" row of the benchmarks: the least work a server can do per
// request on this machine's kernel and loopback, so every other server can be reported as a
// share of it (issue 21).  It is not a server anyone should run.
//
// One OS thread (runtime.LockOSThread, GOMAXPROCS 1), raw system calls (golang.org/x/sys/unix
// for setup, RawSyscall on the hot path, so not even the Go runtime's syscall bookkeeping runs),
// one level-triggered epoll set, no allocation after start-up, no parsing and no handler:
//
//	-proto http     every "\r\n\r\n" in what a read returned is a request; the answer to all
//	                of them is one write of that many copies of a fixed 200 "Hello, World!".
//	                A read containing "Connection: close" (as bench/close.lua sends it) gets
//	                the fixed response with "Connection: close", and the connection is closed.
//	-proto uwsgi    the 4-byte uwsgi packet header and its vars make a request (a GET has no
//	                body); the fixed HTTP response, then close (nginx's uwsgi_pass opens a
//	                connection per request).
//	-proto fastcgi  FastCGI records are skipped until the empty FCGI_STDIN record of a request;
//	                the answer is one write of FCGI_STDOUT (CGI headers and the body), an empty
//	                FCGI_STDOUT and FCGI_END_REQUEST; the connection stays open if nginx asked
//	                for it (FCGI_KEEP_CONN, fastcgi_keep_conn on), else it is closed.
//
// What the kernel can carry is set once on the listener: TCP_NODELAY (accepted sockets inherit
// it) and TCP_DEFER_ACCEPT (accept returns a connection only once its first bytes are there).  A
// new connection is read at once, without a trip through epoll; it joins the epoll set only if
// it stays open.  A read that returned less than the buffer is not followed by one that would
// return EAGAIN: level-triggered epoll says when there is more.  So a connection per request
// costs accept4, read, write (sendto, MSG_MORE: the FIN goes with the response), close, plus
// its share of an epoll_wait.
//
//	go build -o /tmp/benchbin/floor ./floor && /tmp/benchbin/floor -addr 127.0.0.1:8081
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	protoHTTP = iota
	protoUWSGI
	protoFastCGI
)

const body = "Hello, World!"

var (
	httpResp  = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n" + body)
	closeResp = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\n" + body)
	cgiResp   = []byte("Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n" + body)
	closeHdr  = []byte("Connection: close")
	crlf2     = "\r\n\r\n"
)

// conn is the state a connection carries from one read to the next: what is needed to find
// the end of a request that a read cut in two.
type conn struct {
	polled bool // in the epoll set
	match  int  // http: bytes of "\r\n\r\n" matched at the end of the last read

	// uwsgi and fastcgi: the packet or record header read so far, and what is left of its body.
	hdr  [8]byte
	nh   int
	left int
	off  int // fastcgi: offset into the current record's content
	typ  byte
	id   uint16 // fastcgi: the request id of the current record
	keep bool   // fastcgi: FCGI_KEEP_CONN of the request being read
}

type server struct {
	proto int
	lfd   int
	epfd  int
	conns []conn
	in    []byte
	out   []byte
	ids   []uint16 // fastcgi: the request ids completed by the current read
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address (keep it on loopback)")
	protoName := flag.String("proto", "http", "http, uwsgi or fastcgi")
	deferAccept := flag.Bool("defer-accept", true, "set TCP_DEFER_ACCEPT on the listener")
	flag.Parse()
	proto, ok := map[string]int{"http": protoHTTP, "uwsgi": protoUWSGI, "fastcgi": protoFastCGI}[*protoName]
	if !ok {
		fmt.Fprintf(os.Stderr, "floor: -proto %q: want http, uwsgi or fastcgi\n", *protoName)
		os.Exit(2)
	}
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil || !ap.Addr().Is4() {
		fmt.Fprintf(os.Stderr, "floor: -addr %q: want an IPv4 address and port\n", *addr)
		os.Exit(2)
	}
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()

	s := &server{proto: proto, in: make([]byte, 64<<10), out: make([]byte, 0, 64<<10)}
	if s.lfd, err = listen(ap, *deferAccept); err != nil {
		log.Fatalf("floor: %v", err)
	}
	if s.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		log.Fatalf("floor: epoll_create1: %v", err)
	}
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, s.lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(s.lfd)}); err != nil {
		log.Fatalf("floor: epoll_ctl: %v", err)
	}
	log.Printf("floor (%s) listening on %s", *protoName, *addr)
	s.loop()
}

// listen opens the listening socket, with what accepted sockets should inherit set on it.
func listen(ap netip.AddrPort, deferAccept bool) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	opts := []struct {
		level, opt, v int
		name          string
	}{
		{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, "SO_REUSEADDR"},
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1, "TCP_NODELAY"},
	}
	if deferAccept {
		opts = append(opts, struct {
			level, opt, v int
			name          string
		}{unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1, "TCP_DEFER_ACCEPT"})
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			return -1, fmt.Errorf("setsockopt %s: %w", o.name, err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return -1, fmt.Errorf("bind %s: %w", ap, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		return -1, fmt.Errorf("listen: %w", err)
	}
	return fd, nil
}

func (s *server) loop() {
	events := make([]unix.EpollEvent, 256)
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(s.epfd),
			uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), ^uintptr(0), 0, 0)
		if e != 0 {
			if e == unix.EINTR {
				continue
			}
			log.Fatalf("floor: epoll_pwait: %v", e)
		}
		for _, ev := range events[:r] {
			if fd := int(ev.Fd); fd == s.lfd {
				s.acceptAll()
			} else {
				s.serve(fd)
			}
		}
	}
}

// acceptAll accepts until the backlog is empty, and serves each new connection at once.
func (s *server) acceptAll() {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(s.lfd), 0, 0,
			unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		if e != 0 {
			if e == unix.EINTR || e == unix.ECONNABORTED {
				continue
			}
			return // EAGAIN, or out of descriptors: epoll says when to try again
		}
		fd := int(r)
		for fd >= len(s.conns) {
			s.conns = append(s.conns, conn{})
		}
		s.conns[fd] = conn{}
		s.serve(fd)
	}
}

// serve reads what fd has, answers every complete request in it, and closes fd or leaves it
// in the epoll set.
func (s *server) serve(fd int) {
	c := &s.conns[fd]
	for {
		r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&s.in[0])), uintptr(len(s.in)))
		if e == unix.EINTR {
			continue
		}
		if e == unix.EAGAIN {
			s.poll(fd, c)
			return
		}
		if e != 0 || r == 0 {
			s.close(fd)
			return
		}
		n := int(r)
		keep := s.answer(c, s.in[:n])
		if len(s.out) > 0 && !writeAll(fd, s.out, !keep) {
			keep = false
		}
		if !keep {
			s.close(fd)
			return
		}
		if n < len(s.in) {
			s.poll(fd, c)
			return
		}
	}
}

// answer fills s.out with the responses to the requests b completes; false: close afterwards.
func (s *server) answer(c *conn, b []byte) (keep bool) {
	s.out = s.out[:0]
	switch s.proto {
	case protoHTTP:
		n := countHTTP(c, b)
		resp := httpResp
		keep = true
		if n > 0 && bytes.Contains(b, closeHdr) {
			resp, keep = closeResp, false
		}
		for range n {
			s.out = append(s.out, resp...)
		}
	case protoUWSGI:
		if countUWSGI(c, b) > 0 {
			s.out = append(s.out, httpResp...)
			return false
		}
		return true
	case protoFastCGI:
		s.ids = s.ids[:0]
		keep = s.countFastCGI(c, b)
		for _, id := range s.ids {
			s.out = appendFastCGI(s.out, id)
		}
	}
	return keep
}

// countHTTP counts the ends of request heads ("\r\n\r\n") in b, carrying a match cut by the end
// of a read over to the next one.
func countHTTP(c *conn, b []byte) int {
	n := 0
	for _, ch := range b {
		switch {
		case ch == crlf2[c.match]:
			c.match++
			if c.match == 4 {
				n++
				c.match = 0
			}
		case ch == '\r':
			c.match = 1
		default:
			c.match = 0
		}
	}
	return n
}

// countUWSGI counts the uwsgi packets (4-byte header: modifier1, vars size little-endian,
// modifier2; then the vars) that b completes.
func countUWSGI(c *conn, b []byte) int {
	n := 0
	for len(b) > 0 {
		if c.nh < 4 {
			k := copy(c.hdr[c.nh:4], b)
			c.nh += k
			b = b[k:]
			if c.nh < 4 {
				break
			}
			c.left = int(c.hdr[1]) | int(c.hdr[2])<<8
		}
		k := min(c.left, len(b))
		c.left -= k
		b = b[k:]
		if c.left == 0 {
			n++
			c.nh = 0
		}
	}
	return n
}

// FastCGI record types and flags (the FastCGI 1.0 specification).
const (
	fcgiBeginRequest = 1
	fcgiEndRequest   = 3
	fcgiStdin        = 5
	fcgiStdout       = 6
	fcgiKeepConn     = 1
)

// countFastCGI walks the records in b, appending to s.ids the id of each request whose stdin
// ends (an empty FCGI_STDIN record) in b.  It returns false if one of them did not ask to keep
// the connection.
func (s *server) countFastCGI(c *conn, b []byte) (keep bool) {
	keep = true
	for len(b) > 0 {
		if c.nh < 8 {
			k := copy(c.hdr[c.nh:8], b)
			c.nh += k
			b = b[k:]
			if c.nh < 8 {
				break
			}
			c.typ = c.hdr[1]
			c.id = uint16(c.hdr[2])<<8 | uint16(c.hdr[3])
			clen := int(c.hdr[4])<<8 | int(c.hdr[5])
			c.left, c.off = clen+int(c.hdr[6]), 0
			if c.typ == fcgiStdin && clen == 0 {
				s.ids = append(s.ids, c.id)
				keep = keep && c.keep
			}
		}
		k := min(c.left, len(b))
		if c.typ == fcgiBeginRequest && c.off <= 2 && 2 < c.off+k { // the flags byte
			c.keep = b[2-c.off]&fcgiKeepConn != 0
		}
		c.left -= k
		c.off += k
		b = b[k:]
		if c.left == 0 {
			c.nh = 0
		}
	}
	return keep
}

// appendFastCGI appends the answer to request id: FCGI_STDOUT with the CGI response, an empty
// FCGI_STDOUT, FCGI_END_REQUEST (application status 0, FCGI_REQUEST_COMPLETE).
func appendFastCGI(out []byte, id uint16) []byte {
	rec := func(out []byte, typ byte, n int) []byte {
		return append(out, 1, typ, byte(id>>8), byte(id), byte(n>>8), byte(n), 0, 0)
	}
	out = rec(out, fcgiStdout, len(cgiResp))
	out = append(out, cgiResp...)
	out = rec(out, fcgiStdout, 0)
	out = rec(out, fcgiEndRequest, 8)
	return append(out, 0, 0, 0, 0, 0, 0, 0, 0)
}

// writeAll writes b to the non-blocking fd, waiting in poll(2) if the socket buffer is full
// (it never is for these responses on loopback; the floor does not queue output).  last: the
// close follows, and MSG_MORE holds the response back so that the FIN rides on it, one
// segment for both (as corral's event worker sends a connection's last response).
func writeAll(fd int, b []byte, last bool) bool {
	flags := uintptr(unix.MSG_NOSIGNAL)
	if last {
		flags |= unix.MSG_MORE
	}
	for len(b) > 0 {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), flags, 0, 0)
		switch e {
		case 0:
			b = b[r:]
		case unix.EINTR:
		case unix.EAGAIN:
			if _, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 1000); err != nil && err != unix.EINTR {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// poll puts fd in the epoll set, once.
func (s *server) poll(fd int, c *conn) {
	if c.polled {
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
	if _, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(s.epfd), unix.EPOLL_CTL_ADD, uintptr(fd),
		uintptr(unsafe.Pointer(&ev)), 0, 0); e != 0 {
		s.close(fd)
		return
	}
	c.polled = true
}

// close closes fd, which takes it out of the epoll set too (it is never duplicated).
func (s *server) close(fd int) {
	s.conns[fd] = conn{}
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}
