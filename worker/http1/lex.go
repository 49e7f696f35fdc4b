package http1

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
)

// Byte classes, as lookup tables because they run on every byte of every
// header.
var (
	tokenTab   [256]bool // RFC 9110 tchar
	valueTab   [256]bool // field-vchar, SP, HTAB (RFC 9110 section 5.5)
	targetTab  [256]bool // bytes allowed anywhere in a request-target
	hexTab     [256]bool
	regTab     [256]bool // reg-name and userinfo: unreserved / sub-delims / "%"
	regNameTab [256]bool // unreserved / sub-delims
)

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		alnum := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
		tokenTab[c] = alnum || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), b) >= 0
		valueTab[c] = b == '\t' || (b >= 0x20 && b != 0x7f)
		// Gunicorn accepts raw obs-text and the odd '"' or '{' in targets
		// (corpus 014, 027) and so do we; what cannot pass is anything a
		// log line, a header or a downstream parser would read as a
		// separator: controls, SP and DEL.
		targetTab[c] = b > 0x20 && b != 0x7f
		hexTab[c] = '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
		regTab[c] = alnum || bytes.IndexByte([]byte("-._~!$&'()*+,;=%"), b) >= 0
		regNameTab[c] = regTab[c] && b != '%'
	}
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenTab[c] {
			return false
		}
	}
	return true
}

// validValue reports whether b is all field-vchar, SP and HTAB.
func validValue(b []byte) bool { return allIn(b, &valueTab, 0x20) }

// allIn reports whether every byte of b is in tab, a table that holds every
// byte from below up, except DEL (0x7f), and may hold some bytes under
// below. It looks at eight bytes at a time, and byte by byte only at a word
// with a byte under below or a DEL: this runs over every byte of every
// field value and request-target.
func allIn(b []byte, tab *[256]bool, below uint64) bool {
	for len(b) >= 8 {
		if !plain8(binary.LittleEndian.Uint64(b), below) {
			for _, c := range b[:8] {
				if !tab[c] {
					return false
				}
			}
		}
		b = b[8:]
	}
	for _, c := range b {
		if !tab[c] {
			return false
		}
	}
	return true
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plain8 reports whether no byte of x is under below (at most 0x80) or DEL.
// It never reports true wrongly: the lowest such byte always sets its high
// bit in x-lsb*below and not in x. It may report false wrongly, as a borrow
// from one such byte can mark the next one.
func plain8(x, below uint64) bool {
	del := x ^ lsb*0x7f
	return ((x-lsb*below)&^x|(del-lsb)&^del)&msb == 0
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	return trimRightOWS(b)
}

func trimRightOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold reports whether b equals the lower-case ASCII string s, ignoring
// ASCII case in b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// checkTargetBytes and checkTargetForm enforce RFC 9112 section 3.2: the
// form of the request-target must suit the method, so that "GET
// example.com:443" or "GET foo/bar" never reach routing code that would
// guess what was meant. Two functions, as the request-line's scan checks
// the bytes of the usual target on its way (Parser.requestLine).
//
// checkTargetBytes checks every byte of t.
func checkTargetBytes(t []byte) error {
	if !allIn(t, &targetTab, 0x21) {
		i := slices.IndexFunc(t, func(c byte) bool { return !targetTab[c] })
		return errorf(ErrInvalidRequestLine, "invalid byte %q in request-target", t[i])
	}
	return nil
}

// checkTargetForm checks t's form, for a t whose bytes checkTargetBytes
// accepts.
func checkTargetForm(method string, t []byte) error {
	if len(t) == 0 {
		return errorf(ErrInvalidRequestLine, "empty request-target")
	}
	switch {
	case method == "CONNECT":
		if !validAuthority(t, false) {
			return errorf(ErrInvalidRequestLine, "CONNECT needs an authority-form target, not %s", quote(t))
		}
	case t[0] == '/':
		// origin-form; a leading "//" is still a path (corpus 100).
	case len(t) == 1 && t[0] == '*':
		if method != "OPTIONS" {
			return errorf(ErrInvalidRequestLine, "asterisk-form target with method %s", method)
		}
	default:
		if !validAbsolute(t) {
			return errorf(ErrInvalidRequestLine, "request-target %s is not origin-form or absolute-form", quote(t))
		}
	}
	return nil
}

// validAbsolute accepts scheme "://" authority [path-abempty ["?" query]]
// with a non-empty host. Paths and queries were already screened for
// controls; only the authority, which decides routing, is checked in detail.
func validAbsolute(t []byte) bool {
	if !('a' <= t[0] && t[0] <= 'z' || 'A' <= t[0] && t[0] <= 'Z') {
		return false
	}
	i := 1
	for i < len(t) && isSchemeChar(t[i]) {
		i++
	}
	if !bytes.HasPrefix(t[i:], []byte("://")) {
		return false
	}
	rest := t[i+3:]
	end := len(rest)
	for j, c := range rest {
		if c == '/' || c == '?' || c == '#' {
			end = j
			break
		}
	}
	return validAuthority(rest[:end], true)
}

func isSchemeChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'
}

// validAuthority checks [userinfo "@"] host [":" port] (RFC 3986 section
// 3.2). For CONNECT (userinfo false) the port is mandatory, as RFC 9112
// section 3.2.3 requires.
func validAuthority(a []byte, userinfo bool) bool {
	if userinfo {
		if at := bytes.LastIndexByte(a, '@'); at >= 0 {
			for _, c := range a[:at] {
				if !regTab[c] && c != ':' {
					return false
				}
			}
			if !validPct(a[:at]) {
				return false
			}
			a = a[at+1:]
		}
	}
	host, port, hasPort, ok := splitHostPort(a)
	if !ok || len(host) == 0 {
		return false
	}
	return userinfo || hasPort && len(port) > 0
}

// validHost checks a Host field value: uri-host [":" port] (RFC 9110
// section 7.2). The host may be empty, as RFC 9110 allows for a target URI
// without an authority.
func validHost(v []byte) bool {
	_, _, _, ok := splitHostPort(v)
	return ok
}

// splitHostPort splits host [":" port], where host is an IP-literal (an
// IPv6 address in brackets, no zone: IPvFuture is not accepted), or a
// reg-name, which covers IPv4address too, and port is at most 5 digits.
func splitHostPort(a []byte) (host, port []byte, hasPort, ok bool) {
	n := scanRegName(a) // one pass, as this runs on every request's Host
	if len(a) > 0 && a[0] == '[' {
		end := bytes.IndexByte(a, ']')
		if end < 0 {
			return nil, nil, false, false
		}
		ip, err := netip.ParseAddr(string(a[1:end]))
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return nil, nil, false, false
		}
		n = end + 1
	}
	host, a = a[:n], a[n:]
	if len(a) > 0 {
		if a[0] != ':' {
			return nil, nil, false, false
		}
		hasPort, port = true, a[1:]
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return nil, nil, false, false
		}
	}
	return host, port, hasPort, len(port) <= 5
}

// scanRegName returns the length of the reg-name at the start of b:
// *( unreserved / pct-encoded / sub-delims ), which an IPv4address is too.
func scanRegName(b []byte) int {
	i := 0
	for i < len(b) {
		c := b[i]
		switch {
		case regNameTab[c]:
			i++
		case c == '%' && i+2 < len(b) && hexTab[b[i+1]] && hexTab[b[i+2]]:
			i += 3
		default:
			return i
		}
	}
	return i
}

func validPct(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] == '%' {
			if i+2 >= len(b) || !hexTab[b[i+1]] || !hexTab[b[i+2]] {
				return false
			}
			i += 2
		}
	}
	return true
}

// parseChunkLine parses chunk-size [chunk-ext] (RFC 9112 section 7.1).
// Gunicorn's corpus pins the edge cases: no sign, no whitespace before the
// size, whitespace after it only if an extension follows, no bare CR.
func parseChunkLine(line []byte) (int64, error) {
	i := 0
	var size int64
	for i < len(line) && hexTab[line[i]] {
		// Another digit would overflow int64. Leading zeros are fine.
		if size >= 1<<59 {
			return 0, errorf(ErrInvalidChunkSize, "chunk size %s overflows", quote(line))
		}
		size = size<<4 | int64(unhex(line[i]))
		i++
	}
	if i == 0 {
		return 0, errorf(ErrInvalidChunkSize, "chunk size line %s does not start with a hex digit", quote(line))
	}
	rest := line[i:]
	if len(rest) == 0 {
		return size, nil
	}
	j := 0
	for j < len(rest) && isOWS(rest[j]) {
		j++
	}
	if j == len(rest) || rest[j] != ';' {
		return 0, errorf(ErrInvalidChunkSize, "invalid chunk size line %s", quote(line))
	}
	if !validChunkExt(rest) {
		return 0, errorf(ErrInvalidChunkExtension, "invalid chunk extension in %s", quote(line))
	}
	return size, nil
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// validChunkExt checks *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
func validChunkExt(b []byte) bool {
	i := 0
	ws := func() {
		for i < len(b) && isOWS(b[i]) {
			i++
		}
	}
	token := func() bool {
		s := i
		for i < len(b) && tokenTab[b[i]] {
			i++
		}
		return i > s
	}
	for i < len(b) {
		ws()
		if i >= len(b) || b[i] != ';' {
			return false
		}
		i++
		ws()
		if !token() {
			return false
		}
		save := i
		ws()
		if i < len(b) && b[i] == '=' {
			i++
			ws()
			if i < len(b) && b[i] == '"' {
				if !quotedString(b, &i) {
					return false
				}
			} else if !token() {
				return false
			}
		} else {
			i = save
		}
	}
	return true
}

// quotedString advances *i past a quoted-string starting at b[*i] == '"'.
func quotedString(b []byte, i *int) bool {
	j := *i + 1
	for j < len(b) {
		c := b[j]
		switch {
		case c == '"':
			*i = j + 1
			return true
		case c == '\\':
			if j+1 >= len(b) || !valueTab[b[j+1]] {
				return false
			}
			j += 2
		case valueTab[c]:
			j++
		default:
			return false
		}
	}
	return false
}
