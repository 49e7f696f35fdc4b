// Package socket owns the listening sockets: parsing bind addresses, binding
// them with their options (backlog, SO_REUSEADDR, SO_REUSEPORT,
// TCP_DEFER_ACCEPT, unix socket mode), adopting sockets handed over by
// systemd or an fd number, passing them to child processes as inherited
// fds, and stopping their intake of new connections so a shutdown can drain
// the backlog instead of resetting it.
package socket

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultBacklog is the listen backlog when none is given, as in Gunicorn.
const DefaultBacklog = 2048

// Options are the socket options applied at bind time.
type Options struct {
	Backlog   int  // listen(2) backlog; 0 means DefaultBacklog
	ReusePort bool // SO_REUSEPORT, so other processes may bind the same address
	Umask     int  // umask in force while a unix socket file is created
	// DeferAccept sets TCP_DEFER_ACCEPT on a TCP listener: the kernel
	// puts a connection into the backlog once its first bytes have come,
	// not at the end of its handshake (uWSGI's default, nginx's "listen
	// ... deferred"). A worker's first read then finds the request, so a
	// connection per request costs neither an epoll registration nor a
	// wake-up for its bytes. The price: a connection whose bytes have not
	// come is not in the backlog a graceful stop drains, so the stop
	// resets it, and until they come (or about a second of the kernel's
	// SYN-ACK retries has passed) no worker sees it.
	DeferAccept bool
}

// deferAcceptSeconds is TCP_DEFER_ACCEPT's value: how long the kernel
// holds a connection that sends nothing before it is accepted anyway.
const deferAcceptSeconds = 1

// Addr is a parsed bind address.
type Addr struct {
	Network string // "tcp", "unix" or "fd"
	Address string // "host:port", a file path, or the fd number
	// Protocol is the protocol the listener speaks when the bind named
	// one ("http://", "https://", "uwsgi://", "fastcgi://"); "" leaves it
	// to the worker's default (--protocol). "https" is HTTP over TLS.
	Protocol string
}

// Protocols are the wire protocols a listener can speak, the first the
// default.
var Protocols = []string{"http", "uwsgi", "fastcgi"}

// ParseAddr parses a bind address as Gunicorn writes them: "HOST:PORT",
// "[IPv6]:PORT", ":PORT" (all interfaces), "HOST" (port 8000),
// "unix:PATH" and "fd://N". A "tcp://" prefix is accepted; a protocol
// prefix, "http://", "https://" (HTTP over TLS), "uwsgi://" or
// "fastcgi://", sets Protocol and may precede any of the forms
// ("fastcgi://unix:/run/app.sock", "https://unix:/run/app.sock").
func ParseAddr(s string) (Addr, error) {
	for _, p := range append(Protocols[:len(Protocols):len(Protocols)], ProtocolHTTPS) {
		if rest, ok := strings.CutPrefix(s, p+"://"); ok {
			a, err := parseAddr(rest, s)
			a.Protocol = p
			return a, err
		}
	}
	return parseAddr(s, s)
}

// parseAddr parses s, a bind address without its protocol prefix; orig is
// what the user wrote, for errors.
func parseAddr(s, orig string) (Addr, error) {
	switch {
	case s == "":
		if orig != "" {
			return Addr{}, fmt.Errorf("bind %q: no address after the protocol", orig)
		}
		return Addr{}, errors.New("empty bind address")
	case strings.HasPrefix(s, "unix:"):
		p := strings.TrimPrefix(strings.TrimPrefix(s, "unix:"), "//")
		if p == "" {
			return Addr{}, fmt.Errorf("bind %q: empty unix socket path", orig)
		}
		return Addr{Network: "unix", Address: p}, nil
	case strings.HasPrefix(s, "fd://"):
		n, err := strconv.Atoi(strings.TrimPrefix(s, "fd://"))
		if err != nil || n < 0 {
			return Addr{}, fmt.Errorf("bind %q: fd must be a non-negative number", orig)
		}
		return Addr{Network: "fd", Address: strconv.Itoa(n)}, nil
	}
	hp := strings.TrimPrefix(s, "tcp://")
	if !strings.Contains(hp, ":") || (strings.HasPrefix(hp, "[") && strings.HasSuffix(hp, "]")) {
		hp = net.JoinHostPort(strings.Trim(hp, "[]"), "8000")
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return Addr{}, fmt.Errorf("bind %q: %v", orig, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return Addr{}, fmt.Errorf("bind %q: port must be a number from 0 to 65535", orig)
	}
	return Addr{Network: "tcp", Address: net.JoinHostPort(host, port)}, nil
}

// String is the address as a bind flag would write it.
func (a Addr) String() string {
	var s string
	switch a.Network {
	case "unix":
		s = "unix:" + a.Address
	case "fd":
		s = "fd://" + a.Address
	default:
		s = a.Address
	}
	if a.Protocol != "" {
		s = a.Protocol + "://" + s
	}
	return s
}

// Listener is one listening socket owned by this process.
type Listener struct {
	Bind string   // what the user asked for ("127.0.0.1:0", "unix:/run/x.sock", a systemd name)
	Addr net.Addr // the bound local address (the real port when 0 was asked for)
	// Protocol is the protocol the bind address named ("http", "uwsgi",
	// "fastcgi"), or "" for the worker's default.
	Protocol string

	fd     int    // the socket, close-on-exec here, passed to children explicitly
	unlink string // unix socket file this process created and removes on Close
}

// newListener takes the socket out of f, which it closes: the Listener
// holds a duplicate of the fd that no os.File holds. An os.File over a
// non-blocking socket is registered with the Go runtime's netpoller
// (edge-triggered); this process never accepts on its listeners, but
// while any of its goroutines waits in the netpoller (the arbiter's
// metrics server), every connection arriving on one would wake it, with
// nobody to hand the edge to: thousands of wake-ups a second under load.
// The fd number is read through SyscallConn because os.File.Fd switches
// the socket to blocking mode, and that mode belongs to the open file
// description the workers share: one blocking accept(2) would then hang a
// draining worker.
func newListener(bind string, f *os.File, addr net.Addr, unlink string) (*Listener, error) {
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", bind, err)
	}
	fd, derr := -1, error(nil)
	rc.Control(func(u uintptr) { fd, derr = unix.FcntlInt(u, unix.F_DUPFD_CLOEXEC, 0) })
	if derr != nil {
		return nil, fmt.Errorf("listener %s: dup: %w", bind, derr)
	}
	return &Listener{Bind: bind, Addr: addr, fd: fd, unlink: unlink}, nil
}

// NetListener returns a net.Listener over a duplicate of the socket, for
// a process that does accept on it; closing it leaves l open.
func (l *Listener) NetListener() (net.Listener, error) {
	fd, err := unix.FcntlInt(uintptr(l.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listener %s: dup: %w", l.Bind, err)
	}
	f := os.NewFile(uintptr(fd), l.Bind)
	defer f.Close()
	nl, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", l.Bind, err)
	}
	if ul, ok := nl.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // Close removes the file, if this process owns it
	}
	return nl, nil
}

// Fd is the socket's descriptor in this process. Unlike os.File.Fd it
// leaves the socket non-blocking.
func (l *Listener) Fd() int { return l.fd }

// Network is "tcp" or "unix".
func (l *Listener) Network() string { return l.Addr.Network() }

// URL names the listener in logs: "http://127.0.0.1:8000" or "unix:/path"
// for HTTP, "uwsgi://127.0.0.1:3031" or "fastcgi://unix:/path" for the
// other protocols.
func (l *Listener) URL() string {
	switch {
	case l.Protocol != "" && l.Protocol != "http" && l.Network() == "unix":
		return l.Protocol + "://unix:" + l.Addr.String()
	case l.Protocol != "" && l.Protocol != "http":
		return l.Protocol + "://" + l.Addr.String()
	case l.Network() == "unix":
		return "unix:" + l.Addr.String()
	}
	return "http://" + l.Addr.String()
}

// Bind binds every address, in order. On error it closes what it bound.
func Bind(binds []string, opts Options) ([]*Listener, error) {
	var ls []*Listener
	for _, b := range binds {
		l, err := bindOne(b, opts)
		if err != nil {
			CloseAll(ls)
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}

func bindOne(bind string, opts Options) (*Listener, error) {
	a, err := ParseAddr(bind)
	if err != nil {
		return nil, err
	}
	l, err := bindAddr(a, bind, opts)
	if err == nil {
		l.Protocol = a.Protocol
	}
	return l, err
}

func bindAddr(a Addr, bind string, opts Options) (*Listener, error) {
	backlog := opts.Backlog
	if backlog <= 0 {
		backlog = DefaultBacklog
	}
	switch a.Network {
	case "fd":
		n, _ := strconv.Atoi(a.Address)
		return Adopt(n, bind)
	case "unix":
		return bindUnix(a.Address, bind, backlog, opts.Umask)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if serr == nil && opts.ReusePort {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
			if serr == nil && opts.DeferAccept {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSeconds)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	// Go listens with MPTCP by default since 1.24; an MPTCP listener refuses
	// socket filters (StopIntake) and is not what a prefork server expects.
	lc.SetMultipathTCP(false)
	nl, err := lc.Listen(context.Background(), "tcp", a.Address)
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", bind, unwrapOp(err))
	}
	return fromNetListener(nl, bind, "", backlog)
}

func bindUnix(path, bind string, backlog, umask int) (*Listener, error) {
	if err := removeStale(path); err != nil {
		return nil, fmt.Errorf("bind %s: %w", bind, err)
	}
	old := unix.Umask(umask)
	nl, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", bind, unwrapOp(err))
	}
	nl.(*net.UnixListener).SetUnlinkOnClose(false)
	return fromNetListener(nl, bind, path, backlog)
}

// removeStale removes a unix socket file that nothing listens on any more,
// and refuses to touch one that is alive or is not a socket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("address already in use: a server listens on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("probe %s: %w", path, unwrapOp(err))
	}
	return os.Remove(path)
}

func fromNetListener(nl net.Listener, bind, unlink string, backlog int) (*Listener, error) {
	defer nl.Close()
	f, err := nl.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		return nil, fmt.Errorf("bind %s: %w", bind, err)
	}
	// Go listens with the kernel's somaxconn; listen(2) again on a
	// listening socket changes only its backlog.
	l, err := newListener(bind, f, nl.Addr(), unlink)
	if err != nil {
		return nil, err
	}
	if err := unix.Listen(l.fd, backlog); err != nil {
		f.Close()
		return nil, fmt.Errorf("bind %s: listen backlog %d: %w", bind, backlog, err)
	}
	return l, nil
}

// Adopt takes over fd n, which must be a listening stream socket, such as
// one passed by a parent process. The fd number n is closed; the Listener
// holds a close-on-exec duplicate.
func Adopt(n int, name string) (*Listener, error) {
	acc, err := unix.GetsockoptInt(n, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return nil, fmt.Errorf("adopt fd %d (%s): not a socket: %w", n, name, err)
	}
	if acc != 1 {
		return nil, fmt.Errorf("adopt fd %d (%s): socket is not listening", n, name)
	}
	f := os.NewFile(uintptr(n), name)
	nl, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("adopt fd %d (%s): %w", n, name, err)
	}
	if ul, ok := nl.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	defer nl.Close()
	dup, err := nl.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		return nil, fmt.Errorf("adopt fd %d (%s): %w", n, name, err)
	}
	l, err := newListener(name, dup, nl.Addr(), "")
	if err != nil {
		return nil, err
	}
	// A socket that outlives its servers (systemd keeps it across
	// restarts) still carries the intake filter of the last one that
	// stopped gracefully: this server takes connections.
	if err := l.ResumeIntake(); err != nil {
		l.Close()
		return nil, fmt.Errorf("adopt fd %d (%s): %w", n, name, err)
	}
	return l, nil
}

// Systemd adopts the sockets passed by systemd's socket activation protocol
// (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), and unsets those variables so
// children do not take them for their own. It returns nil when the
// variables are absent or meant for another process.
func Systemd() ([]*Listener, error) {
	pid, fds := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	if fds == "" {
		return nil, nil
	}
	defer func() {
		for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID"} {
			os.Unsetenv(k)
		}
	}()
	if pid != strconv.Itoa(os.Getpid()) {
		return nil, nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("LISTEN_FDS=%q is not a count", fds)
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	var ls []*Listener
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("systemd:%d", i)
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		l, err := Adopt(3+i, name)
		if err != nil {
			CloseAll(ls)
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// StopIntake stops new connections from entering the listener's backlog,
// while those already in it stay there to be accepted; so a drain that
// accepts until the backlog is empty, then closes, resets no connection.
//
// On TCP the kernel drops new connection attempts: a client whose SYN is
// dropped retries, and is refused once the socket closes, or served by
// whoever holds the socket next: it is never accepted and then reset.
// (Refusing at once would need a RST the listener cannot send and keep
// its backlog; dropping also lets a client retry into a new server on the
// same port.)
//
// A unix socket has no SYN to drop, so its file is removed: a new client
// finds no socket (ENOENT), and nothing can connect any more; a connect
// already past the path lookup when the file goes lands in the backlog
// within that one system call. Only a socket file this process owns is
// removed; one passed by systemd or as an fd is left as it is (its owner
// holds the socket, and what reaches its backlog waits for the next
// server), as is an abstract socket. StopIntake cannot be undone on a
// unix socket.
func (l *Listener) StopIntake() error {
	if l.Network() == "unix" {
		return l.removeSocketFile()
	}
	if l.Network() != "tcp" {
		return nil
	}
	// A classic BPF program that drops new connections only: a segment
	// with SYN and without ACK. The listener sees the TCP header at
	// offset 0, flags at byte 13. A handshake already under way still
	// completes, so its connection lands in the backlog the workers drain,
	// rather than hanging half-open until the listener closes and resets it.
	prog := unix.SockFprog{Len: uint16(len(dropSYN)), Filter: &dropSYN[0]}
	if err := unix.SetsockoptSockFprog(l.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("stop intake on %s: %w", l.URL(), err)
	}
	return nil
}

var dropSYN = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 13},           // A = TCP flags
	{Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: 0x12},        // A &= SYN|ACK
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 0x02, Jf: 1}, // SYN alone?
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},                          // drop it
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff},                 // keep the rest
}

// ResumeIntake undoes StopIntake on a TCP listener.
func (l *Listener) ResumeIntake() error {
	if l.Network() != "tcp" {
		return nil
	}
	// ENOENT: no filter; EOPNOTSUPP: a socket that takes none (MPTCP).
	err := unix.SetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("resume intake on %s: %w", l.URL(), err)
	}
	return nil
}

// Close closes the socket and removes the unix socket file this process
// created, if it is still there. A second Close does nothing.
func (l *Listener) Close() error {
	if l.fd < 0 {
		return net.ErrClosed // closed already: the number may be another file's now
	}
	err := unix.Close(l.fd)
	l.fd = -1
	l.removeSocketFile()
	return err
}

// removeSocketFile removes the unix socket file this process owns, once:
// a server bound on the path since then keeps its own.
func (l *Listener) removeSocketFile() error {
	path := l.unlink
	if path == "" {
		return nil
	}
	l.unlink = ""
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err // "remove PATH: ..."
	}
	return nil
}

// CloseAll closes every listener.
func CloseAll(ls []*Listener) {
	for _, l := range ls {
		l.Close()
	}
}

// unwrapOp reduces "listen tcp 1.2.3.4:80: bind: address already in use"
// to its cause, since the caller's message already names the address.
func unwrapOp(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
