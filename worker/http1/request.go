package http1

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Header is one header or trailer field. Name is as sent (not
// canonicalised); Value has its leading and trailing SP/HTAB removed, and
// obs-fold continuation lines, when permitted, joined with single spaces.
type Header struct {
	Name, Value []byte
}

// Request is one parsed request. A Request returned by a Parser, and every
// byte slice in it, is owned by that Parser and stays valid only until the
// next call to its Parse, Reset or Release method: the memory is reused for
// the next request. Copy what must outlive that, or convert with ToHTTP.
type Request struct {
	Method string // as sent, or upper-cased if Config.CasefoldMethod
	Target string // raw request-target, e.g. "/a?b#c", "http://h/p", "h:443", "*"

	Major, Minor int

	Headers []Header // in wire order, duplicates kept; see Config.HeaderMap

	// Host is the value of the Host field, nil if there was none.
	Host []byte

	// ContentLength is the declared Content-Length, -1 if there was none
	// (including every chunked request).
	ContentLength int64

	Chunked bool // the body arrived with the chunked transfer coding

	// Close is set when the connection must be closed after the response:
	// "Connection: close", HTTP/1.0 without "Connection: keep-alive", or a
	// transfer coding other than chunked. The Parser discards whatever
	// follows such a request.
	Close bool

	// Expect100 is set for "Expect: 100-continue" in an HTTP/1.1 request.
	// See Parser.NeedContinue.
	Expect100 bool

	// Scheme is "https" or "http" as asserted by a trusted peer through
	// Config.SecureSchemeHeaders, or "" when none was sent or the peer is
	// not trusted.
	Scheme string

	Body     []byte   // the whole body, chunked coding removed
	Trailers []Header // trailer fields of a chunked body
}

// header returns the value of the first field named name (lower case).
func (r *Request) header(name string) ([]byte, bool) {
	for _, h := range r.Headers {
		if equalFold(h.Name, name) {
			return h.Value, true
		}
	}
	return nil, false
}

// ToHTTP converts a parsed request into a *net/http.Request the way
// net/http's own server would populate it: Host promoted out of Header, URL
// from the request-target (absolute-form and CONNECT's authority-form
// included, the fragment split off), Trailer filled, Body readable. Header
// keys are canonicalised, so field order across names is lost.
//
// It does not re-validate anything the Parser accepted; it fails, with
// ErrInvalidRequestLine, only for a target that net/url cannot represent,
// such as a malformed percent-escape. Everything is copied, so the result
// outlives the Parser's next call.
func ToHTTP(r *Request, remoteAddr string) (*http.Request, error) {
	u, err := requestURL(r.Method, r.Target)
	if err != nil {
		return nil, errorf(ErrInvalidRequestLine, "request-target %q: %v", r.Target, err)
	}
	h := make(http.Header, len(r.Headers))
	for _, f := range r.Headers {
		k := http.CanonicalHeaderKey(string(f.Name))
		h[k] = append(h[k], string(f.Value))
	}
	hr := &http.Request{
		Method:        r.Method,
		URL:           u,
		Proto:         "HTTP/" + strconv.Itoa(r.Major) + "." + strconv.Itoa(r.Minor),
		ProtoMajor:    r.Major,
		ProtoMinor:    r.Minor,
		Header:        h,
		ContentLength: r.ContentLength,
		Close:         r.Close,
		Host:          u.Host,
		RemoteAddr:    remoteAddr,
		RequestURI:    r.Target,
		Body:          http.NoBody,
	}
	if hr.Host == "" {
		hr.Host = string(r.Host)
	}
	// net/http's server promotes Host and removes it from the map.
	delete(h, "Host")
	if r.Chunked {
		hr.TransferEncoding = []string{"chunked"}
		hr.ContentLength = -1
	} else if hr.ContentLength < 0 {
		hr.ContentLength = 0
	}
	if len(r.Body) > 0 {
		hr.Body = io.NopCloser(bytes.NewReader(bytes.Clone(r.Body)))
	}
	if len(r.Trailers) > 0 {
		hr.Trailer = make(http.Header, len(r.Trailers))
		for _, f := range r.Trailers {
			k := http.CanonicalHeaderKey(string(f.Name))
			hr.Trailer[k] = append(hr.Trailer[k], string(f.Value))
		}
	}
	return hr, nil
}

// requestURL mirrors net/http's readRequest: url.ParseRequestURI, with
// CONNECT's authority-form parsed as a host. Unlike net/http it splits off a
// "#fragment", which url.ParseRequestURI would otherwise fold into the path
// or query; Gunicorn reports it separately (corpus 005).
func requestURL(method, target string) (*url.URL, error) {
	raw, frag, hasFrag := strings.Cut(target, "#")
	if method == "CONNECT" && !strings.HasPrefix(raw, "/") {
		u, err := url.ParseRequestURI("http://" + raw)
		if err != nil {
			return nil, err
		}
		u.Scheme = ""
		return u, nil
	}
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		return nil, err
	}
	if hasFrag {
		if f, err := url.Parse("#" + frag); err == nil {
			u.Fragment, u.RawFragment = f.Fragment, f.RawFragment
		} else {
			u.Fragment = frag
		}
	}
	return u, nil
}
