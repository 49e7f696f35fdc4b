package frontend

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"
	"unsafe"

	"github.com/corral-server/corral/worker/http1"
)

// uwsgiErr is a malformed uwsgi packet error: it wraps http1.ErrUwsgi, as
// the parser's own do.
func uwsgiErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", http1.ErrUwsgi, fmt.Sprintf(format, args...))
}

// ParseUwsgiVars decodes a variables block, as http1.AppendUwsgiVars does,
// into a map: of variables sent twice, the last one counts.
func ParseUwsgiVars(b []byte) (map[string]string, error) {
	vars, err := http1.AppendUwsgiVars(nil, b)
	if err != nil {
		return nil, err
	}
	return uwsgiVarMap(vars), nil
}

func uwsgiVarMap(vars []http1.UwsgiVar) map[string]string {
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		m[string(v.Name)] = string(v.Value)
	}
	return m
}

// uwsgiCGIVars copies a packet's variables into s's string block (see
// cgiRequest.reserve), the strings of the list returned, appended to
// s.list[:0]: no allocation once the list has room and, for a store that
// is reused, while the block does.
func (s *UwsgiStore) uwsgiCGIVars(vars []http1.UwsgiVar) cgiVars {
	n := 0
	for _, v := range vars {
		n += len(v.Name) + len(v.Value)
	}
	s.reserve(n)
	b := s.strs
	off := len(b)
	for _, v := range vars {
		b = append(b, v.Name...)
		b = append(b, v.Value...)
	}
	s.strs = b
	all := ""
	if n > 0 {
		all = unsafe.String(&b[off], n)
	}
	list := slices.Grow(s.list[:0], len(vars))
	for _, v := range vars {
		var kv cgiVar
		kv.name, all = all[:len(v.Name)], all[len(v.Name):]
		kv.value, all = all[:len(v.Value)], all[len(v.Value):]
		list = append(list, kv)
	}
	return list
}

// RequestFromUwsgi builds the request that a packet decoded by an
// http1.UwsgiParser describes, as RequestFromVars does, reading the body
// from a copy of u.Body: the result outlives the parser's next call. peer
// is the RemoteAddr without REMOTE_ADDR. Errors wrap http1.ErrUwsgi.
func RequestFromUwsgi(u *http1.UwsgiRequest, peer net.Addr) (*http.Request, error) {
	return new(UwsgiStore).build(context.Background(), u, peer) // a nil net.Addr is a nil Stringer
}

// UwsgiStore is the memory of the *http.Request that its Request builds
// from a uwsgi packet, kept for the next packet, as http1.RequestStore is
// for HTTP requests: a server that serves one request after another
// builds each into the same store and allocates for the request's strings
// only when its string block is full. The *http.Request,
// its URL, header map and body reader are the store's, reused by the next
// call; the strings are never reused, so a handler may keep those.
//
// The zero value is ready. A UwsgiStore is not safe for concurrent use.
type UwsgiStore struct {
	cgiRequest
	list   cgiVars
	body   []byte
	reader bodyReader
}

// bodyReader is a request body read from memory.
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

// Request is RequestFromUwsgi into s, with context ctx and peer's address
// (its String, asked for only for a packet without REMOTE_ADDR): the
// result is valid until the next call (its strings for good).
func (s *UwsgiStore) Request(ctx context.Context, u *http1.UwsgiRequest, peer fmt.Stringer) (*http.Request, error) {
	s.keep = true
	if cap(s.body) > 64<<10 {
		s.body = nil // a large body's memory is not kept
	}
	s.body = s.body[:0]
	return s.build(ctx, u, peer)
}

func (s *UwsgiStore) build(ctx context.Context, u *http1.UwsgiRequest, peer fmt.Stringer) (*http.Request, error) {
	s.list = s.uwsgiCGIVars(u.Vars)
	r, err := s.cgiRequest.build(s.list, false, peer)
	if err != nil {
		return nil, uwsgiErr("%v", err)
	}
	if r.ContentLength > 0 && len(u.Body) > 0 {
		s.body = append(s.body, u.Body...)
		s.reader.Reset(s.body)
		r.Body = &s.reader
	}
	if v := s.scriptName; v != "" {
		// The mount point, as a trusted HTTP forwarder passes it
		// (Gunicorn's forwarder_headers): a WSGI app gets it as its
		// SCRIPT_NAME, and the rest of r.URL.Path as PATH_INFO.
		s.set(ScriptNameHeader, v)
	}
	// WithContext, inlined, copies r on the stack.
	*r = *r.WithContext(ctx)
	return r, nil
}

// ScriptNameHeader carries the prefix a front end mounts the app at: the
// uwsgi front end's SCRIPT_NAME (and a trusted forwarder's SCRIPT_NAME
// header, once the HTTP parser is told which peers are trusted: it keeps
// names with "_" from those only).
const ScriptNameHeader = "Script_name"

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
	h, err := http1.ParseUwsgiHeader(hb, maxVars)
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
		s.logf(slog.LevelWarn, "uwsgi: refused connection from %s, which --uwsgi-allow-from does not allow", peerName(c))
		return
	}
	if s.ReadTimeout > 0 {
		c.SetReadDeadline(time.Now().Add(s.ReadTimeout))
	}
	var hb [4]byte
	n, err := io.ReadFull(c, hb[:1])
	if n == 0 {
		if err != nil && err != io.EOF && !errors.Is(err, net.ErrClosed) {
			s.logf(slog.LevelDebug, "uwsgi: connection from %s: %v", peerName(c), err)
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
		s.logf(slog.LevelWarn, "uwsgi: bad request from %s, closing the connection: %v", peerName(c), err)
		s.parseError(0)
		return
	}
	c.SetReadDeadline(time.Time{})
	out := bufio.NewWriterSize(c, 16<<10)
	w := newStreamResponse(out, r, false)
	if err := s.serveRequest(context.Background(), c, r, w); err != nil {
		s.logf(slog.LevelDebug, "uwsgi: writing the response to %s: %v", peerName(c), err)
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
