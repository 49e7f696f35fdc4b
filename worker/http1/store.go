package http1

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
)

// RequestStore is the memory of the *http.Request that ToHTTP builds, kept
// for the next request: a server that serves one request after another
// (a connection, a handler goroutine) builds each into the same store and
// allocates nothing for the common request. The *http.Request returned by
// its ToHTTP, its URL, header map and body reader are the store's, reused
// by the next call: net/http's contract already forbids a handler to use
// them after it returns. The strings in them are never reused, so a
// handler may keep those.
//
// The zero value is ready. A RequestStore is not safe for concurrent use.
type RequestStore struct {
	req    http.Request
	url    url.URL
	header http.Header
	vals   []string // the header's one-value lists, windows of this
	te     [1]string
	body   []byte
	reader bodyReader

	// strs is the block that field values and uncommon names are carved
	// from (see carve); host is the last Host, reused when it repeats.
	strs []byte
	host string
	keep bool // a store that is reused: see reserve
}

// bodyReader is a request body read from memory.
type bodyReader struct{ bytes.Reader }

func (*bodyReader) Close() error { return nil }

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
// outlives the Parser's next call. See RequestStore.ToHTTP to build
// request after request without allocating.
func ToHTTP(ctx context.Context, r *Request, remoteAddr string) (*http.Request, error) {
	return new(RequestStore).build(ctx, r, remoteAddr)
}

// ToHTTP is the package's ToHTTP, into s: the result is valid until the
// next call (its strings for good).
func (s *RequestStore) ToHTTP(ctx context.Context, r *Request, remoteAddr string) (*http.Request, error) {
	s.keep = true
	return s.build(ctx, r, remoteAddr)
}

func (s *RequestStore) build(ctx context.Context, r *Request, remoteAddr string) (*http.Request, error) {
	u := &s.url
	if !OriginURL(u, r.Target) {
		pu, err := requestURL(r.Method, r.Target)
		if err != nil {
			return nil, errorf(ErrInvalidRequestLine, "request-target %q: %v", r.Target, err)
		}
		*u = *pu
	}
	hr := &s.req
	// A blank request with ctx (WithContext, inlined: no allocation)
	// resets every field, the unexported ones that http.ServeMux sets
	// (path values) included, so that a handler's do not reach the next
	// request. The blank is one for all stores, warm in the cache, where a
	// template of the store's own would be as cold as the store, and
	// would need rebuilding whenever the context changes, as it does for
	// every batch when the event loop's stores serve one connection after
	// another (BenchmarkToHTTP's store-conns).
	*hr = *blankRequest.WithContext(ctx)
	hr.Method = r.Method
	hr.URL = u
	hr.Proto = proto(r.Major, r.Minor)
	hr.ProtoMajor, hr.ProtoMinor = r.Major, r.Minor
	hr.Header = s.fields(r.Headers)
	hr.ContentLength = r.ContentLength
	hr.Close = r.Close
	hr.Host = u.Host
	hr.RemoteAddr = remoteAddr
	hr.RequestURI = r.Target
	hr.Body = http.NoBody
	if hr.Host == "" && r.Host != nil {
		if r.host != "" {
			s.host = r.host
		} else if string(r.Host) != s.host {
			s.reserve(len(r.Host))
			s.host = carve(&s.strs, r.Host)
		}
		hr.Host = s.host
	}
	if r.Chunked {
		s.te[0] = "chunked"
		hr.TransferEncoding = s.te[:1:1]
		hr.ContentLength = -1
	} else if hr.ContentLength < 0 {
		hr.ContentLength = 0
	}
	if len(r.Body) > 0 {
		if cap(s.body) > keepBody {
			s.body = nil
		}
		s.body = append(s.body[:0], r.Body...)
		s.reader.Reset(s.body)
		hr.Body = &s.reader
	}
	if len(r.Trailers) > 0 {
		hr.Trailer = s.trailer(r.Trailers)
	}
	return hr, nil
}

// Idle drops the body buffer the store keeps for the next request when it
// is larger than a small request's, for an owner between requests (a
// kept-alive connection waiting for its next) that should hold no large
// buffer; the header map and the string block stay.
func (s *RequestStore) Idle() {
	if cap(s.body) > idleBody {
		s.body = nil
	}
}

// idleBody is the largest body buffer an idle store keeps.
const idleBody = 4 << 10

// blankRequest is what build starts each request from: see there.
var blankRequest http.Request

// fields fills the store's header map from the request's fields, without
// Host (net/http's server promotes it out of the map). Each first value
// list is a window of one slice, and common keys are interned.
func (s *RequestStore) fields(fields []Header) http.Header {
	if s.header == nil || !s.keep {
		s.header = make(http.Header, len(fields))
	} else {
		clear(s.header)
	}
	clear(s.vals)
	if cap(s.vals) < len(fields) {
		s.vals = make([]string, len(fields))
	}
	s.vals = s.vals[:len(fields)]
	s.fill(s.header, s.vals, fields, true)
	return s.header
}

// trailer is a chunked body's trailer fields, in a map of their own: a
// handler reads them once the body is read, after which it may keep the
// map, so the store does not reuse it.
func (s *RequestStore) trailer(fields []Header) http.Header {
	h := make(http.Header, len(fields))
	s.fill(h, make([]string, len(fields)), fields, false)
	return h
}

// fill adds fields to h, their first values in vals (one per field).
func (s *RequestStore) fill(h http.Header, vals []string, fields []Header, dropHost bool) {
	n := 0
	for _, f := range fields {
		n += len(f.Name) + len(f.Value)
	}
	s.reserve(n)
	for i, f := range fields {
		if dropHost && equalFold(f.Name, "host") {
			continue // every request has one: not worth canonicalizing
		}
		k := CanonicalKeyIn(f.Name, &s.strs)
		v := carve(&s.strs, f.Value)
		if old, ok := h[k]; ok {
			h[k] = append(old, v)
			continue
		}
		vals[i] = v
		h[k] = vals[i : i+1 : i+1]
	}
}

// reserve makes room for n more bytes in the string block: a store that
// is reused takes a block of storeBlock, or more, for the next requests'
// strings too; a store used once, exactly what it needs.
func (s *RequestStore) reserve(n int) {
	if cap(s.strs)-len(s.strs) >= n {
		return
	}
	if s.keep {
		n = max(n, storeBlock)
	}
	s.strs = make([]byte, 0, n)
}

// storeBlock is the size of a reused store's string blocks: a server
// keeps many stores (the event worker, one per request of a pipelined
// batch), and most requests repeat their Host, which is carved once.
const storeBlock = 1 << 10

// OriginURL sets u to what url.ParseRequestURI returns for target when it
// is an origin-form target ("/path?query") whose path has only characters
// that need no escaping and no "%", and reports whether it was: the common
// request, parsed without an allocation. Others are left to requestURL.
func OriginURL(u *url.URL, target string) bool {
	if len(target) == 0 || target[0] != '/' {
		return false
	}
	path, query := target, ""
	q := -1
	for i := 0; i < len(target); i++ {
		c := target[i]
		if c == '?' {
			q = i
			break
		}
		if !pathChar[c] {
			return false
		}
	}
	if q >= 0 {
		path, query = target[:q], target[q+1:]
		for i := 0; i < len(query); i++ {
			if c := query[i]; c < 0x20 || c == 0x7f || c == '#' {
				return false
			}
		}
	}
	// url.parse: "/p?" forces an empty query; "/p??" has the query "?".
	*u = url.URL{Path: path, RawQuery: query, ForceQuery: q >= 0 && query == ""}
	return true
}

// pathChar holds the bytes that net/url leaves alone in a path: neither
// unescaped nor escaped, so that Path is the target's and RawPath empty.
var pathChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range []byte("-_.~$&+,/:;=@") {
		t[c] = true
	}
	return t
}()
