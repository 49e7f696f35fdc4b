package frontend

import (
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/corral-server/corral/worker/internal/workertest"
)

func fcgiRecord(typ uint8, id uint16, content []byte) []byte {
	b := []byte{1, typ, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), 3, 0}
	return append(append(b, content...), 0, 0, 0)
}

// fcgiServe runs a ConnServer on one end of a pipe and returns the other.
func fcgiServe(t *testing.T, h http.Handler) net.Conn {
	return fcgiServeIdle(t, h, 5*time.Second)
}

// fcgiServeIdle is fcgiServe with the server's IdleTimeout: 0 closes a
// connection after each request, kept or not.
func fcgiServeIdle(t *testing.T, h http.Handler, idle time.Duration) net.Conn {
	t.Helper()
	a, b := net.Pipe()
	return fcgiServeOn(t, h, idle, a, b)
}

// fcgiServeOn runs a ConnServer with IdleTimeout idle on a, the server's
// end of a connection, and returns b, the web server's.
func fcgiServeOn(t *testing.T, h http.Handler, idle time.Duration, a, b net.Conn) net.Conn {
	s := &ConnServer{Protocol: ProtocolFastCGI, Handler: h, ReadTimeout: 5 * time.Second, IdleTimeout: idle,
		UwsgiAllow: MustAllowList("*")}
	done := make(chan struct{})
	go func() {
		s.ServeConn(a)
		close(done)
	}()
	t.Cleanup(func() {
		b.Close()
		<-done
	})
	b.SetDeadline(time.Now().Add(10 * time.Second))
	return b
}

func readRecords(t *testing.T, r io.Reader, until func(FastCGIRecord) bool) []FastCGIRecord {
	t.Helper()
	var out []FastCGIRecord
	for {
		rec, err := ReadFastCGIRecord(r, nil)
		if err != nil {
			t.Fatalf("after %d records: %v", len(out), err)
		}
		rec.Content = append([]byte(nil), rec.Content...)
		out = append(out, rec)
		if until(rec) {
			return out
		}
	}
}

var uwsgiBlock, uwsgiPacket = workertest.UwsgiBlock, workertest.UwsgiPacket

func proxyV2(cmd, fam byte, addr []byte, tlv int) string {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addr)+tlv))
	return string(append(append(b, addr...), make([]byte, tlv)...))
}

// fcgiKeptGet is the records of a GET / with request id 1 on a
// connection the web server keeps (FCGI_KEEP_CONN), as nginx sends them.
func fcgiKeptGet() []byte {
	params := appendFastCGIPair(appendFastCGIPair(nil, "REQUEST_METHOD", "GET"), "REQUEST_URI", "/")
	var req []byte
	req = append(req, fcgiRecord(FastCGIBeginRequest, 1, []byte{0, 1, fcgiKeepConn, 0, 0, 0, 0, 0})...)
	req = append(req, fcgiRecord(FastCGIParams, 1, params)...)
	req = append(req, fcgiRecord(FastCGIParams, 1, nil)...)
	return append(req, fcgiRecord(FastCGIStdin, 1, nil)...)
}
