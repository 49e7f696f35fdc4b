package event

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker"
	"github.com/corral-server/corral/worker/http1"
)

// AsyncHandler is a handler that answers on the event loop itself, with no
// goroutine per request: the wsgi worker's, whose answers come from its
// Python process over a socket that the loop watches (Loop.Watch). The
// loop calls ServeAsync, on its own goroutine, for each request it would
// otherwise hand to its pool; ServeAsync must not block. It, or a later
// callback on the same loop (a Watch's, a Post's, an AtTurnEnd's), writes
// the response to the Answer's Writer and calls Finish, once.
//
// The event worker's FastCGI connections, which are served on goroutines,
// and the other worker types call ServeHTTP.
type AsyncHandler interface {
	http.Handler
	// AttachLoop is called once per loop, on the loop's goroutine, before
	// the loop serves; an error ends the worker's start.
	AttachLoop(*Loop) error
	// ServeAsync begins the response to r.
	ServeAsync(a *Answer, r *http.Request)
}

// Loop is an event loop as an AsyncHandler sees it. Watch, Unwatch and
// AtTurnEnd are for the loop's goroutine only; Post for any.
type Loop struct {
	l       *eventLoop
	h       AsyncHandler
	watched map[int32]func(events uint32)
	turnEnd []func()
	onScan  []func()
	raw     bool // there is a P besides the loop's: its busy waits keep its P (see wait)

	mu     sync.Mutex
	posted []func()
	spare  []func()
}

// Watch puts fd, non-blocking, in the loop's epoll set, edge-triggered for
// input and output: ready gets epoll's events for it, on the loop.
func (lp *Loop) Watch(fd int, ready func(events uint32)) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(lp.l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	lp.watched[int32(fd)] = ready
	return nil
}

// Unwatch takes fd out of the loop's epoll set.
func (lp *Loop) Unwatch(fd int) {
	if _, ok := lp.watched[int32(fd)]; ok {
		delete(lp.watched, int32(fd))
		unix.EpollCtl(lp.l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
}

// Hold, while on, keeps the loop from taking new connections: they wait
// in the listener's backlog for another worker, or for this one once it
// lets them in again, rather than queue behind requests that hold the
// handler up (as a Gunicorn sync worker or a uWSGI process accepts only
// when it is free). The connections the loop has are served as ever, and
// a graceful stop's drain still takes the whole backlog. For the loop's
// goroutine; the listeners leave or rejoin the epoll set at the end of the
// turn.
func (lp *Loop) Hold(on bool) { lp.l.held = on }

// OnScan has f run on the loop at each of its timer scans, which come at
// most 100 ms apart (sooner with a short --timeout): for a handler's
// checks that no event prompts.
func (lp *Loop) OnScan(f func()) { lp.onScan = append(lp.onScan, f) }

// scanned runs the OnScan callbacks.
func (lp *Loop) scanned() {
	for _, f := range lp.onScan {
		f()
	}
}

// Post runs f on the loop's goroutine, soon; false if the loop is gone.
func (lp *Loop) Post(f func()) bool {
	lp.mu.Lock()
	lp.posted = append(lp.posted, f)
	lp.mu.Unlock()
	lp.l.mu.Lock()
	closed := lp.l.closed
	lp.l.mu.Unlock()
	if closed {
		return false
	}
	lp.l.wake()
	return true
}

// AtTurnEnd runs f once the requests of the loop's current turn have all
// begun, before their connections' output is written: the place to send
// what they queued in one write.
func (lp *Loop) AtTurnEnd(f func()) { lp.turnEnd = append(lp.turnEnd, f) }

// ready hands epoll's report for a watched fd to its callback.
func (lp *Loop) ready(fd int32, events uint32) {
	if f := lp.watched[fd]; f != nil {
		f(events)
	}
}

// runPosted runs what Post queued.
func (lp *Loop) runPosted() {
	lp.mu.Lock()
	fs := lp.posted
	lp.posted = lp.spare[:0]
	lp.mu.Unlock()
	for i, f := range fs {
		fs[i] = nil
		f()
	}
	lp.mu.Lock()
	lp.spare = fs[:0]
	lp.mu.Unlock()
}

// endTurn runs the AtTurnEnd callbacks.
func (lp *Loop) endTurn() {
	for i := 0; i < len(lp.turnEnd); i++ { // a callback may add one
		f := lp.turnEnd[i]
		lp.turnEnd[i] = nil
		f()
	}
	lp.turnEnd = lp.turnEnd[:0]
}

// attachAsync gives each loop to the handler, if it is an AsyncHandler.
func (e *eventWorker) attachAsync() error {
	h, ok := e.p.Handler().(AsyncHandler)
	if !ok {
		return nil
	}
	for _, l := range e.loops {
		l.async = &Loop{l: l, h: h, watched: map[int32]func(uint32){}, raw: runtime.GOMAXPROCS(0) > 1}
		if err := h.AttachLoop(l.async); err != nil {
			return err
		}
	}
	return nil
}

// Answer is one request served by an AsyncHandler: its response, written
// to Writer on the loop, and completed by Finish.
type Answer struct {
	c     *eventConn
	rw    http1.ResponseWriter
	fw    answerWriter // rw, with ReadFrom
	out   []byte
	q     *worker.InFlight
	begun bool // in ServeAsync: Finish leaves the connection to serve
	done  bool
}

var answers = sync.Pool{New: func() any {
	a := new(Answer)
	a.rw.Send = a.send
	a.fw = answerWriter{&a.rw, a}
	return a
}}

// Writer is the response's writer. Flush sends what it holds at the end of
// the loop's turn, without waiting for the client: a handler streaming to
// a slow client buffers (the wsgi worker reads Python as fast as it
// writes anyway).
func (a *Answer) Writer() http.ResponseWriter { return a.q.Writer() }

// send queues streamed bytes on the connection.
func (a *Answer) send(b []byte) error {
	c := a.c
	if c.closed {
		return errConnClosed
	}
	c.out = append(c.getOut(), b...)
	c.markDirty()
	return nil
}

// answerWriter is an Answer's response writer. Its ReadFrom sends a
// file's bytes (an *os.File under an io.LimitedReader, what io.Copy of a
// file gives, as net/http's does) by sendfile(2): what the socket takes at
// once, the rest through the buffer.
type answerWriter struct {
	*http1.ResponseWriter
	a *Answer
}

func (w *answerWriter) ReadFrom(src io.Reader) (int64, error) {
	var sent int64
	if lr, ok := src.(*io.LimitedReader); ok {
		if f, ok := lr.R.(*os.File); ok {
			k, err := w.WriteOutside(lr.N, func(n int64) (int64, error) { return w.a.c.sendFile(f, n) })
			sent, lr.N = k, lr.N-k
			if err != nil {
				return sent, err
			}
		}
	}
	n, err := io.Copy(struct{ io.Writer }{w.ResponseWriter}, src)
	return sent + n, err
}

// sendFile writes up to n bytes of f, from its offset on, by sendfile(2),
// once the output before them is out: what the socket takes now.
func (c *eventConn) sendFile(f *os.File, n int64) (int64, error) {
	if !c.closed {
		c.flush()
	}
	if c.closed {
		return 0, errConnClosed
	}
	var sent int64
	for c.canWrite && c.pending() == 0 && sent < n {
		k, err := unix.Sendfile(int(c.fd), int(f.Fd()), nil, int(min(n-sent, 1<<30)))
		if k > 0 {
			sent += int64(k)
			c.counted(0, k)
			c.last = nanotime()
		}
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			c.canWrite = false // the rest through the buffer
		case err == unix.EINVAL || err == unix.ENOSYS:
			return sent, nil // no sendfile for this file: the buffer
		case err != nil:
			c.close()
			return sent, err
		case k == 0:
			return sent, nil // the file is shorter
		}
	}
	return sent, nil
}

// Finish completes the response; ok false cuts it (a 500 if nothing was
// sent, else the connection closes on what was). It runs on the loop.
func (a *Answer) Finish(ok bool) {
	if a.done {
		return
	}
	a.done = true
	c := a.c
	closeAfter := true
	switch {
	case !ok && !a.rw.Started():
		a.out = http1.AppendError(a.out[:0], http.StatusInternalServerError)
	case !ok:
		a.out = a.out[:0]
	default:
		a.out, _ = a.rw.Finish()
		closeAfter = a.rw.Close()
	}
	a.q.End(!ok)
	c.busy = false
	c.rctx = c.rctx.Ended()
	c.handlerDone()
	if !c.closed {
		c.out = append(c.getOut(), a.out...)
		c.closeAfter = c.closeAfter || closeAfter
		c.last = nanotime()
		if !a.begun { // else serve's caller goes on with the connection
			c.process()
		}
	}
	if a.begun {
		return // serveAsync releases it
	}
	a.release()
}

func (a *Answer) release() {
	a.c, a.q = nil, nil
	if cap(a.out) > eventKeepBuf {
		a.out = nil
	}
	answers.Put(a)
}

// serveAsync begins hr on the loop's AsyncHandler.
func (c *eventConn) serveAsync(hr *http.Request, method string, major, minor int, closeConn bool) {
	l := c.l
	a := answers.Get().(*Answer)
	a.c, a.done, a.begun = c, false, true
	a.rw.Reset(a.out[:0], method, major, minor, closeConn)
	a.rw.Gateway = c.uwsgi != nil
	a.q = l.p.Begin(&a.fw, hr)
	c.busy = true
	func() {
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					l.p.Log.Error(fmt.Sprintf("panic serving %s %s: %v\n%s", hr.Method, hr.RequestURI, v, debug.Stack()))
				}
				a.Finish(false)
			}
		}()
		l.async.h.ServeAsync(a, hr)
	}()
	a.begun = false
	if a.done {
		a.release()
	}
}

// markDirty queues the connection's output for the end of the turn.
func (c *eventConn) markDirty() {
	if !c.dirty {
		c.dirty = true
		c.l.dirty = append(c.l.dirty, c)
	}
}
