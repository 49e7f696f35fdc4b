package frontend

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/corral-server/corral/worker/http1"
)

func TestUwsgiGoodPackets(t *testing.T) {
	block := uwsgiBlock("REQUEST_METHOD", "POST", "REQUEST_URI", "/a/b?x=1&y=%2F", "QUERY_STRING", "x=1&y=%2F",
		"SERVER_PROTOCOL", "HTTP/1.1", "HTTP_HOST", "example.com", "HTTP_X_FOO_BAR", "baz", "CONTENT_TYPE", "text/plain",
		"CONTENT_LENGTH", "5", "REMOTE_ADDR", "192.0.2.7", "REMOTE_PORT", "40000", "UWSGI_SCHEME", "https", "EMPTY", "")
	vars, err := ReadUwsgiVars(bytes.NewReader(append(uwsgiPacket(block), "hello"...)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if vars["REQUEST_METHOD"] != "POST" || vars["EMPTY"] != "" || len(vars) != 12 {
		t.Fatalf("vars %q", vars)
	}
	r, err := RequestFromVars(vars, strings.NewReader("hello"), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	checks := map[string][2]string{
		"method":      {r.Method, "POST"},
		"uri":         {r.RequestURI, "/a/b?x=1&y=%2F"},
		"path":        {r.URL.Path, "/a/b"},
		"query":       {r.URL.RawQuery, "x=1&y=%2F"},
		"proto":       {r.Proto, "HTTP/1.1"},
		"host":        {r.Host, "example.com"},
		"x-foo-bar":   {r.Header.Get("X-Foo-Bar"), "baz"},
		"type":        {r.Header.Get("Content-Type"), "text/plain"},
		"remote":      {r.RemoteAddr, "192.0.2.7:40000"},
		"scheme":      {r.URL.Scheme, "https"},
		"body":        {string(body), "hello"},
		"host header": {r.Header.Get("Host"), ""},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	if r.ContentLength != 5 || r.TLS == nil || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		t.Errorf("length %d TLS %v proto %d.%d", r.ContentLength, r.TLS, r.ProtoMajor, r.ProtoMinor)
	}

	// Without REQUEST_URI: PATH_INFO and QUERY_STRING; without HTTP_HOST:
	// SERVER_NAME; without REMOTE_ADDR: the peer.
	vars = map[string]string{"REQUEST_METHOD": "GET", "PATH_INFO": "/p", "QUERY_STRING": "q=1", "SERVER_NAME": "srv",
		"SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.0"}
	r, err = RequestFromVars(vars, nil, &net.UnixAddr{Name: "@", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if r.RequestURI != "/p?q=1" || r.URL.Path != "/p" || r.Host != "srv:8080" || r.RemoteAddr != "@" || r.Body != http.NoBody || r.TLS != nil || r.URL.Scheme != "" {
		t.Errorf("fallbacks: uri %q path %q host %q remote %q body %v tls %v scheme %q", r.RequestURI, r.URL.Path, r.Host, r.RemoteAddr, r.Body, r.TLS, r.URL.Scheme)
	}
	// An empty block is a packet, but not a request.
	if vars, err := ReadUwsgiVars(bytes.NewReader(uwsgiPacket(nil)), 0); err != nil || len(vars) != 0 {
		t.Errorf("empty block: %v %v", vars, err)
	}
}

func TestUwsgiMalformedPackets(t *testing.T) {
	good := uwsgiBlock("REQUEST_METHOD", "GET")
	over := []byte{0, 0, 0, 0}
	binary.LittleEndian.PutUint16(over[1:], 40000)
	cases := map[string][]byte{
		"short header":           {0, 5},
		"modifier1 not 0":        append([]byte{5, byte(len(good)), 0, 0}, good...),
		"datasize over limit":    append(over, make([]byte, 40000)...),
		"block cut short":        uwsgiPacket(good)[:len(good)],
		"key length overruns":    uwsgiPacket([]byte{200, 0, 'A', 'B'}),
		"value length overruns":  uwsgiPacket(append(uwsgiBlock("K"), 9, 0, 'v')),
		"one stray byte":         uwsgiPacket(append(uwsgiBlock("K", "V"), 1)),
		"key length but no key":  uwsgiPacket([]byte{1}),
		"empty key":              uwsgiPacket(uwsgiBlock("", "V")),
		"datasize over a header": {0, 0xff, 0xff, 0},
	}
	for name, pkt := range cases {
		_, err := ReadUwsgiVars(bytes.NewReader(pkt), 0)
		if !errors.Is(err, http1.ErrUwsgi) {
			t.Errorf("%s: err %v, want http1.ErrUwsgi", name, err)
		}
	}
	if _, err := ReadUwsgiVars(bytes.NewReader(nil), 0); err != io.EOF {
		t.Errorf("no bytes: %v, want io.EOF", err)
	}
	if _, err := ReadUwsgiVars(bytes.NewReader(uwsgiPacket(good)), 4); !errors.Is(err, http1.ErrUwsgi) {
		t.Errorf("a limit of 4 bytes took a %d-byte block", len(good))
	}
	// Variables that parse but do not make a request.
	for name, vars := range map[string]map[string]string{
		"no method":      {"REQUEST_URI": "/"},
		"bad method":     {"REQUEST_METHOD": "GE T"},
		"bad protocol":   {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "SPDY/9"},
		"bad length":     {"REQUEST_METHOD": "GET", "CONTENT_LENGTH": "-1"},
		"bad uri":        {"REQUEST_METHOD": "GET", "REQUEST_URI": "no-slash"},
		"header newline": {"REQUEST_METHOD": "GET", "HTTP_X": "a\r\nb"},
		"bad header":     {"REQUEST_METHOD": "GET", "HTTP_X_(": "a"},
	} {
		if _, err := RequestFromVars(vars, nil, nil); err == nil {
			t.Errorf("%s: RequestFromVars accepted %q", name, vars)
		}
	}
}

func TestRequestFromUwsgi(t *testing.T) {
	block := uwsgiBlock("REQUEST_METHOD", "POST", "REQUEST_URI", "/a?b=1", "SERVER_PROTOCOL", "HTTP/1.1",
		"HTTP_HOST", "example.com", "HTTP_X_A", "1", "HTTP_X_A", "2", "CONTENT_TYPE", "text/plain", "CONTENT_LENGTH", "5",
		"REMOTE_ADDR", "192.0.2.7", "REMOTE_PORT", "40000", "HTTPS", "on")
	wire := append(uwsgiPacket(block), "hello"...)
	p := &http1.UwsgiParser{}
	n, u, err := p.Parse(wire)
	if err != nil || u == nil || n != len(wire) {
		t.Fatalf("Parse: %d %v %v", n, u, err)
	}
	r, err := RequestFromUwsgi(u, &net.UnixAddr{Name: "@", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	// The request outlives the parser's storage.
	p.Parse(uwsgiPacket(uwsgiBlock("CONTENT_LENGTH", "5")))
	p.Parse([]byte("XXXXX"))
	body, _ := io.ReadAll(r.Body)
	if r.Method != "POST" || r.RequestURI != "/a?b=1" || r.URL.RawQuery != "b=1" || r.Proto != "HTTP/1.1" || r.Host != "example.com" ||
		r.Header.Get("X-A") != "2" || r.Header.Get("Content-Type") != "text/plain" || r.ContentLength != 5 ||
		r.RemoteAddr != "192.0.2.7:40000" || r.TLS == nil || r.URL.Scheme != "https" || string(body) != "hello" {
		t.Errorf("%+v, body %q", r, body)
	}
	u = &http1.UwsgiRequest{Vars: []http1.UwsgiVar{{Name: []byte("REQUEST_URI"), Value: []byte("/")}}}
	if _, err := RequestFromUwsgi(u, nil); !errors.Is(err, http1.ErrUwsgi) {
		t.Errorf("no REQUEST_METHOD: %v, want http1.ErrUwsgi", err)
	}
}
