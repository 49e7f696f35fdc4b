package http1

import (
	"bytes"
	"encoding/binary"
	"net/netip"
)

// ProxyInfo is what a PROXY protocol header said about a connection.
type ProxyInfo struct {
	Version int // 1 (text) or 2 (binary); 0 when there was no header

	// Local is set when the header names no client to use instead of the
	// peer: v1 "UNKNOWN", v2 LOCAL (a proxy's own health check), and v2
	// addresses of the UNSPEC or UNIX family. The connection's own
	// addresses stand.
	Local bool

	// Source is the client as the proxy saw it, and Destination the
	// address the client connected to. IPv4-mapped IPv6 addresses are
	// unmapped, so that an IPv4 client looks the same whichever socket
	// family the proxy accepted it on.
	Source      netip.AddrPort
	Destination netip.AddrPort
}

var (
	proxyV1Sig = []byte("PROXY ")
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

const (
	// proxyV1Max is the longest v1 line the specification allows, CRLF
	// included.
	proxyV1Max = 107

	// proxyV2Head is the fixed part of a v2 header: the signature, the
	// version and command, the address family and transport, and the
	// length of what follows.
	proxyV2Head = 16
)

// ProxyVersion reports which version of the PROXY protocol a stream that
// starts with b speaks: 1 or 2 when b begins with that version's signature
// ("PROXY " or the 12-byte binary one), 0 when the stream cannot begin with
// either. ok is false when b is too short to tell because it is a proper
// prefix of a signature (an empty b included).
func ProxyVersion(b []byte) (version int, ok bool) {
	for i, sig := range [...][]byte{proxyV1Sig, proxyV2Sig} {
		if len(b) < len(sig) {
			if bytes.HasPrefix(sig, b) {
				return 0, false
			}
		} else if bytes.Equal(b[:len(sig)], sig) {
			return i + 1, true
		}
	}
	return 0, true
}

// ParseProxy parses the PROXY protocol header at the start of b, the bytes
// of a stream received so far. It returns
//
//   - n > 0 and a nil error when b starts with a whole, valid header: the
//     header is b[:n] and info says what it said;
//   - n == 0 and a nil error when b is a proper prefix of a header, or of a
//     signature: the caller calls again once it has more bytes;
//   - an error wrapping ErrInvalidProxyLine when b cannot start with a valid
//     header: it has no signature (see ProxyVersion), or the header is
//     malformed or longer than the specification allows.
//
// A v1 header is a line of at most 107 bytes, CRLF included, of exactly
// single-space separated fields; a v2 header is 16 bytes and as many more,
// up to 65535, as they announce. ParseProxy fails as soon as the bytes so
// far rule a header out: a v1 line after 107 bytes without LF at the
// latest, a v2 header as soon as its version or command is wrong.
//
// ParseProxy keeps no state: a caller feeds it by calling it again with a
// longer b. Each call costs at most 107 bytes of scanning for v1 and
// constant time for a v2 header that is still incomplete.
func ParseProxy(b []byte) (n int, info ProxyInfo, err error) {
	version, ok := ProxyVersion(b)
	switch {
	case !ok:
		return 0, info, nil
	case version == 1:
		return parseProxyV1(b)
	case version == 2:
		return parseProxyV2(b)
	}
	return 0, info, errorf(ErrInvalidProxyLine, "stream starts with %s, not a PROXY signature", quote(b[:min(len(b), 16)]))
}

// parseProxyV1 parses the v1 line at the start of b, which starts with
// "PROXY ". Only CRLF ends the line; a bare LF is an error.
func parseProxyV1(b []byte) (int, ProxyInfo, error) {
	info := ProxyInfo{Version: 1}
	end := bytes.IndexByte(b[:min(len(b), proxyV1Max)], '\n')
	if end < 0 {
		if len(b) >= proxyV1Max {
			return 0, info, errorf(ErrInvalidProxyLine, "v1 line longer than %d bytes", proxyV1Max)
		}
		return 0, info, nil
	}
	if b[end-1] != '\r' {
		return 0, info, errorf(ErrInvalidProxyLine, "v1 line %s ends in a bare LF", quote(b[:end+1]))
	}
	line := b[:end-1]

	// Fields are separated by exactly one space, as the specification
	// (and Gunicorn) require: an empty field is an error.
	var f [6][]byte
	nf := 0
	for rest := line; ; {
		i := bytes.IndexByte(rest, ' ')
		if i < 0 || nf == len(f)-1 {
			f[nf] = rest
			nf++
			break
		}
		f[nf], rest = rest[:i], rest[i+1:]
		nf++
	}
	if nf >= 2 && string(f[1]) == "UNKNOWN" {
		// The specification tells receivers to ignore whatever follows.
		info.Local = true
		return end + 1, info, nil
	}
	if nf != len(f) || bytes.IndexByte(f[5], ' ') >= 0 {
		return 0, info, errorf(ErrInvalidProxyLine, "v1 line %s does not have 6 fields", quote(line))
	}
	proto := string(f[1])
	if proto != "TCP4" && proto != "TCP6" {
		return 0, info, errorf(ErrInvalidProxyLine, "v1 protocol %s is not TCP4, TCP6 or UNKNOWN", quote(f[1]))
	}
	src, err1 := netip.ParseAddr(string(f[2]))
	dst, err2 := netip.ParseAddr(string(f[3]))
	if want4 := proto == "TCP4"; err1 != nil || err2 != nil || src.Zone() != "" || dst.Zone() != "" ||
		src.Is4() != want4 || dst.Is4() != want4 {
		return 0, info, errorf(ErrInvalidProxyLine, "v1 addresses %s %s are not %s addresses", quote(f[2]), quote(f[3]), proto)
	}
	sp, ok1 := parsePort(f[4])
	dp, ok2 := parsePort(f[5])
	if !ok1 || !ok2 {
		return 0, info, errorf(ErrInvalidProxyLine, "v1 ports %s %s", quote(f[4]), quote(f[5]))
	}
	info.Source = netip.AddrPortFrom(src.Unmap(), sp)
	info.Destination = netip.AddrPortFrom(dst.Unmap(), dp)
	return end + 1, info, nil
}

// parsePort reads a decimal port without leading zeros, as v1 requires.
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return uint16(n), n <= 0xffff
}

// parseProxyV2 parses the v2 header at the start of b, which starts with
// the v2 signature.
func parseProxyV2(b []byte) (int, ProxyInfo, error) {
	info := ProxyInfo{Version: 2}
	if len(b) <= 12 {
		return 0, info, nil
	}
	// The specification tells receivers to drop a connection with an
	// unknown version or command, so do not wait for the rest to say so.
	verCmd := b[12]
	if verCmd>>4 != 2 {
		return 0, info, errorf(ErrInvalidProxyLine, "v2 version %d", verCmd>>4)
	}
	cmd := verCmd & 0x0f
	if cmd > 1 {
		return 0, info, errorf(ErrInvalidProxyLine, "v2 command %d is neither LOCAL nor PROXY", cmd)
	}
	if len(b) < proxyV2Head {
		return 0, info, nil
	}
	n := proxyV2Head + int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) < n {
		return 0, info, nil
	}
	if cmd == 0 {
		// LOCAL: the proxy's own connection. The specification says to
		// accept it whatever the family, and to ignore the addresses.
		info.Local = true
		return n, info, nil
	}
	addr := b[proxyV2Head:n]
	// The specification lists the valid family and transport bytes, and
	// tells receivers to reject the others.
	switch fam := b[13]; fam {
	case 0x00: // UNSPEC: nothing to report
		info.Local = true
	case 0x11: // TCP over IPv4
		if len(addr) < 12 {
			return 0, info, errorf(ErrInvalidProxyLine, "v2 IPv4 addresses need 12 bytes, got %d", len(addr))
		}
		info.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[0:4])), binary.BigEndian.Uint16(addr[8:10]))
		info.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[4:8])), binary.BigEndian.Uint16(addr[10:12]))
	case 0x21: // TCP over IPv6
		if len(addr) < 36 {
			return 0, info, errorf(ErrInvalidProxyLine, "v2 IPv6 addresses need 36 bytes, got %d", len(addr))
		}
		src := netip.AddrFrom16([16]byte(addr[0:16])).Unmap()
		dst := netip.AddrFrom16([16]byte(addr[16:32])).Unmap()
		info.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(addr[32:34]))
		info.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(addr[34:36]))
	case 0x31: // UNIX stream: no IP addresses to report
		if len(addr) < 216 {
			return 0, info, errorf(ErrInvalidProxyLine, "v2 unix addresses need 216 bytes, got %d", len(addr))
		}
		info.Local = true
	case 0x12, 0x22, 0x32:
		return 0, info, errorf(ErrInvalidProxyLine, "v2 datagram transport on a stream connection")
	default:
		return 0, info, errorf(ErrInvalidProxyLine, "v2 address family and transport byte %#02x", fam)
	}
	return n, info, nil
}
