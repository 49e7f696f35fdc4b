package http1

import (
	"bytes"
	"net/netip"
)

// Byte classes, as lookup tables because they run on every byte of every
// header.
var (
	tokenTab  [256]bool // RFC 9110 tchar
	valueTab  [256]bool // field-vchar, SP, HTAB (RFC 9110 section 5.5)
	targetTab [256]bool // bytes allowed anywhere in a request-target
	hexTab    [256]bool
	regTab    [256]bool // reg-name and userinfo: unreserved / sub-delims / "%"
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

func validValue(b []byte) bool {
	for _, c := range b {
		if !valueTab[c] {
			return false
		}
	}
	return true
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

// checkTarget enforces RFC 9112 section 3.2: the form of the request-target
// must suit the method, so that "GET example.com:443" or "GET foo/bar" never
// reach routing code that would guess what was meant.
func checkTarget(method string, t []byte) error {
	if len(t) == 0 {
		return errorf(ErrInvalidRequestLine, "empty request-target")
	}
	for _, c := range t {
		if !targetTab[c] {
			return errorf(ErrInvalidRequestLine, "invalid byte %q in request-target", c)
		}
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
	var host, port []byte
	hasPort := false
	if len(a) > 0 && a[0] == '[' {
		end := bytes.IndexByte(a, ']')
		if end < 0 {
			return false
		}
		ip, err := netip.ParseAddr(string(a[1:end]))
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return false
		}
		host, a = a[:end+1], a[end+1:]
		if len(a) > 0 {
			if a[0] != ':' {
				return false
			}
			hasPort, port = true, a[1:]
		}
	} else {
		host = a
		if c := bytes.LastIndexByte(a, ':'); c >= 0 {
			host, port, hasPort = a[:c], a[c+1:], true
		}
		for _, c := range host {
			if !regTab[c] {
				return false
			}
		}
		if !validPct(host) {
			return false
		}
	}
	if len(host) == 0 {
		return false
	}
	if !userinfo && (!hasPort || len(port) == 0) {
		return false
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(port) <= 5
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
