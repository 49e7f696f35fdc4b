package frontend

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
	"sync"
	"time"
)

// FastCGI record types and constants (FastCGI specification 1.0).
const (
	FastCGIBeginRequest    = 1
	FastCGIAbortRequest    = 2
	FastCGIEndRequest      = 3
	FastCGIParams          = 4
	FastCGIStdin           = 5
	FastCGIStdout          = 6
	FastCGIStderr          = 7
	FastCGIData            = 8
	FastCGIGetValues       = 9
	FastCGIGetValuesResult = 10
	FastCGIUnknownType     = 11

	fcgiResponder = 1
	fcgiKeepConn  = 1

	fcgiRequestComplete = 0
	fcgiCantMpxConn     = 1
	fcgiUnknownRole     = 3

	fcgiMaxContent = 65535
)

// FastCGIMaxParams caps the size of one request's parameters.
const FastCGIMaxParams = 256 << 10

// ErrFastCGI is wrapped by every malformed FastCGI record error.
var ErrFastCGI = errors.New("malformed FastCGI record")

func fcgiErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFastCGI, fmt.Sprintf(format, args...))
}

// FastCGIRecord is one record: its type, request id and content.
type FastCGIRecord struct {
	Type    uint8
	ID      uint16
	Content []byte // valid until the next ReadFastCGIRecord with the same buf
}

// ReadFastCGIRecord reads one record, padding included, into buf (which
// must hold 65535+255 bytes, or be nil to allocate). A stream that ends
// before the record's first byte returns io.EOF; a version other than 1
// or a record cut short is malformed.
func ReadFastCGIRecord(r io.Reader, buf []byte) (FastCGIRecord, error) {
	var h [8]byte
	if n, err := io.ReadFull(r, h[:]); err != nil {
		if n == 0 && err == io.EOF {
			return FastCGIRecord{}, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return FastCGIRecord{}, fcgiErr("record header cut short after %d of 8 bytes", n)
		}
		return FastCGIRecord{}, err
	}
	if h[0] != 1 {
		return FastCGIRecord{}, fcgiErr("version %d, want 1", h[0])
	}
	rec := FastCGIRecord{Type: h[1], ID: binary.BigEndian.Uint16(h[2:4])}
	size, pad := int(binary.BigEndian.Uint16(h[4:6])), int(h[6])
	if len(buf) < size+pad {
		buf = make([]byte, size+pad)
	}
	if n, err := io.ReadFull(r, buf[:size+pad]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return FastCGIRecord{}, fcgiErr("type %d record cut short after %d of %d content and padding bytes", rec.Type, n, size+pad)
		}
		return FastCGIRecord{}, err
	}
	rec.Content = buf[:size]
	return rec, nil
}

// ParseFastCGIParams decodes name-value pairs: each length is one byte, or
// four (big-endian, high bit set) when 128 or more.
func ParseFastCGIParams(b []byte) (map[string]string, error) {
	vars, err := fastCGIVars(nil, b)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		m[v.name] = v.value
	}
	return m, nil
}

// fastCGIVars decodes name-value pairs as ParseFastCGIParams does, into
// list[:0] in their order, their strings copied in one block.
func fastCGIVars(list cgiVars, b []byte) (cgiVars, error) {
	all := string(b)
	list = list[:0]
	for i := 0; len(all) > 0; i++ {
		var kl, vl int
		var err error
		if kl, all, err = fcgiLength(all, i); err != nil {
			return nil, err
		}
		if vl, all, err = fcgiLength(all, i); err != nil {
			return nil, err
		}
		if kl+vl > len(all) {
			return nil, fcgiErr("parameter %d: name and value lengths %d+%d overrun the %d bytes left", i, kl, vl, len(all))
		}
		if kl == 0 {
			return nil, fcgiErr("parameter %d has an empty name", i)
		}
		list = append(list, cgiVar{all[:kl], all[kl : kl+vl]})
		all = all[kl+vl:]
	}
	return list, nil
}

func fcgiLength(b string, i int) (int, string, error) {
	if len(b) == 0 {
		return 0, "", fcgiErr("parameter %d: missing length", i)
	}
	if b[0]&0x80 == 0 {
		return int(b[0]), b[1:], nil
	}
	if len(b) < 4 {
		return 0, "", fcgiErr("parameter %d: four-byte length cut short", i)
	}
	return int(uint32(b[0]&0x7f)<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])), b[4:], nil
}

// appendFastCGIPair encodes one name-value pair.
func appendFastCGIPair(b []byte, k, v string) []byte {
	for _, n := range []int{len(k), len(v)} {
		if n < 128 {
			b = append(b, byte(n))
		} else {
			b = binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
		}
	}
	return append(append(b, k...), v...)
}

// fcgiWriter writes records to a connection; the reading loop and the
// handler's goroutine share it.
type fcgiWriter struct {
	mu sync.Mutex
	w  *bufio.Writer

	inline bool // the connection has a socket to watch: a request without a body runs on the reading goroutine (canWatchGone)
}

// record writes one record (several when content is over 65535 bytes;
// one empty one when content is empty) and flushes.
func (fw *fcgiWriter) record(typ uint8, id uint16, content []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.put(typ, id, content)
	return fw.w.Flush()
}

// put buffers what record writes; the caller holds fw.mu.
func (fw *fcgiWriter) put(typ uint8, id uint16, content []byte) {
	for first := true; first || len(content) > 0; first = false {
		n := min(len(content), fcgiMaxContent)
		pad := -n & 7
		h := [8]byte{1, typ, byte(id >> 8), byte(id), byte(n >> 8), byte(n), byte(pad), 0}
		fw.w.Write(h[:])
		fw.w.Write(content[:n])
		fw.w.Write(make([]byte, pad))
		content = content[n:]
	}
}

func (fw *fcgiWriter) endRequest(id uint16, protocolStatus byte) error {
	return fw.record(FastCGIEndRequest, id, endRequestBody(protocolStatus))
}

// endStdout ends a request that completed: the empty STDOUT record that
// ends its output and its END_REQUEST, in one write.
func (fw *fcgiWriter) endStdout(id uint16) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.put(FastCGIStdout, id, nil)
	fw.put(FastCGIEndRequest, id, endRequestBody(fcgiRequestComplete))
	return fw.w.Flush()
}

func endRequestBody(protocolStatus byte) []byte {
	return []byte{0, 0, 0, 0, protocolStatus, 0, 0, 0}
}

// fcgiStdout turns writes into STDOUT records of one request: each sent
// at once (a handler's Flush), or once held, buffered for the end
// records, so that a response's last bytes go out with them in one write.
type fcgiStdout struct {
	fw   *fcgiWriter
	id   uint16
	hold bool
}

func (s *fcgiStdout) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if s.hold {
		s.fw.mu.Lock()
		s.fw.put(FastCGIStdout, s.id, b)
		s.fw.mu.Unlock()
		return len(b), nil
	}
	if err := s.fw.record(FastCGIStdout, s.id, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// fcgiRequest is the request in progress on a connection.
type fcgiRequest struct {
	id       uint16
	keepConn bool
	params   []byte
	started  bool // the parameters ended and the handler runs
	body     *io.PipeWriter
	cancel   func()
	done     chan struct{} // closed once the handler's response is complete

	// waiting is the request whose parameters ended declaring no body:
	// it runs on the reading goroutine once the empty STDIN record comes
	// (serveFastCGIInline), with no pipe and no goroutine of its own.
	waiting *http.Request

	mu        sync.Mutex
	stdinDone bool // the empty STDIN record came
	finished  bool // the handler returned and END_REQUEST went out
}

// fcgiBufs are a FastCGI connection's buffers, pooled: with a connection
// per request (nginx's default) each would otherwise allocate and clear
// over 100 KiB.
type fcgiBufs struct {
	rec []byte // a record's content and padding
	r   *bufio.Reader
	w   *bufio.Writer
}

var fcgiBufPool = sync.Pool{New: func() any {
	return &fcgiBufs{rec: make([]byte, fcgiMaxContent+255), r: bufio.NewReaderSize(nil, 32<<10), w: bufio.NewWriterSize(nil, 8<<10)}
}}

func (b *fcgiBufs) put() {
	b.r.Reset(nil)
	b.w.Reset(nil)
	fcgiBufPool.Put(b)
}

// fcgiOutPool holds the buffers of handlers' STDOUT streams.
var fcgiOutPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

var errFastCGIAborted = errors.New("fastcgi: request aborted by the web server")

// serveFastCGI serves FastCGI responder requests on c, one at a time:
// nginx does not multiplex, and a second request id while one is in
// progress is refused with FCGI_CANT_MPX_CONN. A connection the web server
// asked to keep (FCGI_KEEP_CONN) carries request after request.
func (s *ConnServer) serveFastCGI(c net.Conn) {
	if !s.UwsgiAllow.AllowsAddr(c.RemoteAddr()) {
		s.logf(slog.LevelWarn, "fastcgi: refused connection from %s, which --uwsgi-allow-from does not allow", peerName(c))
		return
	}
	bufs := fcgiBufPool.Get().(*fcgiBufs)
	bufs.r.Reset(c)
	bufs.w.Reset(c)
	defer bufs.put() // after the handler's goroutine is done with them, below
	br, buf := bufs.r, bufs.rec
	fw := &fcgiWriter{w: bufs.w, inline: canWatchGone(c)}
	var cur *fcgiRequest
	defer func() {
		if cur != nil && cur.started {
			cur.cancel()
			if cur.body != nil {
				cur.body.CloseWithError(io.ErrUnexpectedEOF)
			}
			<-cur.done
		}
	}()
	if s.ReadTimeout > 0 {
		c.SetReadDeadline(time.Now().Add(s.ReadTimeout))
	}
	for {
		rec, err := ReadFastCGIRecord(br, buf)
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, ErrFastCGI) && cur != nil && cur.isFinished():
				// The web server hung up mid-body after our response:
				// the handler did not want the rest.
				s.logf(slog.LevelDebug, "fastcgi: %s closed the connection after the response: %v", peerName(c), err)
			case errors.Is(err, ErrFastCGI):
				s.logf(slog.LevelWarn, "fastcgi: bad record from %s, closing the connection: %v", peerName(c), err)
				s.parseError(0)
			case err == io.EOF || errors.Is(err, net.ErrClosed) || (errors.As(err, &ne) && ne.Timeout()):
			default:
				s.logf(slog.LevelDebug, "fastcgi: connection from %s: %v", peerName(c), err)
			}
			return
		}
		if cur != nil && cur.isFinished() {
			if !s.keeps(cur) {
				// Closing after this request: the web server's next
				// one (it may not have seen the close yet) goes
				// elsewhere, not onto a connection about to close.
				return
			}
			if cur.id != rec.ID {
				cur = nil // a new request may begin
			}
		}
		if err := s.fastCGIRecord(c, fw, &cur, rec); err != nil {
			if err != errCloseConn {
				s.logf(slog.LevelWarn, "fastcgi: bad record from %s, closing the connection: %v", peerName(c), err)
				s.parseError(0)
			}
			return
		}
	}
}

var errCloseConn = errors.New("close the connection")

// fastCGIRecord handles one record; an error closes the connection.
func (s *ConnServer) fastCGIRecord(c net.Conn, fw *fcgiWriter, cur **fcgiRequest, rec FastCGIRecord) error {
	req := *cur
	mine := req != nil && req.id == rec.ID
	switch rec.Type {
	case FastCGIBeginRequest:
		return s.fastCGIBegin(c, fw, cur, rec)
	case FastCGIParams:
		if !mine || req.isFinished() {
			return nil // the specification: ignore records of unknown requests
		}
		return s.fastCGIParams(c, fw, req, rec)
	case FastCGIStdin:
		if !mine {
			return nil
		}
		return s.fastCGIStdin(c, fw, req, rec)
	case FastCGIAbortRequest:
		if mine && !req.isFinished() {
			return s.fastCGIAbort(c, fw, cur, rec)
		}
		return nil
	case FastCGIGetValues:
		return fastCGIValues(fw, rec)
	case FastCGIData:
		return nil // the filter role's second stream: not for a responder
	}
	if rec.ID == 0 && rec.Type > FastCGIUnknownType {
		// An unknown management record: say so, as the specification asks.
		return fw.record(FastCGIUnknownType, 0, []byte{rec.Type, 0, 0, 0, 0, 0, 0, 0})
	}
	return fcgiErr("unexpected record type %d for request %d", rec.Type, rec.ID)
}

// fastCGIBegin handles BEGIN_REQUEST: the request it begins becomes *cur.
func (s *ConnServer) fastCGIBegin(c net.Conn, fw *fcgiWriter, cur **fcgiRequest, rec FastCGIRecord) error {
	req := *cur
	mine := req != nil && req.id == rec.ID
	if len(rec.Content) != 8 {
		return fcgiErr("BEGIN_REQUEST with %d content bytes, want 8", len(rec.Content))
	}
	if rec.ID == 0 {
		return fcgiErr("BEGIN_REQUEST with request id 0")
	}
	if mine && req.isFinished() {
		*cur, req, mine = nil, nil, false
	}
	if mine {
		return fcgiErr("BEGIN_REQUEST for request %d, which is in progress", rec.ID)
	}
	if req != nil {
		// Another request while one is in progress: one at a time.
		return fw.endRequest(rec.ID, fcgiCantMpxConn)
	}
	role := binary.BigEndian.Uint16(rec.Content)
	keep := rec.Content[2]&fcgiKeepConn != 0
	if role != fcgiResponder {
		if err := fw.endRequest(rec.ID, fcgiUnknownRole); err != nil || !keep {
			return errCloseConn
		}
		return nil
	}
	s.setState(c, http.StateActive)
	if s.ReadTimeout > 0 {
		c.SetReadDeadline(time.Now().Add(s.ReadTimeout))
	}
	*cur = &fcgiRequest{id: rec.ID, keepConn: keep, done: make(chan struct{}), cancel: func() {}}
	return nil
}

// fastCGIParams handles a PARAMS record of req, the request in progress:
// the empty one that ends them starts the handler.
func (s *ConnServer) fastCGIParams(c net.Conn, fw *fcgiWriter, req *fcgiRequest, rec FastCGIRecord) error {
	if req.started || req.waiting != nil {
		return fcgiErr("PARAMS for request %d after its parameters ended", rec.ID)
	}
	if len(rec.Content) > 0 {
		if len(req.params)+len(rec.Content) > FastCGIMaxParams {
			return fcgiErr("parameters of request %d over %d bytes", rec.ID, FastCGIMaxParams)
		}
		req.params = append(req.params, rec.Content...)
		return nil
	}
	vars, err := fastCGIVars(nil, req.params)
	if err != nil {
		return err
	}
	r, err := requestFromVars(vars, false, nil, c.RemoteAddr())
	if err != nil {
		return fcgiErr("request %d: %v", rec.ID, err)
	}
	req.params = nil
	if r.ContentLength == 0 && fw.inline {
		req.waiting = r // for its empty STDIN record, most likely read with it
		return nil
	}
	s.startFastCGI(c, fw, req, r)
	return nil
}

// fastCGIStdin handles a STDIN record of req: body bytes for the handler,
// or the empty record that ends the body.
func (s *ConnServer) fastCGIStdin(c net.Conn, fw *fcgiWriter, req *fcgiRequest, rec FastCGIRecord) error {
	if r := req.waiting; r != nil {
		if len(rec.Content) > 0 {
			return nil // no body was declared: dropped, as a handler's unread body is
		}
		req.waiting = nil
		req.mu.Lock()
		req.stdinDone = true
		req.mu.Unlock()
		s.serveFastCGIInline(c, fw, req, r)
		return nil
	}
	if !req.started {
		return fcgiErr("STDIN for request %d before its parameters ended", rec.ID)
	}
	req.mu.Lock()
	if req.stdinDone {
		req.mu.Unlock()
		return fcgiErr("STDIN for request %d after its end", rec.ID)
	}
	req.mu.Unlock()
	if len(rec.Content) > 0 {
		req.body.Write(rec.Content) // fails once the handler is done: the rest is dropped
		return nil
	}
	req.body.Close()
	req.mu.Lock()
	req.stdinDone = true
	finished := req.finished
	req.mu.Unlock()
	if finished {
		return s.fastCGIAfter(c, req)
	}
	return nil
}

// fastCGIAbort handles ABORT_REQUEST for the unfinished request *cur.
func (s *ConnServer) fastCGIAbort(c net.Conn, fw *fcgiWriter, cur **fcgiRequest, rec FastCGIRecord) error {
	req := *cur
	if !req.started {
		// Nothing runs yet: answer at once.
		*cur = nil
		if err := fw.endRequest(rec.ID, fcgiRequestComplete); err != nil || !req.keepConn {
			return errCloseConn
		}
		s.setState(c, http.StateIdle)
		return nil
	}
	req.cancel()
	req.body.CloseWithError(errFastCGIAborted)
	return nil
}

// fastCGIValues answers GET_VALUES: this server does not multiplex.
func fastCGIValues(fw *fcgiWriter, rec FastCGIRecord) error {
	if rec.ID != 0 {
		return fcgiErr("GET_VALUES with request id %d", rec.ID)
	}
	names, err := ParseFastCGIParams(rec.Content)
	if err != nil {
		return err
	}
	var out []byte
	if _, ok := names["FCGI_MPXS_CONNS"]; ok {
		out = appendFastCGIPair(out, "FCGI_MPXS_CONNS", "0")
	}
	return fw.record(FastCGIGetValuesResult, 0, out)
}

func (r *fcgiRequest) isFinished() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.finished
}

// startFastCGI runs the handler on its own goroutine, the body fed by the
// reading loop through a pipe.
func (s *ConnServer) startFastCGI(c net.Conn, fw *fcgiWriter, req *fcgiRequest, r *http.Request) {
	pr, pw := io.Pipe()
	req.body = pw
	r.Body = http.NoBody
	if r.ContentLength != 0 {
		r.Body = pr
	}
	ctx := req.begin(r)
	c.SetReadDeadline(time.Time{}) // the body comes as fast as the client sends it
	go s.runFastCGI(ctx, c, fw, req, r, func() { pr.CloseWithError(io.ErrClosedPipe) })
}

// serveFastCGIInline serves a request without a body, all of whose
// records came, on the reading goroutine: no goroutine, pipe or wake-up of
// another thread a request. Nothing reads the connection meanwhile, so a
// handler still running after fcgiWatchDelay gets a watch for the web
// server's close (watchGone), which cancels its context as the reading
// loop's end does for one on its own goroutine.
func (s *ConnServer) serveFastCGIInline(c net.Conn, fw *fcgiWriter, req *fcgiRequest, r *http.Request) {
	r.Body = http.NoBody
	ctx := req.begin(r)
	c.SetReadDeadline(time.Time{}) // the handler may take its time
	w := watchGone(c, req.cancel)
	s.runFastCGI(ctx, c, fw, req, r, func() { w.stop(c) })
}

// begin marks req's handler started and returns its context.
func (req *fcgiRequest) begin(r *http.Request) context.Context {
	r.Close = !req.keepConn
	ctx, cancel := context.WithCancel(context.Background())
	req.cancel, req.started = cancel, true
	return ctx
}

// runFastCGI runs the handler for req and ends the request: returned
// is called once the handler has.
func (s *ConnServer) runFastCGI(ctx context.Context, c net.Conn, fw *fcgiWriter, req *fcgiRequest, r *http.Request, returned func()) {
	defer close(req.done)
	stdout := &fcgiStdout{fw: fw, id: req.id}
	out := fcgiOutPool.Get().(*bufio.Writer)
	out.Reset(stdout)
	defer func() {
		out.Reset(nil)
		fcgiOutPool.Put(out)
	}()
	w := newStreamResponse(out, r, true)
	w.final = func() { stdout.hold = true } // endStdout writes the rest
	panicked := false
	err := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				panicked = true
				if v != http.ErrAbortHandler {
					s.logf(slog.LevelError, "fastcgi: panic serving %s: %v", r.RemoteAddr, v)
				}
			}
		}()
		return s.serveRequest(ctx, c, r, w)
	}()
	returned()
	if panicked || err != nil {
		c.Close() // a response cut short must not look complete
		return
	}
	// END_REQUEST goes out under req.mu: the web server may begin
	// the next request on this connection as soon as it reads it, and
	// the reading loop must then find this one finished.
	req.mu.Lock()
	err = fw.endStdout(req.id)
	req.finished = err == nil
	stdinDone := req.stdinDone
	req.mu.Unlock()
	if err != nil {
		c.Close()
		return
	}
	if stdinDone {
		s.fastCGIAfter(c, req)
	} else {
		// The reading loop drops the rest of the body, then decides.
		c.SetReadDeadline(time.Now().Add(time.Second))
	}
}

// keeps reports whether the connection stays open after req.
func (s *ConnServer) keeps(req *fcgiRequest) bool {
	return req.keepConn && !s.draining() && s.IdleTimeout > 0
}

// fastCGIAfter ends a request whose response and body are both done:
// the connection stays for the next request or closes.
func (s *ConnServer) fastCGIAfter(c net.Conn, req *fcgiRequest) error {
	if !s.keeps(req) {
		c.Close()
		return errCloseConn
	}
	s.setState(c, http.StateIdle)
	c.SetReadDeadline(time.Now().Add(s.IdleTimeout))
	return nil
}
