package worker

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// firstWrites records the first write on each connection a listener
// accepts, as the goroutine worker's trackedConn sees net/http's writes.
type firstWrites struct {
	net.Listener
	mu     sync.Mutex
	writes [][]byte
}

func (l *firstWrites) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &firstWrite{Conn: c, l: l}, nil
}

type firstWrite struct {
	net.Conn
	l    *firstWrites
	once sync.Once
}

func (c *firstWrite) Write(b []byte) (int, error) {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.writes = append(c.l.writes, append([]byte(nil), b...))
		c.l.mu.Unlock()
	})
	return c.Conn.Write(b)
}

// TestNetHTTPErrorStatusOnARealServer tells net/http's own answers to
// requests it refused from a handler's response that looks alike (text,
// Connection: close), on this Go's net/http.
func TestNetHTTPErrorStatusOnARealServer(t *testing.T) {
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &firstWrites{Listener: nl}
	srv := &http.Server{MaxHeaderBytes: 1024, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "400 Bad Request")
	})}
	go srv.Serve(l)
	defer srv.Close()
	for _, tc := range []struct {
		req  string
		want int
	}{
		{"GET / HTTP/1.1\r\n\r\n", 400}, // no Host
		{"GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 8000) + "\r\n\r\n", 431},
		{"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0}, // the handler's own 400
	} {
		c, err := net.Dial("tcp", nl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, tc.req)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("%q: %v", tc.req[:20], err)
		}
		res.Body.Close()
		l.mu.Lock()
		first := l.writes[len(l.writes)-1]
		l.mu.Unlock()
		if got := netHTTPErrorStatus(first); got != tc.want {
			t.Errorf("%q answered %d: netHTTPErrorStatus = %d, want %d (%q)", tc.req[:20], res.StatusCode, got, tc.want, first)
		}
	}
}
