package wsgi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/corral-server/corral/worker/frontend"
)

// The framing between the Go worker and its Python runner, on a unix
// stream socketpair (docs/architecture.md, "The wsgi worker"). All integers
// are little-endian.
//
// A request, Go to Python:
//
//	u32 size     the whole frame, these 12 bytes included
//	u32 id       chosen by Go, echoed in every frame of the response
//	u32 bodylen
//	body         the whole request body
//	env          the rest: "KEY\x00VALUE\x00KEY\x00VALUE", the CGI part of
//	             the environ, bytes that Python decodes as latin-1 (PEP
//	             3333's native strings)
//
// The body comes first so that Go reads it straight into the frame and
// then knows CONTENT_LENGTH.
// A NUL-separated blob is what Python turns into a dict fastest:
// dict(zip(it, it)) over str.split("\x00") costs a third of decoding the
// uwsgi packet's length-prefixed strings with struct (1.6 µs against 4.8 µs
// for the 14 variables of a hello-world request, Python 3.11). NUL cannot
// occur in a header value or a request target, and a percent-decoded NUL in
// the path is refused (400).
//
// Python to Go, every frame:
//
//	u32 size    the whole frame, these 9 bytes included
//	u32 id
//	u8  kind    one of the frame* constants
//	payload
const (
	requestHeaderSize  = 12
	responseHeaderSize = 9

	frameReady = 'R' // payload: the Python version; id 0, the first frame
	frameBoot  = 'X' // payload: why the app did not load, one line; id 0
	frameWhole = 'W' // a whole response: u32 headlen, head, body
	frameHead  = 'H' // payload: head, "STATUS\x00NAME\x00VALUE..." (latin-1)
	frameData  = 'D' // payload: body bytes
	frameFile  = 'F' // i64 offset, i64 count; the file's fd comes in SCM_RIGHTS
	frameEnd   = 'E' // the response is complete; a payload says why it broke off

	// maxFrame bounds a frame either way, well inside u32.
	maxFrame = 1 << 30
)

var errNUL = errors.New("a NUL byte in the request")

// request is what appendRequest needs besides the http.Request.
type request struct {
	id         uint32
	scriptName string
	maxBody    int64 // the largest body taken; 0 or more than maxFrame is maxFrame
}

// hopHeaders are the hop-by-hop fields: the front end's business, never
// passed to the app's environ as such nor taken from its response.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// appendRequest appends r's request frame to b: the environ's CGI
// variables (PEP 3333) and body. It reads r.Body whole. On error b is
// returned as it was given.
func appendRequest(b []byte, q request, r *http.Request) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	b, n, err := appendBody(b, r, q.maxBody)
	if err != nil {
		return b[:start], err
	}
	binary.LittleEndian.PutUint32(b[start+4:], q.id)
	binary.LittleEndian.PutUint32(b[start+8:], uint32(n))
	path := r.URL.Path
	if r.RequestURI == "*" {
		path = "*"
	}
	script := q.scriptName
	if s := r.Header.Get(frontend.ScriptNameHeader); s != "" {
		script = s // the front end's mount point, over $SCRIPT_NAME
	}
	if script != "" {
		if rest, ok := strings.CutPrefix(path, script); ok && (rest == "" || rest[0] == '/') {
			path = rest
		}
	}
	if strings.IndexByte(path, 0) >= 0 || strings.IndexByte(r.URL.RawQuery, 0) >= 0 {
		return b[:start], errNUL
	}
	b = appendVar(b, "REQUEST_METHOD", r.Method)
	b = appendVar(b, "SCRIPT_NAME", script)
	b = appendVar(b, "PATH_INFO", path)
	b = appendVar(b, "QUERY_STRING", r.URL.RawQuery)
	b = appendVar(b, "REQUEST_URI", r.RequestURI)
	b = appendVar(b, "RAW_URI", r.RequestURI)
	b = appendVar(b, "SERVER_PROTOCOL", r.Proto)
	scheme := "http"
	if r.TLS != nil || r.URL.Scheme == "https" {
		scheme = "https"
		b = appendVar(b, "HTTPS", "on")
	}
	b = appendVar(b, "wsgi.url_scheme", scheme)
	host, port := serverName(r, scheme)
	b = appendVar(b, "SERVER_NAME", host)
	b = appendVar(b, "SERVER_PORT", port)
	if r.Host != "" {
		b = appendVar(b, "HTTP_HOST", r.Host)
	}
	if a, p, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		b = appendVar(b, "REMOTE_ADDR", a)
		b = appendVar(b, "REMOTE_PORT", p)
	} else if r.RemoteAddr != "" {
		b = appendVar(b, "REMOTE_ADDR", r.RemoteAddr)
	}
	// The body was read whole: CONTENT_LENGTH is its length, also for a
	// chunked request. Without a body or a declared length there is none
	// (PEP 3333 allows it absent). wsgi.input_terminated is not set: with
	// it, Werkzeug reads wsgi.input with read() and no size, which
	// wsgiref.validate (rightly, by PEP 3333) refuses.
	if n > 0 || r.Header["Content-Length"] != nil {
		b = append(b, "CONTENT_LENGTH\x00"...)
		b = strconv.AppendInt(b, n, 10)
		b = append(b, 0)
	}
	for k, vs := range r.Header {
		if len(vs) == 0 || k == "Content-Length" || k == "Transfer-Encoding" || k == frontend.ScriptNameHeader { // the body is whole; SCRIPT_NAME is set
			continue
		}
		if k == "Content-Type" {
			b = appendVar(b, "CONTENT_TYPE", vs[0])
			continue
		}
		b = append(b, "HTTP_"...)
		for i := 0; i < len(k); i++ {
			c := k[i]
			switch {
			case c == '-':
				c = '_'
			case 'a' <= c && c <= 'z':
				c -= 'a' - 'A'
			}
			b = append(b, c)
		}
		b = append(b, 0)
		sep := ", "
		if k == "Cookie" {
			sep = "; "
		}
		for i, v := range vs {
			if i > 0 {
				b = append(b, sep...)
			}
			if strings.IndexByte(v, 0) >= 0 {
				return b[:start], errNUL
			}
			b = append(b, v...)
		}
		b = append(b, 0)
	}
	b = b[:len(b)-1] // the last NUL: Python splits on NUL
	size := len(b) - start
	if size > maxFrame {
		return b[:start], errTooLarge
	}
	binary.LittleEndian.PutUint32(b[start:], uint32(size))
	return b, nil
}

var errTooLarge = errors.New("request body too large")

func appendVar(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, 0)
	b = append(b, v...)
	return append(b, 0)
}

// appendBody appends r's whole body to b: at most limit bytes (0, or
// more than maxFrame: maxFrame), else errTooLarge.
func appendBody(b []byte, r *http.Request, limit int64) ([]byte, int64, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return b, 0, nil
	}
	if limit <= 0 || limit > maxFrame {
		limit = maxFrame
	}
	if r.ContentLength > limit {
		return b, 0, errTooLarge
	}
	start := len(b)
	if r.ContentLength > 0 {
		b = grow(b, int(r.ContentLength))
	}
	for {
		if len(b) == cap(b) {
			b = grow(b, 32<<10)
		}
		n, err := r.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)-start) > limit {
			return b, 0, errTooLarge
		}
		if err == io.EOF {
			return b, int64(len(b) - start), nil
		}
		if err != nil {
			return b, 0, fmt.Errorf("read request body: %w", err)
		}
	}
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+max(n, cap(b)))
	copy(nb, b)
	return nb
}

// serverName is SERVER_NAME and SERVER_PORT: from the Host, as Gunicorn
// does, else the local address, with the scheme's default port.
func serverName(r *http.Request, scheme string) (host, port string) {
	h := r.Host
	if h == "" {
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			h = a.String()
		}
	}
	if hh, p, err := net.SplitHostPort(h); err == nil {
		return hh, p
	}
	if scheme == "https" {
		return h, "443"
	}
	return h, "80"
}

// head is a response's status and header fields as the app gave them.
type head struct {
	status int
	fields []string // name, value, name, value...
}

// parseHead decodes a head payload: "STATUS\x00NAME\x00VALUE...".
func parseHead(p []byte) (head, error) {
	s := string(p)
	status, rest, _ := strings.Cut(s, "\x00")
	var h head
	if len(status) < 3 || (len(status) > 3 && status[3] != ' ') {
		return h, fmt.Errorf("bad status %q (want e.g. \"200 OK\")", status)
	}
	code, err := strconv.Atoi(status[:3])
	if err != nil || code < 200 || code > 999 {
		return h, fmt.Errorf("bad status %q (want a code from 200 to 999 and a reason)", status)
	}
	h.status = code
	if rest == "" && !strings.Contains(s, "\x00") {
		return h, nil
	}
	h.fields = strings.Split(rest, "\x00")
	if len(h.fields)%2 != 0 {
		return h, fmt.Errorf("a header name without a value in %q", rest)
	}
	return h, nil
}

// apply sets h's fields in w's header map, less the hop-by-hop ones; a
// "Connection: close" from the app closes the connection after the
// response. The writers drop invalid names and blank out CR and LF in
// values (wsgiref.validate catches both in tests).
func (h *head) apply(w http.ResponseWriter) {
	hdr := w.Header()
	for i := 0; i+1 < len(h.fields); i += 2 {
		k := http.CanonicalHeaderKey(h.fields[i])
		v := h.fields[i+1]
		if hopHeaders[k] {
			if k == "Connection" && strings.EqualFold(strings.TrimSpace(v), "close") {
				hdr.Set("Connection", "close")
			}
			continue
		}
		hdr[k] = append(hdr[k], v)
	}
}
