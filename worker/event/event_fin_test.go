package event

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker/internal/workertest"
)

// A connection's last response carries its FIN (writeLastFD): the client
// receives the handshake's SYN-ACK and one segment with the response and
// the end of the stream, where a write and then a close send the FIN
// apart. Counted with TCP_INFO's segments received, the least over a few
// connections, since an acknowledgement the server sends on its own (of
// the request, at once in quick-ack mode, or when the delayed-ACK timer
// fires) can only add.
func TestEventLastResponseCarriesFIN(t *testing.T) {
	forEventModes(t, nil, func(t *testing.T, p *testProcess, addr string, stop func(bool) error) {
		least := uint32(1 << 30)
		for range 5 {
			c := workertest.Dial(t, addr, 10*time.Second)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			br := bufio.NewReader(c)
			if res, body := workertest.ReadResponse(t, br); res.StatusCode != 200 || body != "hello" {
				t.Fatalf("Connection: close: %d %q", res.StatusCode, body)
			}
			if ok, got := workertest.ClosedAfter(br, c, 2*time.Second); !ok {
				t.Fatalf("not closed after Connection: close: %s", got)
			}
			least = min(least, segsIn(t, c))
			c.Close()
		}
		// SYN-ACK, the ACK of the request (quick-ack mode acknowledges a
		// new connection's first segments at once), response and FIN.
		if least > 3 {
			t.Errorf("the client received at least %d segments a connection, want 3: the FIN went apart from the response", least)
		}
		if err := stop(true); err != nil {
			t.Fatal(err)
		}
	})
}

// segsIn is the number of segments c's socket has received.
func segsIn(t *testing.T, c net.Conn) uint32 {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var serr error
	if err := raw.Control(func(fd uintptr) { info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || serr != nil {
		t.Fatalf("TCP_INFO: %v %v", err, serr)
	}
	return info.Segs_in
}
