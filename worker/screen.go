package worker

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/corral-server/corral/worker/frontend"
	"github.com/corral-server/corral/worker/http1"
)

// screenedConn is the goroutine worker's http1.Screen on one connection:
// net/http's server reads the connection through it, so it reads only
// requests worker/http1 accepts. A refused request gets the answer the
// other worker types give it (400, 413, 414, 417, 431, 501, 505) with
// "Connection: close", from here, and net/http sees the connection end.
//
// The answer must not cut into the response to the request before it,
// which net/http may still be writing. net/http reads for the next request
// only once that response is out (state Idle), so that is when the answer
// goes; before, while a handler runs (state Active), a read is net/http's
// background read, which watches for the client going away and is told of
// nothing but that: it waits as the socket would.
//
// A refusal in a body that already went to the handler (a bad chunk late
// in a streamed body) is the handler's read error instead, and the
// connection closes after its response.
type screenedConn struct {
	s        http1.Screen
	log      *slog.Logger
	active   atomic.Bool // net/http runs a handler on the connection
	hijacked atomic.Bool // a handler took the connection over
	answered bool
	small    [16]byte // the background read's
	counts   *Process // counts the refusals it answers in the scoreboard; nil: off

	watch atomic.Int32  // the background read's state: see goroutine_watch.go
	abort chan struct{} // wakes a parked background read
}

// newScreenedConn is a Screen by cfg's rules, which logs on log and
// counts on counts (nil: off).
func newScreenedConn(cfg *http1.Config, log *slog.Logger, counts *Process) *screenedConn {
	c := &screenedConn{log: log, counts: counts, abort: make(chan struct{}, 1)}
	c.s.Parser.Config = cfg
	return c
}

func (c *screenedConn) setState(s http.ConnState) {
	switch s {
	case http.StateActive:
		// The last request's background read has ended: the next one's
		// starts afresh.
		c.watch.Store(watchIdle)
		c.active.Store(true)
	case http.StateIdle, http.StateNew:
		c.active.Store(false)
	case http.StateHijacked:
		c.hijacked.Store(true)
	}
}

// watching reports whether a read into b is net/http's background read,
// which watches for the client going away while a handler runs, with
// nothing held: once it has waited off the socket (watchRead), that read
// goes straight to the socket (see trackedConn.Read). It runs on a goroutine of its own for each request,
// whose small stack the Screen's frames would make it outgrow, and copy,
// every time. A pipelined request's first bytes it reads wait in the
// Screen (hold) for net/http's next read, and it ends with nothing, as
// net/http's own does once it has a byte.
func (c *screenedConn) watching(b []byte) bool {
	return len(b) < len(c.small) && c.active.Load() && c.s.Idle()
}

// hold keeps what the background read read.
func (c *screenedConn) hold(n int) { c.s.Hold(c.small[:n]) }

// read is conn's Read, for net/http, through the Screen, which reads src,
// conn's socket side; a refusal's answer is written to out, which counts
// it.
func (c *screenedConn) read(src io.Reader, conn net.Conn, out io.Writer, b []byte) (int, error) {
	if c.hijacked.Load() {
		c.s.Bypass() // the handler reads the stream as it is
	}
	n, err := c.s.Read(src, b)
	r, refused := err.(*http1.Refusal) // not errors.As, whose target escapes: this runs on every read
	if !refused || r.InBody {
		return n, err
	}
	if c.active.Load() {
		return 0, c.s.Discard(src)
	}
	if !c.answered {
		c.answered = true
		if code := http1.Status(r.Err); code != 0 {
			c.log.Debug(fmt.Sprintf("bad request from %s: %v", frontend.RemoteAddr(conn), r.Err))
			writeError(conn, out, nil, code)
			if c.counts != nil {
				c.counts.ParseError(code)
			}
		}
		lingerRead(conn)
	}
	return 0, io.EOF
}
