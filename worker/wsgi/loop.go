package wsgi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker/event"
)

// The App on an event loop (Options.Loop): the loop watches the socket,
// writes the request frames of each of its turns in one write, and reads
// Python's frames straight into the responses of the connections that wait
// for them, with no goroutine in between (event.AsyncHandler).

// AttachLoop makes lp read and write the socket. One loop only: the wsgi
// worker runs one.
func (a *App) AttachLoop(lp *event.Loop) error {
	if a.fd < 0 {
		return errors.New("wsgi: the app was not started for an event loop (Options.Loop)")
	}
	if a.loop != nil {
		return errors.New("wsgi: the app serves one event loop only")
	}
	if err := unix.SetNonblock(a.fd, true); err != nil {
		return fmt.Errorf("wsgi: the socket: %w", err)
	}
	a.rbuf = newFrameBuf()
	a.wmu.Lock()
	a.loop = lp
	a.wmu.Unlock()
	lp.OnScan(a.holdIfTiedUp)
	return lp.Watch(a.fd, a.ready)
}

// ServeAsync sends r to Python; its response is written to ans as its
// frames come (answerPart).
func (a *App) ServeAsync(ans *event.Answer, r *http.Request) {
	c := getCall(r)
	c.ans, c.w, c.st = ans, ans.Writer(), responder{body: bodyLimit{left: -1}}
	if err := a.send(c, r, true); err != nil {
		a.refuse(c.w, r, err)
		putCall(c)
		ans.Finish(true)
	}
}

// answerPart writes a frame of c's response, on the loop; the last one
// finishes it.
func (a *App) answerPart(c *call, p *part) {
	if c.st.part(a, c.w, c, p) {
		c.st.flush(c.w)
	}
	if p.kind == frameWhole || p.kind == frameEnd {
		a.finishAnswer(c, nil)
	}
}

// finishAnswer completes c's response, err being why Python failed it.
func (a *App) finishAnswer(c *call, err error) {
	cut := c.st.end(a, c.w, c, err)
	ans := c.ans
	putCall(c)
	ans.Finish(!cut)
	if a.held {
		a.holdIfTiedUp()
	}
}

// slowRequest is how long a request runs in Python before it counts as
// tying its thread up (see holdIfTiedUp): longer than a quick view takes,
// short beside one that waits on a slow query or service.
const slowRequest = 50 * time.Millisecond

// holdIfTiedUp has the loop take no new connection while every one of
// Python's threads runs a slow request (one for longer than slowRequest):
// a connection that came now would wait for one of them to end, while
// another worker may be free. Requests that keep Python busy but end
// quickly do not hold connections off: a new client's request then waits
// its turn behind a few quick ones, as fair as the backlog would be. On the
// loop: at its scans, and as a call ends while it holds.
func (a *App) holdIfTiedUp() {
	tied := a.tiedUp(time.Now())
	if tied != a.held {
		a.held = tied
		a.loop.Hold(tied)
	}
}

// tiedUp reports whether every thread of Python's runs a request that
// began before now-slowRequest.
func (a *App) tiedUp(now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil || len(a.running) < a.threads {
		return false
	}
	for _, c := range a.running {
		if now.Sub(c.began) < slowRequest {
			return false
		}
	}
	return true
}

// failAnswers finishes the loop's calls that Python will not answer.
func (a *App) failAnswers(cs []*call, err error) {
	for _, c := range cs {
		if c.ans != nil {
			a.finishAnswer(c, err)
		}
	}
}

// ready takes epoll's report for the socket.
func (a *App) ready(events uint32) {
	if events&unix.EPOLLOUT != 0 {
		a.wmu.Lock()
		a.canWrite = true
		a.writeOut()
		a.wmu.Unlock()
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		a.readFrames()
	}
}

// readFrames reads what Python wrote and hands each frame to its call,
// until the socket is drained (EAGAIN: a short read is not enough, as a
// read stops short of and after a message with descriptors, an F frame's);
// at its end of file, Python is gone.
func (a *App) readFrames() {
	fb := a.rbuf
	for {
		room := fb.room()
		n, oobn, err := recvmsgRaw(a.fd, room, fb.oob, unix.MSG_CMSG_CLOEXEC)
		if oobn > 0 {
			a.takeRights(fb.oob[:oobn])
		}
		if n > 0 {
			fb.end += n
			if ferr := fb.each(a.frame); ferr != nil {
				a.loop.Unwatch(a.fd)
				go a.protocolError(ferr)
				return
			}
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return
		case err != nil || n == 0:
			a.loop.Unwatch(a.fd)
			go a.gone(err) // it waits for the process's exit
			return
		}
	}
}

// turnWrite writes the frames the loop's turn queued.
func (a *App) turnWrite() {
	a.turnQueued = false
	a.wmu.Lock()
	a.writeOut()
	a.wmu.Unlock()
}

// writeOut writes what it can of wbuf, without blocking; the rest waits
// for epoll's report of room. Called under wmu, with Options.Loop.
func (a *App) writeOut() {
	for a.canWrite && a.woff < len(a.wbuf) && !a.wbroken {
		n, err := writeRaw(a.fd, a.wbuf[a.woff:])
		if n > 0 {
			a.woff += n
		}
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			a.canWrite = false
		case err != nil:
			a.wbroken = true // Python is gone: the read side says why
		}
	}
	if a.woff == len(a.wbuf) || a.wbroken {
		if cap(a.wbuf) > 256<<10 {
			a.wbuf = nil
		}
		a.wbuf, a.woff = a.wbuf[:0], 0
	}
	if (a.wclosed || a.wbroken) && len(a.wbuf) == 0 && !a.shut {
		a.shut = true
		unix.Shutdown(a.fd, unix.SHUT_WR)
	}
}

// closeSocket closes the socket, once.
func (a *App) closeSocket() {
	a.closed.Do(func() {
		if a.conn != nil {
			a.conn.Close()
		} else if a.fd >= 0 {
			unix.Close(a.fd)
		}
	})
}

// fdReader reads a blocking descriptor: the handshake's, in loop mode.
type fdReader int

func (f fdReader) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(int(f), b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}
