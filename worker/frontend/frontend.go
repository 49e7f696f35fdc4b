package frontend

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Wire protocols a listener can speak (--protocol, or a bind's prefix).
const (
	ProtocolHTTP    = "http"
	ProtocolUwsgi   = "uwsgi"
	ProtocolFastCGI = "fastcgi"
)

// Protocols lists the valid wire protocols.
var Protocols = []string{ProtocolHTTP, ProtocolUwsgi, ProtocolFastCGI}

// FrontEnd is how a worker serves one of its listeners: the wire
// protocol, whether connections start with a PROXY header, and what the
// protocol's server needs to know. Worker types call WrapConn on each
// accepted connection and serve it with Serve (net/http types) or
// ConnServer (their own accept loops). A FrontEnd is shared by every
// connection of its listener: it is not modified once built.
type FrontEnd struct {
	Protocol string // ProtocolHTTP, ProtocolUwsgi or ProtocolFastCGI
	Proxy    string // ProxyOff, ProxyV1, ProxyV2 or ProxyAuto

	ProxyAllow AllowList    // peers allowed to send a PROXY header (--proxy-allow-from)
	UwsgiAllow AllowList    // peers allowed to speak uwsgi or FastCGI (--uwsgi-allow-from)
	Log        *slog.Logger // where refused connections and bad requests are logged
	// ReadTimeout and IdleTimeout are the ConnServer's; Draining, if set,
	// reports that the worker drains (see ConnServer).
	ReadTimeout time.Duration
	IdleTimeout time.Duration
	Draining    func() bool
	// Count, if set, wraps each accepted connection first, to count it
	// and its bytes (the worker's scoreboard); ParseError counts a
	// request refused as malformed (see ConnServer).
	Count      func(net.Conn) net.Conn
	ParseError func(code int)
}

// WrapConn wraps an accepted connection for Count, and in a ProxyConn
// when the PROXY protocol is on.
func (f *FrontEnd) WrapConn(c net.Conn) net.Conn {
	if f.Count != nil {
		c = f.Count(c)
	}
	if f.Proxy == ProxyOff || f.Proxy == "" {
		return c
	}
	return NewProxyConn(c, f.Proxy, f.ProxyAllow, func(err error) { f.Log.Warn(err.Error()) })
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
	return &ConnServer{
		Protocol:    f.Protocol,
		Handler:     h,
		ConnState:   state,
		Log:         f.Log,
		ReadTimeout: f.ReadTimeout,
		IdleTimeout: f.IdleTimeout,
		Draining:    f.Draining,
		UwsgiAllow:  f.UwsgiAllow,
		ParseError:  f.ParseError,
	}
}
