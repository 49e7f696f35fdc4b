package frontend

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// TrustForwarded applies a proxy's forwarding headers to r when the peer
// that sent them is trusted (r.RemoteAddr is in allow, or is no IP
// address, as for a unix socket peer). It reports whether it changed r.
//
// From a trusted peer:
//   - the client address comes from X-Forwarded-For or, when the request
//     has none, from Forwarded's for= (RFC 7239). The list is read from the
//     right, skipping trusted proxies: the client is the rightmost address
//     not in allow (the leftmost if all are). r.RemoteAddr becomes
//     "IP:port", the port the header gave or 0.
//   - the scheme comes from X-Forwarded-Proto (its last value) or from the
//     chosen Forwarded element's proto=. "http" or "https" sets
//     r.URL.Scheme (and r.URL.Host from r.Host); "https" also gives r.TLS a
//     non-nil, empty tls.ConnectionState, as net/http/cgi does for
//     HTTPS=on, so handlers that test r.TLS see a secure request.
//
// The headers themselves are kept as they came, from trusted and untrusted
// peers alike; from an untrusted peer nothing else changes.
func TrustForwarded(r *http.Request, allow AllowList) bool {
	h := r.Header
	// The common case, without parsing the peer's address: no field at
	// all (wrk's request: only Host, which is not in the map), or none of
	// these. An empty allow list is no shortcut: a unix socket peer is
	// trusted whatever it says (AllowsRemote).
	if len(h) == 0 || h["X-Forwarded-For"] == nil && h["Forwarded"] == nil && h["X-Forwarded-Proto"] == nil {
		return false
	}
	if !allow.AllowsRemote(r.RemoteAddr) {
		return false
	}
	var hops []forwardedHop
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, v := range xff {
			for _, f := range strings.Split(v, ",") {
				hops = append(hops, forwardedHop{node: strings.TrimSpace(f)})
			}
		}
	} else if fwd := r.Header.Values("Forwarded"); len(fwd) > 0 {
		hops = parseForwarded(fwd)
	}
	changed := false
	chosen := -1
	for i := len(hops) - 1; i >= 0; i-- {
		ap, ok := parseNode(hops[i].node)
		if !ok {
			break // an unknown or obfuscated hop: nothing left of it can be trusted
		}
		chosen, hops[i].addr = i, ap
		if !allow.AllowsIP(ap.Addr()) {
			break
		}
	}
	proto := ""
	if chosen >= 0 {
		r.RemoteAddr = hops[chosen].addr.String()
		proto = hops[chosen].proto
		changed = true
	}
	if xfp := r.Header.Values("X-Forwarded-Proto"); len(xfp) > 0 {
		parts := strings.Split(xfp[len(xfp)-1], ",")
		proto = strings.TrimSpace(parts[len(parts)-1])
	}
	switch strings.ToLower(proto) {
	case "https":
		setScheme(r, "https")
		changed = true
	case "http":
		setScheme(r, "http")
		changed = true
	}
	return changed
}

// setScheme records the scheme the client used: in r.URL, and for https as
// a non-nil r.TLS.
func setScheme(r *http.Request, scheme string) {
	r.URL.Scheme = scheme
	if r.URL.Host == "" {
		r.URL.Host = r.Host
	}
	if scheme == "https" && r.TLS == nil {
		r.TLS = &tls.ConnectionState{HandshakeComplete: true}
	}
}

type forwardedHop struct {
	node  string // "192.0.2.1", "[2001:db8::1]:4711", "unknown", "_hidden"
	proto string
	addr  netip.AddrPort
}

// parseForwarded reads Forwarded header values (RFC 7239) into hops, one
// per element, in order.
func parseForwarded(values []string) []forwardedHop {
	var hops []forwardedHop
	for _, v := range values {
		for _, elem := range splitQuoted(v, ',') {
			var h forwardedHop
			for _, pair := range splitQuoted(elem, ';') {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok {
					continue
				}
				val = strings.Trim(strings.TrimSpace(val), `"`)
				switch strings.ToLower(strings.TrimSpace(k)) {
				case "for":
					h.node = val
				case "proto":
					h.proto = val
				}
			}
			hops = append(hops, h)
		}
	}
	return hops
}

// splitQuoted splits s at sep outside double quotes.
func splitQuoted(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			quoted = !quoted
		case s[i] == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// parseNode reads one hop's address: "IP", "IP:port", "[IPv6]" or
// "[IPv6]:port". The port is 0 when none is given.
func parseNode(s string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil && ip.Zone() == "" {
		return netip.AddrPortFrom(ip.Unmap(), 0), true
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		if ip, err := netip.ParseAddr(h); err == nil && ip.Zone() == "" {
			return netip.AddrPortFrom(ip.Unmap(), 0), true
		}
	}
	return netip.AddrPort{}, false
}
