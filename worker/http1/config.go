package http1

import (
	"net"
	"net/netip"
	"strings"
)

// Limits bounds what one request may make the parser buffer. The zero value
// is not the default; use DefaultLimits. The interpretation of each field
// follows Gunicorn's limit_request_* settings so that configuration carries
// over unchanged.
type Limits struct {
	// RequestLine is the maximum length of the request-line, not counting
	// its CRLF. 0 means unlimited; negative values and values of 8190 or
	// more mean 8190.
	RequestLine int

	// Fields is the maximum number of header fields (and, separately, of
	// trailer fields) kept in one request. Values <= 0 or > 32768 mean 32768.
	// Fields dropped by HeaderMapDrop do not count, but their bytes do count
	// towards the size of the header section.
	Fields int

	// FieldSize is the maximum size of one field line: name + ":" + value +
	// CRLF, including any obs-fold continuation lines. Values <= 0 mean 8190.
	// It also bounds a chunk-size line.
	FieldSize int

	// MaxBody is the maximum size of a request body (after removing the
	// chunked coding). 0 or negative means unlimited. A request whose
	// Content-Length exceeds it fails before any body byte is read.
	MaxBody int64
}

// Gunicorn's hard caps (gunicorn/http/message.py).
const (
	maxRequestLine     = 8190
	maxFields          = 32768
	defaultFieldSize   = 8190
	defaultRequestLine = 4094
	defaultFields      = 100
)

// DefaultLimits returns Gunicorn's defaults: a 4094-byte request line, 100
// header fields of up to 8190 bytes each, and no body limit.
func DefaultLimits() Limits {
	return Limits{
		RequestLine: defaultRequestLine,
		Fields:      defaultFields,
		FieldSize:   defaultFieldSize,
	}
}

// limits is Limits after normalisation, plus the derived bound on a whole
// header section.
type limits struct {
	requestLine int // 0: unlimited
	fields      int
	fieldSize   int
	maxBody     int64 // 0: unlimited
	section     int   // bytes of one header or trailer section
}

func (l Limits) normalize() limits {
	n := limits{requestLine: l.RequestLine, fields: l.Fields, fieldSize: l.FieldSize, maxBody: l.MaxBody}
	if n.requestLine < 0 || n.requestLine >= maxRequestLine {
		n.requestLine = maxRequestLine
	}
	if n.fields <= 0 || n.fields > maxFields {
		n.fields = maxFields
	}
	if n.fieldSize <= 0 {
		n.fieldSize = defaultFieldSize
	}
	if n.maxBody < 0 {
		n.maxBody = 0
	}
	// Gunicorn's max_buffer_headers. Without it a client could send an
	// endless stream of dropped (underscore) fields, which count against
	// no other limit.
	n.section = n.fields*(n.fieldSize+2) + 4
	return n
}

// HeaderMap says what to do with a field name containing "_", which a WSGI or
// CGI environment cannot tell apart from "-" (X_Forwarded_For and
// X-Forwarded-For both become HTTP_X_FORWARDED_FOR).
type HeaderMap uint8

const (
	HeaderMapDrop      HeaderMap = iota // drop the field (Gunicorn's default)
	HeaderMapRefuse                     // fail with ErrInvalidHeaderName
	HeaderMapDangerous                  // keep the field
)

// ProxyProtocol selects whether a PROXY protocol preamble is accepted.
type ProxyProtocol uint8

const (
	ProxyOff  ProxyProtocol = iota
	ProxyAuto               // accept an optional v1 line or v2 block before the first request
)

// SchemeHeader is one entry of Gunicorn's secure_scheme_headers: a request
// from a trusted peer whose field Name has exactly Value was received over
// TLS by the front proxy.
type SchemeHeader struct {
	Name  string // compared case-insensitively
	Value string // compared exactly
}

// Config holds the parser settings that come from corral's configuration. A
// Config is read, never written, by the Parsers using it, so one value may be
// shared by every connection. Field names map onto Gunicorn settings.
type Config struct {
	Limits Limits

	HeaderMap HeaderMap // header_map

	PermitObsoleteFolding       bool // permit_obsolete_folding: join obs-fold lines with one SP
	StripHeaderSpaces           bool // strip_header_spaces: allow whitespace before ":" (deprecated)
	PermitUnconventionalMethod  bool // permit_unconventional_http_method
	CasefoldMethod              bool // casefold_http_method: upper-case the method
	PermitUnconventionalVersion bool // permit_unconventional_http_version: accept any HTTP/d.d

	ProxyProtocol ProxyProtocol // proxy_protocol

	// SecureSchemeHeaders (secure_scheme_headers) are honoured only when the
	// Parser's TrustedPeer is set. Fields that disagree about the scheme are
	// rejected with ErrInvalidSchemeHeaders.
	SecureSchemeHeaders []SchemeHeader

	// ForwarderHeaders (forwarder_headers) are names containing "_" that a
	// trusted peer may send regardless of HeaderMap. "*" allows all.
	ForwarderHeaders []string

	// permitNoHost accepts HTTP/1.1 requests without Host, which RFC 9112
	// section 3.2 answers with 400 and Gunicorn serves. It is a test seam,
	// not a setting: Gunicorn's corpus omits Host in most of its HTTP/1.1
	// cases, and corpus_test.go runs those once strictly (they must fail
	// for want of Host) and once with this set, to check everything else.
	permitNoHost bool
}

// DefaultConfig returns a new Config with Gunicorn's defaults.
func DefaultConfig() *Config {
	return &Config{
		Limits: DefaultLimits(),
		SecureSchemeHeaders: []SchemeHeader{
			{"X-FORWARDED-PROTOCOL", "ssl"},
			{"X-FORWARDED-PROTO", "https"},
			{"X-FORWARDED-SSL", "on"},
		},
		ForwarderHeaders: []string{"SCRIPT_NAME", "PATH_INFO"},
	}
}

var defaultConfig = DefaultConfig()

// TrustedPeer reports whether remoteAddr (a "host:port" or bare IP, as in
// net.Conn.RemoteAddr().String()) is covered by allow, a Gunicorn
// forwarded_allow_ips value: comma-separated IP addresses or CIDR networks,
// or "*". An empty remoteAddr, as for a Unix socket, is trusted, which is
// what Gunicorn does for peers without an IP address.
func TrustedPeer(allow, remoteAddr string) bool {
	if remoteAddr == "" {
		return true
	}
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return strings.TrimSpace(allow) == "*"
	}
	ip = ip.Unmap().WithZone("")
	for e := range strings.SplitSeq(allow, ",") {
		e = strings.TrimSpace(e)
		switch {
		case e == "*":
			return true
		case strings.Contains(e, "/"):
			if pfx, err := netip.ParsePrefix(e); err == nil && pfx.Contains(ip) {
				return true
			}
		default:
			if a, err := netip.ParseAddr(e); err == nil && a.Unmap() == ip {
				return true
			}
		}
	}
	return false
}
