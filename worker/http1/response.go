package http1

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBufferLimit is how many body bytes a ResponseWriter holds back
// before it starts streaming (when it has a Send function): a response
// whose whole body fits gets a Content-Length.
const DefaultBufferLimit = 4 << 10

// keepBody bounds the body buffer a ResponseWriter keeps between responses.
const keepBody = 64 << 10

// ErrResponseFinished is returned by writes after Finish.
var ErrResponseFinished = errors.New("http1: write after the response was finished")

// ResponseWriter is the http.ResponseWriter of a server that speaks
// HTTP/1.x itself. It serialises the status line, the header fields and the
// body, appending them to a caller-provided buffer, and decides the framing:
//
//   - When the handler returns with its whole body held back (at most
//     BufferLimit bytes, or any size without Send), the response gets a
//     Content-Length, unless the handler declared one itself.
//   - When the handler flushes early, or its body passes BufferLimit, the
//     head is sent at once through Send and the body streams: with the
//     handler's Content-Length if it declared one, else chunked for an
//     HTTP/1.1 request (net/http does the same: the client can tell a whole
//     body from a cut one), else, for HTTP/1.0, until the connection closes.
//   - HEAD, 1xx, 204 and 304 responses have no body; writes to a 204 or 304
//     fail with http.ErrBodyNotAllowed, and the body of a HEAD response is
//     counted (for its Content-Length) and dropped.
//   - "Connection: close" is sent when Reset was told the connection
//     closes (the request asked for it, HTTP/1.0 without keep-alive, or the
//     worker drains), when the body is delimited by the close, and when the
//     handler set it; Close then reports true. An HTTP/1.0 request kept
//     alive gets "Connection: keep-alive".
//   - Date is added unless the handler set a Date key (even to nil), as is
//     a sniffed Content-Type for a body without one. Invalid field names are
//     dropped, and CR, LF and NUL in values become spaces, so a handler
//     cannot split the response.
//   - WriteHeader with 100, 102 or 103 sends an interim response (not to an
//     HTTP/1.0 client); 101 is refused, as there is no hijacking.
//
// It implements http.Flusher and FlushError, which http.ResponseController
// finds through any wrapper's Unwrap. Trailers are not supported.
//
// The zero value is not ready: call Reset for every response. A
// ResponseWriter may be reused for any number of responses; only the header
// map, and growing buffers, allocate. It is not safe for concurrent use.
type ResponseWriter struct {
	// Send, if set, is called with bytes to write to the connection
	// before the response is complete: when the handler flushes, when the
	// body streams past BufferLimit, and for interim responses. It must
	// not retain b after it returns. An error ends the response: later
	// writes fail with it. Without Send the whole response is buffered
	// until Finish.
	Send func(b []byte) error
	// BufferLimit is the body held back before streaming; 0 means
	// DefaultBufferLimit.
	BufferLimit int
	// Gateway says that the response goes to a front end that reads it
	// to the close and answers its client itself (nginx's uwsgi_pass): the
	// head carries no Date, which the front end adds as it does for
	// uWSGI's, and no Connection field, as the close ends every response
	// of that protocol. Reset leaves it as it is.
	Gateway bool

	out  []byte
	body []byte

	method    string
	major     int
	minor     int
	closeConn bool

	header      http.Header
	status      int
	wroteHeader bool
	headSent    bool
	started     bool
	finished    bool
	chunked     bool // body goes out in chunks
	declared    int64
	written     int64 // body bytes the handler wrote
	err         error
	fields      []outField // scratch for sorting the header's fields
	hasType     bool       // the handler set Content-Type (see headerFields)
	hasDate     bool       // the handler set Date, even to nil
}

// Reset prepares w for the response to one request: out is the buffer to
// append to (its contents are kept), method and major.minor are the
// request's, and closeConn says that the connection closes after this
// response whatever the handler does.
func (w *ResponseWriter) Reset(out []byte, method string, major, minor int, closeConn bool) {
	if w.header == nil {
		w.header = make(http.Header, 8)
	} else {
		clear(w.header)
	}
	if cap(w.body) > keepBody {
		w.body = nil
	}
	w.out = out
	w.body = w.body[:0]
	w.method = method
	w.major, w.minor = major, minor
	w.closeConn = closeConn
	w.status = 0
	w.wroteHeader = false
	w.headSent = false
	w.started = false
	w.finished = false
	w.chunked = false
	w.declared = -1
	w.written = 0
	w.err = nil
}

// Header returns the header map that WriteHeader sends.
func (w *ResponseWriter) Header() http.Header { return w.header }

func (w *ResponseWriter) http11() bool { return w.major > 1 || w.major == 1 && w.minor >= 1 }

// WriteHeader sends (or, for a final status, fixes) the status code.
func (w *ResponseWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic("http1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if w.wroteHeader || w.finished {
		return
	}
	if code < 200 {
		if code == http.StatusSwitchingProtocols {
			panic("http1: 101 Switching Protocols is not supported")
		}
		w.interim(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	// The map's keys are canonical, as Header.Get would look them up.
	if cl := w.header["Content-Length"]; len(cl) > 0 && cl[0] != "" {
		if n, ok := parseContentLength([]byte(cl[0])); ok {
			w.declared = n
		} else {
			delete(w.header, "Content-Length")
		}
	}
}

func (w *ResponseWriter) interim(code int) {
	if !w.http11() || w.err != nil {
		return
	}
	w.out = appendStatusLine(w.out, 1, 1, code)
	w.out = w.appendFields(w.out, w.headerFields(true))
	w.out = append(w.out, "\r\n"...)
	w.send()
}

// bodyAllowed reports whether the status permits a body (RFC 9110 6.4.1).
func (w *ResponseWriter) bodyAllowed() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified
}

func (w *ResponseWriter) limit() int {
	if w.BufferLimit > 0 {
		return w.BufferLimit
	}
	return DefaultBufferLimit
}

// Write adds b to the body.
func (w *ResponseWriter) Write(b []byte) (int, error) {
	return w.write(len(b), b, "")
}

// WriteString adds s to the body without converting it to a byte slice.
func (w *ResponseWriter) WriteString(s string) (int, error) {
	return w.write(len(s), nil, s)
}

// write appends b or s, whichever is set.
func (w *ResponseWriter) write(n int, b []byte, s string) (int, error) {
	if w.finished {
		return 0, ErrResponseFinished
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if n == 0 {
		return 0, nil
	}
	if w.declared >= 0 && w.written+int64(n) > w.declared {
		return 0, http.ErrContentLength
	}
	w.written += int64(n)
	if w.method == http.MethodHead {
		return n, nil
	}
	if !w.headSent {
		if w.Send == nil || len(w.body)+n <= w.limit() {
			if b != nil {
				w.body = append(w.body, b...)
			} else {
				w.body = append(w.body, s...)
			}
			return n, nil
		}
		w.writeHead(false)
	}
	if w.chunked {
		w.out = strconv.AppendUint(w.out, uint64(n), 16)
		w.out = append(w.out, "\r\n"...)
	}
	if b != nil {
		w.out = append(w.out, b...)
	} else {
		w.out = append(w.out, s...)
	}
	if w.chunked {
		w.out = append(w.out, "\r\n"...)
	}
	if len(w.out) >= w.limit() {
		w.send()
	}
	if w.err != nil {
		return 0, w.err
	}
	return n, nil
}

// Flush sends what the response holds so far; from then on the body
// streams. Without Send it does nothing.
func (w *ResponseWriter) Flush() { w.FlushError() }

// FlushError is Flush, reporting the connection's error; http.ResponseController
// prefers it.
func (w *ResponseWriter) FlushError() error {
	if w.finished {
		return ErrResponseFinished
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.Send == nil || w.err != nil {
		return w.err
	}
	if !w.headSent {
		w.writeHead(false)
	}
	w.send()
	return w.err
}

// WriteOutside lets the server write up to n body bytes to the
// connection itself, with write (a sendfile(2) of a file body), once Flush
// has sent the head and all before them through Send; write returns how
// many it wrote, which count as written. It is for a body under a declared
// Content-Length (never chunked), to other than HEAD, with Send set;
// otherwise, and for whatever write did not write, it returns less than n
// and the caller writes the rest through Write.
func (w *ResponseWriter) WriteOutside(n int64, write func(n int64) (int64, error)) (int64, error) {
	if w.finished {
		return 0, ErrResponseFinished
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.Send == nil || w.err != nil || w.method == http.MethodHead || !w.bodyAllowed() || w.declared < 0 {
		return 0, w.err
	}
	if n = min(n, w.declared-w.written); n <= 0 {
		return 0, nil
	}
	if err := w.FlushError(); err != nil || w.chunked {
		return 0, err
	}
	k, err := write(n)
	w.written += k
	return k, err
}

// send hands out to Send and empties it.
func (w *ResponseWriter) send() {
	if w.Send == nil || len(w.out) == 0 {
		return
	}
	if w.err == nil {
		w.started = true
		w.err = w.Send(w.out)
	}
	w.out = w.out[:0]
}

// Finish completes the response once the handler has returned and returns
// the buffer with the bytes not yet sent. A handler that wrote nothing
// gets 200 with an empty body.
func (w *ResponseWriter) Finish() ([]byte, error) {
	if w.finished {
		return w.out, w.err
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent {
		w.writeHead(true)
	}
	if w.chunked {
		w.out = append(w.out, "0\r\n\r\n"...)
	}
	if w.declared >= 0 && w.written < w.declared && w.method != http.MethodHead && w.bodyAllowed() {
		// The client waits for bytes that will never come: only a close
		// tells it so.
		w.closeConn = true
	}
	w.finished = true
	return w.out, w.err
}

// Close reports whether the connection must be closed after this
// response. It is final once Finish has run.
func (w *ResponseWriter) Close() bool { return w.closeConn }

// Status is the final status code, 0 before WriteHeader.
func (w *ResponseWriter) Status() int { return w.status }

// Started reports whether bytes of the response have gone to Send: after
// that, a failing handler can no longer be answered with an error status.
func (w *ResponseWriter) Started() bool { return w.started }

// Written is the number of body bytes the handler wrote.
func (w *ResponseWriter) Written() int64 { return w.written }

// writeHead appends the head, and the body held back, to out. final means
// that the handler returned, so the held-back body is the whole body.
func (w *ResponseWriter) writeHead(final bool) {
	w.headSent = true
	h := w.header
	body := w.bodyAllowed()
	setCL := false
	switch {
	case !body:
	case w.declared >= 0:
		// The handler's Content-Length stands.
	case final:
		if w.method != http.MethodHead || w.written > 0 {
			setCL = true
		}
	case w.method == http.MethodHead:
		// No body goes out; the length is not known.
	case w.http11():
		w.chunked = true
	default:
		w.closeConn = true // HTTP/1.0: the close ends the body
	}
	// b, not w.out, so that the appends keep it in registers.
	b := appendStatusLine(w.out, w.major, w.minor, w.status)
	if typ, ok := w.onlyType(); ok {
		for _, v := range typ {
			b = append(b, "Content-Type: "...) // one copy, not appendFields' two
			b = appendValue(b, v)
			b = append(b, "\r\n"...)
		}
	} else {
		fields := w.headerFields(false)
		if body && w.method != http.MethodHead && len(w.body) > 0 && !w.hasType {
			vs := []string{http.DetectContentType(w.body)}
			h["Content-Type"] = vs
			fields = append(fields, outField{"Content-Type", vs})
		}
		b = w.appendFields(b, fields)
	}
	if !w.hasDate && !w.Gateway {
		b = appendDate(b)
	}
	if setCL {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, w.written, 10)
		b = append(b, "\r\n"...)
	}
	if w.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	switch {
	case w.Gateway:
	case w.closeConn:
		b = append(b, "Connection: close\r\n"...)
	case !w.http11():
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	b = append(b, "\r\n"...)
	if len(w.body) > 0 {
		if w.chunked {
			b = strconv.AppendUint(b, uint64(len(w.body)), 16)
			b = append(b, "\r\n"...)
			b = append(b, w.body...)
			b = append(b, "\r\n"...)
		} else {
			b = append(b, w.body...)
		}
		w.body = w.body[:0]
	}
	w.out = b
}

// outField is a header field that goes out: its key and values.
type outField struct {
	key  string
	vals []string
}

// headerFields returns the handler's header fields that go out, in one
// pass over the map, their values with them so that appendFields looks
// up none: framing and hop-by-hop fields are ours to set (a
// "Connection: close" of the handler's closes the connection), a 204 has
// no Content-Length, and an interim response leaves out the fields that
// describe a final response's body. It notes whether Content-Type and
// Date are among them.
func (w *ResponseWriter) headerFields(interim bool) []outField {
	fields := w.fields[:0]
	w.hasType, w.hasDate = false, false
	if len(w.header) == 0 {
		return fields
	}
	for k, v := range w.header {
		switch k {
		case "Connection":
			if !interim && len(v) > 0 && hasToken(v, "close") {
				w.closeConn = true
			}
			continue
		case "Transfer-Encoding", "Keep-Alive", "Trailer":
			continue
		case "Content-Length":
			if interim || w.status == http.StatusNoContent {
				continue
			}
		case "Content-Type":
			if interim {
				continue
			}
			w.hasType = true
		case "Date":
			if interim {
				continue
			}
			w.hasDate = true
		}
		fields = append(fields, outField{k, v})
	}
	return fields
}

// onlyType returns the values of Content-Type when it is the handler's
// one header field, as for the usual handler, and notes it as headerFields
// would: a look-up is a fraction of the cost of a walk over the map, and
// of the fields' scratch.
func (w *ResponseWriter) onlyType() ([]string, bool) {
	if len(w.header) != 1 {
		return nil, false
	}
	typ, ok := w.header["Content-Type"]
	w.hasType, w.hasDate = ok, false
	return typ, ok
}

// appendFields appends fields, sorted by name so that responses are
// reproducible.
func (w *ResponseWriter) appendFields(b []byte, fields []outField) []byte {
	if len(fields) > 1 {
		slices.SortFunc(fields, func(a, b outField) int { return strings.Compare(a.key, b.key) })
	}
	for _, f := range fields {
		if !isTokenString(f.key) {
			continue
		}
		for _, v := range f.vals {
			b = append(b, f.key...)
			b = append(b, ": "...)
			b = appendValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	clear(fields)
	w.fields = fields[:0]
	return b
}

// appendValue appends v with CR, LF and NUL replaced by spaces and
// surrounding whitespace trimmed.
func appendValue(b []byte, v string) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	start := len(b)
	b = append(b, v...)
	for i, c := range b[start:] {
		// One comparison for the usual byte, which is above CR.
		if c <= '\r' && (c == '\r' || c == '\n' || c == 0) {
			b[start+i] = ' '
		}
	}
	return b
}

func isTokenString(s string) bool {
	if len(s) == 0 {
		return false
	}
	for i := range len(s) {
		if !tokenTab[s[i]] {
			return false
		}
	}
	return true
}

// hasToken reports whether a comma-separated header value lists tok.
func hasToken(vs []string, tok string) bool {
	for _, v := range vs {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.Trim(t, " \t"), tok) {
				return true
			}
		}
	}
	return false
}

// appendStatusLine answers HTTP/1.0 requests as HTTP/1.0 and everything
// else as HTTP/1.1, as net/http does.
func appendStatusLine(b []byte, major, minor, code int) []byte {
	if code == http.StatusOK && (major != 1 || minor != 0) {
		// The usual line, in one copy, where this function inlines.
		return append(b, "HTTP/1.1 200 OK\r\n"...)
	}
	return appendStatus(b, major, minor, code)
}

// appendStatus is appendStatusLine for other codes and HTTP/1.0.
func appendStatus(b []byte, major, minor, code int) []byte {
	if major == 1 && minor == 0 {
		b = append(b, "HTTP/1.0 "...)
	} else {
		b = append(b, "HTTP/1.1 "...)
	}
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	return append(b, "\r\n"...)
}

// AppendContinue appends the interim "100 Continue" response that a client
// sending "Expect: 100-continue" waits for (see Parser.NeedContinue).
func AppendContinue(b []byte) []byte {
	return append(b, "HTTP/1.1 100 Continue\r\n\r\n"...)
}

// AppendError appends a complete plain-text response with status code and
// "Connection: close": the answer to a request that failed to parse (see
// Status), after which the connection closes.
func AppendError(b []byte, code int) []byte {
	text := http.StatusText(code)
	b = appendStatusLine(b, 1, 1, code)
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\n"...)
	b = appendDate(b)
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(text)+5), 10)
	b = append(b, "\r\nConnection: close\r\n\r\n"...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, text...)
	return append(b, '\n')
}

// dateCache holds the Date field line for one second.
type dateCache struct {
	line [len("Date: " + http.TimeFormat + "\r\n")]byte
}

var (
	date      atomic.Pointer[dateCache]
	dateStart sync.Once
)

// appendDate appends the Date field line of the current time in
// IMF-fixdate, in one copy. The line is formatted once a second, by a
// goroutine that the first response starts and that wakes at each
// second's start, so that a response reads no clock (fasthttp does the
// same).
func appendDate(b []byte) []byte {
	d := date.Load()
	if d == nil {
		dateStart.Do(func() {
			setDate(time.Now())
			go updateDate()
		})
		d = date.Load()
	}
	return append(b, d.line[:]...)
}

func setDate(now time.Time) {
	d := new(dateCache)
	b := append(d.line[:0], "Date: "...)
	b = now.UTC().AppendFormat(b, http.TimeFormat)
	copy(d.line[len(b):], "\r\n")
	date.Store(d)
}

func updateDate() {
	for {
		now := time.Now()
		time.Sleep(time.Second - time.Duration(now.Nanosecond()))
		setDate(time.Now())
	}
}
