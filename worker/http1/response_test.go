package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serve runs h against a fresh ResponseWriter for a request with method and
// version, and returns everything written: what Send got, then what Finish
// returned.
func serve(t *testing.T, method string, major, minor int, closeConn bool, stream bool, h http.HandlerFunc) (string, *ResponseWriter) {
	t.Helper()
	var sent bytes.Buffer
	w := &ResponseWriter{BufferLimit: 64}
	if stream {
		w.Send = func(b []byte) error { sent.Write(b); return nil }
	}
	w.Reset(nil, method, major, minor, closeConn)
	h(w, nil)
	out, err := w.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	sent.Write(out)
	return sent.String(), w
}

// parse reads one response from wire, for a request with method.
func parse(t *testing.T, wire, method string) (*http.Response, string) {
	t.Helper()
	res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(wire)), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("ReadResponse(%q): %v", wire, err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("body of %q: %v", wire, err)
	}
	return res, string(b)
}

func TestResponseContentLength(t *testing.T) {
	wire, w := serve(t, "GET", 1, 1, false, true, func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello")
		w.Write([]byte(", world"))
	})
	res, body := parse(t, wire, "GET")
	if body != "hello, world" || res.ContentLength != 12 || res.Close || len(res.TransferEncoding) != 0 {
		t.Fatalf("got %q: CL %d close %v TE %v", wire, res.ContentLength, res.Close, res.TransferEncoding)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("sniffed Content-Type %q", ct)
	}
	if _, err := time.Parse(http.TimeFormat, res.Header.Get("Date")); err != nil {
		t.Errorf("Date: %v", err)
	}
	if !strings.HasPrefix(wire, "HTTP/1.1 200 OK\r\n") {
		t.Errorf("status line of %q", wire)
	}
	if w.Close() || w.Status() != 200 || w.Written() != 12 {
		t.Errorf("Close %v Status %d Written %d", w.Close(), w.Status(), w.Written())
	}
}

func TestResponseEmpty(t *testing.T) {
	wire, _ := serve(t, "GET", 1, 1, false, false, func(http.ResponseWriter, *http.Request) {})
	res, body := parse(t, wire, "GET")
	if res.StatusCode != 200 || body != "" || res.ContentLength != 0 || !strings.Contains(wire, "Content-Length: 0\r\n") {
		t.Fatalf("got %q", wire)
	}
}

func TestResponseChunkedOnFlush(t *testing.T) {
	wire, w := serve(t, "GET", 1, 1, false, true, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		io.WriteString(w, "bc")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("ResponseController.Flush: %v", err)
		}
	})
	res, body := parse(t, wire, "GET")
	if body != "abc" || len(res.TransferEncoding) != 1 || res.TransferEncoding[0] != "chunked" || res.Close {
		t.Fatalf("got %q", wire)
	}
	if !strings.HasSuffix(wire, "1\r\na\r\n2\r\nbc\r\n0\r\n\r\n") || w.Close() {
		t.Fatalf("chunks of %q", wire)
	}
}

func TestResponseChunkedPastLimit(t *testing.T) {
	big := strings.Repeat("x", 1000)
	var sends int
	w := &ResponseWriter{BufferLimit: 64}
	var sent bytes.Buffer
	w.Send = func(b []byte) error { sends++; sent.Write(b); return nil }
	w.Reset(nil, "GET", 1, 1, false)
	for range 10 {
		io.WriteString(w, big)
	}
	out, _ := w.Finish()
	sent.Write(out)
	res, body := parse(t, sent.String(), "GET")
	if body != strings.Repeat(big, 10) || res.TransferEncoding[0] != "chunked" {
		t.Fatalf("body of %d bytes, TE %v", len(body), res.TransferEncoding)
	}
	if sends < 10 {
		t.Errorf("%d sends for 10 writes past the limit", sends)
	}
}

func TestResponseNoSendBuffersAll(t *testing.T) {
	big := strings.Repeat("y", 10000)
	wire, _ := serve(t, "GET", 1, 1, false, false, func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, big)
		w.(http.Flusher).Flush()
		io.WriteString(w, big)
	})
	res, body := parse(t, wire, "GET")
	if res.ContentLength != 20000 || body != big+big {
		t.Fatalf("CL %d, body %d bytes", res.ContentLength, len(body))
	}
}

func TestResponseDeclaredLength(t *testing.T) {
	wire, w := serve(t, "GET", 1, 1, false, true, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "3")
		w.(http.Flusher).Flush()
		if _, err := io.WriteString(w, "abcd"); !errors.Is(err, http.ErrContentLength) {
			t.Errorf("write past Content-Length: %v", err)
		}
		io.WriteString(w, "abc")
	})
	res, body := parse(t, wire, "GET")
	if body != "abc" || res.ContentLength != 3 || len(res.TransferEncoding) != 0 || w.Close() {
		t.Fatalf("got %q", wire)
	}
	// A short body leaves the client waiting: the connection must close.
	_, w = serve(t, "GET", 1, 1, false, true, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "abc")
	})
	if !w.Close() {
		t.Error("short body: Close() = false")
	}
}

func TestResponseHead(t *testing.T) {
	wire, _ := serve(t, "HEAD", 1, 1, false, true, func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello")
	})
	if !strings.Contains(wire, "Content-Length: 5\r\n") || strings.HasSuffix(wire, "hello") {
		t.Fatalf("HEAD: %q", wire)
	}
	res, _ := parse(t, wire, "HEAD")
	if res.ContentLength != 5 {
		t.Fatalf("HEAD CL %d", res.ContentLength)
	}
	wire, _ = serve(t, "HEAD", 1, 1, false, true, func(w http.ResponseWriter, _ *http.Request) {})
	if strings.Contains(wire, "Content-Length") || !strings.HasSuffix(wire, "\r\n\r\n") {
		t.Fatalf("empty HEAD: %q", wire)
	}
}

func TestResponseNoBodyStatuses(t *testing.T) {
	for _, code := range []int{204, 304} {
		wire, _ := serve(t, "GET", 1, 1, false, true, func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(code)
			if _, err := io.WriteString(w, "x"); !errors.Is(err, http.ErrBodyNotAllowed) {
				t.Errorf("%d: write: %v", code, err)
			}
		})
		if strings.Contains(wire, "Content-Length") || strings.Contains(wire, "chunked") || !strings.HasSuffix(wire, "\r\n\r\n") {
			t.Errorf("%d: %q", code, wire)
		}
	}
}

func TestResponseInterim(t *testing.T) {
	wire, _ := serve(t, "GET", 1, 1, false, true, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "ok")
	})
	if !strings.HasPrefix(wire, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n") {
		t.Fatalf("got %q", wire)
	}
	// Never to an HTTP/1.0 client.
	wire, _ = serve(t, "GET", 1, 0, false, true, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
	})
	if !strings.HasPrefix(wire, "HTTP/1.0 200 OK\r\n") {
		t.Fatalf("HTTP/1.0: %q", wire)
	}
}

func TestResponseConnection(t *testing.T) {
	cases := []struct {
		name         string
		major, minor int
		closeConn    bool
		stream       bool
		header       string // Connection set by the handler
		wantField    string // Connection field sent, "" for none
		wantClose    bool
	}{
		{"1.1 keep-alive", 1, 1, false, false, "", "", false},
		{"1.1 close asked", 1, 1, true, false, "", "close", true},
		{"handler close", 1, 1, false, false, "close", "close", true},
		{"1.0 keep-alive", 1, 0, false, false, "", "keep-alive", false},
		{"1.0 close", 1, 0, true, false, "", "close", true},
		{"1.0 streamed", 1, 0, false, true, "", "close", true},
	}
	for _, c := range cases {
		wire, w := serve(t, "GET", c.major, c.minor, c.closeConn, true, func(w http.ResponseWriter, _ *http.Request) {
			if c.header != "" {
				w.Header().Set("Connection", c.header)
			}
			io.WriteString(w, "body")
			if c.stream {
				w.(http.Flusher).Flush()
			}
		})
		got := ""
		if i := strings.Index(wire, "\r\nConnection: "); i >= 0 {
			got = wire[i+len("\r\nConnection: "):]
			got = got[:strings.Index(got, "\r\n")]
		}
		if got != c.wantField || w.Close() != c.wantClose || strings.Count(wire, "Connection:") > 1 {
			t.Errorf("%s: Connection %q close %v, want %q %v: %q", c.name, got, w.Close(), c.wantField, c.wantClose, wire)
		}
	}
}

func TestResponseHeaderSanitised(t *testing.T) {
	wire, _ := serve(t, "GET", 1, 1, false, false, func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["X-Evil"] = []string{"a\r\nSet-Cookie: x=1"}
		w.Header()["Bad Name"] = []string{"v"}
		w.Header()["Transfer-Encoding"] = []string{"chunked"}
		w.Header()["Date"] = nil // suppresses Date
		io.WriteString(w, "x")
	})
	res, body := parse(t, wire, "GET")
	if body != "x" || res.Header.Get("Set-Cookie") != "" || res.Header.Get("X-Evil") != "a  Set-Cookie: x=1" {
		t.Fatalf("got %q", wire)
	}
	if strings.Contains(wire, "Bad Name") || strings.Contains(wire, "Date:") || strings.Contains(wire, "chunked") {
		t.Fatalf("got %q", wire)
	}
}

func TestResponseSendError(t *testing.T) {
	gone := errors.New("gone")
	w := &ResponseWriter{BufferLimit: 8, Send: func([]byte) error { return gone }}
	w.Reset(nil, "GET", 1, 1, false)
	if _, err := io.WriteString(w, "0123456789"); !errors.Is(err, gone) {
		t.Fatalf("write: %v", err)
	}
	if _, err := io.WriteString(w, "x"); !errors.Is(err, gone) {
		t.Fatalf("second write: %v", err)
	}
	if _, err := w.Finish(); !errors.Is(err, gone) {
		t.Fatalf("Finish: %v", err)
	}
	if _, err := io.WriteString(w, "x"); !errors.Is(err, ErrResponseFinished) {
		t.Fatalf("after Finish: %v", err)
	}
}

func TestAppendError(t *testing.T) {
	for _, code := range []int{400, 413, 414, 431, 501, 505} {
		wire := string(AppendError(nil, code))
		res, body := parse(t, wire, "GET")
		if res.StatusCode != code || !res.Close || !strings.HasPrefix(body, http.StatusText(code)[:0]) || res.ContentLength != int64(len(body)) {
			t.Errorf("%d: %q", code, wire)
		}
	}
	if s := string(AppendContinue([]byte("x"))); s != "xHTTP/1.1 100 Continue\r\n\r\n" {
		t.Errorf("AppendContinue: %q", s)
	}
}

func TestResponseReuseAllocations(t *testing.T) {
	w := &ResponseWriter{}
	buf := make([]byte, 0, 1024)
	body := []byte("Hello, World!")
	allocs := testing.AllocsPerRun(100, func() {
		w.Reset(buf[:0], "GET", 1, 1, false)
		w.Header()["Content-Type"] = plain
		w.Write(body)
		buf, _ = w.Finish()
	})
	if allocs > 0 {
		t.Errorf("%v allocations per reused response, want 0", allocs)
	}
}

var plain = []string{"text/plain"}

// BenchmarkResponse is a hello-world response to a kept-alive HTTP/1.1
// GET: "raw" puts the Content-Type list in the map itself, "hello" is the
// usual handler, whose Header().Set allocates the list, and "fields" has
// four fields to sort.
func BenchmarkResponse(b *testing.B) {
	w := &ResponseWriter{}
	buf := make([]byte, 0, 1024)
	body := []byte("Hello, World!")
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w.Reset(buf[:0], "GET", 1, 1, false)
			w.Header()["Content-Type"] = plain
			w.Write(body)
			buf, _ = w.Finish()
		}
	})
	b.Run("hello", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w.Reset(buf[:0], "GET", 1, 1, false)
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "Hello, World!")
			buf, _ = w.Finish()
		}
	})
	b.Run("fields", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w.Reset(buf[:0], "GET", 1, 1, false)
			h := w.Header()
			h["Content-Type"] = plain
			h["Cache-Control"] = noCache
			h["X-Request-Id"] = plain
			h["Vary"] = plain
			w.Write(body)
			buf, _ = w.Finish()
		}
	})
}

var noCache = []string{"no-cache"}

// A response to a gateway (nginx's uwsgi_pass) carries neither Date nor
// Connection, whole or streamed, and still closes the connection; a Date
// of the handler's own goes out.
func TestResponseGateway(t *testing.T) {
	cases := []struct {
		name         string
		stream, date bool
		want         string // the head, less a Date the handler set
	}{
		{"whole", false, false, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nbody"},
		{"streamed", true, false, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbody"},
		{"handler's Date", false, true, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 4\r\n\r\nbody"},
	}
	for _, c := range cases {
		var sent bytes.Buffer
		w := &ResponseWriter{BufferLimit: 64, Gateway: true, Send: func(b []byte) error { sent.Write(b); return nil }}
		w.Reset(nil, "GET", 1, 0, true)
		w.Header().Set("Content-Type", "text/plain")
		if c.date {
			w.Header().Set("Date", "Sun, 06 Nov 1994 08:49:37 GMT")
		}
		io.WriteString(w, "body")
		if c.stream {
			w.Flush()
		}
		out, err := w.Finish()
		if err != nil {
			t.Fatalf("%s: Finish: %v", c.name, err)
		}
		sent.Write(out)
		if got := sent.String(); got != c.want || !w.Close() {
			t.Errorf("%s: got %q, close %v; want %q, close true", c.name, got, w.Close(), c.want)
		}
	}
}
