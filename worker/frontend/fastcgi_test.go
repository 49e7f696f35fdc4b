package frontend

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

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

// TestFastCGIKeptConnectionReusesRequestID plays nginx with
// fastcgi_keep_conn: request id 1 again, sent the moment END_REQUEST
// arrives. The next BEGIN_REQUEST must never find the last request still
// in progress.
func TestFastCGIKeptConnectionReusesRequestID(t *testing.T) {
	c := fcgiServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	req := fcgiKeptGet()
	for i := range 300 {
		go c.Write(req)
		recs := readRecords(t, c, func(r FastCGIRecord) bool { return r.Type == FastCGIEndRequest })
		if end := recs[len(recs)-1]; end.ID != 1 || end.Content[4] != fcgiRequestComplete {
			t.Fatalf("request %d: %+v", i, end)
		}
	}
}

// TestFastCGINextRequestOnAClosingConnection: a server that closes after
// each request (the sync worker) must not begin the next request the web
// server sends before it sees the close: the close would cut that
// request's response. The first response is whole, then the connection
// closes without a record for the second.
func TestFastCGINextRequestOnAClosingConnection(t *testing.T) {
	c := fcgiServeIdle(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 100000))
	}), 0)
	req := fcgiKeptGet()
	go c.Write(req)
	recs := readRecords(t, c, func(r FastCGIRecord) bool { return r.Type == FastCGIEndRequest })
	go c.Write(req) // the next request, as nginx sends it on a kept connection
	n := 0
	for _, r := range recs {
		if r.Type == FastCGIStdout {
			n += len(r.Content)
		}
	}
	if n < 100000 {
		t.Fatalf("first response: %d bytes of stdout", n)
	}
	if rec, err := ReadFastCGIRecord(c, nil); err == nil {
		t.Fatalf("after the first request: record %+v, want the connection closed", rec)
	}
}

// fcgiServeTCP is fcgiServe over a TCP connection on 127.0.0.1, whose
// socket lets a request without a body run on the reading goroutine.
func fcgiServeTCP(t *testing.T, h http.Handler) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return fcgiServeOn(t, h, 5*time.Second, a, c)
}

// Requests without a body on a kept TCP connection run on the reading
// goroutine, one after another, each answered whole.
func TestFastCGIInlineKeptRequests(t *testing.T) {
	c := fcgiServeTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	for i := range 50 {
		if _, err := c.Write(fcgiKeptGet()); err != nil {
			t.Fatal(err)
		}
		recs := readRecords(t, c, func(r FastCGIRecord) bool { return r.Type == FastCGIEndRequest })
		if end := recs[len(recs)-1]; end.ID != 1 || end.Content[4] != fcgiRequestComplete {
			t.Fatalf("request %d: %+v", i, end)
		}
		if out := string(recs[0].Content); !strings.HasPrefix(out, "Status: 200 OK\r\n") || !strings.HasSuffix(out, "\r\n\r\nok") {
			t.Fatalf("request %d: stdout %q", i, out)
		}
	}
}

// A handler run on the reading goroutine still learns that the web server
// closed the connection (its client went away): its context ends.
func TestFastCGIInlineClientGone(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan error, 1)
	c := fcgiServeTCP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			cancelled <- nil
		case <-time.After(5 * time.Second):
			cancelled <- errors.New("not cancelled in 5 s")
		}
	}))
	if _, err := c.Write(fcgiKeptGet()); err != nil {
		t.Fatal(err)
	}
	<-started
	time.Sleep(2 * fcgiWatchDelay) // past the delay: the watch runs
	c.Close()
	if err := <-cancelled; err != nil {
		t.Fatal(err)
	}
}
