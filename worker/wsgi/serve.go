package wsgi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker/event"
)

// call is one request on its way through Python: registered by ServeHTTP,
// filled by the read loop, emptied by ServeHTTP.
type call struct {
	id          uint32
	method, uri string
	began       time.Time // when Python began it (zero while it waits); under App.mu

	mu    sync.Mutex
	parts []part // frames not yet taken by ServeHTTP
	done  bool
	err   error         // Python went away before the end
	wake  chan struct{} // a token: parts or done changed

	// A call the event loop serves (App.ServeAsync): its frames are
	// written to w as they come, on the loop, and ans is finished.
	ans *event.Answer
	w   http.ResponseWriter
	st  responder
}

// part is one response frame, its payload copied out of the read buffer.
type part struct {
	kind   byte
	head   []byte // frameWhole, frameHead
	body   []byte // frameWhole, frameData
	file   *os.File
	off, n int64  // frameFile
	reason string // frameEnd: why the response broke off, "" if it did not
}

var calls = sync.Pool{New: func() any { return &call{wake: make(chan struct{}, 1)} }}

func (c *call) add(p part, done bool) {
	c.mu.Lock()
	c.parts = append(c.parts, p)
	c.done = c.done || done
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *call) fail(err error) {
	c.mu.Lock()
	if !c.done {
		c.done, c.err = true, err
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take returns the frames that came, and whether the response is complete.
func (c *call) take() ([]part, bool, error) {
	<-c.wake
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := c.parts
	c.parts = nil
	return ps, c.done, c.err
}

var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// putFrameBuf returns b, the grown *bp, to the pool unless it grew large.
func putFrameBuf(bp *[]byte, b []byte) {
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		frameBufs.Put(bp)
	}
}

// ServeHTTP runs the request in Python and writes its response.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := getCall(r)
	defer putCall(c)
	if err := a.send(c, r, false); err != nil {
		a.refuse(w, r, err)
		return
	}
	a.respond(w, c)
}

func getCall(r *http.Request) *call {
	c := calls.Get().(*call)
	c.method, c.uri = r.Method, r.RequestURI
	select { // a token left by a late wake of the call's last use
	case <-c.wake:
	default:
	}
	return c
}

func putCall(c *call) {
	c.parts, c.done, c.err, c.began = nil, false, nil, time.Time{}
	c.ans, c.w, c.st = nil, nil, responder{}
	calls.Put(c)
}

// refuse answers a request that never reached Python.
func (a *App) refuse(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errNUL):
		http.Error(w, "Bad Request: "+err.Error(), http.StatusBadRequest)
	case errors.Is(err, errTooLarge):
		w.Header().Set("Connection", "close") // the rest of the body is not read
		http.Error(w, "Request Entity Too Large", http.StatusRequestEntityTooLarge)
	case errors.Is(err, errGone):
		w.Header().Set("Connection", "close")
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
	default: // the body could not be read: the client's fault
		a.log.Debug(fmt.Sprintf("wsgi: %s %s: %v", r.Method, r.RequestURI, err))
		w.Header().Set("Connection", "close")
		http.Error(w, "Bad Request", http.StatusBadRequest)
	}
}

var errGone = errors.New("wsgi: python is gone")

// send encodes r into a frame and queues it for Python, registering c
// under a fresh id. Frames go out in the order calls are registered, which
// is the order Python begins them in. onLoop: the caller is the event
// loop, which writes the frames of its turn at the turn's end.
func (a *App) send(c *call, r *http.Request, onLoop bool) error {
	bp := frameBufs.Get().(*[]byte)
	a.mu.Lock()
	a.nextID++
	if a.nextID == 0 {
		a.nextID = 1
	}
	c.id = a.nextID
	a.mu.Unlock()
	b, err := appendRequest((*bp)[:0], request{id: c.id, scriptName: a.opts.ScriptName, maxBody: a.opts.MaxBody}, r)
	if err != nil {
		putFrameBuf(bp, b)
		return err
	}
	a.wmu.Lock()
	if a.wclosed || a.wbroken {
		a.wmu.Unlock()
		putFrameBuf(bp, b)
		return errGone
	}
	a.mu.Lock()
	if a.err != nil {
		a.mu.Unlock()
		a.wmu.Unlock()
		putFrameBuf(bp, b)
		return errGone
	}
	a.calls[c.id] = c
	a.waiting = append(a.waiting, c)
	a.admit(time.Now())
	a.mu.Unlock()
	a.wbuf = append(a.wbuf, b...)
	putFrameBuf(bp, b)
	if a.loop != nil {
		if !onLoop {
			a.writeOut()
		}
		a.wmu.Unlock()
		if onLoop && !a.turnQueued {
			a.turnQueued = true
			a.loop.AtTurnEnd(a.turnWrite)
		}
		return nil
	}
	kick := !a.writing
	a.writing = true
	a.wmu.Unlock()
	if kick {
		a.wkick <- struct{}{} // a buffered slot: the write loop is between writes
	}
	return nil
}

// writeLoop writes the queued frames to Python. When kicked it first
// lets the other goroutines that are ready run (the handlers of the same
// turn of an event loop), so that their frames go out with one write.
func (a *App) writeLoop() {
	for {
		select {
		case <-a.wkick:
		case <-a.done:
			return
		}
		runtime.Gosched()
		a.wmu.Lock()
		for len(a.wbuf) > 0 && !a.wbroken {
			out := a.wbuf
			a.wbuf = a.wspare[:0]
			a.wmu.Unlock()
			a.write(out)
			a.wmu.Lock()
			if cap(out) <= 256<<10 {
				a.wspare = out[:0]
			}
		}
		a.wbuf = a.wbuf[:0]
		a.writing = false
		closed := a.wclosed
		a.wmu.Unlock()
		if closed {
			a.conn.CloseWrite()
			return
		}
	}
}

// write writes frames to Python. Should that fail, Python is gone and
// the read loop says why; nothing more is written.
func (a *App) write(b []byte) {
	if _, err := a.conn.Write(b); err != nil {
		a.wmu.Lock()
		a.wbroken = true
		a.wmu.Unlock()
		a.conn.CloseWrite()
	}
}

// admit marks the calls that Python has begun: it takes requests in
// order, threads at a time. Called under mu.
func (a *App) admit(now time.Time) {
	for len(a.running) < a.threads && a.waitHead < len(a.waiting) {
		c := a.waiting[a.waitHead]
		a.waiting[a.waitHead] = nil
		a.waitHead++
		c.began = now
		a.running = append(a.running, c)
	}
	if a.waitHead == len(a.waiting) {
		a.waiting, a.waitHead = a.waiting[:0], 0
	}
}

// finished takes c off the books once its response is complete, and
// marks the next request begun. Called under mu.
func (a *App) finished(c *call) {
	delete(a.calls, c.id)
	for i, r := range a.running {
		if r == c {
			last := len(a.running) - 1
			a.running[i] = a.running[last]
			a.running[last] = nil
			a.running = a.running[:last]
			a.admit(time.Now())
			return
		}
	}
	for i := a.waitHead; i < len(a.waiting); i++ { // done before begun: cannot be, but stay exact
		if a.waiting[i] == c {
			a.waiting = append(a.waiting[:i], a.waiting[i+1:]...)
			return
		}
	}
}

// respond writes c's response to w as its frames come. It returns, or
// panics with http.ErrAbortHandler to cut the response, only once c is
// done: the read loop no longer touches it then.
func (a *App) respond(w http.ResponseWriter, c *call) {
	st := responder{body: bodyLimit{left: -1}}
	for {
		parts, done, err := c.take()
		streamed := false
		for i := range parts {
			streamed = st.part(a, w, c, &parts[i]) || streamed
		}
		if !done {
			if streamed {
				st.flush(w)
			}
			continue
		}
		if st.end(a, w, c, err) {
			panic(http.ErrAbortHandler)
		}
		return
	}
}

// responder is the state of a response being written from its frames.
type responder struct {
	wrote bool // the head is written
	drain bool // the rest of the frames are not written
	cut   bool // the response is cut: the client must see it broken off
	// The app's Content-Length, which the body may not pass (PEP 3333:
	// the server sends no more); -1 for none.
	body bodyLimit
}

// part writes one frame of c's response to w; it reports whether the
// frame streams body bytes, which are then to be flushed.
func (st *responder) part(a *App, w http.ResponseWriter, c *call, p *part) (streamed bool) {
	if st.drain {
		a.discard(p)
		return false
	}
	switch p.kind {
	case frameWhole, frameHead:
		h, herr := parseHead(p.head)
		if herr != nil {
			a.log.Error(fmt.Sprintf("wsgi: %s %s: the app's response: %v", c.method, c.uri, herr))
			if !st.wrote {
				st.wrote = true
				http.Error(w, "Internal Server Error", http.StatusInternalServerError)
			} else {
				st.cut = true
			}
			st.drain = true
			return false
		}
		h.apply(w)
		if cl := w.Header().Get("Content-Length"); cl != "" {
			if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
				st.body.left = n
			}
		} else if p.kind == frameWhole && h.status != http.StatusNoContent && h.status != http.StatusNotModified {
			w.Header().Set("Content-Length", strconv.Itoa(len(p.body)))
		}
		w.WriteHeader(h.status)
		st.wrote = true
		st.body.write(w, p.body)
	case frameData:
		st.body.write(w, p.body)
		return true
	case frameFile:
		if st.body.left >= 0 {
			p.n = min(p.n, st.body.left)
			st.body.left -= p.n
		}
		if err := a.sendFile(w, p); err != nil {
			a.log.Error(fmt.Sprintf("wsgi: %s %s: file_wrapper: %v", c.method, c.uri, err))
			st.drain, st.cut = true, true
		}
	case frameEnd:
		// A reason: the app failed mid-response (its traceback is
		// in the log), and the client must see a cut response.
		st.cut = st.cut || p.reason != ""
	}
	return false
}

// flush sends what w holds, unless the frames are being drained.
func (st *responder) flush(w http.ResponseWriter) {
	if !st.drain {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// end completes the response once its last frame came, or err (Python
// went away). It reports whether the response must be cut: what was
// written is flushed, so the client sees where it broke.
func (st *responder) end(a *App, w http.ResponseWriter, c *call, err error) (cut bool) {
	switch {
	case err != nil && !st.wrote:
		a.answerFailure(w, c, err)
	case err != nil || st.cut:
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		return true
	}
	return false
}

// bodyLimit cuts a body at the app's Content-Length.
type bodyLimit struct{ left int64 }

func (l *bodyLimit) write(w http.ResponseWriter, b []byte) {
	if l.left >= 0 {
		b = b[:min(int64(len(b)), l.left)]
		l.left -= int64(len(b))
	}
	if len(b) > 0 {
		w.Write(b)
	}
}

// answerFailure answers a request whose Python went away: 500 if Python
// had begun it, 503 if it never had.
func (a *App) answerFailure(w http.ResponseWriter, c *call, err error) {
	w.Header().Set("Connection", "close")
	var te *TimeoutError
	a.mu.Lock()
	began := !c.began.IsZero()
	a.mu.Unlock()
	switch {
	case errors.As(err, &te) && te.Method == c.method && te.URI == c.uri && began:
		http.Error(w, "Gateway Timeout", http.StatusGatewayTimeout)
	case began:
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
	default:
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
	}
}

// discard closes the file of a frame that will not be written.
func (a *App) discard(p *part) {
	if p.file != nil {
		p.file.Close()
	}
}

// sendFile writes a wsgi.file_wrapper's file. It reopens the descriptor
// through /proc, so that its offset is its own and not the one it shares
// with the app's file object; w may then sendfile it (net/http does).
func (a *App) sendFile(w http.ResponseWriter, p *part) error {
	f := p.file
	if g, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(f.Fd()))); err == nil {
		f.Close()
		f = g
	}
	defer f.Close()
	if _, err := f.Seek(p.off, io.SeekStart); err != nil {
		return err
	}
	_, err := io.Copy(w, io.LimitReader(f, p.n))
	return err
}

// readLoop reads Python's frames until it closes its end, and hands each
// to its call.
func (a *App) readLoop() {
	fb := newFrameBuf()
	for {
		if err := fb.each(a.frame); err != nil {
			a.protocolError(err)
			return
		}
		n, oobn, _, _, err := a.conn.ReadMsgUnix(fb.room(), fb.oob)
		if oobn > 0 {
			a.takeRights(fb.oob[:oobn])
		}
		fb.end += n
		if err != nil {
			a.gone(err)
			return
		}
	}
}

// frameBuf holds the bytes read from Python until they make whole frames.
type frameBuf struct {
	buf        []byte
	oob        []byte // for the descriptors of F frames
	start, end int    // buf[start:end] is unparsed
}

func newFrameBuf() *frameBuf {
	return &frameBuf{buf: make([]byte, 256<<10), oob: make([]byte, unix.CmsgSpace(16*4))}
}

// each hands each whole frame in the buffer to f, in order, then makes
// room for the next read: a frame that does not fit gets a buffer that
// holds it.
func (b *frameBuf) each(f func([]byte) error) error {
	for b.end-b.start >= responseHeaderSize {
		size := int(binary.LittleEndian.Uint32(b.buf[b.start:]))
		if size < responseHeaderSize || size > maxFrame {
			return fmt.Errorf("frame size %d", size)
		}
		if b.end-b.start < size {
			if size > len(b.buf) {
				nb := make([]byte, size+64<<10)
				b.end = copy(nb, b.buf[b.start:b.end])
				b.buf, b.start = nb, 0
			}
			break
		}
		if err := f(b.buf[b.start : b.start+size]); err != nil {
			return err
		}
		b.start += size
	}
	if b.start == b.end {
		b.start, b.end = 0, 0
	} else if len(b.buf)-b.end < 16<<10 {
		b.end = copy(b.buf, b.buf[b.start:b.end])
		b.start = 0
	}
	return nil
}

// room is where the next read goes.
func (b *frameBuf) room() []byte { return b.buf[b.end:] }

// takeRights queues the descriptors passed with a read, for the F frames
// that name them (one each, in order).
func (a *App) takeRights(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		a.mu.Lock()
		a.fds = append(a.fds, fds...)
		a.mu.Unlock()
	}
}

// frame hands one frame to its call.
func (a *App) frame(f []byte) error {
	id := binary.LittleEndian.Uint32(f[4:])
	kind := f[8]
	p := f[responseHeaderSize:]
	a.mu.Lock()
	c := a.calls[id]
	fd := -1
	if kind == frameFile {
		if len(a.fds) == 0 {
			a.mu.Unlock()
			return errors.New("a file frame without its descriptor")
		}
		fd = a.fds[0]
		a.fds = a.fds[1:]
	}
	if c != nil && (kind == frameWhole || kind == frameEnd) {
		a.finished(c)
	}
	a.mu.Unlock()
	if c == nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		if kind == frameReady || kind == frameBoot {
			return fmt.Errorf("frame %q after the start", kind)
		}
		return nil // a call failed meanwhile
	}
	pt, err := decodePart(kind, p, fd)
	if err != nil {
		return err
	}
	if c.ans != nil {
		a.answerPart(c, &pt)
		return nil
	}
	// The payload is the read buffer's: the call's goroutine gets a copy.
	switch kind {
	case frameWhole:
		d := append([]byte(nil), pt.head...)
		d = append(d, pt.body...)
		pt.head, pt.body = d[:len(pt.head):len(pt.head)], d[len(pt.head):]
	case frameHead:
		pt.head = append([]byte(nil), pt.head...)
	case frameData:
		pt.body = append([]byte(nil), pt.body...)
	}
	c.add(pt, kind == frameWhole || kind == frameEnd)
	return nil
}

// decodePart reads a response frame's payload p into a part, whose slices
// are p's; fd is an F frame's descriptor, -1 for the others.
func decodePart(kind byte, p []byte, fd int) (part, error) {
	pt := part{kind: kind}
	switch kind {
	case frameWhole:
		if len(p) < 4 || int(binary.LittleEndian.Uint32(p)) > len(p)-4 {
			return pt, errors.New("a malformed whole-response frame")
		}
		hl := int(binary.LittleEndian.Uint32(p))
		pt.head, pt.body = p[4:4+hl:4+hl], p[4+hl:]
	case frameHead:
		pt.head = p
	case frameData:
		pt.body = p
	case frameFile:
		if len(p) < 16 {
			unix.Close(fd)
			return pt, errors.New("a malformed file frame")
		}
		pt.off, pt.n = int64(binary.LittleEndian.Uint64(p)), int64(binary.LittleEndian.Uint64(p[8:]))
		pt.file = os.NewFile(uintptr(fd), "wsgi.file_wrapper")
	case frameEnd:
		if len(p) > 0 {
			pt.reason = string(p)
		}
	default:
		return pt, fmt.Errorf("a frame of unknown kind %q", kind)
	}
	return pt, nil
}

// protocolError ends a Python that broke the framing.
func (a *App) protocolError(err error) {
	a.log.Error(fmt.Sprintf("wsgi: python (pid:%d) broke the framing: %v; killing it", a.Pid(), err))
	a.kill()
	a.gone(err)
}

// gone fails every call once Python's end closed, with the reason.
func (a *App) gone(readErr error) {
	<-a.exited
	a.closeSocket()
	a.mu.Lock()
	err := a.timedOut
	a.mu.Unlock()
	a.wmu.Lock()
	if err == nil && a.wclosed {
		err = ErrClosed
	}
	a.wmu.Unlock()
	if err == nil {
		err = fmt.Errorf("wsgi: python (pid:%d) exited (%s)%s", a.Pid(), a.state, a.outTail.suffix())
		if a.state != nil && a.state.Success() {
			err = fmt.Errorf("wsgi: python (pid:%d) exited", a.Pid())
		}
	}
	if readErr != nil && !errors.Is(readErr, io.EOF) {
		a.log.Debug(fmt.Sprintf("wsgi: reading from python (pid:%d): %v", a.Pid(), readErr))
	}
	a.fail(err)
}
