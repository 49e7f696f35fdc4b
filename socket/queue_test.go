package socket

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestQueueCountsUnacceptedConnections fills the accept queue of a TCP and
// a unix listener that nothing accepts from, and reads it back.
func TestQueueCountsUnacceptedConnections(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "q.sock")
	ls, err := Bind([]string{"127.0.0.1:0", "unix:" + sock}, Options{Backlog: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(ls)
	for _, l := range ls {
		t.Run(l.Network(), func(t *testing.T) {
			if q, err := l.Queue(); err != nil || q.Depth != 0 || q.Limit != 16 {
				t.Fatalf("empty queue: %+v, %v; want depth 0, limit 16", q, err)
			}
			const n = 5
			for range n {
				c, err := net.DialTimeout(l.Network(), l.Addr.String(), 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			// The kernel moves a TCP connection into the queue when the
			// handshake's last ACK arrives, just after connect returns.
			var q Queue
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if q, err = l.Queue(); err != nil || q.Depth == n {
					break
				}
			}
			if err != nil || q.Depth != n || q.Limit != 16 {
				t.Fatalf("after %d connections: %+v, %v; want depth %d, limit 16", n, q, err, n)
			}
			nl, err := l.NetListener()
			if err != nil {
				t.Fatal(err)
			}
			defer nl.Close()
			c, err := nl.Accept()
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if q, err := l.Queue(); err != nil || q.Depth != n-1 {
				t.Fatalf("after one accept: %+v, %v; want depth %d", q, err, n-1)
			}
		})
	}
}

func TestQueueOfAClosedListenerFails(t *testing.T) {
	ls, err := Bind([]string{"127.0.0.1:0"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := ls[0]
	l.Close()
	if _, err := l.Queue(); err == nil {
		t.Fatal("Queue of a closed listener succeeded")
	}
}
