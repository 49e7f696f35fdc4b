package http1

import (
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
	// host is Host as the parser's string of it, when it has one (a
	// kept connection's repeated Host): ToHTTP takes it as is.
	host string

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

func proto(major, minor int) string {
	switch {
	case major == 1 && minor == 1:
		return "HTTP/1.1"
	case major == 1 && minor == 0:
		return "HTTP/1.0"
	}
	return "HTTP/" + strconv.Itoa(major) + "." + strconv.Itoa(minor)
}

// CanonicalKeyIn is http.CanonicalHeaderKey(string(name)), interned for
// the common field names, and carved out of *block for the others: a
// block is only ever appended to (a full one is replaced), so the
// strings it gave out are never overwritten.
func CanonicalKeyIn(name []byte, block *[]byte) string {
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
	return carve(block, k)
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
