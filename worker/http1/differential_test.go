package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// FuzzDifferential parses the same bytes with this package and with
// net/http's ReadRequest, the parser behind the goroutine worker type.
//
//   - Where both accept a request they must agree on its method, target,
//     Host, header and trailer fields, body and whether the connection
//     closes after it: a disagreement there is the shape of request
//     smuggling, a front end and a back end that see different requests
//     in the same bytes.
//   - Where net/http accepts a request this package refuses, the refusal
//     must be one of intendedRefusals, each with its reason.
//   - Behind a Screen, net/http reads exactly the requests this package
//     accepts, or fewer (those it refuses itself), and reads them the
//     same: the goroutine worker's guarantee.
//   - Where this package accepts what net/http refuses (empty lines before
//     a request-line; a field name with "_" is dropped, not refused),
//     nothing is checked: strictness is the other side's business.
//
// Both parse with their defaults; this package sees an untrusted peer.
func FuzzDifferential(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /p?q HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"GET http://b:8/x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\nPragma: no-cache\r\n\r\nGET / HTTP/1.0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	// Gunicorn's corpus, besides testdata/fuzz/FuzzDifferential.
	for _, c := range loadCorpus(f) {
		f.Add(readWire(f, c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			t.Skip() // above every limit that matters here, and slow to minimise
		}
		ours := parseOurs(data)
		limit := len(ours.reqs) + 1
		if ours.closed {
			limit = len(ours.reqs) // the rest is never read
		}
		theirs := parseNetHTTP(bytes.NewReader(data), limit)
		// Behind a Screen, as in the goroutine worker, net/http reads
		// only what both accept, and the same.
		sr := &screenReader{src: bytes.NewReader(data)}
		behind := parseNetHTTP(sr, min(len(ours.reqs)+1, ours.bypass))
		sr.s.Release()
		if len(behind.reqs) > len(ours.reqs) {
			t.Fatalf("behind a Screen, net/http reads request %d, %+v, which http1 refuses: %v", len(ours.reqs), behind.reqs[len(ours.reqs)], ours.err)
		}
		for i := range behind.reqs {
			if !reflect.DeepEqual(ours.reqs[i], behind.reqs[i]) {
				t.Fatalf("request %d: behind a Screen, net/http reads\n%+v\nwhere http1 reads\n%+v", i, behind.reqs[i], ours.reqs[i])
			}
		}
		for i := range min(len(ours.reqs), len(theirs.reqs)) {
			if !reflect.DeepEqual(ours.reqs[i], theirs.reqs[i]) {
				t.Fatalf("request %d: both accept, but disagree:\nhttp1:    %+v\nnet/http: %+v", i, ours.reqs[i], theirs.reqs[i])
			}
		}
		if len(theirs.reqs) <= len(ours.reqs) {
			return
		}
		d := refusal{err: ours.err, req: theirs.http[len(ours.reqs)], read: data[ours.start:min(len(data), ours.off+lineEnd(data[ours.off:]))]}
		if _, ok := d.reason(); !ok {
			t.Fatalf("request %d: net/http accepts %+v, http1 refuses with %v, which is not an intended refusal", len(ours.reqs), theirs.reqs[len(ours.reqs)], ours.err)
		}
	})
}

// refusal is a request net/http accepts and this package refuses.
type refusal struct {
	err  error         // this package's error
	req  *http.Request // net/http's reading of the request
	read []byte        // the request's bytes up to the end of the line where this package stopped
}

// intendedRefusals lists every request net/http's ReadRequest accepts and
// this package refuses on purpose, each case with its reason. Most are
// net/http's leniencies, some of which its server makes up for after
// ReadRequest (noted); the rest are Gunicorn's rules, which corral keeps.
var intendedRefusals = []struct {
	reason string
	match  func(d refusal) bool
}{
	{"a bare LF ends a line for net/http; RFC 9112 section 2.2 lets a recipient accept that, " +
		"but a front end that does not sees one line where net/http sees two", func(d refusal) bool {
		return hasBareLF(d.read)
	}},
	{"obs-fold: RFC 9112 section 5.2 lets a server refuse it (400), and a folded line is one " +
		"field to a proxy that folds and two to one that does not", is(ErrObsoleteFolding)},
	{"whitespace before a field name's colon: RFC 9112 section 5.1 says 400; net/http keeps a " +
		"field whose name ends in a space", func(d refusal) bool {
		return errors.Is(d.err, ErrInvalidHeaderName) && hasKey(d.req, func(k string) bool { return strings.ContainsAny(k, " \t") })
	}},
	{"--limit-request-line, --limit-request-fields, --limit-request-field_size: Gunicorn's " +
		"defaults (4094, 100, 8190); ReadRequest has no limit and net/http's server one " +
		"MaxHeaderBytes of 1 MiB", func(d refusal) bool {
		return errors.Is(d.err, ErrLimitRequestLine) || errors.Is(d.err, ErrLimitRequestHeaders)
	}},
	{"Gunicorn's method rule (3 to 20 characters, no lower case, no \"#\"); net/http takes any token",
		is(ErrInvalidRequestMethod)},
	{"RFC 9112 section 3.2: the request-target's form must suit the method (origin-form, " +
		"absolute-form with an RFC 3986 authority, authority-form only for CONNECT, \"*\" only " +
		"for OPTIONS); net/http parses any URI", func(d refusal) bool {
		return errors.Is(d.err, ErrInvalidRequestLine) && strings.Contains(d.err.Error(), "target")
	}},
	{"a major version other than 1: 505 (RFC 9110 section 15.6.6); net/http's server refuses it " +
		"after ReadRequest", is(ErrHTTPVersionNotSupported)},
	{"RFC 9112 section 3.2: an HTTP/1.1 request without Host, or a Host that is not RFC 3986 " +
		"host [\":\" port], is a 400; net/http's server checks after ReadRequest, but lets " +
		"CONNECT go without Host and any Host of host characters through", func(d refusal) bool {
		return errors.Is(d.err, ErrInvalidHeader) && strings.Contains(d.err.Error(), "Host")
	}},
	{"a repeated Content-Length, even of the same value: Gunicorn's reading of RFC 9112 section " +
		"6.3, no room for a proxy to pick another; net/http merges equal values", msg("more than one Content-Length")},
	{"Content-Length with Transfer-Encoding: RFC 9112 section 6.3 lets a server refuse the " +
		"smuggling shape, and Gunicorn does; net/http drops the Content-Length", msg("both Content-Length and Transfer-Encoding")},
	{"Transfer-Encoding before HTTP/1.1: RFC 9112 section 6.1 calls the framing faulty; " +
		"net/http ignores the field", msg("Transfer-Encoding before HTTP/1.1")},
	{"an empty Transfer-Encoding: a list without its final chunked is no framing a server can " +
		"trust (RFC 9112 section 6.3: 400); net/http refuses it in HTTP/1.1 and ignores it before",
		msg("empty Transfer-Encoding")},
	{"a repeated Content-Type: Gunicorn refuses it, a singleton field that a proxy and an " +
		"application could each read differently", msg("more than one Content-Type")},
	{"an Expect other than 100-continue: 417 (RFC 9110 section 10.1.1), which net/http's server " +
		"answers too after ReadRequest", is(ErrExpectationFailed)},
	{"chunk extensions must follow RFC 9112 section 7.1.1's grammar; net/http cuts at the first " +
		"\";\" and ignores the rest", is(ErrInvalidChunkExtension)},
	{"a chunk-size line is chunk-size [chunk-ext] exactly (Gunicorn's corpus); net/http trims " +
		"trailing whitespace", func(d refusal) bool {
		return errors.Is(d.err, ErrInvalidChunkSize) && strings.Contains(d.err.Error(), "invalid chunk size line")
	}},
	{"trailer fields that would change framing or routing if merged into the header section " +
		"(RFC 9110 section 6.5.1); net/http takes any", msg("is not allowed in trailers")},
}

func (d refusal) reason() (string, bool) {
	for _, r := range intendedRefusals {
		if r.match(d) {
			return r.reason, true
		}
	}
	return "", false
}

func is(sentinel error) func(refusal) bool {
	return func(d refusal) bool { return errors.Is(d.err, sentinel) }
}

func msg(s string) func(refusal) bool {
	return func(d refusal) bool { return d.err != nil && strings.Contains(d.err.Error(), s) }
}

func hasKey(r *http.Request, f func(string) bool) bool {
	for k := range r.Header {
		if f(k) {
			return true
		}
	}
	for k := range r.Trailer {
		if f(k) {
			return true
		}
	}
	return false
}

// hasBareLF reports an LF not preceded by CR.
func hasBareLF(b []byte) bool {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}

// lineEnd returns the length of the line at the start of b including its
// CRLF, or len(b).
func lineEnd(b []byte) int {
	if i := bytes.Index(b, []byte("\r\n")); i >= 0 {
		return i + 2
	}
	return len(b)
}

// diffReq is what both parsers must agree on, in net/http's terms.
type diffReq struct {
	Method, Target, Host string
	Header, Trailer      http.Header
	Chunked              bool
	Body                 string
	Close                bool
}

// parsed is what one parser made of an input.
type parsed struct {
	reqs   []diffReq
	http   []*http.Request // net/http's requests, for intendedRefusals
	err    error           // why the request after reqs was refused, nil at a clean end
	closed bool            // the last request closes the connection
	bypass int             // this package: requests up to the first that a Screen lets switch protocols

	start, off int // this package: where the refused request began, and where parsing stopped
}

// parseOurs runs a default Parser over data and converts each request as the
// event worker does, into one RequestStore (whose URL must be requestURL's).
func parseOurs(data []byte) parsed {
	out := parsed{bypass: math.MaxInt}
	p := &Parser{}
	var store RequestStore
	for {
		n, r, err := p.Parse(data[out.off:])
		out.off += n
		if err != nil {
			out.err = err
			return out
		}
		if r == nil {
			break
		}
		hr, err := store.ToHTTP(context.Background(), r, "")
		if err != nil {
			out.err = err
			return out
		}
		if u, err := requestURL(r.Method, r.Target); err != nil || !reflect.DeepEqual(u, hr.URL) {
			panic(fmt.Sprintf("target %q: RequestStore's URL %#v, requestURL's %#v (%v)", r.Target, hr.URL, u, err))
		}
		out.reqs = append(out.reqs, netView(hr, r.Body))
		if (r.Upgrade || r.Method == "CONNECT") && out.bypass == math.MaxInt {
			out.bypass = len(out.reqs)
		}
		out.start = out.off
		if r.Close {
			out.closed = true
			return out
		}
	}
	out.err = p.EOF()
	return out
}

// parseNetHTTP reads up to limit requests from r with http.ReadRequest,
// each with its whole body.
func parseNetHTTP(r io.Reader, limit int) parsed {
	var out parsed
	br := bufio.NewReader(r)
	for len(out.reqs) < limit {
		req, err := http.ReadRequest(br)
		if err == io.EOF {
			return out
		}
		if err != nil {
			out.err = err
			return out
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			out.err = fmt.Errorf("body: %w", err)
			return out
		}
		out.http = append(out.http, req)
		out.reqs = append(out.reqs, netView(req, body))
	}
	return out
}

// netView takes from r what both parsers must agree on, undoing the
// differences that are a matter of representation, not of meaning:
//
//   - ReadRequest moves Transfer-Encoding out of Header, ToHTTP does not:
//     both say chunked in Chunked instead; likewise ReadRequest turns a
//     Trailer field into keys of Trailer, which the trailers sent fill;
//   - ReadRequest adds "Cache-Control: no-cache" for "Pragma: no-cache"
//     (fixPragmaCacheControl), which ToHTTP leaves to the application;
//   - this package drops fields whose name has "_" (Gunicorn's header_map
//     "drop"), which net/http keeps;
//   - net/http's Trailer may hold keys announced by a Trailer field and
//     never sent, with no value.
func netView(r *http.Request, body []byte) diffReq {
	d := diffReq{
		Method: r.Method, Target: r.RequestURI, Host: r.Host,
		Header:  clean(r.Header),
		Trailer: clean(r.Trailer),
		Chunked: len(r.TransferEncoding) > 0 && r.TransferEncoding[len(r.TransferEncoding)-1] == "chunked",
		Body:    string(body),
		Close:   r.Close,
	}
	delete(d.Header, "Transfer-Encoding")
	delete(d.Header, "Trailer")
	if p := d.Header["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := d.Header["Cache-Control"]; !ok {
			d.Header["Cache-Control"] = []string{"no-cache"}
		}
	}
	return d
}

func clean(h http.Header) http.Header {
	out := http.Header{}
	for k, v := range maps.All(h) {
		if len(v) > 0 && !strings.Contains(k, "_") {
			out[k] = slices.Clone(v) // a RequestStore reuses v
		}
	}
	return out
}

// TestIntendedRefusals runs one example of every intended refusal through
// both parsers, so that each entry is known to match what it describes,
// and checks that it is the only reason that matches.
func TestIntendedRefusals(t *testing.T) {
	const h = "Host: a\r\n"
	examples := map[string]string{
		"bare LF":              "GET / HTTP/1.1\n" + h + "\r\n",
		"obs-fold":             "GET / HTTP/1.1\r\n" + h + "X: a\r\n b\r\n\r\n",
		"space before colon":   "GET / HTTP/1.1\r\n" + h + "X : a\r\n\r\n",
		"limits":               "GET /" + strings.Repeat("a", 4094) + " HTTP/1.1\r\n" + h + "\r\n",
		"method":               "get / HTTP/1.1\r\n" + h + "\r\n",
		"target":               "GET * HTTP/1.1\r\n" + h + "\r\n",
		"version":              "GET / HTTP/2.0\r\n" + h + "\r\n",
		"no Host":              "GET / HTTP/1.1\r\n\r\n",
		"two Content-Length":   "POST / HTTP/1.1\r\n" + h + "Content-Length: 1\r\nContent-Length: 1\r\n\r\na",
		"CL and TE":            "POST / HTTP/1.1\r\n" + h + "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"TE in HTTP/1.0":       "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\na",
		"empty TE":             "POST / HTTP/1.0\r\nTransfer-Encoding:\r\n\r\n",
		"two Content-Type":     "GET / HTTP/1.1\r\n" + h + "Content-Type: a\r\nContent-Type: b\r\n\r\n",
		"Expect":               "GET / HTTP/1.1\r\n" + h + "Expect: x\r\n\r\n",
		"chunk-ext":            "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n1;\r\na\r\n0\r\n\r\n",
		"chunk-size space":     "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n1 \r\na\r\n0\r\n\r\n",
		"forbidden trailer":    "POST / HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\nHost: b\r\n\r\n",
		"Host of host chars":   "GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n",
		"CONNECT without Host": "CONNECT a:1 HTTP/1.1\r\n\r\n",
	}
	matched := map[string]bool{}
	for name, wire := range examples {
		data := []byte(wire)
		ours := parseOurs(data)
		theirs := parseNetHTTP(bytes.NewReader(data), 1)
		if len(ours.reqs) != 0 || len(theirs.reqs) != 1 {
			t.Errorf("%s: http1 accepts %d (%v), net/http %d (%v); want 0 and 1", name, len(ours.reqs), ours.err, len(theirs.reqs), theirs.err)
			continue
		}
		d := refusal{err: ours.err, req: theirs.http[0], read: data[:min(len(data), ours.off+lineEnd(data[ours.off:]))]}
		var reasons []string
		for _, r := range intendedRefusals {
			if r.match(d) {
				reasons = append(reasons, r.reason)
				matched[r.reason] = true
			}
		}
		if len(reasons) != 1 {
			t.Errorf("%s (%v): matches %d reasons: %q", name, ours.err, len(reasons), reasons)
		}
	}
	for _, r := range intendedRefusals {
		if !matched[r.reason] {
			t.Errorf("no example for %q", r.reason)
		}
	}
}
