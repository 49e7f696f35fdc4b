package worker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func uwsgiBlock(pairs ...string) []byte {
	var b []byte
	for _, s := range pairs {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	return b
}

func uwsgiPacket(block []byte) []byte {
	h := []byte{0, 0, 0, 0}
	binary.LittleEndian.PutUint16(h[1:], uint16(len(block)))
	return append(h, block...)
}

func TestUwsgiGoodPackets(t *testing.T) {
	block := uwsgiBlock("REQUEST_METHOD", "POST", "REQUEST_URI", "/a/b?x=1&y=%2F", "QUERY_STRING", "x=1&y=%2F",
		"SERVER_PROTOCOL", "HTTP/1.1", "HTTP_HOST", "example.com", "HTTP_X_FOO_BAR", "baz", "CONTENT_TYPE", "text/plain",
		"CONTENT_LENGTH", "5", "REMOTE_ADDR", "192.0.2.7", "REMOTE_PORT", "40000", "UWSGI_SCHEME", "https", "EMPTY", "")
	vars, err := ReadUwsgiVars(bytes.NewReader(append(uwsgiPacket(block), "hello"...)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if vars["REQUEST_METHOD"] != "POST" || vars["EMPTY"] != "" || len(vars) != 12 {
		t.Fatalf("vars %q", vars)
	}
	r, err := RequestFromVars(vars, strings.NewReader("hello"), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	checks := map[string][2]string{
		"method":      {r.Method, "POST"},
		"uri":         {r.RequestURI, "/a/b?x=1&y=%2F"},
		"path":        {r.URL.Path, "/a/b"},
		"query":       {r.URL.RawQuery, "x=1&y=%2F"},
		"proto":       {r.Proto, "HTTP/1.1"},
		"host":        {r.Host, "example.com"},
		"x-foo-bar":   {r.Header.Get("X-Foo-Bar"), "baz"},
		"type":        {r.Header.Get("Content-Type"), "text/plain"},
		"remote":      {r.RemoteAddr, "192.0.2.7:40000"},
		"scheme":      {r.URL.Scheme, "https"},
		"body":        {string(body), "hello"},
		"host header": {r.Header.Get("Host"), ""},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	if r.ContentLength != 5 || r.TLS == nil || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		t.Errorf("length %d TLS %v proto %d.%d", r.ContentLength, r.TLS, r.ProtoMajor, r.ProtoMinor)
	}

	// Without REQUEST_URI: PATH_INFO and QUERY_STRING; without HTTP_HOST:
	// SERVER_NAME; without REMOTE_ADDR: the peer.
	vars = map[string]string{"REQUEST_METHOD": "GET", "PATH_INFO": "/p", "QUERY_STRING": "q=1", "SERVER_NAME": "srv",
		"SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.0"}
	r, err = RequestFromVars(vars, nil, &net.UnixAddr{Name: "@", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if r.RequestURI != "/p?q=1" || r.URL.Path != "/p" || r.Host != "srv:8080" || r.RemoteAddr != "@" || r.Body != http.NoBody || r.TLS != nil || r.URL.Scheme != "" {
		t.Errorf("fallbacks: uri %q path %q host %q remote %q body %v tls %v scheme %q", r.RequestURI, r.URL.Path, r.Host, r.RemoteAddr, r.Body, r.TLS, r.URL.Scheme)
	}
	// An empty block is a packet, but not a request.
	if vars, err := ReadUwsgiVars(bytes.NewReader(uwsgiPacket(nil)), 0); err != nil || len(vars) != 0 {
		t.Errorf("empty block: %v %v", vars, err)
	}
}

func TestUwsgiMalformedPackets(t *testing.T) {
	good := uwsgiBlock("REQUEST_METHOD", "GET")
	over := []byte{0, 0, 0, 0}
	binary.LittleEndian.PutUint16(over[1:], 40000)
	cases := map[string][]byte{
		"short header":           {0, 5},
		"modifier1 not 0":        append([]byte{5, byte(len(good)), 0, 0}, good...),
		"datasize over limit":    append(over, make([]byte, 40000)...),
		"block cut short":        uwsgiPacket(good)[:len(good)],
		"key length overruns":    uwsgiPacket([]byte{200, 0, 'A', 'B'}),
		"value length overruns":  uwsgiPacket(append(uwsgiBlock("K"), 9, 0, 'v')),
		"one stray byte":         uwsgiPacket(append(uwsgiBlock("K", "V"), 1)),
		"key length but no key":  uwsgiPacket([]byte{1}),
		"empty key":              uwsgiPacket(uwsgiBlock("", "V")),
		"datasize over a header": {0, 0xff, 0xff, 0},
	}
	for name, pkt := range cases {
		_, err := ReadUwsgiVars(bytes.NewReader(pkt), 0)
		if !errors.Is(err, ErrUwsgi) {
			t.Errorf("%s: err %v, want ErrUwsgi", name, err)
		}
	}
	if _, err := ReadUwsgiVars(bytes.NewReader(nil), 0); err != io.EOF {
		t.Errorf("no bytes: %v, want io.EOF", err)
	}
	if _, err := ReadUwsgiVars(bytes.NewReader(uwsgiPacket(good)), 4); !errors.Is(err, ErrUwsgi) {
		t.Errorf("a limit of 4 bytes took a %d-byte block", len(good))
	}
	// Variables that parse but do not make a request.
	for name, vars := range map[string]map[string]string{
		"no method":      {"REQUEST_URI": "/"},
		"bad method":     {"REQUEST_METHOD": "GE T"},
		"bad protocol":   {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "SPDY/9"},
		"bad length":     {"REQUEST_METHOD": "GET", "CONTENT_LENGTH": "-1"},
		"bad uri":        {"REQUEST_METHOD": "GET", "REQUEST_URI": "no-slash"},
		"header newline": {"REQUEST_METHOD": "GET", "HTTP_X": "a\r\nb"},
		"bad header":     {"REQUEST_METHOD": "GET", "HTTP_X_(": "a"},
	} {
		if _, err := RequestFromVars(vars, nil, nil); err == nil {
			t.Errorf("%s: RequestFromVars accepted %q", name, vars)
		}
	}
}

func fcgiRecord(typ uint8, id uint16, content []byte) []byte {
	b := []byte{1, typ, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), 3, 0}
	return append(append(b, content...), 0, 0, 0)
}

func TestFastCGIRecordsAndParams(t *testing.T) {
	long := strings.Repeat("v", 300)
	params := appendFastCGIPair(appendFastCGIPair(nil, "REQUEST_METHOD", "GET"), "LONG", long)
	stream := append(fcgiRecord(FastCGIParams, 1, params), fcgiRecord(FastCGIStdin, 1, nil)...)
	br := bufio.NewReader(bytes.NewReader(stream))
	rec, err := ReadFastCGIRecord(br, nil)
	if err != nil || rec.Type != FastCGIParams || rec.ID != 1 {
		t.Fatalf("record %+v %v", rec, err)
	}
	vars, err := ParseFastCGIParams(rec.Content)
	if err != nil || vars["REQUEST_METHOD"] != "GET" || vars["LONG"] != long {
		t.Fatalf("params %q %v", vars, err)
	}
	if rec, err = ReadFastCGIRecord(br, nil); err != nil || rec.Type != FastCGIStdin || len(rec.Content) != 0 {
		t.Fatalf("padding not skipped: %+v %v", rec, err)
	}
	if _, err = ReadFastCGIRecord(br, nil); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	bad := map[string][]byte{
		"version 2":      {2, 1, 0, 1, 0, 0, 0, 0},
		"short header":   {1, 1, 0},
		"short content":  {1, 5, 0, 1, 0, 10, 0, 0, 'a'},
		"short padding":  {1, 5, 0, 1, 0, 1, 4, 0, 'a', 0},
		"content length": {1, 5, 0, 1, 0xff, 0xff, 0, 0},
	}
	for name, b := range bad {
		if _, err := ReadFastCGIRecord(bytes.NewReader(b), nil); !errors.Is(err, ErrFastCGI) {
			t.Errorf("%s: %v, want ErrFastCGI", name, err)
		}
	}
	for name, p := range map[string][]byte{
		"overrun":      {5, 1, 'a'},
		"short 4-len":  {0x80, 0},
		"no value len": {1},
		"empty name":   {0, 1, 'v'},
	} {
		if _, err := ParseFastCGIParams(p); !errors.Is(err, ErrFastCGI) {
			t.Errorf("params %s: %v, want ErrFastCGI", name, err)
		}
	}
}

// fcgiServe runs a ConnServer on one end of a pipe and returns the other.
func fcgiServe(t *testing.T, h http.Handler) net.Conn {
	t.Helper()
	a, b := net.Pipe()
	s := &ConnServer{Protocol: ProtocolFastCGI, Handler: h, ReadTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		UwsgiAllow: MustAllowList("*")}
	done := make(chan struct{})
	go func() {
		s.ServeConn(a)
		close(done)
	}()
	t.Cleanup(func() {
		b.Close()
		<-done
	})
	b.SetDeadline(time.Now().Add(10 * time.Second))
	return b
}

func readRecords(t *testing.T, r io.Reader, until func(FastCGIRecord) bool) []FastCGIRecord {
	t.Helper()
	var out []FastCGIRecord
	for {
		rec, err := ReadFastCGIRecord(r, nil)
		if err != nil {
			t.Fatalf("after %d records: %v", len(out), err)
		}
		rec.Content = append([]byte(nil), rec.Content...)
		out = append(out, rec)
		if until(rec) {
			return out
		}
	}
}

func TestFastCGIRefusesMultiplexing(t *testing.T) {
	release := make(chan struct{})
	c := fcgiServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("X-Id", r.URL.Query().Get("id"))
		io.WriteString(w, "done")
	}))
	begin := func(id uint16, keep byte) []byte {
		return fcgiRecord(FastCGIBeginRequest, id, []byte{0, 1, keep, 0, 0, 0, 0, 0})
	}
	params := appendFastCGIPair(appendFastCGIPair(nil, "REQUEST_METHOD", "GET"), "REQUEST_URI", "/?id=1")
	var req []byte
	req = append(req, begin(1, 1)...)
	req = append(req, fcgiRecord(FastCGIParams, 1, params)...)
	req = append(req, fcgiRecord(FastCGIParams, 1, nil)...)
	req = append(req, fcgiRecord(FastCGIStdin, 1, nil)...)
	req = append(req, begin(2, 1)...) // a second request while the first runs
	go c.Write(req)
	recs := readRecords(t, c, func(r FastCGIRecord) bool { return r.Type == FastCGIEndRequest })
	if r := recs[0]; r.ID != 2 || r.Content[4] != fcgiCantMpxConn {
		t.Fatalf("second request: %+v, want END_REQUEST with FCGI_CANT_MPX_CONN", r)
	}
	close(release)
	recs = readRecords(t, c, func(r FastCGIRecord) bool { return r.Type == FastCGIEndRequest })
	var out []byte
	for _, r := range recs {
		if r.Type == FastCGIStdout {
			out = append(out, r.Content...)
		}
	}
	end := recs[len(recs)-1]
	if end.ID != 1 || end.Content[4] != fcgiRequestComplete || !strings.HasPrefix(string(out), "Status: 200 OK\r\n") ||
		!strings.Contains(string(out), "X-Id: 1\r\n") || !strings.HasSuffix(string(out), "\r\n\r\ndone") {
		t.Fatalf("first request: end %+v, stdout %q", end, out)
	}
	// The connection was kept: the server answers GET_VALUES on it.
	go c.Write(fcgiRecord(FastCGIGetValues, 0, appendFastCGIPair(nil, "FCGI_MPXS_CONNS", "")))
	recs = readRecords(t, c, func(FastCGIRecord) bool { return true })
	if vals, _ := ParseFastCGIParams(recs[0].Content); recs[0].Type != FastCGIGetValuesResult || vals["FCGI_MPXS_CONNS"] != "0" {
		t.Fatalf("GET_VALUES: %+v %q", recs[0], vals)
	}
}

func TestFastCGIMalformedRecordCloses(t *testing.T) {
	for name, b := range map[string][]byte{
		"bad version":         {9, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
		"begin too short":     fcgiRecord(FastCGIBeginRequest, 1, []byte{0, 1}),
		"stdin before params": append(fcgiRecord(FastCGIBeginRequest, 1, []byte{0, 1, 0, 0, 0, 0, 0, 0}), fcgiRecord(FastCGIStdin, 1, []byte("x"))...),
		"bad params": append(append(fcgiRecord(FastCGIBeginRequest, 1, []byte{0, 1, 0, 0, 0, 0, 0, 0}),
			fcgiRecord(FastCGIParams, 1, []byte{50, 1, 'a'})...), fcgiRecord(FastCGIParams, 1, nil)...),
		"unknown type": fcgiRecord(42, 1, nil),
	} {
		t.Run(name, func(t *testing.T) {
			c := fcgiServe(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("handler ran") }))
			go c.Write(b)
			if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
				t.Errorf("read %d bytes, %v; want the connection closed", n, err)
			}
		})
	}
	// An unknown management record is answered, and the connection stays.
	c := fcgiServe(t, http.NotFoundHandler())
	go c.Write(fcgiRecord(42, 0, nil))
	recs := readRecords(t, c, func(FastCGIRecord) bool { return true })
	if recs[0].Type != FastCGIUnknownType || recs[0].Content[0] != 42 {
		t.Errorf("unknown management record: %+v", recs[0])
	}
}

func TestProxyHeaders(t *testing.T) {
	v2 := func(cmd, fam byte, addr []byte, tlv int) []byte {
		b := append([]byte(nil), proxyV2Sig...)
		b = append(b, 0x20|cmd, fam)
		b = binary.BigEndian.AppendUint16(b, uint16(len(addr)+tlv))
		return append(append(b, addr...), make([]byte, tlv)...)
	}
	ip4 := []byte{203, 0, 113, 7, 127, 0, 0, 1, 0x15, 0xb3, 0, 80}
	ip6 := append(append(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("::1").AsSlice()...), 0x15, 0xb3, 0, 80)
	good := []struct {
		mode, in string
		want     ProxyHeader
	}{
		{ProxyV1, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n", ProxyHeader{1, false, netip.MustParseAddrPort("203.0.113.7:5555"), netip.MustParseAddrPort("127.0.0.1:80")}},
		{ProxyAuto, "PROXY TCP6 2001:db8::1 ::1 5555 80\r\n", ProxyHeader{1, false, netip.MustParseAddrPort("[2001:db8::1]:5555"), netip.MustParseAddrPort("[::1]:80")}},
		{ProxyV1, "PROXY UNKNOWN whatever\r\n", ProxyHeader{Version: 1, Local: true}},
		{ProxyV2, string(v2(1, 0x11, ip4, 0)), ProxyHeader{2, false, netip.MustParseAddrPort("203.0.113.7:5555"), netip.MustParseAddrPort("127.0.0.1:80")}},
		{ProxyAuto, string(v2(1, 0x11, ip4, 20)), ProxyHeader{2, false, netip.MustParseAddrPort("203.0.113.7:5555"), netip.MustParseAddrPort("127.0.0.1:80")}},
		{ProxyV2, string(v2(1, 0x21, ip6, 0)), ProxyHeader{2, false, netip.MustParseAddrPort("[2001:db8::1]:5555"), netip.MustParseAddrPort("[::1]:80")}},
		{ProxyV2, string(v2(0, 0x00, nil, 0)), ProxyHeader{Version: 2, Local: true}},
		{ProxyAuto, "", ProxyHeader{}},
		{ProxyAuto, "POST / HTTP/1.1\r\n", ProxyHeader{}},
		{ProxyAuto, "\r\nGET / HTTP/1.1\r\n", ProxyHeader{}},
	}
	for _, c := range good {
		br := bufio.NewReader(strings.NewReader(c.in + "GET /"))
		h, err := ReadProxyHeader(br, c.mode)
		if c.in == "" {
			if h != (ProxyHeader{}) {
				t.Errorf("auto with nothing to read: %+v", h)
			}
			continue
		}
		rest, _ := io.ReadAll(br)
		wantRest := "GET /"
		if h.Version == 0 {
			wantRest = c.in + wantRest
		}
		if err != nil || h != c.want || string(rest) != wantRest {
			t.Errorf("%s %q: %+v, %v, rest %q; want %+v", c.mode, c.in, h, err, rest, c.want)
		}
	}
	bad := []struct{ mode, in string }{
		{ProxyV1, "GET / HTTP/1.1\r\n\r\n"},
		{ProxyV1, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\n"},
		{ProxyV1, "PROXY TCP4 203.0.113.7 127.0.0.1 5555\r\n"},
		{ProxyV1, "PROXY TCP4 203.0.113.7  127.0.0.1 5555 80\r\n"},
		{ProxyV1, "PROXY TCP4 2001:db8::1 127.0.0.1 5555 80\r\n"},
		{ProxyV1, "PROXY TCP6 203.0.113.7 127.0.0.1 5555 80\r\n"},
		{ProxyV1, "PROXY TCP4 203.0.113.7 127.0.0.1 05555 80\r\n"},
		{ProxyV1, "PROXY TCP4 203.0.113.7 127.0.0.1 70000 80\r\n"},
		{ProxyV1, "PROXY UDP4 203.0.113.7 127.0.0.1 5555 80\r\n"},
		{ProxyV1, "PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n"},
		{ProxyV1, "PROXY TCP4 203.0.113.7"},
		{ProxyV1, string(v2(1, 0x11, ip4, 0))},
		{ProxyV2, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n"},
		{ProxyV2, string(v2(1, 0x11, ip4[:8], 0))},
		{ProxyV2, string(v2(1, 0x21, ip4, 0))},
		{ProxyV2, string(v2(1, 0x12, ip4, 0))},
		{ProxyV2, string(v2(3, 0x11, ip4, 0))},
		{ProxyV2, string(v2(1, 0x11, ip4, 0)[:20])},
		{ProxyV2, string(append(append([]byte(nil), proxyV2Sig...), 0x31, 0x11, 0, 12)) + string(ip4)},
		{ProxyAuto, "PROXY TCP4 garbage\r\n"},
	}
	for _, c := range bad {
		if h, err := ReadProxyHeader(bufio.NewReader(strings.NewReader(c.in)), c.mode); !errors.Is(err, ErrProxyHeader) {
			t.Errorf("%s %q: %+v, %v; want ErrProxyHeader", c.mode, c.in, h, err)
		}
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
	if _, err := pc.Read(b); !errors.Is(err, ErrProxyHeader) {
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
