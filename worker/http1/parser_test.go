package http1

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// parseWire runs wire through a fresh Parser whole and byte by byte, checks
// that both agree, and returns the whole-input outcome.
func parseWire(t *testing.T, cfg *Config, wire string) outcome {
	t.Helper()
	whole := drive(t, &Parser{Config: cfg}, [][]byte{[]byte(wire)})
	var bytewise [][]byte
	for i := range len(wire) {
		bytewise = append(bytewise, []byte(wire[i:i+1]))
	}
	split := drive(t, &Parser{Config: cfg}, bytewise)
	if errClass(whole.err) != errClass(split.err) || !reflect.DeepEqual(strip(whole.reqs), strip(split.reqs)) {
		t.Fatalf("whole and bytewise differ:\n whole %v %+v\n split %v %+v", whole.err, whole.reqs, split.err, split.reqs)
	}
	return whole
}

// strip drops the fields that hold pointers, for comparisons.
func strip(s []snap) []snap {
	out := make([]snap, len(s))
	for i, r := range s {
		r.URL, r.URLErr = nil, nil
		out[i] = r
	}
	return out
}

func wantErr(t *testing.T, cfg *Config, wire string, want error, status int) {
	t.Helper()
	out := parseWire(t, cfg, wire)
	if !errors.Is(out.err, want) {
		t.Fatalf("%q: error %v, want %v", wire, out.err, want)
	}
	if got := Status(out.err); got != status {
		t.Fatalf("%q: Status(%v) = %d, want %d", wire, out.err, got, status)
	}
}

func wantOK(t *testing.T, cfg *Config, wire string, n int) []snap {
	t.Helper()
	out := parseWire(t, cfg, wire)
	if out.err != nil {
		t.Fatalf("%q: %v", wire, out.err)
	}
	if len(out.reqs) != n {
		t.Fatalf("%q: %d requests, want %d", wire, len(out.reqs), n)
	}
	return out.reqs
}

func TestSmuggling(t *testing.T) {
	const post = "POST / HTTP/1.1\r\nHost: a\r\n"
	bad := []struct {
		name, wire string
		err        error
		status     int
	}{
		{"CL duplicate same value", post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", ErrInvalidHeader, 400},
		{"CL duplicate different", post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", ErrInvalidHeader, 400},
		{"CL list", post + "Content-Length: 5,5\r\n\r\nhello", ErrInvalidHeader, 400},
		{"CL plus", post + "Content-Length: +5\r\n\r\nhello", ErrInvalidHeader, 400},
		{"CL minus", post + "Content-Length: -5\r\n\r\nhello", ErrInvalidHeader, 400},
		{"CL hex", post + "Content-Length: 0x5\r\n\r\nhello", ErrInvalidHeader, 400},
		{"CL inner space", post + "Content-Length: 1 0\r\n\r\nhello", ErrInvalidHeader, 400},
		{"CL empty", post + "Content-Length: \r\n\r\n", ErrInvalidHeader, 400},
		{"CL overflow", post + "Content-Length: 99999999999999999999\r\n\r\n", ErrInvalidHeader, 400},
		{"CL unicode digit", post + "Content-Length: \xb2\r\n\r\n", ErrInvalidHeader, 400},
		{"CL and TE", post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ErrInvalidHeader, 400},
		{"TE and CL", post + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", ErrInvalidHeader, 400},
		{"TE chunked, gzip", post + "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", ErrInvalidHeader, 400},
		{"TE chunked twice", post + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", ErrInvalidHeader, 400},
		{"TE chunked twice across fields", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ErrInvalidHeader, 400},
		{"TE gzip only", post + "Transfer-Encoding: gzip\r\n\r\nhello", ErrInvalidHeader, 400},
		{"TE unknown", post + "Transfer-Encoding: br, chunked\r\n\r\n0\r\n\r\n", ErrUnsupportedTransferCoding, 501},
		// chunked takes no parameters: "chunked;x=1" is no final chunked.
		{"TE chunked with params", post + "Transfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n", ErrInvalidHeader, 400},
		// RFC 9112 section 6.3: a final coding other than chunked leaves
		// the length unknown, which is a 400 even for a coding this
		// server does not know; before a final chunked it is a 501.
		{"TE xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", ErrInvalidHeader, 400},
		{"TE identity", post + "Transfer-Encoding: identity\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidHeader, 400},
		{"TE identity with CL", post + "Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", ErrInvalidHeader, 400},
		{"TE chunked, identity", post + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", ErrInvalidHeader, 400},
		{"TE chunked then identity field", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n", ErrInvalidHeader, 400},
		{"TE br", post + "Transfer-Encoding: br\r\n\r\nhello", ErrInvalidHeader, 400},
		{"TE chunked, br", post + "Transfer-Encoding: chunked, br\r\n\r\n0\r\n\r\n", ErrInvalidHeader, 400},
		{"TE gzip;q=1, chunked", post + "Transfer-Encoding: gzip;q=1, chunked\r\n\r\n0\r\n\r\n", ErrUnsupportedTransferCoding, 501},
		{"TE gzip, chunked", post + "Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ErrUnsupportedTransferCoding, 501},
		{"TE identity, chunked", post + "Transfer-Encoding: identity, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ErrUnsupportedTransferCoding, 501},
		{"TE identity then chunked fields", post + "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ErrUnsupportedTransferCoding, 501},
		{"TE unknown and CL", post + "Transfer-Encoding: br, chunked\r\nContent-Length: 1\r\n\r\n0\r\n\r\n", ErrInvalidHeader, 400},
		{"TE identity in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", ErrInvalidHeader, 400},
		{"TE empty", post + "Transfer-Encoding: \r\n\r\n", ErrInvalidHeader, 400},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ErrInvalidHeader, 400},
		{"chunk size plus", post + "Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", ErrInvalidChunkSize, 400},
		{"chunk size 0x", post + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", ErrInvalidChunkSize, 400},
		{"chunk size leading space", post + "Transfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n", ErrInvalidChunkSize, 400},
		{"chunk size trailing space", post + "Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", ErrInvalidChunkSize, 400},
		{"chunk size overflow", post + "Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n", ErrInvalidChunkSize, 400},
		{"chunk size 2^63", post + "Transfer-Encoding: chunked\r\n\r\n8000000000000000\r\n0", ErrInvalidChunkSize, 400},
		{"chunk size empty", post + "Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", ErrInvalidChunkSize, 400},
		{"chunk size bare LF", post + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", ErrInvalidChunkSize, 400},
		{"chunk ext no name", post + "Transfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n0\r\n\r\n", ErrInvalidChunkExtension, 400},
		{"chunk ext bad value", post + "Transfer-Encoding: chunked\r\n\r\n5;a=b c\r\nhello\r\n0\r\n\r\n", ErrInvalidChunkExtension, 400},
		{"chunk ext open quote", post + "Transfer-Encoding: chunked\r\n\r\n5;a=\"b\r\nhello\r\n0\r\n\r\n", ErrInvalidChunkExtension, 400},
		{"chunk ext NUL", post + "Transfer-Encoding: chunked\r\n\r\n5;a=\"\x00\"\r\nhello\r\n0\r\n\r\n", ErrInvalidChunkExtension, 400},
		{"chunk data too long", post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", ErrChunkMissingTerminator, 400},
		{"chunk data bare LF", post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", ErrChunkMissingTerminator, 400},
		{"obs-fold", post + "X: a\r\n b\r\n\r\n", ErrObsoleteFolding, 400},
		{"obs-fold tab", post + "X: a\r\n\tb\r\n\r\n", ErrObsoleteFolding, 400},
		{"space before colon", post + "Content-Length : 0\r\n\r\n", ErrInvalidHeaderName, 400},
		{"tab before colon", post + "Content-Length\t: 0\r\n\r\n", ErrInvalidHeaderName, 400},
		{"leading space first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", ErrInvalidHeaderName, 400},
		{"no colon", post + "Host a\r\n\r\n", ErrInvalidHeader, 400},
		{"empty name", post + ": a\r\n\r\n", ErrInvalidHeader, 400},
		{"NUL in name", post + "X\x00Y: a\r\n\r\n", ErrInvalidHeaderName, 400},
		{"NUL in value", post + "X: a\x00b\r\n\r\n", ErrInvalidHeader, 400},
		{"bare CR in value", post + "X: a\rb\r\n\r\n", ErrInvalidHeader, 400},
		{"bare LF in value", post + "X: a\nb\r\n\r\n", ErrInvalidHeader, 400},
		{"bare LF line end", post + "X: a\nY: b\r\n\r\n", ErrInvalidHeader, 400},
		{"ESC in value", post + "X: a\x1bb\r\n\r\n", ErrInvalidHeader, 400},
		{"bare LF request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", ErrInvalidHTTPVersion, 400},
		{"NUL in target", "GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400},
		{"tab in target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400},
		{"DEL in target", "GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400},
		{"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400},
		{"trailing space", "GET / HTTP/1.1 \r\n\r\n", ErrInvalidHTTPVersion, 400},
		{"lowercase method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestMethod, 400},
		{"relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400},
		{"asterisk GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400},
		{"authority GET", "GET a.example:80 HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400},
		{"CONNECT origin-form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400},
		{"CONNECT no port", "CONNECT a.example HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400},
		{"absolute empty host", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400},
		{"absolute bad host", "GET http://a b/ HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidHTTPVersion, 400},
		{"absolute bracket", "GET http://]a/ HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400},
		{"duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", ErrInvalidHeader, 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", ErrHTTPVersionNotSupported, 505},
		{"HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", ErrInvalidHTTPVersion, 505},
		{"HTTP/1.10", "GET / HTTP/1.10\r\n\r\n", ErrInvalidHTTPVersion, 400},
		{"http/1.1", "GET / http/1.1\r\n\r\n", ErrInvalidHTTPVersion, 400},
		{"forbidden trailer", post + "Transfer-Encoding: chunked\r\n\r\n0\r\nTrailer: x\r\n\r\n", ErrInvalidHeaderName, 400},
		{"bad Expect", post + "Expect: 200-ok\r\nContent-Length: 0\r\n\r\n", ErrExpectationFailed, 417},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, nil, tc.wire, tc.err, tc.status) })
	}
}

// TestSmugglingLookalikes are the requests near those of TestSmuggling
// that are well formed, and their bodies.
func TestSmugglingLookalikes(t *testing.T) {
	const post = "POST / HTTP/1.1\r\nHost: a\r\n"
	good := []struct{ name, wire, body string }{
		{"CL", post + "Content-Length: 5\r\n\r\nhello", "hello"},
		{"CL leading zeros", post + "Content-Length: 005\r\n\r\nhello", "hello"},
		{"CL padded", post + "Content-Length:  5\t\r\n\r\nhello", "hello"},
		{"TE empty elements", post + "Transfer-Encoding: ,chunked,\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "hello"},
		{"TE case", post + "Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "hello"},
		{"chunk ext", post + "Transfer-Encoding: chunked\r\n\r\n5 ; a = \"b \\\" c\" ;d\r\nhello\r\n0;e=f\r\n\r\n", "hello"},
		{"chunk size leading zeros", post + "Transfer-Encoding: chunked\r\n\r\n00000000000000000000005\r\nhello\r\n0\r\n\r\n", "hello"},
		{"chunk hex", post + "Transfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n00\r\n\r\n", "0123456789"},
		{"HTTP/1.2 as 1.1", "POST / HTTP/1.2\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", "x"},
		{"obs-text value", "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", ""},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			r := wantOK(t, nil, tc.wire, 1)[0]
			if r.Body != tc.body {
				t.Fatalf("body %q, want %q", r.Body, tc.body)
			}
		})
	}
}

// TestEmptyLines: RFC 9112 section 2.2 asks a server to ignore at least one
// empty line before a request-line; up to maxBlankLines of them, CRLF or a
// bare LF, are skipped at the start of a connection and between requests.
func TestEmptyLines(t *testing.T) {
	const get = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	const post = "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
	for _, wire := range []string{
		"\r\n" + get,
		"\n" + get,
		"\r\n\n" + get,
		"\r\n\r\n" + get + "\r\n\r\n" + get,
		post + "\r\n" + get, // an old client's CRLF after a body
		post + "\n" + post + "\r\n",
	} {
		wantOK(t, nil, wire, strings.Count(wire, "HTTP/1.1"))
	}
	// A connection that sends nothing but empty lines ends quietly.
	wantOK(t, nil, "\r\n\r\n", 0)
	wantOK(t, nil, get+"\r\n", 1)
	for _, wire := range []string{
		"\r\n\r\n\r\n" + get,
		"\n\n\n" + get,
		get + "\r\n\r\n\r\n" + get,
		post + "\r\n\n\r\n" + get,
	} {
		out := parseWire(t, nil, wire)
		if !errors.Is(out.err, ErrInvalidRequestLine) || Status(out.err) != 400 {
			t.Errorf("%q: error %v, want ErrInvalidRequestLine", wire, out.err)
		}
	}
	// A CR that does not end a line is a bare CR, not an empty line.
	wantErr(t, nil, "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestMethod, 400)
	wantErr(t, nil, " \r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400)
}

// TestHost: RFC 9112 section 3.2 and RFC 3986's host [":" port].
func TestHost(t *testing.T) {
	for _, tc := range []struct{ name, wire string }{
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n"},
		{"HTTP/1.1 absolute-form without Host", "GET http://a/ HTTP/1.1\r\n\r\n"},
		{"CONNECT without Host", "CONNECT a:443 HTTP/1.1\r\n\r\n"},
		{"two Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"},
		{"two Host in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"},
		{"Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"},
		{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"},
		{"Host with path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"},
		{"Host with query", "GET / HTTP/1.1\r\nHost: a?b\r\n\r\n"},
		{"Host with two colons", "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n"},
		{"Host port not digits", "GET / HTTP/1.1\r\nHost: a:http\r\n\r\n"},
		{"Host port too long", "GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n"},
		{"Host bad escape", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n"},
		{"Host unbracketed IPv6", "GET / HTTP/1.1\r\nHost: ::1\r\n\r\n"},
		{"Host bracketed IPv4", "GET / HTTP/1.1\r\nHost: [127.0.0.1]\r\n\r\n"},
		{"Host IPv6 zone", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n"},
		{"Host unclosed bracket", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"},
		{"Host after bracket", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"},
		{"Host UTF-8", "GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n"},
		{"Host invalid with absolute-form", "GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n"},
		{"Host invalid in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a/b\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, nil, tc.wire, ErrInvalidHeader, 400) })
	}
	for _, host := range []string{
		"a", "example.com", "example.com:8080", "EXAMPLE.com.", "127.0.0.1", "127.0.0.1:80",
		"[::1]", "[::1]:443", "[2001:db8::ffff:1.2.3.4]", "a-b_c~d", "%41b", "0.0.0.0=5000",
		"a!$&'()*+,;=", "a:", "",
	} {
		r := wantOK(t, nil, "GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n", 1)[0]
		if r.Host != host {
			t.Errorf("Host %q parsed as %q", host, r.Host)
		}
	}
	// HTTP/1.0 needs no Host.
	wantOK(t, nil, "GET / HTTP/1.0\r\n\r\n", 1)
	// An absolute-form target wins over Host (RFC 9112 section 3.2.2).
	hr, err := ToHTTP(context.Background(), mustParse(t, "GET http://b.example:81/p HTTP/1.1\r\nHost: a.example\r\n\r\n"), "")
	if err != nil || hr.Host != "b.example:81" || hr.URL.Host != "b.example:81" {
		t.Fatalf("absolute-form: %v, Host %q, URL.Host %q", err, hr.Host, hr.URL.Host)
	}
}

// TestHostRemembered: the parser checks a kept connection's Host once, and
// a different Host, on the same connection or the next, is checked again.
func TestHostRemembered(t *testing.T) {
	p := &Parser{}
	var store RequestStore
	parse := func(host string) error {
		wire := []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
		n, r, err := p.Parse(wire)
		if err == nil && (r == nil || n != len(wire) || r.Host == nil || string(r.Host) != host) {
			t.Fatalf("Host %q: n=%d of %d, request %v", host, n, len(wire), r)
		}
		if err == nil {
			if hr, err := store.ToHTTP(context.Background(), r, ""); err != nil || hr.Host != host {
				t.Fatalf("Host %q: ToHTTP gives %q, %v", host, hr.Host, err)
			}
		}
		return err
	}
	for _, host := range []string{"a.example:8000", "a.example:8000", "b.example", "a.example:8000", "a.example:8000"} {
		if err := parse(host); err != nil {
			t.Fatalf("valid Host %q: %v", host, err)
		}
	}
	if p.okHost != "a.example:8000" {
		t.Fatalf("okHost = %q after its second request in a row", p.okHost)
	}
	if err := parse("a.example:8000/x"); err == nil {
		t.Fatal("an invalid Host after a valid one was accepted")
	}
	p.Reset()
	if err := parse("a.example:8000"); err != nil {
		t.Fatalf("remembered Host on the next connection: %v", err)
	}
	if err := parse("a example"); err == nil {
		t.Fatal("an invalid Host on the next connection was accepted")
	}
	first := func(wire string) float64 {
		return testing.AllocsPerRun(100, func() { new(Parser).Parse([]byte(wire)) })
	}
	without, with := first("GET / HTTP/1.0\r\nX-A: b.example\r\n\r\n"), first("GET / HTTP/1.0\r\nHost: b.example\r\n\r\n")
	if with != without {
		t.Errorf("a connection's only request: %v allocations with a Host, %v without", with, without)
	}
}

func TestPipelining(t *testing.T) {
	wire := "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" +
		"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ndef\r\n0\r\nX-T: 1\r\n\r\n" +
		"GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" +
		"GET /ignored HTTP/1.1\r\nHost: a\r\n\r\n"
	reqs := wantOK(t, nil, wire, 4)
	for i, want := range []string{"/1", "/2", "/3", "/4"} {
		if reqs[i].Target != want {
			t.Errorf("request %d: target %q, want %q", i, reqs[i].Target, want)
		}
	}
	if reqs[1].Body != "abc" || reqs[2].Body != "def" || !reflect.DeepEqual(reqs[2].Trailers, [][2]string{{"X-T", "1"}}) {
		t.Errorf("bodies %q %q trailers %q", reqs[1].Body, reqs[2].Body, reqs[2].Trailers)
	}
	if reqs[2].Close || !reqs[3].Close {
		t.Errorf("Close = %v, %v", reqs[2].Close, reqs[3].Close)
	}

	// Each Parse call returns one request and consumes exactly its bytes.
	p := &Parser{}
	buf := []byte(wire)
	var ends []int
	off := 0
	for {
		n, req, err := p.Parse(buf[off:])
		if err != nil {
			t.Fatal(err)
		}
		off += n
		if req == nil {
			break
		}
		ends = append(ends, off)
	}
	if len(ends) != 4 || ends[0] != len("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n") || off != len(wire) {
		t.Fatalf("request ends %v, consumed %d of %d", ends, off, len(wire))
	}
	if err := p.EOF(); err != nil {
		t.Fatalf("EOF after a closing request: %v", err)
	}

	// Random splits give the same result as whole input.
	for seed := range uint64(50) {
		split := drive(t, &Parser{}, randomSplit(newRand(seed), []byte(wire), 13))
		if split.err != nil || !reflect.DeepEqual(strip(split.reqs), strip(reqs)) {
			t.Fatalf("seed %d: %v %+v", seed, split.err, split.reqs)
		}
	}
}

func TestPartialLinesNotConsumed(t *testing.T) {
	p := &Parser{}
	n, req, err := p.Parse([]byte("GET /x HTTP/1.1\r\nX: 1\r\nHo"))
	if err != nil || req != nil || n != len("GET /x HTTP/1.1\r\nX: 1\r\n") {
		t.Fatalf("Parse = %d, %v, %v", n, req, err)
	}
	n, req, err = p.Parse([]byte("Host: a\r\n\r\n"))
	if err != nil || req == nil || n != len("Host: a\r\n\r\n") || string(req.Host) != "a" {
		t.Fatalf("Parse = %d, %v, %v", n, req, err)
	}
}

func TestEOF(t *testing.T) {
	for _, tc := range []struct {
		wire string
		err  error
	}{
		{"", nil},
		{"G", ErrNoMoreData},
		{"GET / HTTP/1.1\r\nHost: a\r\n", ErrNoMoreData},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", nil},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET", ErrNoMoreData},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab", ErrNoMoreData},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", ErrNoMoreData},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", ErrChunkMissingTerminator},
		{"GET / HTTP/1.0\r\n\r\nGARBAGE", nil},
	} {
		out := parseWire(t, nil, tc.wire)
		if !errors.Is(out.err, tc.err) || (tc.err == nil) != (out.err == nil) {
			t.Errorf("%q: EOF error %v, want %v", tc.wire, out.err, tc.err)
		}
		if tc.err != nil && Status(out.err) != 0 {
			t.Errorf("%q: Status(%v) = %d, want 0", tc.wire, out.err, Status(out.err))
		}
	}
}

func TestExpectContinue(t *testing.T) {
	p := &Parser{}
	head := "PUT /up HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n"
	n, req, err := p.Parse([]byte(head))
	if err != nil || req != nil || n != len(head) {
		t.Fatalf("Parse = %d, %v, %v", n, req, err)
	}
	if !p.NeedContinue() {
		t.Fatal("NeedContinue() = false after the head")
	}
	if h := p.Head(); h == nil || h.Target != "/up" || !h.Expect100 || h.ContentLength != 5 {
		t.Fatalf("Head() = %+v", h)
	}
	p.ContinueSent()
	if p.NeedContinue() {
		t.Fatal("NeedContinue() = true after ContinueSent")
	}
	_, req, err = p.Parse([]byte("hello"))
	if err != nil || req == nil || string(req.Body) != "hello" || !req.Expect100 {
		t.Fatalf("Parse = %v, %v", req, err)
	}
	if p.NeedContinue() || p.Head() != nil {
		t.Fatal("NeedContinue or Head after the request completed")
	}

	// A body byte already sent means the client did not wait.
	p = &Parser{}
	p.Parse([]byte("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n5"))
	if p.NeedContinue() {
		t.Fatal("NeedContinue() with body bytes pending")
	}

	// No body, nothing to wait for.
	p = &Parser{}
	if _, req, _ := p.Parse([]byte("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n")); req == nil || p.NeedContinue() {
		t.Errorf("empty body: request %v, NeedContinue %v", req, p.NeedContinue())
	}
	// HTTP/1.0 ignores the expectation (RFC 9110 section 10.1.1).
	p = &Parser{}
	p.Parse([]byte("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"))
	if p.NeedContinue() || p.Head().Expect100 {
		t.Error("HTTP/1.0: NeedContinue or Expect100 set")
	}

	// An oversized declared body fails before the client sends it.
	p = &Parser{Config: &Config{Limits: Limits{MaxBody: 4}}}
	_, _, err = p.Parse([]byte(head))
	if !errors.Is(err, ErrBodyTooLarge) || Status(err) != 413 {
		t.Fatalf("err = %v, want ErrBodyTooLarge", err)
	}
}

func TestLimits(t *testing.T) {
	cfg := func(l Limits) *Config { c := DefaultConfig(); c.Limits = l; return c }
	long := strings.Repeat("a", 100)

	// Request line: the limit excludes CRLF.
	line := "GET /" + long + " HTTP/1.1" // 114 bytes
	wantOK(t, cfg(Limits{RequestLine: len(line)}), line+"\r\nHost: a\r\n\r\n", 1)
	wantErr(t, cfg(Limits{RequestLine: len(line) - 1}), line+"\r\n\r\n", ErrLimitRequestLine, 414)
	wantErr(t, cfg(Limits{RequestLine: 20}), line, ErrLimitRequestLine, 414) // no CRLF yet
	wantOK(t, cfg(Limits{RequestLine: 0}), "GET /"+strings.Repeat("a", 9000)+" HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	wantErr(t, cfg(Limits{RequestLine: 100000}), "GET /"+strings.Repeat("a", 8200)+" HTTP/1.1\r\nHost: a\r\n\r\n", ErrLimitRequestLine, 414)

	// Field size counts name, colon, value and CRLF.
	f := "X: " + long // 103 bytes + CRLF
	wantOK(t, cfg(Limits{FieldSize: 105}), "GET / HTTP/1.1\r\nHost: a\r\n"+f+"\r\n\r\n", 1)
	wantErr(t, cfg(Limits{FieldSize: 104}), "GET / HTTP/1.1\r\nHost: a\r\n"+f+"\r\n\r\n", ErrLimitRequestHeaders, 431)
	wantErr(t, cfg(Limits{FieldSize: 50}), "GET / HTTP/1.1\r\nHost: a\r\n"+f, ErrLimitRequestHeaders, 431)

	// Field count: dropped fields do not count, kept ones do.
	three := "GET / HTTP/1.1\r\nHost: a\r\nB: 2\r\nC: 3\r\n\r\n"
	wantOK(t, cfg(Limits{Fields: 3}), three, 1)
	wantErr(t, cfg(Limits{Fields: 2}), three, ErrLimitRequestHeaders, 431)
	wantOK(t, cfg(Limits{Fields: 2}), "GET / HTTP/1.1\r\nHost: a\r\nX_Y: 2\r\nC: 3\r\n\r\n", 1)

	// ... but their bytes count towards the section.
	var many strings.Builder
	many.WriteString("GET / HTTP/1.1\r\nHost: a\r\n")
	for range 200 {
		many.WriteString("X_Y: " + long + "\r\n")
	}
	wantErr(t, cfg(Limits{Fields: 2, FieldSize: 200}), many.String()+"\r\n", ErrLimitRequestHeaders, 431)

	// Body, declared and chunked.
	wantOK(t, cfg(Limits{MaxBody: 5}), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 1)
	wantErr(t, cfg(Limits{MaxBody: 4}), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", ErrBodyTooLarge, 413)
	wantOK(t, cfg(Limits{MaxBody: 5}), "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n", 1)
	wantErr(t, cfg(Limits{MaxBody: 4}), "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n", ErrBodyTooLarge, 413)

	// Chunk-size lines are bounded by FieldSize.
	wantErr(t, cfg(Limits{FieldSize: 40}), "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;"+long, ErrInvalidChunkSize, 400)

	// Normalisation.
	if n := (Limits{RequestLine: 9000, Fields: -1, FieldSize: 0}).normalize(); n.requestLine != 8190 || n.fields != 32768 || n.fieldSize != 8190 {
		t.Errorf("normalize = %+v", n)
	}
	if d := DefaultLimits(); d != (Limits{RequestLine: 4094, Fields: 100, FieldSize: 8190}) {
		t.Errorf("DefaultLimits() = %+v", d)
	}
}

func TestChunkedTrailers(t *testing.T) {
	wire := "POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
		"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: abc \r\nX_Dropped: 1\r\nVary: *\r\n\r\n"
	r := wantOK(t, nil, wire, 1)[0]
	if r.Body != "hello world" || !r.Chunked || r.ContentLength != -1 {
		t.Fatalf("body %q chunked %v length %d", r.Body, r.Chunked, r.ContentLength)
	}
	if want := [][2]string{{"X-Sum", "abc"}, {"Vary", "*"}}; !reflect.DeepEqual(r.Trailers, want) {
		t.Fatalf("trailers %q, want %q", r.Trailers, want)
	}

	hr, err := ToHTTP(context.Background(), mustParse(t, wire), "10.0.0.1:5")
	if err != nil {
		t.Fatal(err)
	}
	if hr.Trailer.Get("X-Sum") != "abc" || hr.ContentLength != -1 || len(hr.TransferEncoding) != 1 {
		t.Fatalf("ToHTTP trailer %v length %d TE %v", hr.Trailer, hr.ContentLength, hr.TransferEncoding)
	}
	if b, _ := io.ReadAll(hr.Body); string(b) != "hello world" {
		t.Fatalf("ToHTTP body %q", b)
	}
}

func mustParse(t *testing.T, wire string) *Request {
	t.Helper()
	p := &Parser{}
	_, req, err := p.Parse([]byte(wire))
	if err != nil || req == nil {
		t.Fatalf("Parse(%q) = %v, %v", wire, req, err)
	}
	return req
}

func TestKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		wire  string
		close bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nConnection: close\r\n\r\n", true},
		{"GET / HTTP/1.0\r\n\r\n", true},
		{"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", false},
		{"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", true},
	} {
		if r := wantOK(t, nil, tc.wire, 1)[0]; r.Close != tc.close {
			t.Errorf("%q: Close = %v, want %v", tc.wire, r.Close, tc.close)
		}
	}
	// HTTP/1.0 keep-alive pipelines; without it the rest is ignored.
	wantOK(t, nil, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\nGET /c HTTP/1.0\r\n\r\n", 2)
}

func TestConfigSwitches(t *testing.T) {
	c := DefaultConfig()
	c.PermitObsoleteFolding = true
	r := wantOK(t, c, "GET / HTTP/1.1\r\nX: a\r\n  b \r\n\tc\r\nHost: a\r\n\r\n", 1)[0]
	if r.Headers[0][1] != "a b c" {
		t.Errorf("folded value %q", r.Headers[0][1])
	}

	c = DefaultConfig()
	c.HeaderMap = HeaderMapDangerous
	if r := wantOK(t, c, "GET / HTTP/1.1\r\nHost: a\r\nX_Y: 1\r\n\r\n", 1)[0]; len(r.Headers) != 2 {
		t.Errorf("dangerous: headers %q", r.Headers)
	}
	c.HeaderMap = HeaderMapRefuse
	wantErr(t, c, "GET / HTTP/1.1\r\nHost: a\r\nX_Y: 1\r\n\r\n", ErrInvalidHeaderName, 400)

	c = DefaultConfig()
	c.PermitUnconventionalVersion = true
	if r := wantOK(t, c, "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 1)[0]; r.Major != 2 {
		t.Errorf("version %d.%d", r.Major, r.Minor)
	}

	c = DefaultConfig()
	c.PermitUnconventionalMethod = true
	c.CasefoldMethod = true
	if r := wantOK(t, c, "get / HTTP/1.1\r\nHost: a\r\n\r\n", 1)[0]; r.Method != "GET" {
		t.Errorf("method %q", r.Method)
	}
}

func TestSchemeHeaders(t *testing.T) {
	run := func(trusted bool, wire string) (*Request, error) {
		p := &Parser{TrustedPeer: trusted}
		_, req, err := p.Parse([]byte(wire))
		return req, err
	}
	r, err := run(true, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: on\r\n\r\n")
	if err != nil || r.Scheme != "https" {
		t.Fatalf("agreeing headers: %v, scheme %q", err, r.Scheme)
	}
	_, err = run(true, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\n\r\n")
	if !errors.Is(err, ErrInvalidSchemeHeaders) {
		t.Fatalf("conflict: %v", err)
	}
	r, err = run(false, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n\r\n")
	if err != nil || r.Scheme != "" {
		t.Fatalf("untrusted peer: %v, scheme %q", err, r.Scheme)
	}
	r, err = run(true, "GET / HTTP/1.1\r\nSCRIPT_NAME: /app\r\nX_Other: 1\r\nHost: a\r\n\r\n")
	if err != nil || len(r.Headers) != 2 || string(r.Headers[0].Name) != "SCRIPT_NAME" {
		t.Fatalf("forwarder headers: %v, %q", err, r.Headers)
	}

	for _, tc := range []struct {
		allow, addr string
		want        bool
	}{
		{"127.0.0.1,::1", "127.0.0.1:80", true},
		{"127.0.0.1,::1", "[::1]:80", true},
		{"127.0.0.1,::1", "10.0.0.1:80", false},
		{"10.0.0.0/8", "10.1.2.3:80", true},
		{"*", "192.0.2.1:80", true},
		{"127.0.0.1", "", true},
		{"127.0.0.1", "[::ffff:127.0.0.1]:80", true},
	} {
		if got := TrustedPeer(tc.allow, tc.addr); got != tc.want {
			t.Errorf("TrustedPeer(%q, %q) = %v", tc.allow, tc.addr, got)
		}
	}
}

// TestProxyProtocol is about when a Parser looks for a PROXY preamble; what
// a preamble may say is TestParseProxy's, which runs a Parser too.
func TestProxyProtocol(t *testing.T) {
	c := DefaultConfig()
	c.ProxyProtocol = ProxyAuto
	// The preamble is optional, even when the request starts like one.
	for _, wire := range []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "PROXYX / HTTP/1.1\r\nHost: a\r\n\r\n"} {
		wantOK(t, c, wire, 1)
	}
	// Empty lines may follow a preamble, not precede one.
	wantOK(t, c, "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	wantOK(t, c, "PROXY TCP4 1.2.3.4 1.2.3.4 1 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 1)
	wantErr(t, c, "\r\nPROXY TCP4 1.2.3.4 1.2.3.4 1 1\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400)
	// Only before the first request, and not at all when off.
	wantErr(t, c, "GET / HTTP/1.1\r\nHost: a\r\n\r\nPROXY TCP4 1.2.3.4 1.2.3.4 1 1\r\n", ErrInvalidRequestLine, 400)
	wantErr(t, nil, "PROXY TCP4 1.2.3.4 1.2.3.4 1 1\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidRequestLine, 400)
	if p := (&Parser{}); func() bool { _, ok := p.Proxy(); return ok }() {
		t.Error("Proxy() reports a preamble on a fresh Parser")
	}
}

func TestToHTTP(t *testing.T) {
	req := mustParse(t, "POST http://user@example.com:8080/a%20b?q=1#frag HTTP/1.1\r\nHost: ignored\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 2\r\n\r\nhi")
	hr, err := ToHTTP(context.Background(), req, "192.0.2.1:99")
	if err != nil {
		t.Fatal(err)
	}
	if hr.Method != "POST" || hr.Host != "example.com:8080" || hr.URL.Path != "/a b" || hr.URL.RawQuery != "q=1" ||
		hr.URL.Fragment != "frag" || hr.URL.Scheme != "http" || hr.RequestURI != req.Target || hr.RemoteAddr != "192.0.2.1:99" {
		t.Errorf("ToHTTP = %+v, URL %+v", hr, hr.URL)
	}
	if hr.Proto != "HTTP/1.1" || hr.ProtoMajor != 1 || hr.ProtoMinor != 1 || hr.ContentLength != 2 || hr.Close {
		t.Errorf("proto %q %d.%d length %d close %v", hr.Proto, hr.ProtoMajor, hr.ProtoMinor, hr.ContentLength, hr.Close)
	}
	if got := hr.Header["X-A"]; !reflect.DeepEqual(got, []string{"1", "2"}) || hr.Header.Get("Host") != "" {
		t.Errorf("header %v", hr.Header)
	}
	body := req.Body
	copy(body, "XX") // the Parser may reuse its memory; ToHTTP must have copied
	if b, _ := io.ReadAll(hr.Body); string(b) != "hi" {
		t.Errorf("body %q", b)
	}

	hr, err = ToHTTP(context.Background(), mustParse(t, "GET /x HTTP/1.0\r\nHost: h.example\r\n\r\n"), "")
	if err != nil || hr.Host != "h.example" || !hr.Close || hr.Body != nil && hr.ContentLength != 0 {
		t.Errorf("origin-form: %v %+v", err, hr)
	}
	hr, err = ToHTTP(context.Background(), mustParse(t, "CONNECT [::1]:443 HTTP/1.1\r\nHost: a\r\n\r\n"), "")
	if err != nil || hr.Host != "[::1]:443" || hr.URL.Host != "[::1]:443" {
		t.Errorf("CONNECT: %v %+v", err, hr)
	}
	if _, err := ToHTTP(context.Background(), mustParse(t, "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n"), ""); !errors.Is(err, ErrInvalidRequestLine) {
		t.Errorf("bad escape: %v", err)
	}
}

func TestReuseAndRelease(t *testing.T) {
	p := NewParser(DefaultLimits())
	wire := []byte("GET /same HTTP/1.1\r\nHost: a\r\n\r\n")
	_, r1, _ := p.Parse(wire)
	t1 := r1.Target
	_, r2, _ := p.Parse(wire)
	if r1 != r2 || r2.Target != t1 {
		t.Fatal("second request did not reuse the Request")
	}
	p.Release()
	if p.s != nil {
		t.Fatal("Release kept the storage")
	}
	_, r3, err := p.Parse(wire)
	if err != nil || r3 == nil || string(r3.Host) != "a" {
		t.Fatalf("Parse after Release: %v %v", r3, err)
	}

	// Release mid-request keeps the state.
	p.Parse([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab"))
	p.Release()
	if _, r, err := p.Parse([]byte("cd")); err != nil || r == nil || string(r.Body) != "abcd" {
		t.Fatalf("Parse after mid-request Release: %v %v", r, err)
	}

	// Errors are sticky until Reset.
	_, _, err = p.Parse([]byte("BAD\r\n"))
	if _, _, err2 := p.Parse([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")); err == nil || err2 != err {
		t.Fatalf("errors not sticky: %v, %v", err, err2)
	}
	p.Reset()
	if _, r, err := p.Parse(wire); err != nil || r == nil {
		t.Fatalf("Parse after Reset: %v %v", r, err)
	}
}

// TestReleaseCopiesACarvedTargetOnce: Release copies the last target out
// of the block it drops, and keeps a target that is already a string of
// its own, so that a connection released after every request (the
// goroutine worker's, the event loop's) copies a repeated target once.
func TestReleaseCopiesACarvedTargetOnce(t *testing.T) {
	p := NewParser(DefaultLimits())
	p.Parse([]byte("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")) // the first: a string of its own
	p.Parse([]byte("GET /b HTTP/1.1\r\nHost: a\r\n\r\n")) // the next: carved from a block
	block := p.strs
	if !inBlock(p.lastTarget, block) {
		t.Fatal("the second target was not carved from the block")
	}
	p.Release()
	if p.lastTarget != "/b" || inBlock(p.lastTarget, block) {
		t.Fatalf("after Release the target is %q, in the dropped block: %v", p.lastTarget, inBlock(p.lastTarget, block))
	}
	copied := unsafe.StringData(p.lastTarget)
	for range 3 {
		if _, r, err := p.Parse([]byte("GET /b HTTP/1.1\r\nHost: a\r\n\r\n")); err != nil || r.Target != "/b" {
			t.Fatalf("Parse after Release: %v, %v", r, err)
		}
		p.Release()
		if unsafe.StringData(p.lastTarget) != copied {
			t.Fatal("Release copied a target that was already its own")
		}
	}
}

func TestRequestOwnsNoCallerMemory(t *testing.T) {
	buf := []byte("POST /p HTTP/1.1\r\nName: value\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
	p := &Parser{}
	_, r, err := p.Parse(buf)
	if err != nil || r == nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 'Z'
	}
	if string(r.Headers[0].Name) != "Name" || string(r.Headers[0].Value) != "value" || string(r.Body) != "abc" || r.Target != "/p" {
		t.Fatalf("request aliases the caller's buffer: %+v", r)
	}
	// Appending to a returned slice must not clobber its neighbour.
	_ = append(r.Headers[0].Name, "XXXXX"...)
	if !bytes.Equal(r.Headers[0].Value, []byte("value")) {
		t.Fatalf("append to Name overwrote Value: %q", r.Headers[0].Value)
	}
}

func TestAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts are not meaningful here")
	}
	p := &Parser{}
	wire := []byte(browserGET)
	p.Parse(wire)
	allocs := testing.AllocsPerRun(100, func() {
		if _, r, err := p.Parse(wire); r == nil || err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per request on the reuse path, want 0", allocs)
	}
}

// TestCanonicalKey checks the allocation-free path against net/http's own
// canonicalisation.
func TestCanonicalKey(t *testing.T) {
	for _, name := range []string{
		"host", "HOST", "Host", "content-length", "CONTENT-type", "x-forwarded-for", "X-Custom-Thing",
		"x-custom-thing", "a", "-", "a-", "-a", "x_y", "foo.bar", "é", "accept-encoding2",
		"x-a-very-long-header-name-past-the-buffer", "X-123-abc", "sec-ch-ua-mobile",
	} {
		var block []byte
		if got, want := CanonicalKeyIn([]byte(name), &block), http.CanonicalHeaderKey(name); got != want {
			t.Errorf("CanonicalKeyIn(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestToHTTPHeaders checks repeated fields, Host's removal, and that the
// shared backing arrays do not let one key's values clobber another's.
func TestToHTTPHeaders(t *testing.T) {
	wire := "GET / HTTP/1.1\r\nHost: h\r\naccept: a\r\nX-One: 1\r\nAccept: b\r\nX-Two: 2\r\n\r\n"
	hr, err := ToHTTP(context.Background(), mustParse(t, wire), "")
	if err != nil {
		t.Fatal(err)
	}
	want := http.Header{"Accept": {"a", "b"}, "X-One": {"1"}, "X-Two": {"2"}}
	if !reflect.DeepEqual(hr.Header, want) {
		t.Fatalf("Header = %v, want %v", hr.Header, want)
	}
	hr.Header["X-One"] = append(hr.Header["X-One"], "more")
	if hr.Header.Get("X-Two") != "2" {
		t.Fatalf("appending to X-One changed X-Two: %v", hr.Header)
	}
	if hr.Host != "h" || hr.Proto != "HTTP/1.1" {
		t.Fatalf("Host %q, Proto %q", hr.Host, hr.Proto)
	}
}

// TestParserIdle: a parser is idle at a request boundary and once it
// failed, not while a request is partly parsed.
func TestParserIdle(t *testing.T) {
	p := &Parser{}
	if !p.Idle() {
		t.Fatal("a new parser is not idle")
	}
	if _, req, err := p.Parse([]byte("GET / HTTP/1.1\r\nHo")); req != nil || err != nil || p.Idle() {
		t.Fatalf("half a head: request %v, error %v, idle %v; want none, none, false", req, err, p.Idle())
	}
	p.Reset()
	if _, req, err := p.Parse([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n")); req != nil || err != nil || p.Idle() {
		t.Fatalf("a head, its body to come: request %v, error %v, idle %v; want none, none, false", req, err, p.Idle())
	}
	p.Reset()
	if _, req, err := p.Parse([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); req == nil || err != nil || !p.Idle() {
		t.Fatalf("a whole request: request %v, error %v, idle %v; want one, none, true", req, err, p.Idle())
	}
	if _, _, err := p.Parse([]byte("GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")); err == nil || !p.Idle() {
		t.Fatalf("a bad request: error %v, idle %v; want an error, true", err, p.Idle())
	}
	p.Reset()
	if _, req, err := p.Parse([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); req == nil || err != nil {
		t.Fatalf("after Reset: request %v, error %v; want one, none", req, err)
	}
}
