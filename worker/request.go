package worker

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/corral-server/corral/worker/http1"
)

// How the worker types read and serve a request alike: the limits they
// read it within, and the recovery from a handler's panic.

// headerReadTimeout bounds how long a client may take to send a request's
// headers, so a slowloris cannot hold connections open forever.
const headerReadTimeout = 10 * time.Second

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

// parserConfig is the http1 configuration for p's requests.
func parserConfig(p *Process) *http1.Config {
	c := http1.DefaultConfig()
	if p.Config != nil {
		c.Limits = p.Config.RequestLimits()
	}
	return c
}

// serveRecover runs the handler through p and reports whether it
// returned; a panic is logged (unless it is http.ErrAbortHandler) and
// answered with 500 if nothing was sent yet.
func serveRecover(p *Process, w *http1.ResponseWriter, r *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				p.Log.Error(fmt.Sprintf("panic serving %s %s: %v\n%s", r.Method, r.RequestURI, v, debug.Stack()))
			}
			ok = false
		}
	}()
	p.ServeHTTP(w, r)
	return true
}
