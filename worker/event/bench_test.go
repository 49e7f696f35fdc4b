package event

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker"
	"github.com/corral-server/corral/worker/internal/workertest"
)

// BenchmarkEventPipeline measures the cost of a request on a kept
// connection, as wrk's bench/pipeline.lua drives it: depth requests
// written at once, then their responses read (depth 1 is plain
// keep-alive). The client parses nothing and allocates nothing, so
// allocs/op are the server's. Its ns/req is wall time, mostly the
// wake-ups of a client and a loop sharing one process: the cost of a
// request is measured on a worker under wrk (docs/benchmarks.md).
func BenchmarkEventPipeline(b *testing.B) {
	for _, depth := range []int{1, 16} {
		for _, inline := range []bool{false, true} {
			b.Run(fmt.Sprintf("depth=%d/inline=%v", depth, inline), func(b *testing.B) {
				b.Setenv("GOMAXPROCS", strconv.Itoa(runtime.GOMAXPROCS(0)))
				p := newTestProcess(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "text/plain")
					io.WriteString(w, "Hello, World!")
				}), &worker.Config{KeepAlive: 5 * time.Second, EventInline: inline})
				addr, _ := serveTest(b, p, new(eventWorker))
				benchPipeline(b, addr, depth)
			})
		}
	}
}

// benchPipeline sends depth requests per write on one connection to addr,
// b.N times, and reads until it has seen depth response bodies.
func benchPipeline(b *testing.B, addr string, depth int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := bytes.Repeat([]byte("GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"), depth)
	body := []byte("Hello, World!")
	buf := make([]byte, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		seen, keep := 0, 0
		for seen < depth {
			n, err := c.Read(buf[keep:])
			if err != nil {
				b.Fatal(err)
			}
			data := buf[:keep+n]
			seen += bytes.Count(data, body)
			// A body cut by the read boundary is counted once it is whole.
			keep = min(len(data), len(body)-1)
			if i := bytes.LastIndex(data, body); i >= 0 && len(data)-i-len(body) < keep {
				keep = len(data) - i - len(body)
			}
			copy(buf, data[len(data)-keep:])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*depth), "ns/req")
}

// BenchmarkEventUwsgiConn measures nginx's uwsgi_pass: a connection per
// request, its packet, the response read to the close. The client makes
// raw system calls on a blocking socket and allocates nothing, so
// allocs/op are the server's: what a connection costs the loop.
func BenchmarkEventUwsgiConn(b *testing.B) {
	for _, inline := range []bool{false, true} {
		b.Run(fmt.Sprintf("inline=%v", inline), func(b *testing.B) {
			b.Setenv("GOMAXPROCS", strconv.Itoa(runtime.GOMAXPROCS(0)))
			p := newTestProcess(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, "Hello, World!")
			}), &worker.Config{Protocol: "uwsgi", UwsgiAllowFrom: []string{"127.0.0.1"}, EventInline: inline})
			addr, _ := serveTest(b, p, new(eventWorker))
			ap := netip.MustParseAddrPort(addr)
			sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
			packet := workertest.UwsgiPacket(workertest.UwsgiBlock("REQUEST_METHOD", "GET", "REQUEST_URI", "/",
				"PATH_INFO", "/", "QUERY_STRING", "", "SERVER_PROTOCOL", "HTTP/1.1", "REMOTE_ADDR", "127.0.0.1",
				"REMOTE_PORT", "40000", "SERVER_NAME", "localhost", "SERVER_PORT", "8000", "HTTP_HOST", "127.0.0.1:8000"))
			buf := make([]byte, 4096)
			b.ReportAllocs()
			for b.Loop() {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					b.Fatal(err)
				}
				if err := unix.Connect(fd, sa); err != nil {
					b.Fatal(err)
				}
				if _, err := unix.Write(fd, packet); err != nil {
					b.Fatal(err)
				}
				got := 0
				for {
					n, err := unix.Read(fd, buf[got:])
					if err != nil {
						b.Fatal(err)
					}
					if n == 0 {
						break
					}
					got += n
				}
				unix.Close(fd)
				if !bytes.HasSuffix(buf[:got], []byte("Hello, World!")) {
					b.Fatalf("response %q", buf[:got])
				}
			}
		})
	}
}
