package frontend

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"strconv"
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
	benchUwsgi(b, func(u *http1.UwsgiRequest) error {
		_, err := s.Request(ctx, u, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000})
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
