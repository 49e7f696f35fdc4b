package worker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultUwsgiMaxVars caps a uwsgi packet's variables block. nginx's
// headers fit in 32 KiB by default (large_client_header_buffers 4 8k).
const DefaultUwsgiMaxVars = 32 << 10

// ErrUwsgi is wrapped by every malformed uwsgi packet error.
var ErrUwsgi = errors.New("malformed uwsgi packet")

func uwsgiErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUwsgi, fmt.Sprintf(format, args...))
}

// UwsgiHeader is the 4-byte header of a uwsgi packet.
type UwsgiHeader struct {
	Modifier1 uint8
	DataSize  uint16 // the size of the variables block that follows
	Modifier2 uint8
}

// ParseUwsgiHeader decodes the 4-byte packet header. Only modifier1 0 (a
// request with CGI variables, what nginx's uwsgi_pass sends) is accepted,
// and a block larger than maxVars (0: DefaultUwsgiMaxVars) is refused.
func ParseUwsgiHeader(b [4]byte, maxVars int) (UwsgiHeader, error) {
	h := UwsgiHeader{Modifier1: b[0], DataSize: binary.LittleEndian.Uint16(b[1:3]), Modifier2: b[3]}
	if maxVars <= 0 {
		maxVars = DefaultUwsgiMaxVars
	}
	if h.Modifier1 != 0 {
		return h, uwsgiErr("modifier1 %d is not supported (only 0, an HTTP request)", h.Modifier1)
	}
	if int(h.DataSize) > maxVars {
		return h, uwsgiErr("variables block of %d bytes is over the limit of %d", h.DataSize, maxVars)
	}
	return h, nil
}

// ParseUwsgiVars decodes a variables block: key and value pairs, each a
// little-endian uint16 length and that many bytes. A length that runs past
// the block, an empty key, or trailing bytes are errors.
func ParseUwsgiVars(b []byte) (map[string]string, error) {
	vars := map[string]string{}
	for i := 0; len(b) > 0; i++ {
		k, rest, err := uwsgiString(b, i, "key")
		if err != nil {
			return nil, err
		}
		if k == "" {
			return nil, uwsgiErr("variable %d has an empty key", i)
		}
		v, rest, err := uwsgiString(rest, i, "value")
		if err != nil {
			return nil, err
		}
		vars[k] = v
		b = rest
	}
	return vars, nil
}

func uwsgiString(b []byte, i int, what string) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, uwsgiErr("variable %d: %d byte(s) left, too few for the %s length", i, len(b), what)
	}
	n := int(binary.LittleEndian.Uint16(b))
	if n > len(b)-2 {
		return "", nil, uwsgiErr("variable %d: %s length %d overruns the block (%d bytes left)", i, what, n, len(b)-2)
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}

// ReadUwsgiVars reads one packet's header and variables block from r. A
// stream that ends before the first byte returns io.EOF; any other short
// read is a malformed packet.
func ReadUwsgiVars(r io.Reader, maxVars int) (map[string]string, error) {
	var hb [4]byte
	if n, err := io.ReadFull(r, hb[:]); err != nil {
		if n == 0 && err == io.EOF {
			return nil, io.EOF
		}
		if n > 0 && errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, uwsgiErr("header cut short after %d of 4 bytes", n)
		}
		return nil, err
	}
	return readUwsgiBlock(r, hb, maxVars)
}

func readUwsgiBlock(r io.Reader, hb [4]byte, maxVars int) (map[string]string, error) {
	h, err := ParseUwsgiHeader(hb, maxVars)
	if err != nil {
		return nil, err
	}
	block := make([]byte, h.DataSize)
	if n, err := io.ReadFull(r, block); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, uwsgiErr("variables block cut short after %d of %d bytes", n, h.DataSize)
		}
		return nil, err
	}
	return ParseUwsgiVars(block)
}

// serveUwsgi serves the one request of a uwsgi connection, as nginx's
// uwsgi_pass sends it: the packet, then CONTENT_LENGTH bytes of body. The
// answer is an HTTP/1.1 response, ended by closing the connection.
func (s *ConnServer) serveUwsgi(c net.Conn) {
	if !s.UwsgiAllow.AllowsAddr(c.RemoteAddr()) {
		s.logf(slog.LevelWarn, "uwsgi: refused connection from %s, which --uwsgi-allow-from does not allow", remoteOf(c))
		return
	}
	if s.ReadTimeout > 0 {
		c.SetReadDeadline(time.Now().Add(s.ReadTimeout))
	}
	var hb [4]byte
	n, err := io.ReadFull(c, hb[:1])
	if n == 0 {
		if err != nil && err != io.EOF && !errors.Is(err, net.ErrClosed) {
			s.logf(slog.LevelDebug, "uwsgi: connection from %s: %v", remoteOf(c), err)
		}
		return // closed, or idle past the timeout, before sending anything
	}
	s.setState(c, http.StateActive)
	vars, err := func() (map[string]string, error) {
		if n, err := io.ReadFull(c, hb[1:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, uwsgiErr("header cut short after %d of 4 bytes", n+1)
			}
			return nil, err
		}
		return readUwsgiBlock(c, hb, s.UwsgiMaxVars)
	}()
	var r *http.Request
	body := &io.LimitedReader{R: c}
	if err == nil {
		r, err = RequestFromVars(vars, nil, c.RemoteAddr())
		if err == nil && r.ContentLength > 0 {
			body.N = r.ContentLength
			r.Body = io.NopCloser(&eofChecker{r: body, n: r.ContentLength})
		}
		if err != nil {
			err = uwsgiErr("%v", err)
		}
	}
	if err != nil {
		s.logf(slog.LevelWarn, "uwsgi: bad request from %s, closing the connection: %v", remoteOf(c), err)
		return
	}
	c.SetReadDeadline(time.Time{})
	out := bufio.NewWriterSize(c, 16<<10)
	w := newStreamResponse(out, r, false)
	if err := s.serveRequest(context.Background(), c, r, w); err != nil {
		s.logf(slog.LevelDebug, "uwsgi: writing the response to %s: %v", remoteOf(c), err)
		return
	}
	// Read what the handler left of the body, so closing the socket with
	// unread bytes does not reset the connection under the response.
	if body.N > 0 {
		c.SetReadDeadline(time.Now().Add(time.Second))
		io.CopyN(io.Discard, body, 256<<10)
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// eofChecker turns a body that ends before its declared length into
// io.ErrUnexpectedEOF, as net/http does, instead of a short clean body.
type eofChecker struct {
	r io.Reader
	n int64
}

func (e *eofChecker) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	e.n -= int64(n)
	if err == io.EOF && e.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
