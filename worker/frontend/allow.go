package frontend

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// AllowList is a set of peers trusted for something: --uwsgi-allow-from,
// --proxy-allow-from, --forwarded-allow-ips. It holds addresses and
// networks, or everyone ("*"). The zero AllowList allows no TCP peer.
//
// Peers on a unix socket are always allowed, as in Gunicorn: whoever can
// connect to the socket file was let in by its permissions.
type AllowList struct {
	all      bool
	prefixes []netip.Prefix
}

// ParseAllowList parses items, each an IP address ("127.0.0.1", "::1"), a
// network ("10.0.0.0/8") or "*" for everyone. An item may itself be a
// comma-separated list, so "127.0.0.1,::1" and ["127.0.0.1", "::1"] mean
// the same; blank items are ignored.
func ParseAllowList(items []string) (AllowList, error) {
	var a AllowList
	for _, item := range items {
		for _, s := range strings.Split(item, ",") {
			s = strings.TrimSpace(s)
			switch {
			case s == "":
			case s == "*":
				a.all = true
			case strings.Contains(s, "/"):
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return AllowList{}, fmt.Errorf("%q is not an IP address or network", s)
				}
				a.prefixes = append(a.prefixes, p.Masked())
			default:
				ip, err := netip.ParseAddr(s)
				if err != nil || ip.Zone() != "" {
					return AllowList{}, fmt.Errorf("%q is not an IP address or network", s)
				}
				ip = ip.Unmap()
				a.prefixes = append(a.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
			}
		}
	}
	return a, nil
}

// MustAllowList is ParseAllowList for lists known to be good; it panics
// on a bad one.
func MustAllowList(items ...string) AllowList {
	a, err := ParseAllowList(items)
	if err != nil {
		panic(err)
	}
	return a
}

// All reports whether the list allows everyone.
func (a AllowList) All() bool { return a.all }

// AllowsIP reports whether ip is in the list. IPv4-mapped IPv6 addresses
// count as their IPv4 address.
func (a AllowList) AllowsIP(ip netip.Addr) bool {
	if a.all {
		return true
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range a.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// AllowsAddr reports whether a connection's peer is allowed: a TCP peer
// by its IP, a unix socket peer always.
func (a AllowList) AllowsAddr(addr net.Addr) bool {
	switch v := addr.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(v.IP)
		return ok && a.AllowsIP(ip)
	case *net.UnixAddr:
		return true
	case nil:
		return false
	}
	return a.AllowsRemote(addr.String())
}

// AllowsRemote is AllowsAddr for a request's RemoteAddr ("IP:port"). An
// address that is no IP address, such as "@" for a unix socket peer, is
// allowed.
func (a AllowList) AllowsRemote(remote string) bool {
	ip, ok := parseRemoteIP(remote)
	if !ok {
		return true
	}
	return a.AllowsIP(ip)
}

// parseRemoteIP reads the IP address of "IP:port", "[IPv6]:port" or a bare IP.
func parseRemoteIP(remote string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr(), true
	}
	if ip, err := netip.ParseAddr(strings.Trim(remote, "[]")); err == nil {
		return ip, true
	}
	if h, _, err := net.SplitHostPort(remote); err == nil {
		if ip, err := netip.ParseAddr(h); err == nil {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// String lists the entries, "*" for everyone.
func (a AllowList) String() string {
	if a.all {
		return "*"
	}
	s := make([]string, len(a.prefixes))
	for i, p := range a.prefixes {
		if p.IsSingleIP() {
			s[i] = p.Addr().String()
		} else {
			s[i] = p.String()
		}
	}
	return strings.Join(s, ",")
}
