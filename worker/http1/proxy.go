package http1

import (
	"bytes"
	"encoding/binary"
	"net/netip"
)

// ProxyInfo is what a PROXY protocol preamble said about the connection.
type ProxyInfo struct {
	Version int // 1 (text) or 2 (binary)

	// Protocol is "TCP4" or "TCP6" when addresses are known, otherwise
	// "UNKNOWN" (v1), "LOCAL" (v2 health check) or "UNSPEC" (v2).
	Protocol string

	Source      netip.AddrPort // the client, as seen by the proxy
	Destination netip.AddrPort // the proxy's listening address
}

var (
	proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")
	proxyV1Pre = []byte("PROXY ")
)

// proxyV1Max is the longest v1 line the specification allows, CRLF included.
const proxyV1Max = 107

// parseProxyV1 parses a v1 line without its CRLF. Fields are separated by
// exactly one space, as the specification (and Gunicorn) require.
func parseProxyV1(line []byte) (ProxyInfo, error) {
	info := ProxyInfo{Version: 1}
	var f [6][]byte
	n := 0
	rest := line
	for n < len(f) {
		i := bytes.IndexByte(rest, ' ')
		if i < 0 || n == len(f)-1 {
			f[n] = rest
			n++
			rest = nil
			break
		}
		f[n], rest = rest[:i], rest[i+1:]
		n++
	}
	if n >= 2 && string(f[1]) == "UNKNOWN" {
		// The specification tells receivers to ignore whatever follows.
		info.Protocol = "UNKNOWN"
		return info, nil
	}
	if n != 6 || rest != nil || bytes.IndexByte(f[5], ' ') >= 0 {
		return info, errorf(ErrInvalidProxyLine, "PROXY v1 line %s does not have 6 fields", quote(line))
	}
	proto := string(f[1])
	if proto != "TCP4" && proto != "TCP6" {
		return info, errorf(ErrInvalidProxyLine, "PROXY v1 protocol %s not supported", quote(f[1]))
	}
	src, err1 := netip.ParseAddr(string(f[2]))
	dst, err2 := netip.ParseAddr(string(f[3]))
	if err1 != nil || err2 != nil || src.Zone() != "" || dst.Zone() != "" ||
		(proto == "TCP4") != src.Is4() || (proto == "TCP4") != dst.Is4() {
		return info, errorf(ErrInvalidProxyLine, "PROXY v1 line %s has invalid %s addresses", quote(line), proto)
	}
	sp, ok1 := parsePort(f[4])
	dp, ok2 := parsePort(f[5])
	if !ok1 || !ok2 {
		return info, errorf(ErrInvalidProxyLine, "PROXY v1 line %s has invalid ports", quote(line))
	}
	info.Protocol = proto
	info.Source = netip.AddrPortFrom(src, sp)
	info.Destination = netip.AddrPortFrom(dst, dp)
	return info, nil
}

func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return uint16(n), n <= 65535
}

// parseProxyV2 parses a complete v2 block (signature, 4-byte header and
// length bytes of addresses and TLVs).
func parseProxyV2(b []byte) (ProxyInfo, error) {
	info := ProxyInfo{Version: 2}
	verCmd, famProto := b[12], b[13]
	if verCmd>>4 != 2 {
		return info, errorf(ErrInvalidProxyLine, "PROXY v2 version %d not supported", verCmd>>4)
	}
	addr := b[16:]
	switch verCmd & 0x0f {
	case 0x0: // LOCAL: the proxy's own connection, addresses meaningless
		info.Protocol = "LOCAL"
		return info, nil
	case 0x1: // PROXY
	default:
		return info, errorf(ErrInvalidProxyLine, "PROXY v2 command %d not supported", verCmd&0x0f)
	}
	family, proto := famProto>>4, famProto&0x0f
	if family == 0 {
		info.Protocol = "UNSPEC"
		return info, nil
	}
	if proto != 1 {
		return info, errorf(ErrInvalidProxyLine, "PROXY v2 transport %d not supported, only TCP", proto)
	}
	switch family {
	case 1:
		if len(addr) < 12 {
			return info, errorf(ErrInvalidProxyLine, "PROXY v2 IPv4 block too short")
		}
		info.Protocol = "TCP4"
		info.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[0:4])), binary.BigEndian.Uint16(addr[8:10]))
		info.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[4:8])), binary.BigEndian.Uint16(addr[10:12]))
	case 2:
		if len(addr) < 36 {
			return info, errorf(ErrInvalidProxyLine, "PROXY v2 IPv6 block too short")
		}
		info.Protocol = "TCP6"
		info.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(addr[0:16])), binary.BigEndian.Uint16(addr[32:34]))
		info.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(addr[16:32])), binary.BigEndian.Uint16(addr[34:36]))
	default:
		return info, errorf(ErrInvalidProxyLine, "PROXY v2 address family %d not supported", family)
	}
	return info, nil
}
