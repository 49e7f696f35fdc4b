package worker

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/corral-server/corral/worker/frontend"
	"github.com/corral-server/corral/worker/http1"
)

// How the worker types read and serve a request alike: the limits they
// read it within, and the recovery from a handler's panic.

// HeaderReadTimeout bounds how long a client may take to send a request's
// headers, so a slowloris cannot hold connections open forever.
const HeaderReadTimeout = 10 * time.Second

// bodyMinRate is the slowest a request may arrive, in bytes a second on
// average, once its first --body-timeout has passed (Apache's
// mod_reqtimeout MinRate): a client sending a byte every few seconds
// passes a timeout between reads, but not this.
const bodyMinRate = 500

// BodyTimedOut reports whether a request whose body is arriving has run
// out of time, by --body-timeout (timeout): more than timeout since the
// last read (nginx's client_body_timeout), or, counted from the start of
// the request (start) with received bytes so far, slower than bodyMinRate
// after the first timeout. Times are nanoseconds on any one clock.
func BodyTimedOut(now, start, last, received int64, timeout time.Duration) bool {
	if timeout <= 0 {
		return false
	}
	return now-last > int64(timeout) || now-start > int64(timeout+bodyAllowance(received))
}

// bodyDeadline is the latest time the next read of a request body may
// complete, by the rule of BodyTimedOut, for types that read with
// deadlines; the zero time when timeout is 0.
func bodyDeadline(now, start time.Time, received int64, timeout time.Duration) time.Time {
	if timeout <= 0 {
		return time.Time{}
	}
	if d := start.Add(timeout + bodyAllowance(received)); d.Before(now.Add(timeout)) {
		return d
	}
	return now.Add(timeout)
}

// bodyAllowance is the time received bytes may take at bodyMinRate; at
// most about 70 years, so that sums with it cannot overflow.
func bodyAllowance(received int64) time.Duration {
	const most = math.MaxInt64 / 4
	if received/bodyMinRate >= most/int64(time.Second) {
		return most
	}
	return time.Duration(received/bodyMinRate)*time.Second + time.Duration(received%bodyMinRate)*time.Second/bodyMinRate
}

// RequestLimits returns the http1 limits of the Config's
// --limit-request-* and --max-body settings. A Config that sets none of
// the three request limits (one built by hand, not by the command line)
// gets Gunicorn's defaults.
func (c *Config) RequestLimits() http1.Limits {
	if c.LimitRequestLine == 0 && c.LimitRequestFields == 0 && c.LimitRequestFieldSize == 0 {
		l := http1.DefaultLimits()
		l.MaxBody = c.MaxBody
		return l
	}
	return http1.Limits{RequestLine: c.LimitRequestLine, Fields: c.LimitRequestFields,
		FieldSize: c.LimitRequestFieldSize, MaxBody: c.MaxBody}
}

// maxHeaderBytes maps the request limits onto net/http's MaxHeaderBytes,
// which bounds the request line and the header section together (and
// answers 431 for both): the most bytes the limits let through.
func (c *Config) maxHeaderBytes() int {
	l := c.RequestLimits()
	line, fields, size := l.RequestLine, l.Fields, l.FieldSize
	if line <= 0 || line > 8190 {
		line = 8190
	}
	if fields <= 0 || fields > 32768 {
		fields = 32768
	}
	if size <= 0 {
		size = 8190
	}
	return line + 2 + fields*(size+2) + 2
}

// ParserConfig is the http1 configuration for p's requests: the limits
// of p.Config (see RequestLimits). A type that parses with worker/http1
// takes it once, in Serve, and shares it among its parsers.
func ParserConfig(p *Process) *http1.Config {
	c := http1.DefaultConfig()
	if p.Config != nil {
		c.Limits = p.Config.RequestLimits()
	}
	return c
}

// ServeRecover runs the handler through p and reports whether it
// returned; a panic is logged (unless it is http.ErrAbortHandler) and
// answered with 500 if nothing was sent yet. A type that serves
// through worker/http1's ResponseWriter calls the app only through it, so
// that the access log, the scoreboard and --max-requests see the request;
// on false it closes the connection after what was written.
//
// q is the request's record while it is in flight, the caller's to reuse
// for its next request (one per connection or batch, so a request costs no
// allocation). It does what Process.ServeHTTP does, with one deferred
// recover for both the record's end and the panic.
func ServeRecover(p *Process, q *InFlight, w *http1.ResponseWriter, r *http.Request) (ok bool) {
	return serveRecover(p, q, w, r, 0, false)
}

// ServeFrom is ServeRecover for a request whose serving began at start, a
// reading of heartbeat.Now the caller took anyway (the event loop's, as it
// runs one connection's handler after another's): a clock read fewer; 0 is
// now, as ServeRecover.
func ServeFrom(p *Process, q *InFlight, w *http1.ResponseWriter, r *http.Request, start int64) (ok bool) {
	return serveRecover(p, q, w, r, start, false)
}

// ServeNext is ServeRecover for a request served right after q's last
// one, with nothing done between them (the next of a pipelined batch): it
// begins when that one ended, without a clock read of its own, and the
// scoreboard, Requests and --max-requests count it once the caller
// flushes q (InFlight.Flush) at the batch's end: three atomic adds for the
// batch instead of six a request, and one lock of the in-flight ring a
// request instead of two.
func ServeNext(p *Process, q *InFlight, w *http1.ResponseWriter, r *http.Request) (ok bool) {
	return serveRecover(p, q, w, r, q.end, true)
}

// serveRecover is ServeRecover for any writer the handler is to get: the
// goroutine type's fast path hands it a ResponseWriter that also hijacks.
func serveRecover(p *Process, q *InFlight, w http.ResponseWriter, r *http.Request, start int64, next bool) (ok bool) {
	p.begin(q, w, r, start, next)
	defer func() {
		v := recover()
		if v != nil && v != http.ErrAbortHandler {
			p.Log.Error(fmt.Sprintf("panic serving %s %s: %v\n%s", r.Method, r.RequestURI, v, debug.Stack()))
		}
		q.End(v != nil)
		if v != nil {
			ok = false
		}
		// Not kept past the request; the recorder keeps its writer, so that
		// a handler writing after it returned (a bug) does not crash the
		// worker.
		q.w, q.r = nil, nil
	}()
	p.handler.ServeHTTP(&q.rec, r)
	return true
}

// refuse answers a request that failed to parse with err on c: logged,
// counted on the scoreboard (ParseError) and answered with its
// http1.Status, written to w (c, or its counting side) after buf, which
// it returns; a status of 0 (the client went away) is neither answered
// nor counted. The caller closes c next, with a linger.
func (p *Process) refuse(c net.Conn, w io.Writer, buf []byte, err error) []byte {
	code := http1.Status(err)
	if code == 0 {
		return buf
	}
	p.ParseError(code)
	p.Log.Debug(fmt.Sprintf("bad request from %s: %v", frontend.RemoteAddr(c), err))
	return writeError(c, w, buf, code)
}

// writeError writes http1.AppendError's answer with code after buf to w,
// c or its counting side, within a second (the connection closes next, so
// a client that does not read costs no more), and returns buf with it.
func writeError(c net.Conn, w io.Writer, buf []byte, code int) []byte {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	buf = http1.AppendError(buf, code)
	w.Write(buf)
	return buf
}
