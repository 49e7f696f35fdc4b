package integration

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/demo"
)

// uwsgiRequest encodes a uwsgi packet with vars (key, value, key, value...)
// and a body.
func uwsgiRequest(body string, pairs ...string) []byte {
	var block []byte
	for _, s := range pairs {
		block = binary.LittleEndian.AppendUint16(block, uint16(len(s)))
		block = append(block, s...)
	}
	pkt := []byte{0, 0, 0, 0}
	binary.LittleEndian.PutUint16(pkt[1:], uint16(len(block)))
	return append(append(pkt, block...), body...)
}

// exchange sends b on a new connection to addr, half-closes, and returns
// all it reads until the server closes. A reset counts as a close: a
// server that refuses a packet with unread bytes resets.
func exchange(t *testing.T, network, addr string, b []byte) []byte {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(b); err != nil && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write: %v", err)
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	out, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v (after %q)", err, out)
	}
	return out
}

func uwsgiEcho(t *testing.T, addr string) demo.Echo {
	t.Helper()
	out := exchange(t, "tcp", addr, uwsgiRequest("hi", "REQUEST_METHOD", "POST", "REQUEST_URI", "/echo?u=1",
		"SERVER_PROTOCOL", "HTTP/1.1", "HTTP_HOST", "h", "CONTENT_LENGTH", "2", "REMOTE_ADDR", "192.0.2.4", "REMOTE_PORT", "1234"))
	res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(out))), nil)
	if err != nil {
		t.Fatalf("uwsgi response %q: %v", out, err)
	}
	var e demo.Echo
	if err := json.NewDecoder(res.Body).Decode(&e); err != nil || res.StatusCode != 200 {
		t.Fatalf("uwsgi response %d %q: %v", res.StatusCode, out, err)
	}
	if e.Body != "hi" || e.Query != "u=1" || e.RemoteAddr != "192.0.2.4:1234" {
		t.Fatalf("uwsgi echo: %+v", e)
	}
	return e
}

// TestUwsgiMalformedPacketsKeepWorker sends malformed packets straight to
// corral: each connection is closed without an answer, one line is
// logged, and the same worker serves the next good request.
func TestUwsgiMalformedPacketsKeepWorker(t *testing.T) {
	for _, k := range []string{"goroutine", "sync", "event"} {
		t.Run(k, func(t *testing.T) { testUwsgiMalformedPackets(t, k) })
	}
}

func testUwsgiMalformedPackets(t *testing.T, class string) {
	s := start(t, corralBin, []string{"-w", "1", "-k", class, "-b", "uwsgi://127.0.0.1:0", "demo"})
	addr := bareAddr(s.Addr)
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	pid := uwsgiEcho(t, addr).Pid
	big := []byte{0, 0, 0, 0}
	binary.LittleEndian.PutUint16(big[1:], 60000)
	good := uwsgiRequest("", "REQUEST_METHOD", "GET", "REQUEST_URI", "/echo")
	bad := map[string][]byte{
		"short header":          {0, 5},
		"modifier1 7":           append([]byte{7}, good[1:]...),
		"datasize over limit":   append(big, make([]byte, 60000)...),
		"block cut short":       good[:len(good)-3],
		"key length overruns":   {0, 4, 0, 0, 200, 0, 'A', 'B'},
		"value length overruns": {0, 5, 0, 0, 1, 0, 'K', 9, 0},
		"no REQUEST_METHOD":     uwsgiRequest("", "REQUEST_URI", "/echo"),
		"bad SERVER_PROTOCOL":   uwsgiRequest("", "REQUEST_METHOD", "GET", "REQUEST_URI", "/echo", "SERVER_PROTOCOL", "nope"),
	}
	for name, b := range bad {
		if out := exchange(t, "tcp", addr, b); len(out) != 0 {
			t.Errorf("%s: answered %q, want the connection closed", name, out)
		}
	}
	s.waitLogN(`uwsgi: bad request from 127\.0\.0\.1:\d+, closing the connection: malformed uwsgi packet`, len(bad), 5*time.Second)
	if e := uwsgiEcho(t, addr); e.Pid != pid {
		t.Errorf("served by pid %d after the bad packets, was %d: the worker died", e.Pid, pid)
	}
	if strings.Contains(s.log.String(), "panic") {
		t.Error("a panic was logged")
	}

	// --uwsgi-allow-from refuses peers not in it.
	s2 := start(t, corralBin, []string{"-w", "1", "-k", class, "-b", "uwsgi://127.0.0.1:0", "--uwsgi-allow-from", "10.0.0.0/8", "demo"})
	s2.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	if out := exchange(t, "tcp", bareAddr(s2.Addr), good); len(out) != 0 {
		t.Errorf("a peer not allowed got %q", out)
	}
	s2.waitLog(`uwsgi: refused connection from 127\.0\.0\.1:\d+, which --uwsgi-allow-from does not allow`, 5*time.Second)
}

func fcgiRec(typ uint8, id uint16, content []byte) []byte {
	b := []byte{1, typ, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), 0, 0}
	return append(b, content...)
}

func fcgiPairs(kv ...string) []byte {
	var b []byte
	for i := 0; i < len(kv); i += 2 {
		b = append(b, byte(len(kv[i])), byte(len(kv[i+1])))
		b = append(b, kv[i]+kv[i+1]...)
	}
	return b
}

func fcgiRequest(id uint16, body string, kv ...string) []byte {
	var b []byte
	b = append(b, fcgiRec(1, id, []byte{0, 1, 0, 0, 0, 0, 0, 0})...) // BEGIN_REQUEST, responder
	b = append(b, fcgiRec(4, id, fcgiPairs(kv...))...)
	b = append(b, fcgiRec(4, id, nil)...)
	if body != "" {
		b = append(b, fcgiRec(5, id, []byte(body))...)
	}
	return append(b, fcgiRec(5, id, nil)...)
}

type fcgiReply struct {
	stdout         string
	ends           map[uint16]byte // request id -> protocol status
	recordsOfTypes map[uint8]int
}

func parseFCGI(t *testing.T, b []byte) fcgiReply {
	t.Helper()
	r := fcgiReply{ends: map[uint16]byte{}, recordsOfTypes: map[uint8]int{}}
	for len(b) > 0 {
		if len(b) < 8 {
			t.Fatalf("trailing %d bytes", len(b))
		}
		typ, id, n, pad := b[1], binary.BigEndian.Uint16(b[2:]), int(binary.BigEndian.Uint16(b[4:])), int(b[6])
		content := b[8 : 8+n]
		r.recordsOfTypes[typ]++
		switch typ {
		case 6:
			r.stdout += string(content)
		case 3:
			r.ends[id] = content[4]
		}
		b = b[8+n+pad:]
	}
	return r
}

func fcgiEcho(t *testing.T, sock string) demo.Echo {
	t.Helper()
	out := exchange(t, "unix", sock, fcgiRequest(1, "hello", "REQUEST_METHOD", "PUT", "REQUEST_URI", "/echo?f=1",
		"SERVER_PROTOCOL", "HTTP/1.1", "CONTENT_LENGTH", "5", "REMOTE_ADDR", "192.0.2.5", "REMOTE_PORT", "99", "HTTP_X_TEST", "yes"))
	rep := parseFCGI(t, out)
	head, body, _ := strings.Cut(rep.stdout, "\r\n\r\n")
	if !strings.HasPrefix(head, "Status: 200 OK\r\n") || rep.ends[1] != 0 {
		t.Fatalf("FastCGI reply %q, ends %v", rep.stdout, rep.ends)
	}
	var e demo.Echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("%v: %q", err, body)
	}
	if e.Method != "PUT" || e.Body != "hello" || e.Query != "f=1" || e.RemoteAddr != "192.0.2.5:99" {
		t.Fatalf("FastCGI echo: %+v", e)
	}
	return e
}

// TestFastCGIMalformedRecordsKeepWorker sends malformed records straight
// to corral: each connection is closed, and the worker lives on. A second
// request id while one is in progress is refused with FCGI_CANT_MPX_CONN.
// On every worker type.
func TestFastCGIMalformedRecordsKeepWorker(t *testing.T) {
	for _, class := range workerClasses {
		t.Run(class, func(t *testing.T) { testFastCGIMalformedRecords(t, class) })
	}
}

func testFastCGIMalformedRecords(t *testing.T, class string) {
	sock := t.TempDir() + "/f.sock"
	s := start(t, corralBin, []string{"-w", "1", "-k", class, "-b", "fastcgi://unix:" + sock, "demo"})
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	pid := fcgiEcho(t, sock).Pid
	begin := fcgiRec(1, 1, []byte{0, 1, 0, 0, 0, 0, 0, 0})
	bad := map[string][]byte{
		"version 9":           {9, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
		"header cut short":    {1, 1, 0},
		"content cut short":   {1, 1, 0, 1, 0, 8, 0, 0, 0, 1},
		"begin of 3 bytes":    fcgiRec(1, 1, []byte{0, 1, 0}),
		"begin with id 0":     fcgiRec(1, 0, []byte{0, 1, 0, 0, 0, 0, 0, 0}),
		"stdin before params": append(begin, fcgiRec(5, 1, []byte("x"))...),
		"pair overruns":       append(append(begin, fcgiRec(4, 1, []byte{40, 40, 'a'})...), fcgiRec(4, 1, nil)...),
		"no REQUEST_METHOD":   fcgiRequest(1, "", "REQUEST_URI", "/echo"),
		"unknown type 77":     append(begin, fcgiRec(77, 1, nil)...),
	}
	for name, b := range bad {
		if out := exchange(t, "unix", sock, b); len(out) != 0 {
			t.Errorf("%s: answered %q, want the connection closed", name, out)
		}
	}
	s.waitLogN(`fastcgi: bad record from .*, closing the connection: malformed FastCGI record`, len(bad)-1, 5*time.Second)

	// Multiplexing: request 2 begins while request 1 waits for its body.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	params := fcgiPairs("REQUEST_METHOD", "POST", "REQUEST_URI", "/echo", "CONTENT_LENGTH", "3")
	c.Write(append(append(append(begin, fcgiRec(4, 1, params)...), fcgiRec(4, 1, nil)...),
		fcgiRec(1, 2, []byte{0, 1, 0, 0, 0, 0, 0, 0})...))
	hdr := make([]byte, 16)
	if _, err := io.ReadFull(c, hdr); err != nil || hdr[1] != 3 || binary.BigEndian.Uint16(hdr[2:]) != 2 || hdr[12] != 1 {
		t.Fatalf("second request id: %v %v, want END_REQUEST(2, FCGI_CANT_MPX_CONN)", hdr, err)
	}
	c.Write(append(fcgiRec(5, 1, []byte("abc")), fcgiRec(5, 1, nil)...))
	c.(*net.UnixConn).CloseWrite()
	out, _ := io.ReadAll(c)
	if rep := parseFCGI(t, out); !strings.Contains(rep.stdout, `"body": "abc"`) || rep.ends[1] != 0 {
		t.Errorf("first request after the refusal: %q %v", rep.stdout, rep.ends)
	}

	if e := fcgiEcho(t, sock); e.Pid != pid {
		t.Errorf("served by pid %d after the bad records, was %d: the worker died", e.Pid, pid)
	}
	if strings.Contains(s.log.String(), "panic") {
		t.Error("a panic was logged")
	}
}

// TestProxyProtocolV1AndV2 sends PROXY headers straight to corral: the
// client they name is /echo's remote_addr and the access log's %(h)s. On
// every worker type.
func TestProxyProtocolV1AndV2(t *testing.T) {
	for _, class := range workerClasses {
		t.Run(class, func(t *testing.T) { testProxyProtocol(t, class) })
	}
}

func testProxyProtocol(t *testing.T, class string) {
	s := start(t, corralBin, []string{"-w", "1", "-k", class, "-b", "127.0.0.1:0", "--proxy-protocol", "v1", "--access-logfile", "-", "demo"})
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	req := "GET /echo?p=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
	echo := func(s *server, pre string) (demo.Echo, string) {
		out := exchange(t, "tcp", s.Addr, []byte(pre+req))
		if len(out) == 0 {
			return demo.Echo{}, ""
		}
		res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(out))), nil)
		if err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		var e demo.Echo
		json.NewDecoder(res.Body).Decode(&e)
		return e, res.Status
	}
	e, _ := echo(s, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\n")
	if e.RemoteAddr != "203.0.113.7:5555" || e.Query != "p=1" {
		t.Errorf("v1: remote_addr %q query %q", e.RemoteAddr, e.Query)
	}
	s.waitLog(`(?m)^203\.0\.113\.7 - - \[[^]]+\] "GET /echo\?p=1 HTTP/1\.1" 200 `, 5*time.Second)
	// No header, or a malformed one: closed without an answer.
	for _, pre := range []string{"", "PROXY TCP4 203.0.113.7 127.0.0.1 5555\r\n", "PROXY TCP4 1.2.3.4 127.0.0.1 05 80\r\n"} {
		if e, status := echo(s, pre); status != "" {
			t.Errorf("header %q: answered %s %+v, want the connection closed", pre, status, e)
		}
	}
	s.waitLogN(`PROXY protocol: connection from 127\.0\.0\.1:\d+: malformed PROXY protocol header`, 3, 5*time.Second)

	// auto: v2, or no header at all; forwarded headers from 127.0.0.1 are trusted.
	s2 := start(t, corralBin, []string{"-w", "1", "-k", class, "-b", "127.0.0.1:0", "--proxy-protocol", "auto", "--access-logfile", "-", "demo"})
	s2.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	v2 := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x21, 0x11, 0, 12, 198, 51, 100, 9, 127, 0, 0, 1, 0x1a, 0x0a, 0, 80)
	if e, _ := echo(s2, string(v2)); e.RemoteAddr != "198.51.100.9:6666" {
		t.Errorf("v2: remote_addr %q", e.RemoteAddr)
	}
	if e, _ := echo(s2, ""); hostOf(e.RemoteAddr) != "127.0.0.1" {
		t.Errorf("auto without a header: remote_addr %q", e.RemoteAddr)
	}
	s2.waitLog(`(?m)^198\.51\.100\.9 - - \[`, 5*time.Second)
	code, body, err := getWithHeader(s2.Addr, "/echo", "X-Forwarded-For", "192.0.2.77")
	if err != nil || code != 200 || !strings.Contains(body, `"remote_addr": "192.0.2.77:0"`) {
		t.Errorf("X-Forwarded-For from a trusted peer: %d %v %s", code, err, body)
	}
}

func getWithHeader(addr, path, k, v string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Header.Set(k, v)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}
