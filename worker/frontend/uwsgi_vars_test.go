package frontend

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/corral-server/corral/worker/http1"
)

// nginxUwsgiGet is the packet nginx's uwsgi_pass sends for wrk's GET /,
// with the Debian uwsgi_params.
func nginxUwsgiGet() []byte {
	return uwsgiPacket(uwsgiBlock("QUERY_STRING", "", "REQUEST_METHOD", "GET", "CONTENT_TYPE", "", "CONTENT_LENGTH", "",
		"REQUEST_URI", "/", "PATH_INFO", "/", "DOCUMENT_ROOT", "/usr/share/nginx/html", "SERVER_PROTOCOL", "HTTP/1.1",
		"REQUEST_SCHEME", "http", "REMOTE_ADDR", "127.0.0.1", "REMOTE_PORT", "52814", "SERVER_PORT", "8080",
		"SERVER_NAME", "", "HTTP_HOST", "127.0.0.1"))
}

// BenchmarkRequestFromUwsgi is the request building of a uwsgi
// connection on the event worker: one per nginx connection.
func BenchmarkRequestFromUwsgi(b *testing.B) {
	peer := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	benchUwsgi(b, func(u *http1.UwsgiRequest) error {
		_, err := RequestFromUwsgi(u, peer)
		return err
	})
}

// BenchmarkUwsgiStore is the same into one store, as the event worker
// builds them.
func BenchmarkUwsgiStore(b *testing.B) {
	var s UwsgiStore
	ctx := context.Background()
	peer := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	benchUwsgi(b, func(u *http1.UwsgiRequest) error {
		_, err := s.Request(ctx, u, peer)
		return err
	})
}

// benchUwsgi parses nginx's packet and builds its request, over and over.
func benchUwsgi(b *testing.B, build func(*http1.UwsgiRequest) error) {
	pkt := nginxUwsgiGet()
	var p http1.UwsgiParser
	b.ReportAllocs()
	for b.Loop() {
		p.Reset()
		_, u, err := p.Parse(pkt)
		if err != nil || u == nil {
			b.Fatal(u, err)
		}
		if err := build(u); err != nil {
			b.Fatal(err)
		}
	}
}

// RequestFromUwsgi builds from the packet's list what RequestFromVars
// builds from a map of it: of variables sent twice, the last counts,
// headers included, in a short list and in a long one.
func TestRequestFromUwsgiAsFromMap(t *testing.T) {
	long := []string{"REQUEST_METHOD", "PUT", "HTTP_X_DUP", "first"}
	for i := range cgiVarsScan {
		long = append(long, fmt.Sprintf("HTTP_X_V%d", i), strconv.Itoa(i), "HTTP_X_DUP", strconv.Itoa(i))
	}
	long = append(long, "REQUEST_METHOD", "GET", "HTTP_X_DUP", "last")
	blocks := map[string][]byte{
		"nginx": nginxUwsgiGet()[4:],
		"duplicates": uwsgiBlock("REQUEST_METHOD", "POST", "REQUEST_URI", "/a", "HTTP_X_A", "1", "HTTP_HOST", "h1",
			"HTTP_X_A", "2", "REQUEST_URI", "/b?q=1", "HTTP_HOST", "h2", "CONTENT_LENGTH", "4", "CONTENT_LENGTH", "",
			"REMOTE_ADDR", "192.0.2.1", "REMOTE_PORT", "9", "HTTPS", "on", "HTTPS", "off", "QUERY_STRING", "x", "QUERY_STRING", "y",
			"PATH_INFO", "/p"),
		"long": uwsgiBlock(long...),
	}
	for name, block := range blocks {
		vars, err := ParseUwsgiVars(block)
		if err != nil {
			t.Fatal(err)
		}
		want, err := RequestFromVars(vars, nil, nil)
		if err != nil {
			t.Fatalf("%s: RequestFromVars: %v", name, err)
		}
		var p http1.UwsgiParser
		_, u, err := p.Parse(uwsgiPacket(block))
		if err != nil || u == nil {
			t.Fatalf("%s: Parse: %v %v", name, u, err)
		}
		got, err := RequestFromUwsgi(u, nil)
		if err != nil {
			t.Fatalf("%s: RequestFromUwsgi: %v", name, err)
		}
		if got.Method != want.Method || got.RequestURI != want.RequestURI || got.URL.String() != want.URL.String() ||
			got.Host != want.Host || got.RemoteAddr != want.RemoteAddr || got.ContentLength != want.ContentLength ||
			(got.TLS == nil) != (want.TLS == nil) || !reflect.DeepEqual(got.Header, want.Header) {
			t.Errorf("%s: from the list %s %q %s host %q remote %q length %d tls %v %v\nfrom the map %s %q %s host %q remote %q length %d tls %v %v",
				name, got.Method, got.RequestURI, got.URL, got.Host, got.RemoteAddr, got.ContentLength, got.TLS != nil, got.Header,
				want.Method, want.RequestURI, want.URL, want.Host, want.RemoteAddr, want.ContentLength, want.TLS != nil, want.Header)
		}
	}
}

// A UwsgiStore reuses the request it builds, but never the strings it
// gave out: a handler may keep r.Header's values, r.RemoteAddr and the
// rest past the next request, while the store carves request after
// request from its blocks, allocating none of its own once they have room.
func TestUwsgiStoreKeepsStrings(t *testing.T) {
	packet := func(i int) []byte {
		addr := fmt.Sprintf("192.0.2.%d", i%250)
		if i%2 == 1 {
			addr = fmt.Sprintf("2001:db8::%x", i)
		}
		return uwsgiPacket(uwsgiBlock("REQUEST_METHOD", "GET", "REQUEST_URI", fmt.Sprintf("/r%d?q=%d", i, i),
			"QUERY_STRING", fmt.Sprintf("q=%d", i), "PATH_INFO", fmt.Sprintf("/r%d", i), "SERVER_PROTOCOL", "HTTP/1.1",
			"REMOTE_ADDR", addr, "REMOTE_PORT", strconv.Itoa(1000+i), "HTTP_HOST", fmt.Sprintf("h%d.example", i),
			"HTTP_X_REQUEST_ID", fmt.Sprintf("id-%d", i), "HTTP_X_SOMETHING_ELSE", fmt.Sprintf("v%d", i),
			"HTTP_x_lower_9_Mixed", "m"))
	}
	type kept struct {
		method, uri, path, query, host, remote string
		header                                 map[string]string
	}
	keep := func(r *http.Request) kept {
		k := kept{r.Method, r.RequestURI, r.URL.Path, r.URL.RawQuery, r.Host, r.RemoteAddr, map[string]string{}}
		for name, v := range r.Header {
			k.header[name] = v[0]
		}
		return k
	}
	copyOf := func(k kept) kept {
		c := kept{strings.Clone(k.method), strings.Clone(k.uri), strings.Clone(k.path), strings.Clone(k.query),
			strings.Clone(k.host), strings.Clone(k.remote), map[string]string{}}
		for name, v := range k.header {
			c.header[name] = strings.Clone(v)
		}
		return c
	}
	var s UwsgiStore
	var p http1.UwsgiParser
	ctx := context.Background()
	var held []kept      // the strings as the store gave them
	var want []kept      // copies of them, made at once
	for i := range 200 { // 200 requests of about 250 bytes: a dozen blocks
		p.Reset()
		_, u, err := p.Parse(packet(i))
		if err != nil || u == nil {
			t.Fatal(u, err)
		}
		r, err := s.Request(ctx, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		once, err := RequestFromUwsgi(u, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := keep(r)
		if !reflect.DeepEqual(got, keep(once)) {
			t.Fatalf("request %d from the store %+v, built once %+v", i, got, keep(once))
		}
		held, want = append(held, got), append(want, copyOf(got))
	}
	for i := range held {
		if !reflect.DeepEqual(held[i], want[i]) {
			t.Fatalf("request %d's strings changed under it: %+v, were %+v", i, held[i], want[i])
		}
	}
	pkt := packet(7)
	allocs := testing.AllocsPerRun(100, func() {
		p.Reset()
		_, u, _ := p.Parse(pkt)
		if _, err := s.Request(ctx, u, nil); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a request into a used store allocated %v times, want 0 (amortized)", allocs)
	}
}
