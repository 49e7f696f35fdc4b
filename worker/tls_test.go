package worker

import "testing"

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
	if err := CanServe("event", true, HTTP2On); err == nil {
		t.Error("event took TLS")
	}
	if err := CanServe("event", false, HTTP2On); err != nil {
		t.Errorf("event without TLS: %v", err)
	}
}
