package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rule is one raw-socket case of the HTTP rules every worker type keeps
// alike: the bytes a client sends, and the statuses of the responses it
// gets, in order, after which the connection must close (or, with open,
// stay open). Every case but the last request of its bytes ends with
// pipelined, a request that must be answered only if the bytes before it
// are one or more whole requests.
type rule struct {
	name string
	wire string
	want []int
	open bool // the connection stays open after the answers
}

// pipelined follows the request under test on the same connection: served
// only when what comes before it is valid; never served after a refusal,
// which would be a smuggled request.
const pipelined = "GET /pid HTTP/1.1\r\nHost: t\r\n\r\n"

const host = "Host: t\r\n"

// rules are the cases with the default limits. The statuses are RFC 9112's
// and RFC 9110's: 400 for a malformed request or one whose framing is
// ambiguous, 414 for a request line over --limit-request-line, 431 for
// fields over --limit-request-fields or --limit-request-field_size, 417 for
// an unknown expectation, 501 for a transfer coding other than chunked
// before a final chunked (the server implements no other), 505 for another
// major version.
var rules = []rule{
	// Framing: Content-Length and Transfer-Encoding (RFC 9112 section 6).
	{"Content-Length twice, different", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 4\r\nContent-Length: 40\r\n\r\nabcd" + pipelined, []int{400}, false},
	{"Content-Length twice, same", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd" + pipelined, []int{400}, false},
	{"Content-Length list", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 4, 4\r\n\r\nabcd" + pipelined, []int{400}, false},
	{"Content-Length signed", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: +4\r\n\r\nabcd" + pipelined, []int{400}, false},
	{"Content-Length and Transfer-Encoding", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + pipelined, []int{400}, false},
	{"Transfer-Encoding identity", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: identity\r\n\r\n" + pipelined, []int{400}, false},
	{"Transfer-Encoding identity with Content-Length", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: identity\r\nContent-Length: 4\r\n\r\nabcd" + pipelined, []int{400}, false},
	{"Transfer-Encoding chunked, identity", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + pipelined, []int{400}, false},
	{"Transfer-Encoding gzip alone", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\n" + pipelined, []int{400}, false},
	{"Transfer-Encoding chunked twice", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + pipelined, []int{400}, false},
	{"Transfer-Encoding unknown before chunked", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: br, chunked\r\n\r\n0\r\n\r\n" + pipelined, []int{501}, false},
	{"Transfer-Encoding gzip before chunked", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + pipelined, []int{501}, false},
	{"Transfer-Encoding identity before chunked", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: identity, chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n" + pipelined, []int{501}, false},
	{"Transfer-Encoding in HTTP/1.0", "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\nabcd" + pipelined, []int{400}, false},
	{"chunk size negative", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n-1\r\n" + pipelined, []int{400}, false},
	{"chunk size with a space", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n4 \r\nabcd\r\n0\r\n\r\n" + pipelined, []int{400}, false},
	{"chunk extension without a name", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n4;\r\nabcd\r\n0\r\n\r\n" + pipelined, []int{400}, false},
	{"chunk extension, bad value", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n4;a=\"b\r\nabcd\r\n0\r\n\r\n" + pipelined, []int{400}, false},
	{"chunk line ends in a bare LF", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n4\nabcd\r\n0\r\n\r\n" + pipelined, []int{400}, false},
	{"chunk data too long", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n4\r\nabcdX\r\n0\r\n\r\n" + pipelined, []int{400}, false},

	// Field syntax (RFC 9112 section 5, RFC 9110 section 5.5).
	{"obs-fold", "GET /echo HTTP/1.1\r\n" + host + "X-A: a\r\n b\r\n\r\n" + pipelined, []int{400}, false},
	{"space before colon", "GET /echo HTTP/1.1\r\n" + host + "Transfer-Encoding : chunked\r\n\r\n" + pipelined, []int{400}, false},
	{"NUL in a value", "GET /echo HTTP/1.1\r\n" + host + "X-A: a\x00b\r\n\r\n" + pipelined, []int{400}, false},
	{"bare CR in a value", "GET /echo HTTP/1.1\r\n" + host + "X-A: a\rb\r\n\r\n" + pipelined, []int{400}, false},
	{"bare LF ends a field line", "GET /echo HTTP/1.1\r\n" + host + "X-A: a\nX-B: b\r\n\r\n" + pipelined, []int{400}, false},
	{"bare LF ends the request line", "GET /echo HTTP/1.1\n" + host + "\r\n" + pipelined, []int{400}, false},
	{"field without a colon", "GET /echo HTTP/1.1\r\n" + host + "X-A\r\n\r\n" + pipelined, []int{400}, false},
	{"first field indented", "GET /echo HTTP/1.1\r\n X-A: a\r\n" + host + "\r\n" + pipelined, []int{400}, false},
	{"Content-Type twice", "POST /echo HTTP/1.1\r\n" + host + "Content-Type: a\r\nContent-Type: b\r\nContent-Length: 0\r\n\r\n" + pipelined, []int{400}, false},

	// Host (RFC 9112 section 3.2, RFC 3986 section 3.2.2).
	{"HTTP/1.1 without Host", "GET /echo HTTP/1.1\r\n\r\n" + pipelined, []int{400}, false},
	{"two Host fields", "GET /echo HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n" + pipelined, []int{400}, false},
	{"Host with a path", "GET /echo HTTP/1.1\r\nHost: t/u\r\n\r\n" + pipelined, []int{400}, false},
	{"Host with userinfo", "GET /echo HTTP/1.1\r\nHost: u@t\r\n\r\n" + pipelined, []int{400}, false},
	{"Host with a bad port", "GET /echo HTTP/1.1\r\nHost: t:80:80\r\n\r\n" + pipelined, []int{400}, false},
	{"HTTP/1.0 without Host", "GET /echo HTTP/1.0\r\n\r\n" + pipelined, []int{200}, false},
	{"Host an IPv6 literal", "GET /echo HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n", []int{200}, false},

	// The request line (RFC 9112 section 3).
	{"request line over the limit", "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\n" + host + "\r\n" + pipelined, []int{414}, false},
	{"lower-case method", "get /echo HTTP/1.1\r\n" + host + "\r\n" + pipelined, []int{400}, false},
	{"two spaces", "GET  /echo HTTP/1.1\r\n" + host + "\r\n" + pipelined, []int{400}, false},
	{"relative target", "GET echo HTTP/1.1\r\n" + host + "\r\n" + pipelined, []int{400}, false},
	{"asterisk with GET", "GET * HTTP/1.1\r\n" + host + "\r\n" + pipelined, []int{400}, false},
	{"HTTP/2.0", "GET /echo HTTP/2.0\r\n" + host + "\r\n" + pipelined, []int{505}, false},
	{"HTTP/1.10", "GET /echo HTTP/1.10\r\n" + host + "\r\n" + pipelined, []int{400}, false},

	// Limits on fields (defaults: 100 fields of up to 8190 bytes).
	{"101 fields", "GET /echo HTTP/1.1\r\n" + host + strings.Repeat("X-A: b\r\n", 100) + "\r\n" + pipelined, []int{431}, false},
	{"a field over 8190 bytes", "GET /echo HTTP/1.1\r\n" + host + "X-A: " + strings.Repeat("b", 8190) + "\r\n\r\n" + pipelined, []int{431}, false},

	// Expectations (RFC 9110 section 10.1.1).
	{"unknown expectation", "POST /echo HTTP/1.1\r\n" + host + "Expect: 200-ok\r\nContent-Length: 0\r\n\r\n" + pipelined, []int{417}, false},

	// Empty lines before a request line (RFC 9112 section 2.2): up to
	// two are skipped, CRLF or LF, at the start and between requests.
	{"empty line first", "\r\nGET /echo HTTP/1.1\r\n" + host + "\r\n" + pipelined, []int{200, 200}, true},
	{"bare LF first", "\nGET /echo HTTP/1.1\r\n" + host + "\r\n" + pipelined, []int{200, 200}, true},
	{"CRLF after a body", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 2\r\n\r\nhi\r\n" + pipelined, []int{200, 200}, true},
	{"two empty lines between requests", "GET /echo HTTP/1.1\r\n" + host + "\r\n\r\n\r\n" + pipelined, []int{200, 200}, true},
	{"three empty lines", "\r\n\r\n\r\nGET /echo HTTP/1.1\r\n" + host + "\r\n" + pipelined, []int{400}, false},

	// What is valid is served, the same way.
	{"keep-alive", "GET /echo HTTP/1.1\r\n" + host + "\r\n" + pipelined, []int{200, 200}, true},
	{"chunked with extensions and trailers", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n4;a=b;c=\"d\"\r\nabcd\r\n0\r\nX-T: 1\r\n\r\n" + pipelined, []int{200, 200}, true},
	{"absolute-form", "GET http://u:80/echo HTTP/1.1\r\n" + host + "\r\n" + pipelined, []int{200, 200}, true},
	{"Connection: close", "GET /echo HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n" + pipelined, []int{200}, false},
}

// limitRules run with --limit-request-line 100 --limit-request-fields 5
// --limit-request-field_size 200: each limit on every type, by its own
// setting (not one net/http MaxHeaderBytes for all three).
var limitRules = []rule{
	{"request line at the limit", "GET /" + strings.Repeat("a", 100-len("GET / HTTP/1.1")) + " HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n", []int{404}, false},
	{"request line over the limit", "GET /" + strings.Repeat("a", 101-len("GET / HTTP/1.1")) + " HTTP/1.1\r\n" + host + "\r\n" + pipelined, []int{414}, false},
	{"5 fields", "GET /echo HTTP/1.1\r\n" + host + strings.Repeat("X-A: b\r\n", 3) + "Connection: close\r\n\r\n", []int{200}, false},
	{"6 fields", "GET /echo HTTP/1.1\r\n" + host + strings.Repeat("X-A: b\r\n", 5) + "\r\n" + pipelined, []int{431}, false},
	{"a field line of 200 bytes", "GET /echo HTTP/1.1\r\n" + host + "X-A: " + strings.Repeat("b", 200-len("X-A: \r\n")) + "\r\nConnection: close\r\n\r\n", []int{200}, false},
	{"a field line of 201 bytes", "GET /echo HTTP/1.1\r\n" + host + "X-A: " + strings.Repeat("b", 201-len("X-A: \r\n")) + "\r\n\r\n" + pipelined, []int{431}, false},
}

// TestRules sends every rule to every worker type, and wants the same
// answers from each.
//
// One difference is by design: sync serves one request per connection and
// closes after its response, so where others serve a second request on the
// connection, sync answers the first alone and closes. That is every
// case with open set.
func TestRules(t *testing.T) {
	for _, set := range []struct {
		name  string
		rules []rule
		args  []string
	}{
		{"defaults", rules, nil},
		{"limits", limitRules, []string{"--limit-request-line", "100", "--limit-request-fields", "5", "--limit-request-field_size", "200"}},
	} {
		for _, class := range workerClasses {
			t.Run(set.name+"/"+class, func(t *testing.T) {
				s := startClass(t, class, 1, set.args...)
				for _, r := range set.rules {
					want, open := r.want, r.open
					if class == "sync" && open {
						want, open = want[:1], false
					}
					got, closed := exchangeRaw(t, s.Addr, r.wire, len(want), open)
					if fmt.Sprint(got) != fmt.Sprint(want) || closed == open {
						t.Errorf("%s: answered %v, connection closed %v; want %v, closed %v", r.name, got, closed, want, !open)
					}
				}
			})
		}
	}
}

// exchangeRaw writes wire on a new connection and reads n responses, then
// whatever else comes until the server closes, or stays silent for half a
// second where it should stay open (3 s where it should close). It returns
// the statuses and whether the server closed.
func exchangeRaw(t *testing.T, addr, wire string, n int, open bool) (statuses []int, closed bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, wire); err != nil {
		t.Fatalf("write: %v", err)
	}
	br := bufio.NewReader(c)
	for {
		wait := 3 * time.Second
		if len(statuses) >= n && open {
			wait = 500 * time.Millisecond
		}
		c.SetReadDeadline(time.Now().Add(wait))
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return statuses, false
			}
			return statuses, true // EOF or a reset: closed
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		statuses = append(statuses, res.StatusCode)
	}
}
