package worker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// PROXY protocol modes, as --proxy-protocol takes them.
const (
	ProxyOff  = "off"  // no PROXY header is expected
	ProxyV1   = "v1"   // every connection starts with a v1 text line
	ProxyV2   = "v2"   // every connection starts with a v2 binary header
	ProxyAuto = "auto" // a v1 or v2 header, or none
)

// ProxyModes lists the valid --proxy-protocol values.
var ProxyModes = []string{ProxyOff, ProxyV1, ProxyV2, ProxyAuto}

// ProxyHeaderTimeout bounds how long a connection may take to send its
// PROXY header.
const ProxyHeaderTimeout = 5 * time.Second

// ProxyHeader is what a PROXY protocol header said about a connection.
type ProxyHeader struct {
	Version int // 1 or 2; 0 when there was none (auto mode)
	// Local is true when the header gives no addresses to use: v1
	// "UNKNOWN", v2 LOCAL (a proxy's health check), or v2 with an
	// unspecified or unix address family. The connection's own
	// addresses stand.
	Local       bool
	Source      netip.AddrPort // the client, as the proxy saw it
	Destination netip.AddrPort // the address the client connected to
}

// ErrProxyHeader is wrapped by every malformed PROXY header error.
var ErrProxyHeader = errors.New("malformed PROXY protocol header")

var (
	proxyV1Sig = []byte("PROXY ")
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// proxyV1Max is the longest v1 line the specification allows, CRLF included.
const proxyV1Max = 107

func proxyErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProxyHeader, fmt.Sprintf(format, args...))
}

// ReadProxyHeader reads a PROXY protocol header from the start of br, in
// mode ProxyV1, ProxyV2 or ProxyAuto. It consumes the header and nothing
// after it. In auto mode a stream that starts with neither signature is no
// error: it returns a zero ProxyHeader and consumes nothing.
func ReadProxyHeader(br *bufio.Reader, mode string) (ProxyHeader, error) {
	first, err := br.Peek(1)
	if err != nil {
		return ProxyHeader{}, err
	}
	switch {
	case first[0] == 'P' && mode != ProxyV2:
		if b, err := br.Peek(len(proxyV1Sig)); err == nil && bytes.Equal(b, proxyV1Sig) {
			return readProxyV1(br)
		} else if err != nil && mode == ProxyV1 {
			return ProxyHeader{}, proxyErr("stream ended within the v1 signature")
		}
	case first[0] == '\r' && mode != ProxyV1:
		if b, err := br.Peek(len(proxyV2Sig)); err == nil && bytes.Equal(b, proxyV2Sig) {
			return readProxyV2(br)
		} else if err != nil && mode == ProxyV2 {
			return ProxyHeader{}, proxyErr("stream ended within the v2 signature")
		}
	}
	if mode == ProxyAuto {
		return ProxyHeader{}, nil
	}
	b, _ := br.Peek(min(br.Buffered(), 16))
	return ProxyHeader{}, proxyErr("want a %s header, got %q", mode, b)
}

func readProxyV1(br *bufio.Reader) (ProxyHeader, error) {
	h := ProxyHeader{Version: 1}
	var line []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			return h, proxyErr("v1 line ends without CRLF after %d bytes", len(line))
		}
		line = append(line, c)
		if c == '\n' {
			break
		}
		if len(line) >= proxyV1Max {
			return h, proxyErr("v1 line longer than %d bytes", proxyV1Max)
		}
	}
	if !bytes.HasSuffix(line, []byte("\r\n")) {
		return h, proxyErr("v1 line ends in a bare LF")
	}
	f := bytes.Split(line[:len(line)-2], []byte(" "))
	if len(f) >= 2 && string(f[1]) == "UNKNOWN" {
		h.Local = true // the rest of the line is to be ignored
		return h, nil
	}
	if len(f) != 6 {
		return h, proxyErr("v1 line %q does not have 6 fields", line)
	}
	proto := string(f[1])
	if proto != "TCP4" && proto != "TCP6" {
		return h, proxyErr("v1 protocol %q is not TCP4, TCP6 or UNKNOWN", f[1])
	}
	src, err1 := netip.ParseAddr(string(f[2]))
	dst, err2 := netip.ParseAddr(string(f[3]))
	if err1 != nil || err2 != nil || src.Zone() != "" || dst.Zone() != "" {
		return h, proxyErr("v1 addresses %q %q", f[2], f[3])
	}
	if want4 := proto == "TCP4"; src.Is4() != want4 || dst.Is4() != want4 {
		return h, proxyErr("v1 addresses %q %q are not %s", f[2], f[3], proto)
	}
	sp, ok1 := parsePort(f[4])
	dp, ok2 := parsePort(f[5])
	if !ok1 || !ok2 {
		return h, proxyErr("v1 ports %q %q", f[4], f[5])
	}
	h.Source, h.Destination = netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)
	return h, nil
}

// parsePort reads a decimal port without leading zeros, as v1 requires.
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b), 10, 16)
	return uint16(n), err == nil
}

func readProxyV2(br *bufio.Reader) (ProxyHeader, error) {
	h := ProxyHeader{Version: 2}
	var hdr [16]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return h, proxyErr("v2 header cut short")
	}
	verCmd, fam := hdr[12], hdr[13]
	size := int(binary.BigEndian.Uint16(hdr[14:]))
	if verCmd>>4 != 2 {
		return h, proxyErr("v2 version %d", verCmd>>4)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(br, body); err != nil {
		return h, proxyErr("v2 header says %d address bytes, the stream ended first", size)
	}
	switch verCmd & 0xf {
	case 0: // LOCAL: a health check from the proxy itself
		h.Local = true
		return h, nil
	case 1: // PROXY
	default:
		return h, proxyErr("v2 command %d", verCmd&0xf)
	}
	af, transport := fam>>4, fam&0xf
	if transport > 2 || af > 3 {
		return h, proxyErr("v2 address family byte %#02x", fam)
	}
	if transport == 2 {
		return h, proxyErr("v2 datagram transport on a stream connection")
	}
	switch af {
	case 1: // INET
		if size < 12 {
			return h, proxyErr("v2 IPv4 addresses need 12 bytes, got %d", size)
		}
		src := netip.AddrFrom4([4]byte(body[0:4]))
		dst := netip.AddrFrom4([4]byte(body[4:8]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:]))
		h.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:]))
	case 2: // INET6
		if size < 36 {
			return h, proxyErr("v2 IPv6 addresses need 36 bytes, got %d", size)
		}
		src := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		dst := netip.AddrFrom16([16]byte(body[16:32])).Unmap()
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:]))
		h.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[34:]))
	default: // UNSPEC or UNIX: no IP addresses to report
		h.Local = true
	}
	return h, nil
}

// ProxyConn is a connection that may start with a PROXY protocol header.
// The header is read lazily, on the first Read or RemoteAddr call, within
// ProxyHeaderTimeout, so a slow client holds up only its own goroutine,
// never Accept. RemoteAddr is then the client the header names. A missing
// or malformed header, or a header from a peer --proxy-allow-from does not
// allow, closes the connection: Read fails from then on.
type ProxyConn struct {
	net.Conn
	mode    string
	allowed bool
	onError func(error)

	once   sync.Once
	br     *bufio.Reader
	header ProxyHeader
	err    error
	remote net.Addr
	local  net.Addr

	mu           sync.Mutex
	readDeadline time.Time // the caller's, restored after the header is read
}

// NewProxyConn wraps c, which expects a header in mode (ProxyV1, ProxyV2,
// ProxyAuto) if its peer is in allow. In auto mode a peer not in allow is
// served as it is, without looking for a header; in v1 and v2 mode it is
// refused. onError, if not nil, is told why a connection was refused.
func NewProxyConn(c net.Conn, mode string, allow AllowList, onError func(error)) *ProxyConn {
	return &ProxyConn{Conn: c, mode: mode, allowed: allow.AllowsAddr(c.RemoteAddr()), onError: onError}
}

func (c *ProxyConn) init() {
	c.once.Do(func() {
		c.remote, c.local = c.Conn.RemoteAddr(), c.Conn.LocalAddr()
		if !c.allowed {
			if c.mode != ProxyAuto {
				c.fail(fmt.Errorf("PROXY protocol: refused connection from %s, which --proxy-allow-from does not allow", c.remote))
			}
			return
		}
		c.br = bufio.NewReaderSize(c.Conn, 256)
		c.Conn.SetReadDeadline(time.Now().Add(ProxyHeaderTimeout))
		h, err := ReadProxyHeader(c.br, c.mode)
		c.mu.Lock()
		c.Conn.SetReadDeadline(c.readDeadline)
		c.mu.Unlock()
		if err != nil {
			if err == io.EOF && c.mode == ProxyAuto {
				c.err = io.EOF // closed before sending anything
				return
			}
			c.fail(fmt.Errorf("PROXY protocol: connection from %s: %w", c.remote, err))
			return
		}
		c.header = h
		if h.Version != 0 && !h.Local {
			c.remote = net.TCPAddrFromAddrPort(h.Source)
			c.local = net.TCPAddrFromAddrPort(h.Destination)
		}
	})
}

func (c *ProxyConn) fail(err error) {
	c.err = err
	if c.onError != nil {
		c.onError(err)
	}
	c.Conn.Close()
}

// Header returns the PROXY header, reading it first if need be, and the
// error that refused the connection, if any.
func (c *ProxyConn) Header() (ProxyHeader, error) {
	c.init()
	return c.header, c.err
}

// PeerAddr is the address of the connection's real peer (the proxy).
func (c *ProxyConn) PeerAddr() net.Addr { return c.Conn.RemoteAddr() }

// RemoteAddr is the client the PROXY header names, or the peer.
func (c *ProxyConn) RemoteAddr() net.Addr {
	c.init()
	return c.remote
}

// LocalAddr is the destination the PROXY header names, or the socket's.
func (c *ProxyConn) LocalAddr() net.Addr {
	c.init()
	return c.local
}

func (c *ProxyConn) Read(b []byte) (int, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(b)
		}
		c.br = nil // the header's leftovers are consumed: read the socket directly
	}
	return c.Conn.Read(b)
}

func (c *ProxyConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDeadline = t
	return c.Conn.SetReadDeadline(t)
}

func (c *ProxyConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDeadline = t
	return c.Conn.SetDeadline(t)
}

// CloseWrite half-closes the connection when the underlying one can.
func (c *ProxyConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn reaches the socket, for checks such as unread bytes.
func (c *ProxyConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("proxy conn: no underlying socket")
}

// ProxyListener wraps each accepted connection in a ProxyConn.
type ProxyListener struct {
	net.Listener
	Mode    string
	Allow   AllowList
	OnError func(error)
}

func (l *ProxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return NewProxyConn(c, l.Mode, l.Allow, l.OnError), nil
}
