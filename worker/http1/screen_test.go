package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// screenReader is a Screen over a source, as an io.Reader.
type screenReader struct {
	s   Screen
	src io.Reader
}

func (r *screenReader) Read(b []byte) (int, error) { return r.s.Read(r.src, b) }

// chunkReader returns its input in pieces of the given sizes, then io.EOF.
type chunkReader struct {
	data  []byte
	sizes []int
}

func (c *chunkReader) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n, c.sizes = min(c.sizes[0], n), c.sizes[1:]
	}
	n = copy(b, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// screened reads all of wire through a Screen, in reads of size bufSize
// from a source that returns pieces of the given sizes.
// A refusal, once returned, is returned again.
func screened(t *testing.T, wire string, bufSize int, sizes ...int) (string, error) {
	t.Helper()
	r := &screenReader{src: &chunkReader{data: []byte(wire), sizes: sizes}}
	defer r.s.Release()
	var out bytes.Buffer
	b := make([]byte, bufSize)
	for {
		n, err := r.Read(b)
		out.Write(b[:n])
		if err == io.EOF {
			return out.String(), nil
		}
		if err != nil {
			if n, again := r.Read(b); n != 0 || again != err {
				t.Fatalf("after %v, Read = %d, %v", err, n, again)
			}
			return out.String(), err
		}
	}
}

const (
	getA   = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
	postB  = "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
	chunkC = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n"
)

// TestScreenPasses: what the Parser accepts comes out unchanged, but for
// the empty lines before a request-line, whatever the sizes of the reads.
func TestScreenPasses(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{getA + postB + chunkC, getA + postB + chunkC},
		{"\r\n" + getA + postB + "\r\n" + chunkC + "\n" + getA, getA + postB + chunkC + getA},
		{getA + "\r\n", getA},
	} {
		for _, bufSize := range []int{1, 7, 600, 4096} {
			for _, sizes := range [][]int{nil, {1}, {3, 1, 5, 2, 8, 13, 1, 1, 40}} {
				if len(sizes) == 1 {
					sizes = slices.Repeat([]int{1}, len(tc.in)) // byte by byte
				}
				got, err := screened(t, tc.in, bufSize, sizes...)
				if err != nil || got != tc.out {
					t.Fatalf("%q in reads of %d from pieces %v: %q, %v; want %q", tc.in, bufSize, sizes, got, err, tc.out)
				}
			}
		}
	}
}

// TestScreenRefuses: a refused request, and all after it, never comes out;
// what came before it does, then a *Refusal.
func TestScreenRefuses(t *testing.T) {
	const bad = "GET /x HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"
	for _, tc := range []struct {
		in, out string
		status  int
		inBody  bool
	}{
		{getA + bad + getA, getA, 400, false},
		{"GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: h\r\n\r\n", "", 414, false},
		{getA + "GET / HTTP/1.1\r\n" + strings.Repeat("X-A: b\r\n", 101) + "\r\n", getA, 431, false},
		{postB + "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n" + getA, postB, 400, false},
		{"GET / HTTP/1.1\r\n\r\n", "", 400, false}, // no Host
		{"\r\n\r\n\r\n" + getA, "", 400, false},
	} {
		for _, sizes := range [][]int{nil, slices.Repeat([]int{1}, len(tc.in))} {
			got, err := screened(t, tc.in, 4096, sizes...)
			var r *Refusal
			if !errors.As(err, &r) || Status(r) != tc.status || r.InBody != tc.inBody || got != tc.out {
				t.Fatalf("%.60q (pieces %d): %q, %v; want %q, a refusal with status %d, in body %v", tc.in, len(sizes), got, err, tc.out, tc.status, tc.inBody)
			}
		}
	}
}

// TestScreenRefusesInBody: a framing error in a body that arrives with its
// head refuses the request whole; one that arrives after the head went out
// refuses the rest of the body, and says so.
func TestScreenRefusesInBody(t *testing.T) {
	const head = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	const wire = head + "5\r\nhello\r\n5;=\r\nworld\r\n0\r\n\r\n" + getA
	for _, tc := range []struct {
		sizes  []int
		out    string
		inBody bool
	}{
		{nil, "", false},
		{[]int{len(head) + 3}, head + "5\r\nhello\r\n", true},
	} {
		got, err := screened(t, wire, 4096, tc.sizes...)
		var r *Refusal
		if !errors.As(err, &r) || Status(r) != 400 || r.InBody != tc.inBody || got != tc.out {
			t.Fatalf("pieces %v: %q, %v (%+v); want %q, in body %v", tc.sizes, got, err, r, tc.out, tc.inBody)
		}
	}
}

// TestScreenHoldsHeads: a head comes out only whole.
func TestScreenHoldsHeads(t *testing.T) {
	src := &chunkReader{data: []byte(postB + getA), sizes: []int{20, 10, 30, 3, 100}}
	r := &screenReader{src: src}
	b := make([]byte, 4096)
	n, err := r.Read(b)
	head := len(postB) - len("hello")
	if err != nil || n < head || string(b[:n]) != (postB + getA)[:n] {
		t.Fatalf("first read: %q, %v; want at least the whole head of %q", b[:n], err, postB)
	}
}

// TestScreenAfterClose: nothing after a request that closes the
// connection comes out, and the source's EOF does.
func TestScreenAfterClose(t *testing.T) {
	for _, close := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
	} {
		got, err := screened(t, close+"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"+strings.Repeat("x", 10000), 4096)
		if err != nil || got != close {
			t.Fatalf("%q: %q, %v", close, got, err)
		}
	}
}

// TestScreenUpgrade: after a request that may switch protocols, and after
// Bypass, the stream goes out as it is.
func TestScreenUpgrade(t *testing.T) {
	const frames = "\x81\x05hello not HTTP\r\n\r\n"
	for _, up := range []string{
		"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
	} {
		for _, sizes := range [][]int{nil, slices.Repeat([]int{1}, len(up)+len(frames))} {
			if got, err := screened(t, up+frames, 4096, sizes...); err != nil || got != up+frames {
				t.Fatalf("%q: %q, %v", up, got, err)
			}
		}
	}
	r := &screenReader{src: strings.NewReader(getA + "GET / HTT")}
	b := make([]byte, 4096)
	if n, err := r.Read(b); err != nil || string(b[:n]) != getA {
		t.Fatalf("%q, %v", b[:n], err)
	}
	r.s.Bypass()
	if got, err := io.ReadAll(r); err != nil || string(got) != "GET / HTT" {
		t.Fatalf("after Bypass: %q, %v", got, err)
	}
}

// TestScreenNetHTTP reads requests through a Screen with net/http's own
// ReadRequest, as the goroutine worker does.
func TestScreenNetHTTP(t *testing.T) {
	br := bufio.NewReader(&screenReader{src: iotest.HalfReader(strings.NewReader("\r\n" + getA + postB + "\r\n" + chunkC))})
	var got []string
	for {
		req, err := http.ReadRequest(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, req.Method+" "+req.RequestURI+" "+string(body)+" "+req.Trailer.Get("T"))
	}
	if want := []string{"GET /a  ", "POST /b hello ", "POST /c hello 1"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("net/http read %q, want %q", got, want)
	}
}

// TestScreenAllocs: requests that arrive whole cost nothing to screen.
func TestScreenAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts are not meaningful here")
	}
	var s Screen
	wire := []byte(browserGET)
	src := bytes.NewReader(wire)
	b := make([]byte, 4096)
	read := func() {
		src.Reset(wire)
		if n, err := s.Read(src, b); err != nil || n != len(wire) {
			t.Fatal(n, err)
		}
	}
	read()
	if allocs := testing.AllocsPerRun(100, read); allocs != 0 {
		t.Errorf("%v allocations per request, want 0", allocs)
	}
}
