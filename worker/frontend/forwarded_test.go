package frontend

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestAllowList(t *testing.T) {
	a, err := ParseAllowList([]string{"127.0.0.1, ::1", "10.0.0.0/8", ""})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{"127.0.0.1": true, "::1": true, "10.200.3.4": true, "::ffff:10.0.0.1": true,
		"11.0.0.1": false, "127.0.0.2": false, "2001:db8::1": false} {
		if got := a.AllowsIP(netip.MustParseAddr(ip)); got != want {
			t.Errorf("AllowsIP(%s) = %v", ip, got)
		}
	}
	if !a.AllowsAddr(&net.UnixAddr{Name: "@", Net: "unix"}) || !a.AllowsRemote("@") || a.AllowsRemote("11.0.0.1:80") || !a.AllowsRemote("[::1]:80") {
		t.Error("unix peers are always allowed; others by IP")
	}
	if a.String() != "127.0.0.1,::1,10.0.0.0/8" {
		t.Errorf("String %q", a.String())
	}
	if all := MustAllowList("*"); !all.All() || !all.AllowsRemote("198.51.100.1:1") {
		t.Error("* allows all")
	}
	var none AllowList
	if none.AllowsRemote("127.0.0.1:1") || !none.AllowsRemote("@") {
		t.Error("the zero list allows unix peers only")
	}
	for _, bad := range []string{"localhost", "1.2.3.4/33", "fe80::1%eth0", "1.2.3"} {
		if _, err := ParseAllowList([]string{bad}); err == nil {
			t.Errorf("ParseAllowList(%q) succeeded", bad)
		}
	}
}

func TestTrustForwarded(t *testing.T) {
	allow := MustAllowList("127.0.0.1", "::1", "10.0.0.0/8")
	cases := []struct {
		name, remote string
		header       http.Header
		wantRemote   string
		wantScheme   string
		wantTLS      bool
	}{
		{"trusted peer, XFF", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9:0", "", false},
		{"untrusted peer", "198.51.100.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.9"}, "X-Forwarded-Proto": {"https"}}, "198.51.100.1:5000", "", false},
		{"rightmost untrusted", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"1.1.1.1, 203.0.113.9, 10.1.1.1"}}, "203.0.113.9:0", "", false},
		{"several XFF headers", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"1.1.1.1", "203.0.113.9,10.1.1.1"}}, "203.0.113.9:0", "", false},
		{"all trusted: leftmost", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"10.0.0.2, 127.0.0.1"}}, "10.0.0.2:0", "", false},
		{"garbage stops the walk", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.9, bogus"}}, "127.0.0.1:5000", "", false},
		{"port kept", "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"[2001:db8::1]:4711"}}, "[2001:db8::1]:4711", "", false},
		{"proto https", "127.0.0.1:5000", http.Header{"X-Forwarded-Proto": {"https"}}, "127.0.0.1:5000", "https", true},
		{"proto list: last", "127.0.0.1:5000", http.Header{"X-Forwarded-Proto": {"https, http"}}, "127.0.0.1:5000", "http", false},
		{"proto junk ignored", "127.0.0.1:5000", http.Header{"X-Forwarded-Proto": {"gopher"}}, "127.0.0.1:5000", "", false},
		{"Forwarded", "[::1]:5000", http.Header{"Forwarded": {`for=192.0.2.60;proto=https;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"`}}, "[2001:db8:cafe::17]:4711", "", false},
		{"Forwarded proto of the chosen hop", "127.0.0.1:1", http.Header{"Forwarded": {"for=192.0.2.60;proto=https, for=10.0.0.5"}}, "192.0.2.60:0", "https", true},
		{"Forwarded unknown", "127.0.0.1:1", http.Header{"Forwarded": {"for=unknown"}}, "127.0.0.1:1", "", false},
		{"XFF wins over Forwarded", "127.0.0.1:1", http.Header{"X-Forwarded-For": {"203.0.113.1"}, "Forwarded": {"for=192.0.2.60"}}, "203.0.113.1:0", "", false},
		{"unix peer is trusted", "@", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9:0", "", false},
		{"nothing forwarded", "127.0.0.1:5000", http.Header{}, "127.0.0.1:5000", "", false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/x", nil)
		r.RemoteAddr, r.Header = c.remote, c.header
		before := len(r.Header)
		TrustForwarded(r, allow)
		if r.RemoteAddr != c.wantRemote || r.URL.Scheme != c.wantScheme || (r.TLS != nil) != c.wantTLS {
			t.Errorf("%s: remote %q scheme %q TLS %v; want %q %q %v", c.name, r.RemoteAddr, r.URL.Scheme, r.TLS != nil, c.wantRemote, c.wantScheme, c.wantTLS)
		}
		if len(r.Header) != before {
			t.Errorf("%s: headers changed", c.name)
		}
		if c.wantScheme != "" && r.URL.Host != r.Host {
			t.Errorf("%s: URL.Host %q, Host %q", c.name, r.URL.Host, r.Host)
		}
	}
}

// TestTrustForwardedUnixNoAllowList: a unix socket peer is trusted even
// with an empty allow list (forwarded_allow_ips ""), as Gunicorn trusts
// it; a TCP peer then is not.
func TestTrustForwardedUnixNoAllowList(t *testing.T) {
	var none AllowList
	r := httptest.NewRequest("GET", "/x", nil)
	r.RemoteAddr, r.Header = "@", http.Header{"X-Forwarded-For": {"203.0.113.9"}}
	if !TrustForwarded(r, none) || r.RemoteAddr != "203.0.113.9:0" {
		t.Errorf("unix peer, empty allow list: remote %q, want 203.0.113.9:0", r.RemoteAddr)
	}
	r = httptest.NewRequest("GET", "/x", nil)
	r.RemoteAddr, r.Header = "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.9"}}
	if TrustForwarded(r, none) || r.RemoteAddr != "127.0.0.1:5000" {
		t.Errorf("TCP peer, empty allow list: remote %q, want 127.0.0.1:5000", r.RemoteAddr)
	}
}
