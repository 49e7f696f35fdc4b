package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Wire protocols a listener can speak (--protocol, or a bind's prefix).
const (
	ProtocolHTTP    = "http"
	ProtocolUwsgi   = "uwsgi"
	ProtocolFastCGI = "fastcgi"
)

// frontConfig is the Process's parsed protocol settings.
type frontConfig struct {
	once      sync.Once
	err       error
	protocol  string
	uwsgi     AllowList
	proxy     string
	proxyFrom AllowList
	forwarded AllowList
}

// initFront parses the Config's protocol settings once; run calls it at
// boot so a bad value fails the boot.
func (p *Process) initFront() error {
	f := &p.front
	f.once.Do(func() {
		var errs []error
		cfg := p.Config
		if cfg == nil {
			cfg = &Config{}
		}
		f.protocol = cfg.Protocol
		if f.protocol == "" {
			f.protocol = ProtocolHTTP
		}
		if !slices.Contains([]string{ProtocolHTTP, ProtocolUwsgi, ProtocolFastCGI}, f.protocol) {
			errs = append(errs, fmt.Errorf("unknown protocol %q", f.protocol))
		}
		for _, in := range cfg.Listeners {
			if in.Protocol != "" && !slices.Contains([]string{ProtocolHTTP, ProtocolUwsgi, ProtocolFastCGI}, in.Protocol) {
				errs = append(errs, fmt.Errorf("listener %s: unknown protocol %q", in.Bind, in.Protocol))
			}
		}
		f.proxy = cfg.ProxyProtocol
		if f.proxy == "" {
			f.proxy = ProxyOff
		}
		if !slices.Contains(ProxyModes, f.proxy) {
			errs = append(errs, fmt.Errorf("unknown PROXY protocol mode %q", f.proxy))
		}
		var err error
		if f.uwsgi, err = ParseAllowList(cfg.UwsgiAllowFrom); err != nil {
			errs = append(errs, fmt.Errorf("uwsgi allow list: %w", err))
		}
		if f.proxyFrom, err = ParseAllowList(cfg.ProxyAllowFrom); err != nil {
			errs = append(errs, fmt.Errorf("proxy allow list: %w", err))
		}
		if f.forwarded, err = ParseAllowList(cfg.ForwardedAllowIPs); err != nil {
			errs = append(errs, fmt.Errorf("forwarded allow list: %w", err))
		}
		f.err = errors.Join(errs...)
	})
	return f.err
}

// trustForwarded applies the forwarding headers of trusted peers to r.
func (p *Process) trustForwarded(r *http.Request) {
	p.initFront()
	TrustForwarded(r, p.front.forwarded)
}

// FrontEnd is how a worker serves one of its Process's listeners: the
// wire protocol, and whether connections start with a PROXY header.
// Worker types call WrapConn on each accepted connection and serve it
// with Serve (net/http types) or ConnServer (their own accept loops).
type FrontEnd struct {
	Protocol string // ProtocolHTTP, ProtocolUwsgi or ProtocolFastCGI
	Proxy    string // ProxyOff, ProxyV1, ProxyV2 or ProxyAuto
	p        *Process
}

// FrontEnd describes how to serve p.Listeners[i].
func (p *Process) FrontEnd(i int) *FrontEnd {
	p.initFront()
	f := &FrontEnd{Protocol: p.front.protocol, Proxy: p.front.proxy, p: p}
	if p.Config != nil && i < len(p.Config.Listeners) && p.Config.Listeners[i].Protocol != "" {
		f.Protocol = p.Config.Listeners[i].Protocol
	}
	return f
}

// WrapConn wraps an accepted connection in a ProxyConn when the PROXY
// protocol is on, and returns it as it is otherwise.
func (f *FrontEnd) WrapConn(c net.Conn) net.Conn {
	if f.Proxy == ProxyOff || f.Proxy == "" {
		return c
	}
	return NewProxyConn(c, f.Proxy, f.p.front.proxyFrom, func(err error) { f.p.Log.Warn(err.Error()) })
}

// Serve serves l, whose Accept returns connections already wrapped, with
// srv's handler and connection-state hook: HTTP through srv itself, uwsgi
// and FastCGI through a ConnServer.
//
// srv.Close closes l for the other protocols too, as it closes the
// listeners it serves itself: a quick stop ends every Serve.
func (f *FrontEnd) Serve(srv *http.Server, l net.Listener) error {
	if f.Protocol == ProtocolHTTP {
		return srv.Serve(l)
	}
	w := &closeWatch{Listener: l, closed: make(chan struct{})}
	go srv.Serve(w)
	return f.ConnServer(srv.Handler, srv.ConnState).Serve(l)
}

// closeWatch is handed to http.Server.Serve only so that the server's
// Close reaches l: its Accept waits for Close and never yields a
// connection.
type closeWatch struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (w *closeWatch) Accept() (net.Conn, error) {
	<-w.closed
	return nil, net.ErrClosed
}

func (w *closeWatch) Close() error {
	w.once.Do(func() {
		close(w.closed)
		w.Listener.Close()
	})
	return nil
}

// ConnServer returns a server for this front end's protocol, serving h and
// reporting connection states to state (which may be nil).
func (f *FrontEnd) ConnServer(h http.Handler, state func(net.Conn, http.ConnState)) *ConnServer {
	cfg := f.p.Config
	if cfg == nil {
		cfg = &Config{}
	}
	return &ConnServer{
		Protocol:    f.Protocol,
		Handler:     h,
		ConnState:   state,
		Log:         f.p.Log,
		ReadTimeout: headerReadTimeout,
		IdleTimeout: cfg.KeepAlive,
		Draining:    f.p.Draining,
		UwsgiAllow:  f.p.front.uwsgi,
	}
}

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
	// DefaultUwsgiMaxVars.
	UwsgiMaxVars int
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
			s.logf(slog.LevelError, "%s: panic serving %s: %v\n%s", s.Protocol, remoteOf(c), v, debug.Stack())
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

// remoteOf names a connection's peer for logs: the PROXY client if any.
func remoteOf(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil && a.String() != "" {
		return a.String()
	}
	return "a unix socket peer"
}
