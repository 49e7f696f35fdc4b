package worker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/internal/tickets"
	"github.com/corral-server/corral/socket"
	"github.com/corral-server/corral/worker/frontend"
)

// TLSConfig is the TLS settings of a worker (--certfile, --keyfile,
// --ca-certs, --cert-reqs, --ciphers, --tls-min-version), as Gunicorn's.
type TLSConfig struct {
	CertFile string `json:"certfile"`
	KeyFile  string `json:"keyfile"`
	CACerts  string `json:"ca_certs,omitempty"` // the CAs a client certificate must chain to
	// CertReqs asks for a client certificate: CertNone, CertOptional or
	// CertRequired (mutual TLS), Python's ssl.CERT_* numbers.
	CertReqs int `json:"cert_reqs,omitempty"`
	// Ciphers are the TLS 1.2 (and older) suites, in preference order;
	// nil is Go's. TLS 1.3 suites are not configurable in crypto/tls.
	Ciphers    []uint16 `json:"ciphers,omitempty"`
	MinVersion uint16   `json:"min_version"`
	MaxVersion uint16   `json:"max_version,omitempty"` // 0: TLS 1.3
	// AllTCP makes every TCP listener that speaks HTTP serve TLS, as
	// --certfile does in Gunicorn; otherwise only "https://" binds do.
	AllTCP bool `json:"all_tcp,omitempty"`
}

// Client certificate policies (--cert-reqs).
const (
	CertNone     = 0
	CertOptional = 1
	CertRequired = 2
)

// HTTP/2 modes (--http2).
const (
	HTTP2Off = "off" // HTTP/1.1 only
	HTTP2On  = "on"  // h2 by ALPN on TLS listeners, for the types that serve it
	HTTP2H2C = "h2c" // also cleartext HTTP/2 with prior knowledge on plain listeners
)

// HTTP2Modes lists the valid --http2 values.
var HTTP2Modes = []string{HTTP2Off, HTTP2On, HTTP2H2C}

// ServesTLS reports whether a listener whose bind named protocol ("" for
// none, "http", "https", "uwsgi", ...) on network ("tcp", "unix") serves
// TLS under c: an "https://" bind does, and with --certfile every TCP
// listener that speaks HTTP and whose bind named no protocol (an
// "http://" bind stays plain). The worker serves by this rule, and the
// arbiter names its listeners by it.
func (c *Config) ServesTLS(protocol, network string) bool {
	if protocol == socket.ProtocolHTTPS {
		return true
	}
	return protocol == "" && c.TLS != nil && c.TLS.AllTCP && network == "tcp" &&
		(c.Protocol == "" || c.Protocol == frontend.ProtocolHTTP)
}

// protocolSupport is what a worker type serves beyond plain HTTP/1.1.
type protocolSupport struct {
	tls bool // HTTP/1.1 over TLS
	h2  bool // HTTP/2 over TLS (ALPN "h2")
	h2c bool // HTTP/2 with prior knowledge on plain listeners
}

// protocolServer is implemented by the worker types that serve more than
// plain HTTP/1.1; the others are refused TLS and HTTP/2.
type protocolServer interface{ protocols() protocolSupport }

func (*goroutineWorker) protocols() protocolSupport {
	return protocolSupport{tls: true, h2: true, h2c: true}
}

func (*syncWorker) protocols() protocolSupport { return protocolSupport{tls: true} }

// supportOf is what worker type w serves.
func supportOf(w Worker) protocolSupport {
	if ps, ok := w.(protocolServer); ok {
		return ps.protocols()
	}
	return protocolSupport{}
}

// CanServe reports, as one line, why worker type class cannot serve TLS
// listeners (anyTLS) or --http2 mode http2; nil when it can. The command
// line refuses such a combination before anything starts.
func CanServe(class string, anyTLS bool, http2 string) error {
	c, ok := Lookup(class)
	if !ok {
		return fmt.Errorf("unknown worker type %q", class)
	}
	s := supportOf(c())
	switch {
	case anyTLS && !s.tls:
		return fmt.Errorf("the %s worker does not serve TLS: use -k goroutine or -k sync, or terminate TLS in front", class)
	case http2 == HTTP2H2C && !s.h2c:
		return fmt.Errorf("the %s worker does not serve HTTP/2: --http2 h2c needs -k goroutine", class)
	}
	return nil
}

// LoadKeyPair reads a certificate chain and its private key (keyFile may
// be certFile, holding both) and checks that both parse and that the key
// matches the certificate: a renewal caught between writing the key and
// the certificate fails here instead of serving half of each.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	keyPEM := certPEM
	if keyFile != "" && keyFile != certFile {
		if keyPEM, err = os.ReadFile(keyFile); err != nil {
			return tls.Certificate{}, fmt.Errorf("key: %w", err)
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "tls: ")
		switch {
		case keyFile == "" || keyFile == certFile:
			return cert, fmt.Errorf("%s: %s (without --keyfile the key must be in the certificate's file)", certFile, msg)
		case strings.Contains(msg, "does not match"):
			return cert, fmt.Errorf("the key in %s does not match the certificate in %s", keyFile, certFile)
		case strings.Contains(msg, "CERTIFICATE"), strings.Contains(msg, "certificate"):
			return cert, fmt.Errorf("%s: %s", certFile, msg)
		}
		return cert, fmt.Errorf("%s: %s", keyFile, msg)
	}
	return cert, nil
}

// CertificateProblem is why cert should not be served at now, though it
// can be: expired or not valid yet; "" when it is fine.
func CertificateProblem(cert tls.Certificate, now time.Time) string {
	leaf := cert.Leaf
	if leaf == nil {
		return ""
	}
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Sprintf("certificate %q expired on %s", leaf.Subject.CommonName, leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		return fmt.Sprintf("certificate %q is not valid before %s", leaf.Subject.CommonName, leaf.NotBefore.UTC().Format(time.DateTime))
	}
	return ""
}

// LoadCAs reads the PEM certificates a client certificate must chain to.
func LoadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Config builds the server side of c for a worker type serving alpn.
func (c *TLSConfig) Config(alpn []string) (*tls.Config, error) {
	cert, err := LoadKeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert},
		CipherSuites: c.Ciphers,
		MinVersion:   c.MinVersion,
		MaxVersion:   c.MaxVersion,
		NextProtos:   alpn,
	}
	switch c.CertReqs {
	case CertOptional:
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case CertRequired:
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if c.CACerts != "" {
		if tc.ClientCAs, err = LoadCAs(c.CACerts); err != nil {
			return nil, fmt.Errorf("CA certificates: %w", err)
		}
	}
	return tc, nil
}

// tlsState is a Process's TLS: which listeners serve it, their config,
// and the session-ticket keys shared with the other workers.
type tlsState struct {
	on      []bool // by listener
	config  *tls.Config
	tickets *tickets.Shared // nil: this worker's own keys (Go's)

	mu  sync.Mutex    // one reader of new keys at a time
	seq atomic.Uint64 // the sequence of the keys config holds
}

// initTLS builds the TLS config when a listener serves TLS, for worker
// type class; run calls it at boot, so a bad certificate or a type that
// cannot serve TLS fails the boot.
func (p *Process) initTLS(class Class) error {
	cfg := p.Config
	st := &p.tls
	support := supportOf(class())
	if cfg.HTTP2 == HTTP2H2C && !support.h2c {
		return fmt.Errorf("the %s worker does not serve HTTP/2 (--http2 h2c)", cfg.Class)
	}
	anyTLS := false
	for i, l := range p.Listeners {
		proto := ""
		if i < len(cfg.Listeners) {
			proto = cfg.Listeners[i].Protocol
		}
		on := cfg.ServesTLS(proto, l.Addr().Network())
		st.on = append(st.on, on)
		if on && !support.tls {
			return fmt.Errorf("listener %s: the %s worker does not serve TLS", listenerAddr(l), cfg.Class)
		}
		anyTLS = anyTLS || on
	}
	if !anyTLS {
		if cfg.TicketsFD > 0 {
			unix.Close(cfg.TicketsFD) // no key stays open for what the app may exec
		}
		return nil
	}
	if cfg.TLS == nil || cfg.TLS.CertFile == "" {
		return errors.New("a listener serves TLS but no --certfile is set")
	}
	alpn := []string{"http/1.1"}
	if support.h2 && cfg.HTTP2 != HTTP2Off {
		alpn = []string{"h2", "http/1.1"}
	}
	var err error
	if st.config, err = cfg.TLS.Config(alpn); err != nil {
		return err
	}
	if cfg.TicketsFD > 0 {
		if st.tickets, err = tickets.Open(cfg.TicketsFD); err != nil {
			return err
		}
		if err := st.refreshKeys(); err != nil {
			return err
		}
		// Each handshake looks whether the arbiter rotated the keys (one
		// atomic load): a rotation reaches the workers at their next
		// handshake, with no signal and no lag.
		st.config.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			if err := st.refreshKeys(); err != nil {
				p.Log.Warn(err.Error())
			}
			return nil, nil
		}
	}
	return nil
}

// refreshKeys loads the shared session-ticket keys if they changed.
func (st *tlsState) refreshKeys() error {
	if st.tickets.Seq() == st.seq.Load() {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	keys, seq, err := st.tickets.Read()
	if err != nil || seq == st.seq.Load() {
		return err
	}
	ks := make([][32]byte, len(keys))
	for i, k := range keys {
		ks[i] = k
	}
	st.config.SetSessionTicketKeys(ks)
	st.seq.Store(seq)
	return nil
}

// listenerTLS is the TLS config of listener i, nil when it serves plain.
func (p *Process) listenerTLS(i int) *tls.Config {
	if i < len(p.tls.on) && p.tls.on[i] {
		return p.tls.config
	}
	return nil
}

// configureHTTP2 sets the HTTP versions srv serves (--http2) and the
// HTTP/2 limits that follow the request limits: the header list is
// bounded by MaxHeaderBytes, as HTTP/1.1's head, and one connection's
// concurrent streams by --worker-connections (at most Go's 250), since a
// worker holding N connections should not take more than N requests on
// one of them.
func configureHTTP2(srv *http.Server, cfg *Config) {
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(cfg.HTTP2 != HTTP2Off)
	srv.Protocols.SetUnencryptedHTTP2(cfg.HTTP2 == HTTP2H2C)
	srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 250}
	if n := cfg.WorkerConnections; n > 0 && n < 250 {
		srv.HTTP2.MaxConcurrentStreams = n
	}
}

// serverTLS wraps an accepted connection in TLS when config is set; the
// handshake runs at the first read or write (net/http bounds it with its
// header timeout).
func serverTLS(c net.Conn, config *tls.Config) net.Conn {
	if config == nil {
		return c
	}
	return tls.Server(c, config)
}

// handshakeTLS runs the TLS handshake on c within d, for a worker type
// that reads requests itself; nil when it failed, with c closed.
func (p *Process) handshakeTLS(c net.Conn, config *tls.Config, d time.Duration) net.Conn {
	tc := tls.Server(c, config)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		p.Log.Debug(fmt.Sprintf("TLS handshake with %s: %v", frontend.RemoteAddr(c), err))
		c.Close()
		return nil
	}
	return tc
}

// closesWhenIdle reports whether a draining goroutine worker may close c,
// in state s, once it is idle for DrainIdle. Not a TLS connection in
// StateNew: its handshake may be under way (the client's Finished, or the
// request right after it, on its way; net/http's header timeout bounds a
// silent one). Not an HTTP/2 connection, over TLS or h2c (its first
// bytes were the preface): net/http closes it with a
// GOAWAY, after the response that carries "Connection: close" or at its
// idle timeout (--keep-alive), where a bare close would race a request
// the client is sending on it.
func closesWhenIdle(c net.Conn, s http.ConnState) bool {
	tc, ok := c.(*tls.Conn)
	if !ok {
		tr, ok := c.(*trackedConn)
		return !ok || !tr.h2c.Load()
	}
	if s == http.StateNew {
		return false
	}
	// Past StateNew the handshake is over: ConnectionState does not wait.
	return tc.ConnectionState().NegotiatedProtocol != "h2"
}

// isH2CPreface reports whether a connection's first bytes start HTTP/2
// with prior knowledge (h2c): "PRI * HTTP/2.0".
func isH2CPreface(b []byte) bool { return bytes.HasPrefix(b, []byte("PRI * HTTP/2.0")) }

// connTLS is the TLS state of c for r.TLS, nil when c is plain.
func connTLS(c net.Conn) *tls.ConnectionState {
	if tc, ok := c.(*tls.Conn); ok {
		st := tc.ConnectionState()
		return &st
	}
	return nil
}

// netConn is the connection under c's TLS, or c.
func netConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}
