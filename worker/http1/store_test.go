package http1

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// TestOriginURL checks the allocation-free URL against url.ParseRequestURI
// for every byte in a path and in a query, and for targets of each form.
func TestOriginURL(t *testing.T) {
	var targets []string
	for c := range 256 {
		targets = append(targets, "/a"+string(rune(c))[:1]+"b", "/a?"+string([]byte{byte(c)})+"b", "/"+string([]byte{byte(c)}))
	}
	targets = append(targets, "/", "/p?", "/p??", "/p?a?b", "/p?q#f", "//x/y", "/a%20b", "/%zz", "*", "http://h/p",
		"/p?a=1&b=%zz", "/é", "/a;b=c/d:e@f", "")
	for _, target := range targets {
		var u url.URL
		if !OriginURL(&u, target) {
			continue
		}
		want, err := url.ParseRequestURI(target)
		if err != nil || !reflect.DeepEqual(&u, want) {
			t.Errorf("%q: OriginURL %#v, url.ParseRequestURI %#v (%v)", target, u, want, err)
		}
	}
	var u url.URL
	if !OriginURL(&u, "/plaintext?x=1") || OriginURL(&u, "/a%20b") || OriginURL(&u, "*") || OriginURL(&u, "/p#f") {
		t.Error("OriginURL takes the wrong targets")
	}
}

// TestRequestStore builds requests one after another into one store, as a
// connection does: each must be the one ToHTTP builds, strings kept from
// an earlier one must not change, and the common request allocates nothing.
func TestRequestStore(t *testing.T) {
	var s RequestStore
	ctx := context.Background()
	wires := []string{
		"GET /a?x=1 HTTP/1.1\r\nHost: h1\r\nX-Long-Custom-Name: v1\r\nAccept: a\r\naccept: b\r\n\r\n",
		"POST /b%20c HTTP/1.1\r\nHost: h2\r\nContent-Length: 5\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: h2\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"GET http://abs.example/p HTTP/1.1\r\nHost: ignored\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
	}
	var kept []string
	for _, w := range wires {
		r := mustParse(t, w)
		want, err := ToHTTP(ctx, r, "192.0.2.1:1")
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.ToHTTP(ctx, r, "192.0.2.1:1")
		if err != nil {
			t.Fatal(err)
		}
		wantBody, _ := io.ReadAll(want.Body)
		gotBody, _ := io.ReadAll(got.Body)
		want.Body, got.Body = nil, nil
		if !reflect.DeepEqual(got, want) || string(gotBody) != string(wantBody) {
			t.Errorf("%q:\nstore   %+v %q\nToHTTP  %+v %q", w, got, gotBody, want, wantBody)
		}
		for _, vs := range got.Header {
			kept = append(kept, vs...)
		}
		kept = append(kept, got.Host)
	}
	joined := strings.Join(kept, ",") + ","
	for _, v := range []string{"v1,", "h1,", "h2,", "abs.example,"} {
		if !strings.Contains(joined, v) {
			t.Errorf("kept strings %q lack %q: a reuse changed them", joined, v)
		}
	}
	wire := []byte("GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: */*\r\nUser-Agent: wrk\r\n\r\n")
	p := &Parser{}
	if n := testing.AllocsPerRun(100, func() {
		_, r, err := p.Parse(wire)
		if r == nil || err != nil {
			t.Fatal(r, err)
		}
		if _, err := s.ToHTTP(ctx, r, "192.0.2.1:1"); err != nil {
			t.Fatal(err)
		}
	}); n > 0.1 {
		t.Errorf("%v allocations per request", n)
	}
}

// TestRequestStoreReset checks that what a handler sets on one request,
// path values and Pattern as http.ServeMux sets them, does not reach the
// next, and that each request has its own context.
func TestRequestStoreReset(t *testing.T) {
	var s RequestStore
	r := mustParse(t, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
	mux := http.NewServeMux()
	mux.HandleFunc("/{x}", func(w http.ResponseWriter, hr *http.Request) { hr.SetPathValue("y", "2") })
	type key struct{}
	for i, ctx := range []context.Context{
		context.Background(),
		context.WithValue(context.Background(), key{}, 1),
		context.WithValue(context.Background(), key{}, 2),
		context.WithValue(context.Background(), key{}, 2),
	} {
		hr, err := s.ToHTTP(ctx, r, "192.0.2.1:1")
		if err != nil {
			t.Fatal(err)
		}
		if hr.Context() != ctx || hr.Pattern != "" || hr.PathValue("x") != "" || hr.PathValue("y") != "" {
			t.Fatalf("request %d: context %v, Pattern %q, path values %q %q", i, hr.Context(), hr.Pattern, hr.PathValue("x"), hr.PathValue("y"))
		}
		mux.ServeHTTP(httptest.NewRecorder(), hr)
		if hr.Pattern != "/{x}" || hr.PathValue("x") != "a" || hr.PathValue("y") != "2" {
			t.Fatalf("request %d: the mux set Pattern %q, path values %q %q", i, hr.Pattern, hr.PathValue("x"), hr.PathValue("y"))
		}
	}
}

// BenchmarkToHTTP is the *http.Request of wrk's request and of a
// browser's: built once (ToHTTP), and into a reused RequestStore as the
// event worker builds them.
func BenchmarkToHTTP(b *testing.B) {
	for _, tc := range []struct{ name, wire string }{
		{"wrk", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"},
		{"browserGET", browserGET},
	} {
		p := &Parser{}
		_, r, err := p.Parse([]byte(tc.wire))
		if r == nil || err != nil {
			b.Fatal(r, err)
		}
		ctx := context.Background()
		b.Run(tc.name+"/once", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ToHTTP(ctx, r, "192.0.2.1:1")
			}
		})
		b.Run(tc.name+"/store", func(b *testing.B) {
			var s RequestStore
			b.ReportAllocs()
			for b.Loop() {
				s.ToHTTP(ctx, r, "192.0.2.1:1")
			}
		})
		// The event loop's stores serve many connections in turn, each
		// with a context of its own.
		conns := []context.Context{context.WithValue(ctx, ctxKey{}, 1), context.WithValue(ctx, ctxKey{}, 2)}
		b.Run(tc.name+"/store-conns", func(b *testing.B) {
			var s RequestStore
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.ToHTTP(conns[i&1], r, "192.0.2.1:1")
				i++
			}
		})
	}
}

type ctxKey struct{}
