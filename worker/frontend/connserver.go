package frontend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"syscall"
	"time"
)

// ConnServer serves the uwsgi or FastCGI protocol on connections. It is
// the counterpart of http.Server for those protocols: worker types with
// their own accept loop call ServeConn on each connection; the others
// call Serve on a listener.
type ConnServer struct {
	Protocol  string // ProtocolUwsgi or ProtocolFastCGI
	Handler   http.Handler
	ConnState func(net.Conn, http.ConnState) // as http.Server.ConnState; may be nil
	Log       *slog.Logger
	// ReadTimeout bounds the wait for a request's head (uwsgi packet
	// header and variables, FastCGI parameters).
	ReadTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a FastCGI
	// connection the web server keeps open (FCGI_KEEP_CONN); 0 closes it
	// after each request.
	IdleTimeout time.Duration
	// Draining, if set, reports that the worker drains: a kept FastCGI
	// connection is closed after its current request.
	Draining func() bool
	// UwsgiAllow are the peers allowed to speak uwsgi; unix socket peers
	// always are.
	UwsgiAllow AllowList
	// UwsgiMaxVars caps a uwsgi packet's variables block; 0 is
	// http1.DefaultUwsgiMaxVars.
	UwsgiMaxVars int
	// ParseError, if set, counts a request refused as malformed (the
	// worker's scoreboard): code is the status answered, 0 when the
	// connection is closed without one.
	ParseError func(code int)
}

// Serve accepts connections from l and serves each on its own goroutine,
// until Accept fails with an error that is not temporary.
func (s *ConnServer) Serve(l net.Listener) error {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ECONNABORTED) {
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay *= 2; delay > time.Second {
					delay = time.Second
				}
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		go s.ServeConn(c)
	}
}

// ServeConn serves one connection and closes it. A handler's panic is
// logged and closes the connection; it never ends the process.
func (s *ConnServer) ServeConn(c net.Conn) {
	s.setState(c, http.StateNew)
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			s.logf(slog.LevelError, "%s: panic serving %s: %v\n%s", s.Protocol, peerName(c), v, debug.Stack())
		}
		c.Close()
		s.setState(c, http.StateClosed)
	}()
	switch s.Protocol {
	case ProtocolUwsgi:
		s.serveUwsgi(c)
	case ProtocolFastCGI:
		s.serveFastCGI(c)
	default:
		s.logf(slog.LevelError, "no server for protocol %q", s.Protocol)
	}
}

func (s *ConnServer) setState(c net.Conn, st http.ConnState) {
	if s.ConnState != nil {
		s.ConnState(c, st)
	}
}

func (s *ConnServer) draining() bool { return s.Draining != nil && s.Draining() }

func (s *ConnServer) parseError(code int) {
	if s.ParseError != nil {
		s.ParseError(code)
	}
}

func (s *ConnServer) logf(level slog.Level, format string, args ...any) {
	if s.Log != nil {
		s.Log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

// serveRequest runs the handler for r, writing to w, and completes the
// response. r's context is a child of ctx, cancelled when done.
func (s *ConnServer) serveRequest(ctx context.Context, c net.Conn, r *http.Request, w *streamResponse) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.LocalAddr())
	r = r.WithContext(ctx)
	w.req = r
	s.Handler.ServeHTTP(w, r)
	return w.finish()
}
