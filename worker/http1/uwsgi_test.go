package http1

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"reflect"
	"strings"
	"testing"

	"github.com/corral-server/corral/worker/internal/workertest"
)

// uwsgiBlock encodes name and value pairs as a variables block.
var uwsgiBlock = workertest.UwsgiBlock

// uwsgiPacket is a packet with modifier1 0: header, block and body.
func uwsgiPacket(mod2 byte, block []byte, body string) []byte {
	b := []byte{0, 0, 0, mod2}
	binary.LittleEndian.PutUint16(b[1:], uint16(len(block)))
	return append(append(b, block...), body...)
}

// nginxVars is what nginx's uwsgi_params sends for a browser's GET.
var nginxVars = []string{
	"QUERY_STRING", "ref=home", "REQUEST_METHOD", "GET", "CONTENT_TYPE", "", "CONTENT_LENGTH", "",
	"REQUEST_URI", "/articles/2024/parsing-http.html?ref=home", "PATH_INFO", "/articles/2024/parsing-http.html",
	"DOCUMENT_ROOT", "/usr/share/nginx/html", "SERVER_PROTOCOL", "HTTP/1.1", "REQUEST_SCHEME", "https", "HTTPS", "on",
	"REMOTE_ADDR", "192.0.2.7", "REMOTE_PORT", "40000", "SERVER_PORT", "443", "SERVER_NAME", "www.example.com",
	"HTTP_HOST", "www.example.com",
	"HTTP_USER_AGENT", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
	"HTTP_ACCEPT", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
	"HTTP_ACCEPT_LANGUAGE", "en-US,en;q=0.5", "HTTP_ACCEPT_ENCODING", "gzip, deflate, br, zstd",
	"HTTP_COOKIE", "session=7f3a9c2e1b4d5f6a; theme=dark; _ga=GA1.2.123456789.1700000000",
	"HTTP_UPGRADE_INSECURE_REQUESTS", "1",
}

// withVar returns vars with name's value replaced, or name added.
func withVar(vars []string, name, value string) []string {
	out := append([]string(nil), vars...)
	for i := 0; i < len(out); i += 2 {
		if out[i] == name {
			out[i+1] = value
			return out
		}
	}
	return append(out, name, value)
}

type uwsgiSnap struct {
	Modifier2     uint8
	Vars          [][2]string
	ContentLength int64
	Body          string
}

func snapUwsgi(r *UwsgiRequest) uwsgiSnap {
	s := uwsgiSnap{Modifier2: r.Modifier2, ContentLength: r.ContentLength, Body: string(r.Body)}
	for _, v := range r.Vars {
		s.Vars = append(s.Vars, [2]string{string(v.Name), string(v.Value)})
	}
	return s
}

func wantSnap(mod2 uint8, cl int64, body string, pairs ...string) uwsgiSnap {
	s := uwsgiSnap{Modifier2: mod2, ContentLength: cl, Body: body}
	for i := 0; i < len(pairs); i += 2 {
		s.Vars = append(s.Vars, [2]string{pairs[i], pairs[i+1]})
	}
	return s
}

type uwsgiOutcome struct {
	reqs []uwsgiSnap
	err  error
}

// driveUwsgi feeds chunks to p as an event loop would, and EOF at the end.
func driveUwsgi(t testing.TB, p *UwsgiParser, chunks [][]byte) uwsgiOutcome {
	t.Helper()
	var out uwsgiOutcome
	var pending []byte
	for _, c := range chunks {
		pending = append(pending, c...)
		for {
			n, req, err := p.Parse(pending)
			if n < 0 || n > len(pending) {
				t.Fatalf("Parse consumed %d of %d bytes", n, len(pending))
			}
			if req == nil && err == nil && n != len(pending) {
				t.Fatalf("Parse asked for more and left %d of %d bytes", len(pending)-n, len(pending))
			}
			pending = pending[n:]
			if err != nil {
				out.err = err
				return out
			}
			if req == nil {
				break
			}
			out.reqs = append(out.reqs, snapUwsgi(req))
		}
	}
	out.err = p.EOF()
	return out
}

// uwsgiSplits is the wire whole, byte by byte, and in random slices.
func uwsgiSplits(name string, wire []byte) map[string][][]byte {
	h := fnv.New64a()
	h.Write([]byte(name))
	return map[string][][]byte{
		"whole":     {wire},
		"bytewise":  splitters[1].split(name, wire),
		"random1-7": randomSplit(newRand(h.Sum64()), wire, 7),
	}
}

// parseUwsgi runs wire through fresh parsers in every slicing, checks that
// they agree exactly, and returns the outcome.
func parseUwsgi(t *testing.T, newParser func() *UwsgiParser, wire []byte) uwsgiOutcome {
	t.Helper()
	whole := driveUwsgi(t, newParser(), [][]byte{wire})
	for name, chunks := range uwsgiSplits(t.Name(), wire) {
		out := driveUwsgi(t, newParser(), chunks)
		if !reflect.DeepEqual(out.reqs, whole.reqs) || errString(out.err) != errString(whole.err) {
			t.Fatalf("%s differs from whole input:\n %+v %v\n %+v %v", name, out.reqs, out.err, whole.reqs, whole.err)
		}
	}
	return whole
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestUwsgiParse(t *testing.T) {
	nginx := wantSnap(0, 0, "", nginxVars...)
	post := withVar(withVar(withVar(nginxVars, "REQUEST_METHOD", "POST"), "CONTENT_LENGTH", "11"), "CONTENT_TYPE", "text/plain")
	long := strings.Repeat("v", 1000) // a length with a high byte
	for _, tc := range []struct {
		name string
		wire []byte
		want []uwsgiSnap
	}{
		{"nginx GET", uwsgiPacket(0, uwsgiBlock(nginxVars...), ""), []uwsgiSnap{nginx}},
		{"POST with body", uwsgiPacket(0, uwsgiBlock(post...), "hello world"), []uwsgiSnap{wantSnap(0, 11, "hello world", post...)}},
		{"empty block", uwsgiPacket(0, nil, ""), []uwsgiSnap{{}}},
		{"empty value", uwsgiPacket(0, uwsgiBlock("EMPTY", "", "X", "y"), ""), []uwsgiSnap{wantSnap(0, 0, "", "EMPTY", "", "X", "y")}},
		{"modifier2", uwsgiPacket(7, uwsgiBlock("A", "b"), ""), []uwsgiSnap{wantSnap(7, 0, "", "A", "b")}},
		{"CONTENT_LENGTH 0", uwsgiPacket(0, uwsgiBlock("CONTENT_LENGTH", "0"), ""), []uwsgiSnap{wantSnap(0, 0, "", "CONTENT_LENGTH", "0")}},
		{"CONTENT_LENGTH leading zeros", uwsgiPacket(0, uwsgiBlock("CONTENT_LENGTH", "003"), "abc"), []uwsgiSnap{wantSnap(0, 3, "abc", "CONTENT_LENGTH", "003")}},
		{"CONTENT_LENGTH twice, the last counts", uwsgiPacket(0, uwsgiBlock("CONTENT_LENGTH", "99", "CONTENT_LENGTH", "3"), "abc"),
			[]uwsgiSnap{wantSnap(0, 3, "abc", "CONTENT_LENGTH", "99", "CONTENT_LENGTH", "3")}},
		{"binary value", uwsgiPacket(0, uwsgiBlock("B", "\x00\xff\r\n"), ""), []uwsgiSnap{wantSnap(0, 0, "", "B", "\x00\xff\r\n")}},
		{"long value", uwsgiPacket(0, uwsgiBlock("L", long), ""), []uwsgiSnap{wantSnap(0, 0, "", "L", long)}},
		{"two packets", append(uwsgiPacket(0, uwsgiBlock("CONTENT_LENGTH", "2"), "ab"), uwsgiPacket(0, uwsgiBlock("A", "b"), "")...),
			[]uwsgiSnap{wantSnap(0, 2, "ab", "CONTENT_LENGTH", "2"), wantSnap(0, 0, "", "A", "b")}},
		{"nothing", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := parseUwsgi(t, func() *UwsgiParser { return &UwsgiParser{} }, tc.wire)
			if out.err != nil || !reflect.DeepEqual(out.reqs, tc.want) {
				t.Fatalf("%v\n got %+v\nwant %+v", out.err, out.reqs, tc.want)
			}
		})
	}
}

func TestUwsgiMalformed(t *testing.T) {
	good := uwsgiBlock("REQUEST_METHOD", "GET")
	over := []byte{0, 0x40, 0x9c, 0} // a 40000-byte block
	cl := func(v string) []byte { return uwsgiPacket(0, uwsgiBlock("CONTENT_LENGTH", v), "") }
	for _, tc := range []struct {
		name    string
		p       UwsgiParser
		wire    []byte
		also    error // a second sentinel besides ErrUwsgi
		status  int
		partial bool // the error comes before the packet's end
	}{
		{name: "modifier1 not 0", wire: append([]byte{5, byte(len(good)), 0, 0}, good...), status: 400, partial: true},
		{name: "block over the default limit", wire: append(over, make([]byte, 40000)...), also: ErrLimitRequestHeaders, status: 431, partial: true},
		{name: "block of 65535 bytes", wire: []byte{0, 0xff, 0xff, 0}, also: ErrLimitRequestHeaders, status: 431},
		{name: "block over MaxVars", p: UwsgiParser{MaxVars: len(good) - 1}, wire: uwsgiPacket(0, good, ""), also: ErrLimitRequestHeaders, status: 431, partial: true},
		{name: "name length overruns", wire: uwsgiPacket(0, []byte{200, 0, 'A', 'B'}, ""), status: 400},
		{name: "value length overruns", wire: uwsgiPacket(0, append(uwsgiBlock("K"), 9, 0, 'v'), ""), status: 400},
		{name: "one stray byte", wire: uwsgiPacket(0, append(uwsgiBlock("K", "V"), 1), ""), status: 400},
		{name: "name length but no name", wire: uwsgiPacket(0, []byte{1}, ""), status: 400},
		{name: "no value length", wire: uwsgiPacket(0, uwsgiBlock("K"), ""), status: 400},
		{name: "empty name", wire: uwsgiPacket(0, uwsgiBlock("", "V"), ""), status: 400},
		{name: "CONTENT_LENGTH negative", wire: cl("-1"), status: 400},
		{name: "CONTENT_LENGTH plus", wire: cl("+5"), status: 400},
		{name: "CONTENT_LENGTH space", wire: cl(" 5"), status: 400},
		{name: "CONTENT_LENGTH trailing space", wire: cl("5 "), status: 400},
		{name: "CONTENT_LENGTH hex", wire: cl("0x5"), status: 400},
		{name: "CONTENT_LENGTH word", wire: cl("five"), status: 400},
		{name: "CONTENT_LENGTH overflow", wire: cl("99999999999999999999"), status: 400},
		{name: "body over MaxBody", p: UwsgiParser{MaxBody: 4}, wire: uwsgiPacket(0, uwsgiBlock("CONTENT_LENGTH", "5"), "hello"), also: ErrBodyTooLarge, status: 413, partial: true},
		{name: "cut in the header", wire: []byte{0, 5}, also: ErrNoMoreData, status: 0},
		{name: "cut in the block", wire: uwsgiPacket(0, good, "")[:len(good)], also: ErrNoMoreData, status: 0},
		{name: "cut in the body", wire: uwsgiPacket(0, uwsgiBlock("CONTENT_LENGTH", "5"), "hell"), also: ErrNoMoreData, status: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := parseUwsgi(t, func() *UwsgiParser { p := tc.p; return &p }, tc.wire)
			if !errors.Is(out.err, ErrUwsgi) || (tc.also != nil && !errors.Is(out.err, tc.also)) || len(out.reqs) != 0 {
				t.Fatalf("%v, %d requests; want ErrUwsgi and %v", out.err, len(out.reqs), tc.also)
			}
			if got := Status(out.err); got != tc.status {
				t.Fatalf("Status(%v) = %d, want %d", out.err, got, tc.status)
			}
			if !strings.HasPrefix(out.err.Error(), "malformed uwsgi packet: ") {
				t.Fatalf("error %q does not say what failed", out.err)
			}
			// The error is known without the rest of the packet.
			if tc.partial {
				p := tc.p
				if _, _, err := p.Parse(tc.wire[:len(tc.wire)-1]); errString(err) != errString(out.err) {
					t.Fatalf("one byte short: %v, want %v", err, out.err)
				}
			}
		})
	}
}

func TestUwsgiLimits(t *testing.T) {
	block := uwsgiBlock("CONTENT_LENGTH", "5", "X", "y")
	wire := uwsgiPacket(0, block, "hello")
	at := func() *UwsgiParser { return &UwsgiParser{MaxVars: len(block), MaxBody: 5} }
	if out := parseUwsgi(t, at, wire); out.err != nil || len(out.reqs) != 1 || out.reqs[0].Body != "hello" {
		t.Fatalf("at the limits: %+v %v", out.reqs, out.err)
	}
	if out := parseUwsgi(t, func() *UwsgiParser { p := at(); p.MaxVars--; return p }, wire); Status(out.err) != 431 {
		t.Errorf("block one byte over: %v", out.err)
	}
	if out := parseUwsgi(t, func() *UwsgiParser { p := at(); p.MaxBody--; return p }, wire); Status(out.err) != 413 {
		t.Errorf("body one byte over: %v", out.err)
	}
	// The default is 32 KiB.
	big := uwsgiBlock("X", strings.Repeat("y", DefaultUwsgiMaxVars-5))
	if out := parseUwsgi(t, func() *UwsgiParser { return &UwsgiParser{} }, uwsgiPacket(0, big, "")); out.err != nil || len(big) != DefaultUwsgiMaxVars {
		t.Errorf("a block of %d bytes: %v", len(big), out.err)
	}
	if out := parseUwsgi(t, func() *UwsgiParser { return &UwsgiParser{} }, uwsgiPacket(0, append(big, 0), "")); Status(out.err) != 431 {
		t.Errorf("a block of %d bytes: %v", len(big)+1, out.err)
	}
}

func TestUwsgiReuseAndRelease(t *testing.T) {
	wire := uwsgiPacket(0, uwsgiBlock("CONTENT_LENGTH", "4", "A", "b"), "body")
	p := &UwsgiParser{}
	_, r1, _ := p.Parse(wire)
	_, r2, err := p.Parse(wire)
	if err != nil || r1 != r2 || string(r2.Body) != "body" {
		t.Fatalf("second packet: %v %+v", err, r2)
	}
	if v, ok := r2.Var("A"); !ok || string(v) != "b" {
		t.Fatalf("Var(A) = %q, %v", v, ok)
	}
	if _, ok := r2.Var("B"); ok {
		t.Fatal("Var(B) found a variable that was not sent")
	}
	p.Release()
	if p.s != nil {
		t.Fatal("Release kept the storage")
	}

	// Release mid-packet keeps the state.
	p.Parse(wire[:len(wire)-2])
	p.Release()
	if _, r, err := p.Parse(wire[len(wire)-2:]); err != nil || r == nil || string(r.Body) != "body" {
		t.Fatalf("Parse after a mid-packet Release: %v %v", r, err)
	}

	// Errors are sticky until Reset, which keeps the limits.
	p.MaxBody = 3
	_, _, err = p.Parse(wire)
	if _, _, err2 := p.Parse(uwsgiPacket(0, nil, "")); err == nil || err2 != err || p.EOF() != err {
		t.Fatalf("errors not sticky: %v, %v", err, err2)
	}
	p.Release()
	p.Reset()
	if _, _, err := p.Parse(wire); Status(err) != 413 {
		t.Fatalf("Reset lost MaxBody: %v", err)
	}
	p.MaxBody = 0
	p.Reset()
	if _, r, err := p.Parse(wire); err != nil || r == nil {
		t.Fatalf("Parse after Reset: %v %v", r, err)
	}
}

func TestUwsgiRequestOwnsNoCallerMemory(t *testing.T) {
	buf := uwsgiPacket(0, uwsgiBlock("NAME", "value", "CONTENT_LENGTH", "3"), "abc")
	p := &UwsgiParser{}
	_, r, err := p.Parse(buf)
	if err != nil || r == nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 'Z'
	}
	if string(r.Vars[0].Name) != "NAME" || string(r.Vars[0].Value) != "value" || string(r.Body) != "abc" {
		t.Fatalf("request aliases the caller's buffer: %+v", snapUwsgi(r))
	}
	// Appending to a returned slice must not clobber its neighbour.
	_ = append(r.Vars[0].Name, "XXXXX"...)
	if !bytes.Equal(r.Vars[0].Value, []byte("value")) {
		t.Fatalf("append to Name overwrote Value: %q", r.Vars[0].Value)
	}
}

func TestAppendUwsgiVars(t *testing.T) {
	dst := []UwsgiVar{{Name: []byte("KEEP")}}
	got, err := AppendUwsgiVars(dst, uwsgiBlock("A", "1", "B", ""))
	if err != nil || len(got) != 3 || string(got[0].Name) != "KEEP" || string(got[2].Name) != "B" || len(got[2].Value) != 0 {
		t.Fatalf("%+v %v", got, err)
	}
	if got, err := AppendUwsgiVars(dst, append(uwsgiBlock("A", "1"), 1)); !errors.Is(err, ErrUwsgi) || len(got) != 1 {
		t.Fatalf("on error: %+v %v; want dst as given", got, err)
	}
}

func TestUwsgiAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts are not meaningful here")
	}
	post := withVar(withVar(nginxVars, "REQUEST_METHOD", "POST"), "CONTENT_LENGTH", "1024")
	wire := uwsgiPacket(0, uwsgiBlock(post...), strings.Repeat("b", 1024))
	p := &UwsgiParser{}
	p.Parse(wire)
	for name, release := range map[string]bool{"reuse": false, "release": true} {
		allocs := testing.AllocsPerRun(100, func() {
			if n, r, err := p.Parse(wire); r == nil || err != nil || n != len(wire) {
				t.Fatal(n, err)
			}
			if release {
				p.Release()
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per packet, want 0", name, allocs)
		}
	}
}

func BenchmarkUwsgi(b *testing.B) {
	post := withVar(withVar(nginxVars, "REQUEST_METHOD", "POST"), "CONTENT_LENGTH", "4096")
	for _, bc := range []struct {
		name string
		wire []byte
		read int // bytes per Parse call; 0: all at once
	}{
		{"nginxGET", uwsgiPacket(0, uwsgiBlock(nginxVars...), ""), 0},
		{"post4k", uwsgiPacket(0, uwsgiBlock(post...), strings.Repeat("b", 4096)), 0},
		{"post4k/reads1k", uwsgiPacket(0, uwsgiBlock(post...), strings.Repeat("b", 4096)), 1024},
		{"nginxGET/bytewise", uwsgiPacket(0, uwsgiBlock(nginxVars...), ""), 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := &UwsgiParser{}
			b.SetBytes(int64(len(bc.wire)))
			b.ReportAllocs()
			read := bc.read
			if read == 0 {
				read = len(bc.wire)
			}
			for b.Loop() {
				var r *UwsgiRequest
				for off := 0; r == nil; off += read {
					var err error
					if _, r, err = p.Parse(bc.wire[off:min(off+read, len(bc.wire))]); err != nil {
						b.Fatal(err)
					}
				}
				p.Release()
			}
		})
	}
}

func FuzzUwsgi(f *testing.F) {
	f.Add(uwsgiPacket(0, uwsgiBlock(nginxVars...), ""), uint8(0))
	f.Add(uwsgiPacket(0, uwsgiBlock("CONTENT_LENGTH", "5", "A", "b"), "hello"), uint8(2))
	f.Add(append(uwsgiPacket(1, uwsgiBlock("CONTENT_LENGTH", "1"), "x"), uwsgiPacket(0, nil, "")...), uint8(1))
	f.Add([]byte{0, 4, 0, 0, 1, 0}, uint8(0))

	f.Fuzz(func(t *testing.T, data []byte, opts uint8) {
		if len(data) > 4096 {
			t.Skip() // small limits (opts) reach every limit well below this
		}
		newParser := func() *UwsgiParser {
			p := &UwsgiParser{}
			if opts&1 != 0 {
				p.MaxVars = 64
			}
			if opts&2 != 0 {
				p.MaxBody = 16
			}
			return p
		}
		p := newParser()
		maxVars := p.MaxVars
		if maxVars == 0 {
			maxVars = DefaultUwsgiMaxVars
		}
		whole := driveUwsgi(t, p, [][]byte{data})
		if whole.err != nil && !errors.Is(whole.err, ErrUwsgi) {
			t.Fatalf("error wraps no ErrUwsgi: %v", whole.err)
		}
		// The packets returned are the input's, byte for byte.
		rest := data
		for _, r := range whole.reqs {
			var vars []string
			for _, v := range r.Vars {
				vars = append(vars, v[0], v[1])
			}
			block := uwsgiBlock(vars...)
			if len(block) > maxVars || (p.MaxBody > 0 && int64(len(r.Body)) > p.MaxBody) || int64(len(r.Body)) != r.ContentLength {
				t.Fatalf("over the limits: block %d, body %d, CONTENT_LENGTH %d", len(block), len(r.Body), r.ContentLength)
			}
			pkt := uwsgiPacket(r.Modifier2, block, r.Body)
			if !bytes.HasPrefix(rest, pkt) {
				t.Fatalf("packet %q is not the input's %q", pkt, rest[:min(len(rest), len(pkt))])
			}
			rest = rest[len(pkt):]
		}

		splits := [][][]byte{randomSplit(newRand(uint64(len(data))<<8|uint64(opts)), data, 1+int(opts%11))}
		if len(data) <= 512 {
			splits = append(splits, splitters[1].split("", data))
		}
		for _, chunks := range splits {
			out := driveUwsgi(t, newParser(), chunks)
			if !reflect.DeepEqual(out.reqs, whole.reqs) || errString(out.err) != errString(whole.err) {
				t.Fatalf("whole input and slices differ:\n %+v %v\n %+v %v", whole.reqs, whole.err, out.reqs, out.err)
			}
		}
	})
}
