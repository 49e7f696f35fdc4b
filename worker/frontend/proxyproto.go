package frontend

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/corral-server/corral/worker/http1"
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

// proxyErr is a malformed PROXY header error: it wraps
// http1.ErrInvalidProxyLine, as the parser's own do.
func proxyErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", http1.ErrInvalidProxyLine, fmt.Sprintf(format, args...))
}

// ReadProxyHeader reads a PROXY protocol header from the start of br, in
// mode ProxyV1, ProxyV2 or ProxyAuto. It consumes the header and nothing
// after it. In auto mode a stream that starts with neither signature is no
// error: it returns a zero http1.ProxyInfo and consumes nothing. A stream that
// ends before its first byte returns that read's error, such as io.EOF.
// The header itself is parsed by http1.ParseProxy.
func ReadProxyHeader(br *bufio.Reader, mode string) (http1.ProxyInfo, error) {
	// Look one byte further at a time: a client that sends "POST" and
	// waits must not be held up waiting for a signature's worth of bytes.
	var (
		sig     []byte
		version int
		known   bool
		err     error
	)
	for !known {
		if sig, err = br.Peek(len(sig) + 1); err != nil {
			break
		}
		version, known = http1.ProxyVersion(sig)
	}
	switch {
	case len(sig) == 0:
		return http1.ProxyInfo{}, err
	case !known && mode != ProxyAuto:
		return http1.ProxyInfo{}, proxyErr("no whole signature after %q: %v", sig, err)
	case version == 0 && mode == ProxyAuto, !known:
		return http1.ProxyInfo{}, nil
	case version == 0, mode == ProxyV1 && version != 1, mode == ProxyV2 && version != 2:
		b, _ := br.Peek(min(br.Buffered(), 16))
		return http1.ProxyInfo{}, proxyErr("want a %s header, got %q", mode, b)
	}
	// Once a signature has committed the stream to a header, consume it
	// a byte at a time: a v1 line must not be read past its CRLF, and a
	// v2 header can outgrow br's buffer. ParseProxy's cost per call is
	// bounded, so this stays linear.
	hdr := make([]byte, 0, 128)
	for {
		n, h, err := http1.ParseProxy(hdr)
		if err != nil {
			return http1.ProxyInfo{}, err
		}
		if n > 0 {
			return h, nil
		}
		c, err := br.ReadByte()
		if err != nil {
			return http1.ProxyInfo{}, proxyErr("v%d header cut short after %d bytes: %v", version, len(hdr), err)
		}
		hdr = append(hdr, c)
	}
}

// ProxyConn is a connection that may start with a PROXY protocol header.
// The header is read lazily, on the first Read or RemoteAddr call, within
// ProxyHeaderTimeout, so a slow client holds up only its own goroutine,
// never Accept. RemoteAddr is then the client the header names. A missing
// or malformed header, or a header from a peer --proxy-allow-from does not
// allow, closes the connection: Read fails from then on.
type ProxyConn struct {
	BaseConn
	mode    string
	allowed bool
	onError func(error)

	once   sync.Once
	br     *bufio.Reader
	header http1.ProxyInfo
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
	return &ProxyConn{BaseConn: BaseConn{c}, mode: mode, allowed: allow.AllowsAddr(c.RemoteAddr()), onError: onError}
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
func (c *ProxyConn) Header() (http1.ProxyInfo, error) {
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
