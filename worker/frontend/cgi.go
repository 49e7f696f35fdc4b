package frontend

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unsafe"

	"github.com/corral-server/corral/worker/http1"
)

// RequestFromVars builds the request that a uwsgi or FastCGI front end
// (nginx's uwsgi_pass, fastcgi_pass) described in CGI variables:
//
//	REQUEST_METHOD      the method (required)
//	SCRIPT_NAME, PATH_INFO  r.URL.Path is SCRIPT_NAME + PATH_INFO, decoded,
//	                    as the front end passes them: after its rewrites
//	                    (see below), and with a prefix it mounts the app
//	                    at in SCRIPT_NAME
//	QUERY_STRING        r.URL.RawQuery, with SCRIPT_NAME or PATH_INFO
//	REQUEST_URI         the client's request target: r.RequestURI; also
//	                    r.URL when neither SCRIPT_NAME nor PATH_INFO is set
//	SERVER_PROTOCOL     "HTTP/1.1" (default "HTTP/1.0")
//	HTTP_*              headers: HTTP_X_FOO is X-Foo; HTTP_HOST is r.Host
//	CONTENT_TYPE, CONTENT_LENGTH
//	SERVER_NAME, SERVER_PORT  r.Host when there is no HTTP_HOST
//	REMOTE_ADDR, REMOTE_PORT  r.RemoteAddr; peer is used without them
//	HTTPS=on|1, UWSGI_SCHEME, REQUEST_SCHEME  the scheme: r.URL.Scheme and
//	                    r.URL.Host are set, and for https r.TLS is a
//	                    non-nil, empty tls.ConnectionState
//
// The path is the front end's, not the client's, as for a WSGI app under
// uWSGI or Gunicorn: with nginx's
//
//	location /app/ { rewrite ^/app(/.*)$ $1 break; uwsgi_pass corral; }
//
// GET /app/x?q=1 gives PATH_INFO=/x (uwsgi_params passes $document_uri),
// so r.URL.Path is "/x" while r.RequestURI stays "/app/x?q=1". Mounted
// under a prefix instead (uwsgi_param SCRIPT_NAME /app; PATH_INFO /x), the
// app sees "/app/x" and strips the prefix itself (http.StripPrefix). For
// FastCGI, fastcgi_params passes SCRIPT_NAME=$fastcgi_script_name, the URI
// after rewrites, and fastcgi_split_path_info splits off a PATH_INFO.
//
// The body is read from body, which the caller bounds to the request's
// length. r.Close is set: the caller decides whether the connection
// carries another request.
func RequestFromVars(vars map[string]string, body io.Reader, peer net.Addr) (*http.Request, error) {
	list := make(cgiVars, 0, len(vars))
	for k, v := range vars {
		list = append(list, cgiVar{k, v})
	}
	return requestFromVars(list, true, body, peer)
}

// cgiVar is one CGI variable.
type cgiVar struct{ name, value string }

// cgiVars are a request's CGI variables, in the order the front end sent
// them: a uwsgi packet's straight from the wire, without a map to build.
// Of variables sent twice, the last one counts.
type cgiVars []cgiVar

// cgiVarsScan is how many variables a request may have before finding the
// last of a name takes a map instead of a scan.
const cgiVarsScan = 64

// requestFromVars is RequestFromVars on a list; unique says that no name
// comes twice in it.
func requestFromVars(vars cgiVars, unique bool, body io.Reader, peer net.Addr) (*http.Request, error) {
	r, err := new(cgiRequest).build(vars, unique, peer) // a nil net.Addr is a nil Stringer
	if err != nil {
		return nil, err
	}
	if r.ContentLength > 0 && body != nil {
		r.Body = io.NopCloser(body)
	}
	return r, nil
}

// cgiRequest is the memory a request is built in from CGI variables: one
// allocation for a request built once, none for the next one built into a
// UwsgiStore.
type cgiRequest struct {
	req    http.Request
	url    url.URL
	header http.Header
	vals   []string // the header's one-value lists, windows of this
	// scriptName is the SCRIPT_NAME of the last request built.
	scriptName string

	// strs is the block the request's strings are carved from: only ever
	// appended to, so that a string given to a handler is never
	// overwritten; keep says the memory is reused (a UwsgiStore's), so a
	// new block is cgiBlock, for the next requests' strings too.
	strs []byte
	keep bool
}

// cgiBlock is the size of a reused request's string blocks: about twenty
// requests from nginx's uwsgi_pass, whose packets are 150 to 300 bytes.
const cgiBlock = 4 << 10

// reserve makes room for n more bytes in the string block.
func (r *cgiRequest) reserve(n int) {
	if cap(r.strs)-len(r.strs) >= n {
		return
	}
	if r.keep {
		n = max(n, cgiBlock)
	}
	r.strs = make([]byte, 0, n)
}

// joinHostPort is net.JoinHostPort, carved from a reused request's block.
func (r *cgiRequest) joinHostPort(host, port string) string {
	if !r.keep {
		return net.JoinHostPort(host, port)
	}
	v6 := strings.IndexByte(host, ':') >= 0
	r.reserve(len(host) + len(port) + 3)
	b := r.strs
	off := len(b)
	if v6 {
		b = append(b, '[')
	}
	b = append(b, host...)
	if v6 {
		b = append(b, ']')
	}
	b = append(b, ':')
	b = append(b, port...)
	r.strs = b
	return unsafe.String(&b[off], len(b)-off)
}

// value returns a one-value list for a header, a window of r.vals.
func (r *cgiRequest) value(v string) []string {
	if len(r.vals) == cap(r.vals) {
		r.vals = make([]string, 0, max(8, 2*cap(r.vals)))
	}
	r.vals = append(r.vals, v)
	n := len(r.vals)
	return r.vals[n-1 : n : n]
}

// set sets header name (canonical) to v alone.
func (r *cgiRequest) set(name, v string) { r.header[name] = r.value(v) }

// cgiKnown are the variables a request is built from, the last of each
// name, found in one pass over the list rather than a scan of it for each
// (a uwsgi packet from nginx has about twenty).
type cgiKnown struct {
	method, proto, uri, scriptName, pathInfo, query string
	contentType, contentLength, host                string
	serverName, serverPort, remoteAddr, remotePort  string
	uwsgiScheme, requestScheme, https               string
	hasQuery                                        bool
}

// find fills k from vars.
func (k *cgiKnown) find(vars cgiVars) {
	for _, v := range vars {
		switch v.name {
		case "REQUEST_METHOD":
			k.method = v.value
		case "SERVER_PROTOCOL":
			k.proto = v.value
		case "REQUEST_URI":
			k.uri = v.value
		case "SCRIPT_NAME":
			k.scriptName = v.value
		case "PATH_INFO":
			k.pathInfo = v.value
		case "QUERY_STRING":
			k.query, k.hasQuery = v.value, true
		case "CONTENT_TYPE":
			k.contentType = v.value
		case "CONTENT_LENGTH":
			k.contentLength = v.value
		case "HTTP_HOST":
			k.host = v.value
		case "SERVER_NAME":
			k.serverName = v.value
		case "SERVER_PORT":
			k.serverPort = v.value
		case "REMOTE_ADDR":
			k.remoteAddr = v.value
		case "REMOTE_PORT":
			k.remotePort = v.value
		case "UWSGI_SCHEME":
			k.uwsgiScheme = v.value
		case "REQUEST_SCHEME":
			k.requestScheme = v.value
		case "HTTPS":
			k.https = v.value
		}
	}
}

// build builds the request the variables describe, with an empty body;
// peer's String is its RemoteAddr without REMOTE_ADDR (nil: none), asked
// for only then: nginx sends REMOTE_ADDR, and its own address, the peer's,
// need not be formatted for every request.
func (s *cgiRequest) build(vars cgiVars, unique bool, peer fmt.Stringer) (*http.Request, error) {
	var k cgiKnown
	k.find(vars)
	s.scriptName = k.scriptName
	method := k.method
	if method == "" {
		return nil, errors.New("no REQUEST_METHOD")
	}
	if !validToken(method) {
		return nil, fmt.Errorf("REQUEST_METHOD %q is not a method", method)
	}
	if s.header == nil {
		s.header = make(http.Header, 8)
	} else {
		clear(s.header)
	}
	s.vals = s.vals[:0]
	s.url = url.URL{}
	s.req = http.Request{Method: method, Header: s.header, Close: true, Body: http.NoBody}
	r := &s.req
	r.Proto = k.proto
	switch r.Proto {
	case "":
		r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.0", 1, 0
	case "HTTP/1.1":
		r.ProtoMajor, r.ProtoMinor = 1, 1
	default:
		var ok bool
		if r.ProtoMajor, r.ProtoMinor, ok = http.ParseHTTPVersion(r.Proto); !ok {
			return nil, fmt.Errorf("SERVER_PROTOCOL %q is not an HTTP version", r.Proto)
		}
	}
	if err := setURL(r, &s.url, &k); err != nil {
		return nil, err
	}
	var last map[string]int // the index of each name's last variable, for a long list
	if !unique && len(vars) > cgiVarsScan {
		last = make(map[string]int, len(vars))
		for i, v := range vars {
			last[v.name] = i
		}
	}
	for i, kv := range vars {
		k, v := kv.name, kv.value
		if !strings.HasPrefix(k, "HTTP_") || len(k) == len("HTTP_") || k == "HTTP_HOST" || !unique && !vars.isLast(i, last) {
			continue
		}
		name, ok := s.headerName(k)
		if !ok || strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("header variable %s is not a valid header", k)
		}
		if old, ok := s.header[name]; ok {
			s.header[name] = append(old, v)
		} else {
			s.set(name, v)
		}
	}
	if ct := k.contentType; ct != "" {
		s.set("Content-Type", ct)
	}
	if cl := k.contentLength; cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 || cl[0] == '+' {
			return nil, fmt.Errorf("CONTENT_LENGTH %q is not a length", cl)
		}
		r.ContentLength = n
		s.set("Content-Length", cl)
	}
	r.Host = k.host
	if r.Host == "" {
		r.Host = k.serverName
		if p := k.serverPort; r.Host != "" && p != "" && p != "80" && p != "443" {
			r.Host = net.JoinHostPort(r.Host, p)
		}
	}
	if a := k.remoteAddr; a != "" {
		port := k.remotePort
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			port = "0"
		}
		r.RemoteAddr = s.joinHostPort(a, port)
	} else if peer != nil {
		r.RemoteAddr = peer.String()
	}
	scheme := k.uwsgiScheme
	if scheme == "" {
		scheme = k.requestScheme
	}
	if h := k.https; h == "on" || h == "ON" || h == "1" {
		scheme = "https"
	}
	switch {
	case scheme == "http", scheme == "https":
		setScheme(r, scheme)
	case strings.EqualFold(scheme, "http"), strings.EqualFold(scheme, "https"):
		setScheme(r, strings.ToLower(scheme))
	}
	return r, nil
}

// headerName is the canonical header name of variable HTTP_X_FOO,
// "X-Foo": common ones without allocating, others carved from a reused
// request's block. false: not a valid name.
func (s *cgiRequest) headerName(k string) (string, bool) {
	if name, ok := cgiHeaderNames[k]; ok {
		return name, true
	}
	raw := k[len("HTTP_"):]
	if !validToken(raw) { // "_" and "-" are both token characters
		return "", false
	}
	var buf [32]byte
	if !s.keep || len(raw) > len(buf) {
		return http.CanonicalHeaderKey(strings.ReplaceAll(raw, "_", "-")), true
	}
	name := buf[:len(raw)]
	for i := range len(raw) {
		if c := raw[i]; c == '_' {
			name[i] = '-'
		} else {
			name[i] = c
		}
	}
	return http1.CanonicalKeyIn(name, &s.strs), true
}

// cgiHeaderNames are the canonical names of the header variables browsers
// and nginx commonly send.
var cgiHeaderNames = func() map[string]string {
	m := map[string]string{}
	for _, name := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Cache-Control", "Connection", "Cookie",
		"Dnt", "If-Modified-Since", "If-None-Match", "Origin", "Pragma", "Priority", "Referer",
		"Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Sec-Fetch-Dest", "Sec-Fetch-Mode",
		"Sec-Fetch-Site", "Sec-Fetch-User", "Te", "Upgrade-Insecure-Requests", "User-Agent",
		"Authorization", "Content-Type", "Content-Length", "X-Forwarded-For", "X-Forwarded-Proto",
		"X-Forwarded-Host", "X-Real-Ip", "X-Requested-With", "X-Request-Id",
	} {
		m["HTTP_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))] = name
	}
	return m
}()

// isLast reports whether vars[i] is the last variable of its name: by
// last, the index of each name's last one, when it was built.
func (vs cgiVars) isLast(i int, last map[string]int) bool {
	if last != nil {
		return last[vs[i].name] == i
	}
	for _, v := range vs[i+1:] {
		if v.name == vs[i].name {
			return false
		}
	}
	return true
}

// setURL sets r.URL and r.RequestURI from the variables, as
// RequestFromVars says.
func setURL(r *http.Request, into *url.URL, k *cgiKnown) error {
	uri := k.uri
	path := k.scriptName + k.pathInfo
	if path != "" && path[0] != '/' {
		return fmt.Errorf("SCRIPT_NAME %q + PATH_INFO %q is not a path", k.scriptName, k.pathInfo)
	}
	query, hasQuery := k.query, k.hasQuery
	if uri == "" {
		// No client's target to keep: the front end's is all there is.
		uri = "/"
		if path != "" {
			uri = (&url.URL{Path: path}).EscapedPath()
		}
		if query != "" {
			uri += "?" + query
		}
	}
	r.RequestURI, r.URL = uri, into
	if !plainURL(into, uri) {
		u, err := url.ParseRequestURI(uri)
		if err != nil {
			return fmt.Errorf("REQUEST_URI %q: %v", uri, err)
		}
		*into = *u
	}
	if path == "" {
		return nil
	}
	*into = url.URL{Path: path, RawQuery: into.RawQuery}
	if hasQuery {
		if strings.ContainsAny(query, " \x00\r\n#") {
			return fmt.Errorf("QUERY_STRING %q is not a query", query)
		}
		r.URL.RawQuery = query
	}
	return nil
}

// plainURL parses uri into u as url.ParseRequestURI would, without its
// allocations, if uri is an origin-form target that needs no unescaping
// (http1.OriginURL, the HTTP parser's fast path), but not one starting
// "//", which a front end's REQUEST_URI never should. false: u untouched.
func plainURL(u *url.URL, uri string) bool {
	return !strings.HasPrefix(uri, "//") && http1.OriginURL(u, uri)
}

// validToken reports whether s is an RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x7f || c <= ' ' || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// streamResponse is the http.ResponseWriter of the uwsgi and FastCGI front
// ends. It writes an HTTP/1.x response (uwsgi: status line, headers, body,
// end of stream ends the body) or a CGI response (FastCGI: a "Status:"
// header instead of the status line). It keeps the head back until the
// body passes smallBody bytes, so a short response gets a Content-Length,
// and sniffs a missing Content-Type as net/http does.
type streamResponse struct {
	out      *bufio.Writer
	req      *http.Request
	cgi      bool
	header   http.Header
	status   int
	sentHead bool
	pending  bytes.Buffer // body held back while the head is unsent
	written  int64
	err      error
	final    func() // if set, called before finish's last flush
}

const smallBody = 4 << 10

func newStreamResponse(out *bufio.Writer, req *http.Request, cgi bool) *streamResponse {
	return &streamResponse{out: out, req: req, cgi: cgi, header: http.Header{}}
}

func (w *streamResponse) Header() http.Header { return w.header }

func (w *streamResponse) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.status != 0 || code < 200 {
		return // informational responses are not passed on
	}
	w.status = code
}

func (w *streamResponse) bodyAllowed() bool {
	return w.req.Method != http.MethodHead && w.status != http.StatusNoContent && w.status != http.StatusNotModified
}

func (w *streamResponse) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(b))
	if !w.sentHead {
		if w.pending.Len()+len(b) <= smallBody {
			w.pending.Write(b)
			return len(b), nil
		}
		w.writeHead(false)
	}
	n, err := w.out.Write(b)
	if err != nil {
		w.err = err
	}
	return n, err
}

// Flush sends what is buffered.
func (w *streamResponse) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sentHead {
		w.writeHead(false)
	}
	if err := w.out.Flush(); err != nil && w.err == nil {
		w.err = err
	}
}

// finish completes the response once the handler returned.
func (w *streamResponse) finish() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sentHead {
		w.writeHead(true)
	}
	if w.final != nil {
		w.final()
	}
	if err := w.out.Flush(); err != nil && w.err == nil {
		w.err = err
	}
	return w.err
}

// writeHead writes the status and headers, then the held-back body. final
// means the handler is done, so the held-back body is all of it.
func (w *streamResponse) writeHead(final bool) {
	w.sentHead = true
	h := w.header
	for _, k := range []string{"Transfer-Encoding", "Keep-Alive", "Proxy-Connection", "Upgrade", "Trailer"} {
		h.Del(k)
	}
	if w.bodyAllowed() {
		if _, ok := h["Content-Type"]; !ok && w.pending.Len() > 0 {
			h.Set("Content-Type", http.DetectContentType(w.pending.Bytes()))
		}
		if final && h.Get("Content-Length") == "" {
			h.Set("Content-Length", strconv.Itoa(w.pending.Len()))
		}
	}
	text := http.StatusText(w.status)
	if text == "" {
		text = "status code " + strconv.Itoa(w.status)
	}
	if w.cgi {
		fmt.Fprintf(w.out, "Status: %d %s\r\n", w.status, text)
	} else {
		// No Connection field: a uwsgi response ends with the close, as
		// nginx reads it (and as http1.ResponseWriter's Gateway writes it).
		h.Del("Connection")
		fmt.Fprintf(w.out, "HTTP/1.1 %d %s\r\n", w.status, text)
	}
	if err := h.Write(w.out); err != nil {
		w.err = err
		return
	}
	w.out.WriteString("\r\n")
	if w.pending.Len() > 0 {
		if _, err := w.out.Write(w.pending.Bytes()); err != nil {
			w.err = err
		}
		w.pending.Reset()
	}
}
