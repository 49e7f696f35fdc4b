package http1

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// proxyV2 builds a v2 header: command, family and transport byte, address
// block and tlv bytes of TLVs.
func proxyV2(cmd, fam byte, addr []byte, tlv int) string {
	b := append([]byte(nil), proxyV2Sig...)
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addr)+tlv))
	return string(append(append(b, addr...), make([]byte, tlv)...))
}

var (
	proxyIP4 = []byte{203, 0, 113, 7, 127, 0, 0, 1, 0x15, 0xb3, 0, 80}
	proxyIP6 = append(append(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("::1").AsSlice()...), 0x15, 0xb3, 0, 80)
)

func addrPorts(src, dst string) ProxyInfo {
	return ProxyInfo{Source: netip.MustParseAddrPort(src), Destination: netip.MustParseAddrPort(dst)}
}

func v1(i ProxyInfo) ProxyInfo { i.Version = 1; return i }
func v2(i ProxyInfo) ProxyInfo { i.Version = 2; return i }

// proxyGood and proxyBad are every PROXY header the goroutine and sync
// workers' reader and the Parser were tested with before they shared
// ParseProxy, and some more.
var proxyGood = []struct {
	name, in string
	want     ProxyInfo
}{
	{"v1 TCP4", "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n", v1(addrPorts("203.0.113.7:5555", "127.0.0.1:80"))},
	{"v1 TCP4 gunicorn", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", v1(addrPorts("192.168.0.1:56324", "192.168.0.11:443"))},
	{"v1 TCP6", "PROXY TCP6 2001:db8::1 ::1 5555 80\r\n", v1(addrPorts("[2001:db8::1]:5555", "[::1]:80"))},
	{"v1 TCP6 small ports", "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", v1(addrPorts("[2001:db8::1]:1", "[2001:db8::2]:2"))},
	{"v1 TCP6 mapped", "PROXY TCP6 ::ffff:192.0.2.1 ::1 0 65535\r\n", v1(addrPorts("192.0.2.1:0", "[::1]:65535"))},
	{"v1 UNKNOWN", "PROXY UNKNOWN whatever\r\n", ProxyInfo{Version: 1, Local: true}},
	{"v1 UNKNOWN bare", "PROXY UNKNOWN\r\n", ProxyInfo{Version: 1, Local: true}},
	{"v1 UNKNOWN 107 bytes", "PROXY UNKNOWN " + strings.Repeat("x", 107-16) + "\r\n", ProxyInfo{Version: 1, Local: true}},
	{"v2 TCP4", proxyV2(1, 0x11, proxyIP4, 0), v2(addrPorts("203.0.113.7:5555", "127.0.0.1:80"))},
	{"v2 TCP4 gunicorn", proxyV2(1, 0x11, []byte{0xc0, 0xa8, 0x01, 0x0a, 0xc0, 0xa8, 0x01, 0x01, 0x30, 0x39, 0x01, 0xbb}, 0),
		v2(addrPorts("192.168.1.10:12345", "192.168.1.1:443"))},
	{"v2 TCP4 TLVs", proxyV2(1, 0x11, proxyIP4, 20), v2(addrPorts("203.0.113.7:5555", "127.0.0.1:80"))},
	{"v2 TCP4 large TLVs", proxyV2(1, 0x11, proxyIP4, 1000), v2(addrPorts("203.0.113.7:5555", "127.0.0.1:80"))},
	{"v2 TCP6", proxyV2(1, 0x21, proxyIP6, 0), v2(addrPorts("[2001:db8::1]:5555", "[::1]:80"))},
	{"v2 TCP6 mapped", proxyV2(1, 0x21, append(append(netip.MustParseAddr("::ffff:192.0.2.1").AsSlice(), make([]byte, 16)...), 0, 1, 0, 2), 0),
		v2(addrPorts("192.0.2.1:1", "[::]:2"))},
	{"v2 LOCAL", proxyV2(0, 0x00, nil, 0), ProxyInfo{Version: 2, Local: true}},
	{"v2 LOCAL ignores the family", proxyV2(0, 0x99, []byte{1, 2, 3}, 0), ProxyInfo{Version: 2, Local: true}},
	{"v2 UNSPEC", proxyV2(1, 0x00, nil, 0), ProxyInfo{Version: 2, Local: true}},
	{"v2 UNIX stream", proxyV2(1, 0x31, make([]byte, 216), 0), ProxyInfo{Version: 2, Local: true}},
}

var proxyBad = []struct{ name, in string }{
	{"v1 bare LF", "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\n"},
	{"v1 5 fields", "PROXY TCP4 203.0.113.7 127.0.0.1 5555\r\n"},
	{"v1 7 fields", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 x\r\n"},
	{"v1 trailing space", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n"},
	{"v1 double space", "PROXY TCP4 203.0.113.7  127.0.0.1 5555 80\r\n"},
	{"v1 double space after protocol", "PROXY TCP4  1.2.3.4 1.2.3.4 1 1\r\n"},
	{"v1 TCP4 with IPv6", "PROXY TCP4 2001:db8::1 127.0.0.1 5555 80\r\n"},
	{"v1 TCP4 with ::1", "PROXY TCP4 ::1 ::1 1 2\r\n"},
	{"v1 TCP6 with IPv4", "PROXY TCP6 203.0.113.7 127.0.0.1 5555 80\r\n"},
	{"v1 zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"},
	{"v1 not an address", "PROXY TCP4 garbage\r\n"},
	{"v1 leading zero in port", "PROXY TCP4 203.0.113.7 127.0.0.1 05555 80\r\n"},
	{"v1 port 65536", "PROXY TCP4 1.2.3.4 1.2.3.4 65536 1\r\n"},
	{"v1 port 70000", "PROXY TCP4 203.0.113.7 127.0.0.1 70000 80\r\n"},
	{"v1 port sign", "PROXY TCP4 203.0.113.7 127.0.0.1 +1 80\r\n"},
	{"v1 UDP4", "PROXY UDP4 203.0.113.7 127.0.0.1 5555 80\r\n"},
	{"v1 lower case", "PROXY tcp4 203.0.113.7 127.0.0.1 5555 80\r\n"},
	{"v1 over 107 bytes", "PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n"},
	{"v1 108 bytes", "PROXY UNKNOWN " + strings.Repeat("x", 108-16) + "\r\n"},
	{"v1 no CRLF", "PROXY " + strings.Repeat("x", 200)},
	{"v2 version 1", "\r\n\r\n\x00\r\nQUIT\n\x11\x11\x00\x00"},
	{"v2 version 3", "\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + string(proxyIP4)},
	{"v2 command 3", proxyV2(3, 0x11, proxyIP4, 0)},
	{"v2 TCP4 short", proxyV2(1, 0x11, proxyIP4[:8], 0)},
	{"v2 TCP6 short", proxyV2(1, 0x21, proxyIP4, 0)},
	{"v2 UNIX short", proxyV2(1, 0x31, proxyIP6, 0)},
	{"v2 UDP4", proxyV2(1, 0x12, proxyIP4, 0)},
	{"v2 UDP6", proxyV2(1, 0x22, proxyIP6, 0)},
	{"v2 UNIX datagram", proxyV2(1, 0x32, make([]byte, 216), 0)},
	{"v2 INET unspecified transport", proxyV2(1, 0x10, proxyIP4, 0)},
	{"v2 UNSPEC stream", proxyV2(1, 0x01, nil, 0)},
	{"v2 family 4", proxyV2(1, 0x41, proxyIP6, 0)},
}

// TestParseProxy feeds each header to ParseProxy a byte at a time, as a
// caller that re-parses what it has received so far would, and to a Parser
// in front of a request.
func TestParseProxy(t *testing.T) {
	const req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	auto := DefaultConfig()
	auto.ProxyProtocol = ProxyAuto
	for _, tc := range proxyGood {
		t.Run(tc.name, func(t *testing.T) {
			for i := range len(tc.in) {
				if n, info, err := ParseProxy([]byte(tc.in[:i])); n != 0 || err != nil || info.Source.IsValid() {
					t.Fatalf("%d of %d bytes: %d, %+v, %v; want a call for more", i, len(tc.in), n, info, err)
				}
			}
			n, info, err := ParseProxy([]byte(tc.in + req))
			if n != len(tc.in) || info != tc.want || err != nil {
				t.Fatalf("%q: %d, %+v, %v; want %d, %+v", tc.in, n, info, err, len(tc.in), tc.want)
			}
			wire := []byte(tc.in + req)
			for _, chunks := range [][][]byte{{wire}, splitters[1].split("", wire), randomSplit(newRand(1), wire, 3)} {
				p := &Parser{Config: auto}
				out := drive(t, p, chunks)
				got, ok := p.Proxy()
				if out.err != nil || len(out.reqs) != 1 || !ok || got != tc.want {
					t.Fatalf("Parser: %v, %d requests, %+v %v; want %+v", out.err, len(out.reqs), got, ok, tc.want)
				}
			}
		})
	}
	for _, tc := range proxyBad {
		t.Run(tc.name, func(t *testing.T) {
			var first error
			for i := range len(tc.in) + 1 {
				n, _, err := ParseProxy([]byte(tc.in[:i]))
				if n != 0 || (first != nil && err == nil) {
					t.Fatalf("%d of %d bytes: %d, %v after %v", i, len(tc.in), n, err, first)
				}
				if first == nil {
					first = err
				}
			}
			if !errors.Is(first, ErrInvalidProxyLine) {
				t.Fatalf("%q: %v, want ErrInvalidProxyLine", tc.in, first)
			}
			wantErr(t, auto, tc.in+req, ErrInvalidProxyLine, 400)
		})
	}
	if _, _, err := ParseProxy([]byte(req)); !errors.Is(err, ErrInvalidProxyLine) {
		t.Errorf("no signature: %v, want ErrInvalidProxyLine", err)
	}
}

func TestProxyVersion(t *testing.T) {
	for _, tc := range []struct {
		in      string
		version int
		ok      bool
	}{
		{"", 0, false},
		{"P", 0, false},
		{"PROXY", 0, false},
		{"PROXY ", 1, true},
		{"PROXY TCP4", 1, true},
		{"PROXYX", 0, true},
		{"POST", 0, true},
		{"\r\n\r", 0, false},
		{string(proxyV2Sig[:11]), 0, false},
		{string(proxyV2Sig), 2, true},
		{"\r\nGET", 0, true},
		{"GET", 0, true},
	} {
		if v, ok := ProxyVersion([]byte(tc.in)); v != tc.version || ok != tc.ok {
			t.Errorf("ProxyVersion(%q) = %d, %v; want %d, %v", tc.in, v, ok, tc.version, tc.ok)
		}
	}
}
