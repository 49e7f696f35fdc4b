package worker

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/corral-server/corral/internal/tickets"
	"github.com/corral-server/corral/worker/frontend"
)

// TestServesTLS is the rule for which listeners serve TLS.
func TestServesTLS(t *testing.T) {
	cert := &Config{TLS: &TLSConfig{CertFile: "c.pem", AllTCP: true}}
	uwsgi := &Config{TLS: cert.TLS, Protocol: "uwsgi"}
	none := &Config{}
	for _, c := range []struct {
		cfg               *Config
		protocol, network string
		want              bool
	}{
		{cert, "", "tcp", true},       // --certfile: a bind with no prefix
		{cert, "http", "tcp", false},  // http:// stays plain
		{cert, "", "unix", false},     // unix: plain unless https://
		{cert, "https", "unix", true}, // https://unix:
		{cert, "uwsgi", "tcp", false},
		{uwsgi, "", "tcp", false}, // --protocol uwsgi
		{none, "", "tcp", false},
		{none, "https", "tcp", true}, // the boot then fails: no certificate
	} {
		if got := c.cfg.ServesTLS(c.protocol, c.network); got != c.want {
			t.Errorf("%+v ServesTLS(%q, %q) = %v, want %v", c.cfg.TLS, c.protocol, c.network, got, c.want)
		}
	}
}

func TestCanServe(t *testing.T) {
	if err := CanServe("goroutine", true, HTTP2H2C); err != nil {
		t.Errorf("goroutine: %v", err)
	}
	if err := CanServe("sync", true, HTTP2On); err != nil {
		t.Errorf("sync with TLS: %v", err)
	}
	if err := CanServe("sync", false, HTTP2H2C); err == nil {
		t.Error("sync took --http2 h2c")
	}
}

// TestHTTP2Settings: the versions follow --http2, and one connection's
// streams --worker-connections, up to Go's 250.
func TestHTTP2Settings(t *testing.T) {
	for _, c := range []struct {
		http2          string
		conns, streams int
		h2, h2c        bool
	}{{HTTP2On, 1000, 250, true, false}, {HTTP2H2C, 10, 10, true, true}, {HTTP2Off, 0, 250, false, false}} {
		srv := &http.Server{}
		configureHTTP2(srv, &Config{HTTP2: c.http2, WorkerConnections: c.conns})
		if !srv.Protocols.HTTP1() || srv.Protocols.HTTP2() != c.h2 || srv.Protocols.UnencryptedHTTP2() != c.h2c || srv.HTTP2.MaxConcurrentStreams != c.streams {
			t.Errorf("--http2 %s --worker-connections %d: %s, %d streams", c.http2, c.conns, srv.Protocols, srv.HTTP2.MaxConcurrentStreams)
		}
	}
}

// TestRefreshKeysUnderHandshakes: handshakes on many goroutines look for
// new keys while the arbiter publishes them; the config ends with the last.
func TestRefreshKeysUnderHandshakes(t *testing.T) {
	shared, err := tickets.Create()
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	shared.Publish([]tickets.Key{{1}})
	st := &tlsState{config: &tls.Config{}, tickets: shared}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if err := st.refreshKeys(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 50 {
		shared.Publish([]tickets.Key{{byte(i + 2)}, {byte(i + 1)}})
	}
	wg.Wait()
	if err := st.refreshKeys(); err != nil || st.seq.Load() != shared.Seq() {
		t.Fatalf("seq %d, shared %d, %v", st.seq.Load(), shared.Seq(), err)
	}
}

// TestH2CConnIsNotClosedAsIdle: a plain connection whose first bytes are
// HTTP/2's preface is left to net/http's GOAWAY by a drain; an HTTP/1.1
// one is closed once idle.
func TestH2CConnIsNotClosedAsIdle(t *testing.T) {
	for first, want := range map[string]bool{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": false, "GET / HTTP/1.1\r\n": true} {
		a, b := net.Pipe()
		tc := &trackedConn{BaseConn: frontend.BaseConn{Conn: a}}
		go b.Write([]byte(first))
		buf := make([]byte, 64)
		if _, err := tc.Read(buf); err != nil {
			t.Fatal(err)
		}
		if got := closesWhenIdle(tc, http.StateIdle); got != want {
			t.Errorf("first bytes %q: closesWhenIdle = %v, want %v", first, got, want)
		}
		a.Close()
		b.Close()
	}
}
