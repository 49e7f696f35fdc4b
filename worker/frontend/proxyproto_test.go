package frontend

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/corral-server/corral/worker/http1"
)

// TestReadProxyHeader is about the reader: modes, what it consumes, streams
// that end early, headers larger than the bufio.Reader. What a header may
// say is tested in package http1 (TestParseProxy), whose parser it uses.
func TestReadProxyHeader(t *testing.T) {
	ip4 := []byte{203, 0, 113, 7, 127, 0, 0, 1, 0x15, 0xb3, 0, 80}
	ip6 := append(append(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("::1").AsSlice()...), 0x15, 0xb3, 0, 80)
	good := []struct {
		mode, in string
		want     http1.ProxyInfo
	}{
		{ProxyV1, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n", http1.ProxyInfo{Version: 1, Source: netip.MustParseAddrPort("203.0.113.7:5555"), Destination: netip.MustParseAddrPort("127.0.0.1:80")}},
		{ProxyAuto, "PROXY TCP6 2001:db8::1 ::1 5555 80\r\n", http1.ProxyInfo{Version: 1, Source: netip.MustParseAddrPort("[2001:db8::1]:5555"), Destination: netip.MustParseAddrPort("[::1]:80")}},
		{ProxyV1, "PROXY UNKNOWN whatever\r\n", http1.ProxyInfo{Version: 1, Local: true}},
		{ProxyV2, proxyV2(1, 0x11, ip4, 0), http1.ProxyInfo{Version: 2, Source: netip.MustParseAddrPort("203.0.113.7:5555"), Destination: netip.MustParseAddrPort("127.0.0.1:80")}},
		{ProxyAuto, proxyV2(1, 0x11, ip4, 20), http1.ProxyInfo{Version: 2, Source: netip.MustParseAddrPort("203.0.113.7:5555"), Destination: netip.MustParseAddrPort("127.0.0.1:80")}},
		{ProxyAuto, proxyV2(1, 0x11, ip4, 5000), http1.ProxyInfo{Version: 2, Source: netip.MustParseAddrPort("203.0.113.7:5555"), Destination: netip.MustParseAddrPort("127.0.0.1:80")}},
		{ProxyV2, proxyV2(1, 0x21, ip6, 0), http1.ProxyInfo{Version: 2, Source: netip.MustParseAddrPort("[2001:db8::1]:5555"), Destination: netip.MustParseAddrPort("[::1]:80")}},
		{ProxyV2, proxyV2(0, 0x00, nil, 0), http1.ProxyInfo{Version: 2, Local: true}},
		{ProxyAuto, "", http1.ProxyInfo{}},
		{ProxyAuto, "POST / HTTP/1.1\r\n", http1.ProxyInfo{}},
		{ProxyAuto, "\r\nGET / HTTP/1.1\r\n", http1.ProxyInfo{}},
		{ProxyAuto, "PROX", http1.ProxyInfo{}},
	}
	for _, c := range good {
		// 16 bytes is bufio's smallest buffer: no header fits in it.
		for _, size := range []int{16, 4096} {
			br := bufio.NewReaderSize(strings.NewReader(c.in+"GET /"), size)
			h, err := ReadProxyHeader(br, c.mode)
			rest, _ := io.ReadAll(br)
			wantRest := "GET /"
			if h.Version == 0 {
				wantRest = c.in + wantRest
			}
			if err != nil || h != c.want || string(rest) != wantRest {
				t.Errorf("%s %.40q (buffer %d): %+v, %v, rest %.40q; want %+v", c.mode, c.in, size, h, err, rest, c.want)
			}
		}
	}
	bad := []struct{ mode, in string }{
		{ProxyV1, "GET / HTTP/1.1\r\n\r\n"},
		{ProxyV1, "PROX"},
		{ProxyV1, "PROXY TCP4 203.0.113.7"},
		{ProxyV1, "PROXY TCP4 203.0.113.7 127.0.0.1 5555\r\n"},
		{ProxyV1, proxyV2(1, 0x11, ip4, 0)},
		{ProxyV2, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n"},
		{ProxyV2, "GET / HTTP/1.1\r\n\r\n"},
		{ProxyV2, "\r\n\r\n"},
		{ProxyV2, proxyV2(1, 0x11, ip4, 0)[:20]},
		{ProxyV2, proxyV2(3, 0x11, ip4, 0)},
		{ProxyAuto, "PROXY TCP4 garbage\r\n"},
		{ProxyAuto, proxyV2(1, 0x12, ip4, 0)},
	}
	for _, c := range bad {
		if h, err := ReadProxyHeader(bufio.NewReader(strings.NewReader(c.in)), c.mode); !errors.Is(err, http1.ErrInvalidProxyLine) ||
			!strings.HasPrefix(err.Error(), "malformed PROXY protocol header: ") || h != (http1.ProxyInfo{}) {
			t.Errorf("%s %q: %+v, %v; want http1.ErrInvalidProxyLine", c.mode, c.in, h, err)
		}
	}
	for _, mode := range []string{ProxyV1, ProxyV2, ProxyAuto} {
		if _, err := ReadProxyHeader(bufio.NewReader(strings.NewReader("")), mode); err != io.EOF {
			t.Errorf("%s, no bytes: %v, want io.EOF", mode, err)
		}
	}

	// In auto mode, a request decides at its first byte that is no
	// signature's, without waiting for more.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go a.Write([]byte("PO"))
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if h, err := ReadProxyHeader(bufio.NewReader(b), ProxyAuto); err != nil || h != (http1.ProxyInfo{}) {
		t.Errorf("auto, %q and nothing more: %+v, %v", "PO", h, err)
	}
}

func TestProxyConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dial := func(send string) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		go func() { c.Write([]byte(send)) }()
		t.Cleanup(func() { c.Close() })
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	// A header from an allowed peer names the client.
	pc := NewProxyConn(dial("PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nhello"), ProxyV1, MustAllowList("127.0.0.1"), nil)
	if pc.RemoteAddr().String() != "203.0.113.7:5555" || pc.PeerAddr().(*net.TCPAddr).IP.String() != "127.0.0.1" {
		t.Errorf("remote %s peer %s", pc.RemoteAddr(), pc.PeerAddr())
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(pc, b); err != nil || string(b) != "hello" {
		t.Errorf("read %q %v", b, err)
	}
	// A peer not allowed to send one is refused in v1 mode...
	var logged []error
	pc = NewProxyConn(dial("PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nhello"), ProxyV1, MustAllowList("10.0.0.1"), func(err error) { logged = append(logged, err) })
	if _, err := pc.Read(b); err == nil || len(logged) != 1 || !strings.Contains(logged[0].Error(), "--proxy-allow-from") {
		t.Errorf("not allowed: %v, logged %v", err, logged)
	}
	// ...and served as it is in auto mode.
	pc = NewProxyConn(dial("PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n"), ProxyAuto, MustAllowList("10.0.0.1"), nil)
	if pc.RemoteAddr().(*net.TCPAddr).IP.String() != "127.0.0.1" {
		t.Errorf("auto, not allowed: remote %s", pc.RemoteAddr())
	}
	if n, err := io.ReadFull(pc, make([]byte, 6)); n != 6 || err != nil {
		t.Errorf("auto, not allowed: the header should reach the app: %d %v", n, err)
	}
	// A malformed header closes.
	pc = NewProxyConn(dial("PROXY TCP9 x\r\n"), ProxyV1, MustAllowList("*"), nil)
	if _, err := pc.Read(b); !errors.Is(err, http1.ErrInvalidProxyLine) {
		t.Errorf("malformed: %v", err)
	}
	// A deadline the caller set before the header was read survives it.
	pc = NewProxyConn(dial("PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n"), ProxyV1, MustAllowList("*"), nil)
	pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if pc.RemoteAddr().String() != "203.0.113.7:5555" {
		t.Errorf("remote %s", pc.RemoteAddr())
	}
	start := time.Now()
	if _, err := pc.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("the caller's deadline was lost: %v after %s", err, time.Since(start))
	}
}
