package http1

import (
	"bytes"
	"context"
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

	// Blank is how many bytes of empty lines before the request-line the
	// Parser skipped (RFC 9112 section 2.2): a Screen drops them.
	Blank int

	Headers []Header // in wire order, duplicates kept; see Config.HeaderMap

	// Host is the value of the Host field, nil if there was none (only
	// possible before HTTP/1.1). An absolute-form Target names the host
	// too, and wins: ToHTTP takes it from there (RFC 9112 section 3.2.2).
	Host []byte

	// ContentLength is the declared Content-Length, -1 if there was none
	// (including every chunked request).
	ContentLength int64

	Chunked bool // the body arrived with the chunked transfer coding

	// Close is set when the connection must be closed after the response:
	// "Connection: close", or HTTP/1.0 without "Connection: keep-alive".
	// The Parser discards whatever follows such a request.
	Close bool

	// Upgrade is set when the request has an Upgrade field: it asks to
	// switch protocols, and if the handler agrees, what follows on the
	// connection is no longer HTTP/1.1.
	Upgrade bool

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

// ToHTTP converts a parsed request into a *net/http.Request with context
// ctx, the way net/http's own server would populate it: Host promoted out
// of Header, URL from the request-target (absolute-form and CONNECT's
// authority-form included, the fragment split off), Trailer filled, Body
// readable. Header keys are canonicalised, so field order across names is
// lost.
//
// It does not re-validate anything the Parser accepted; it fails, with
// ErrInvalidRequestLine, only for a target that net/url cannot represent,
// such as a malformed percent-escape. Everything is copied, so the result
// outlives the Parser's next call.
func ToHTTP(ctx context.Context, r *Request, remoteAddr string) (*http.Request, error) {
	u, err := requestURL(r.Method, r.Target)
	if err != nil {
		return nil, errorf(ErrInvalidRequestLine, "request-target %q: %v", r.Target, err)
	}
	hr := http.Request{
		Method:        r.Method,
		URL:           u,
		Proto:         proto(r.Major, r.Minor),
		ProtoMajor:    r.Major,
		ProtoMinor:    r.Minor,
		Header:        toHeader(r.Headers, true),
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
		hr.Trailer = toHeader(r.Trailers, false)
	}
	// WithContext copies hr to the heap: the one allocation of the Request.
	return hr.WithContext(ctx), nil
}

func proto(major, minor int) string {
	switch {
	case major == 1 && minor == 1:
		return "HTTP/1.1"
	case major == 1 && minor == 0:
		return "HTTP/1.0"
	}
	return "HTTP/" + strconv.Itoa(major) + "." + strconv.Itoa(minor)
}

// toHeader builds an http.Header from fields, without Host if dropHost (net/http's
// server promotes it out of the map). Every value is a substring of one
// string and every first value list a window of one slice, so the fields
// cost three allocations, not two per field; common keys are interned.
func toHeader(fields []Header, dropHost bool) http.Header {
	n := 0
	for _, f := range fields {
		n += len(f.Value)
	}
	var b strings.Builder
	b.Grow(n)
	for _, f := range fields {
		b.Write(f.Value)
	}
	all := b.String()
	vals := make([]string, len(fields))
	h := make(http.Header, len(fields))
	off := 0
	for i, f := range fields {
		v := all[off : off+len(f.Value)]
		off += len(f.Value)
		k := canonicalKey(f.Name)
		if dropHost && k == "Host" {
			continue
		}
		if old, ok := h[k]; ok {
			h[k] = append(old, v)
			continue
		}
		vals[i] = v
		h[k] = vals[i : i+1 : i+1]
	}
	return h
}

// canonicalKey is http.CanonicalHeaderKey(string(name)), without an
// allocation for the common field names.
func canonicalKey(name []byte) string {
	var buf [32]byte
	if len(name) > len(buf) {
		return http.CanonicalHeaderKey(string(name))
	}
	k := buf[:len(name)]
	upper := true
	for i, c := range name {
		switch {
		case 'a' <= c && c <= 'z':
			if upper {
				c -= 'a' - 'A'
			}
		case 'A' <= c && c <= 'Z':
			if !upper {
				c += 'a' - 'A'
			}
		case '0' <= c && c <= '9' || c == '-':
		default:
			// Other token characters: net/textproto's rules.
			return http.CanonicalHeaderKey(string(name))
		}
		k[i] = c
		upper = c == '-'
	}
	if s, ok := commonKeys[string(k)]; ok {
		return s
	}
	return string(k)
}

var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Content-Length", "Content-Type", "Cookie", "Date",
		"Dnt", "Expect", "Forwarded", "From", "Host", "If-Match", "If-Modified-Since",
		"If-None-Match", "If-Range", "If-Unmodified-Since", "Keep-Alive", "Origin", "Pragma",
		"Priority", "Range", "Referer", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "Te",
		"Transfer-Encoding", "Upgrade", "Upgrade-Insecure-Requests", "User-Agent", "Via",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip",
		"X-Request-Id", "X-Requested-With",
	} {
		m[k] = k
	}
	return m
}()

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
