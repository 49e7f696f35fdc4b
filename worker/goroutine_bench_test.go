package worker

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/heartbeat"
)

// BenchmarkGoroutinePath serves keep-alive requests on one
// connection that lives in memory (pingConn), through plain net/http and
// through the goroutine worker with the same handler, its scoreboard off
// and on, on its fast path and through net/http as before it (-nethttp):
// what corral costs a request against net/http, without the kernel's
// share, which is the same for all (wrk's run adds it back).
func BenchmarkGoroutinePath(b *testing.B) {
	// The nethttp peer's handler (bench/apps/gohello/nethttp), as wrk meets it.
	body := []byte("Hello, World!")
	clen := strconv.Itoa(len(body))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["Content-Type"] = []string{"text/plain"}
		hd["Content-Length"] = []string{clen}
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	})
	b.Run("nethttp", func(b *testing.B) {
		l := newPingListener(b, b.N)
		srv := &http.Server{Handler: h}
		go srv.Serve(l)
		measure(b, l)
		srv.Close()
	})
	for _, v := range []struct{ on, netHTTP bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		on := v.on
		name := "goroutine"
		if on {
			name += "-scoreboard"
		}
		if v.netHTTP {
			name += "-nethttp"
		}
		b.Run(name, func(b *testing.B) {
			l := newPingListener(b, b.N)
			cfg := &Config{KeepAlive: 5 * time.Second, DrainIdle: time.Second, Metrics: on}
			hb, err := heartbeat.Create()
			if err != nil {
				b.Fatal(err)
			}
			defer hb.Close()
			p, ready, _ := NewProcess(cfg, h, []net.Listener{l}, slog.New(slog.NewTextHandler(io.Discard, nil)), hb)
			if on {
				withBoard(p)
			}
			g := &goroutineWorker{netHTTP: v.netHTTP}
			served := make(chan error, 1)
			go func() { served <- g.Serve(p) }()
			<-ready
			measure(b, l)
			g.Stop(false)
			<-served
		})
	}
}

// measure runs l's connection to its end, and reports the process's CPU
// time per request too: on a shared machine it moves less than ns/op.
func measure(b *testing.B, l *pingListener) {
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	l.start()
	<-l.conn.done
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(l.conn.deadlines.Load())/float64(b.N), "deadlines/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pingListener accepts one pingConn, once start is called, and then
// waits for Close.
type pingListener struct {
	conn    *pingConn
	started chan struct{}
	closed  chan struct{}
	once    sync.Once
	given   bool
}

func newPingListener(b *testing.B, n int) *pingListener {
	return &pingListener{conn: newPingConn(b, n), started: make(chan struct{}), closed: make(chan struct{})}
}

func (l *pingListener) start() { close(l.started) }

func (l *pingListener) Accept() (net.Conn, error) {
	if !l.given {
		select {
		case <-l.started:
			l.given = true
			return l.conn, nil
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *pingListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pingListener) Addr() net.Addr { return pingAddr }

var pingAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8000}

// pingConn is a client in memory that sends wrk's request, waits for the
// answer, and sends it again, n times. A read of 16 bytes or less is
// net/http's background read, which waits, as it does on a socket between
// a client's requests, until net/http ends it with a read deadline in the
// past; as on a socket, every read fails while the deadline is past.
// Deadlines cost what they cost on a socket: they are set on an idle one
// (sock) too.
type pingConn struct {
	sock    net.Conn
	req     []byte
	left    int
	pending bool // a request to read
	done    chan struct{}
	mu      sync.Mutex
	expired sync.Cond // on mu: the read deadline passed
	past    bool
	closed  bool

	deadlines atomic.Int64 // set on sock: each costs a call into the poller
}

func newPingConn(b *testing.B, n int) *pingConn {
	sock, _ := socketPair(b)
	c := &pingConn{sock: sock, req: []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"), left: n, pending: true,
		done: make(chan struct{})}
	c.expired.L = &c.mu
	return c
}

func (c *pingConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(b) <= 16 && !c.past && !c.closed {
		c.expired.Wait()
	}
	if c.past {
		return 0, os.ErrDeadlineExceeded
	}
	if !c.pending || c.closed {
		return 0, io.EOF
	}
	c.pending = false
	return copy(b, c.req), nil
}

func (c *pingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.left--
	switch {
	case c.left == 0:
		close(c.done)
	case c.left > 0:
		c.pending = true
	}
	return len(b), nil
}

func (c *pingConn) SetReadDeadline(t time.Time) error {
	c.deadlines.Add(1)
	c.sock.SetReadDeadline(t)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.past = !t.IsZero() && t.Before(time.Unix(1<<20, 0)) // net/http's aLongTimeAgo
	if c.past {
		c.expired.Broadcast()
	}
	return nil
}

func (c *pingConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.expired.Broadcast()
	c.mu.Unlock()
	return nil
}

func (c *pingConn) LocalAddr() net.Addr  { return pingAddr }
func (c *pingConn) RemoteAddr() net.Addr { return pingAddr }
func (c *pingConn) SetDeadline(t time.Time) error {
	c.SetWriteDeadline(t)
	return c.SetReadDeadline(t)
}
func (c *pingConn) SetWriteDeadline(t time.Time) error {
	c.deadlines.Add(1)
	return c.sock.SetWriteDeadline(t)
}
