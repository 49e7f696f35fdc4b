package event

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker/frontend"
	"github.com/corral-server/corral/worker/internal/workertest"
)

// listenerFD returns a duplicate of l's socket, closed with the test.
func listenerFD(t *testing.T, l net.Listener) int {
	t.Helper()
	f, err := l.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(u uintptr) { fd = int(u) })
	return fd
}

// acceptOne dials l's address and accepts the connection with accept4,
// waiting for it; it returns the accepted fd, the address accept4 gave, and
// the client's end.
func acceptOne(t *testing.T, l net.Listener, dial func() (net.Conn, error)) (int, string, net.Conn) {
	t.Helper()
	lfd := listenerFD(t, l)
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		nfd, remote, err := accept4(lfd)
		if err == nil {
			t.Cleanup(func() { unix.Close(nfd) })
			return nfd, remote.String(), c
		}
		if err != unix.EAGAIN || time.Now().After(deadline) {
			t.Fatalf("accept4: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAccept4Addresses(t *testing.T) {
	t.Run("tcp4", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		nfd, remote, c := acceptOne(t, l, func() (net.Conn, error) { return net.Dial("tcp", l.Addr().String()) })
		if want := c.LocalAddr().String(); remote != want {
			t.Errorf("remote = %q, want %q", remote, want)
		}
		fl, err := unix.FcntlInt(uintptr(nfd), unix.F_GETFL, 0)
		if err != nil || fl&unix.O_NONBLOCK == 0 {
			t.Errorf("accepted socket flags %#x (%v): want O_NONBLOCK", fl, err)
		}
		fdf, err := unix.FcntlInt(uintptr(nfd), unix.F_GETFD, 0)
		if err != nil || fdf&unix.FD_CLOEXEC == 0 {
			t.Errorf("accepted socket fd flags %#x (%v): want FD_CLOEXEC", fdf, err)
		}
	})
	t.Run("tcp6", func(t *testing.T) {
		l, err := net.Listen("tcp", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		defer l.Close()
		_, remote, c := acceptOne(t, l, func() (net.Conn, error) { return net.Dial("tcp", l.Addr().String()) })
		if want := c.LocalAddr().String(); remote != want {
			t.Errorf("remote = %q, want %q", remote, want)
		}
	})
	t.Run("unix", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s")
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		_, remote, _ := acceptOne(t, l, func() (net.Conn, error) { return net.Dial("unix", path) })
		if remote != "@" {
			t.Errorf("unnamed client: remote = %q, want @", remote)
		}
		client := filepath.Join(t.TempDir(), "client")
		_, remote, _ = acceptOne(t, l, func() (net.Conn, error) {
			return net.DialUnix("unix", &net.UnixAddr{Name: client, Net: "unix"}, &net.UnixAddr{Name: path, Net: "unix"})
		})
		if remote != client {
			t.Errorf("bound client: remote = %q, want %q", remote, client)
		}
		name := "@corral-test-" + strings.ReplaceAll(t.Name(), "/", "-")
		_, remote, _ = acceptOne(t, l, func() (net.Conn, error) {
			return net.DialUnix("unix", &net.UnixAddr{Name: name, Net: "unix"}, &net.UnixAddr{Name: path, Net: "unix"})
		})
		if remote != name {
			t.Errorf("abstract client: remote = %q, want %q", remote, name)
		}
	})
}

// The event worker no longer sets TCP_NODELAY on each connection: it
// relies on Linux copying it from the listener.
func TestListenerNoDelayInherited(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if perConn := listenerNoDelay(listenerFD(t, l)); perConn {
		t.Fatal("a TCP listener refused TCP_NODELAY")
	}
	nfd, _, _ := acceptOne(t, l, func() (net.Conn, error) { return net.Dial("tcp", l.Addr().String()) })
	if v, err := unix.GetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v == 0 {
		t.Errorf("accepted socket: TCP_NODELAY = %d (%v), want it inherited from the listener", v, err)
	}

	ul, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	if perConn := listenerNoDelay(listenerFD(t, ul)); perConn {
		t.Error("a unix listener: per-connection TCP_NODELAY asked for")
	}
}

func TestFirstReads(t *testing.T) {
	var f firstReads
	tries := 0
	for range 4 * firstReadProbe {
		if f.try() {
			tries++
			f.record(false)
		}
	}
	if tries != 4 {
		t.Errorf("first reads that never find bytes: tried %d connections of %d, want one in %d", tries, 4*firstReadProbe, firstReadProbe)
	}
	for !f.try() {
	}
	f.record(true)
	for i := range 100 {
		if !f.try() {
			t.Fatalf("after %d first reads that found bytes, try = false", i+1)
		}
		f.record(true)
	}
	// As many misses as the score: then it stops reading first.
	for range firstReadMax {
		f.record(false)
	}
	if f.try() {
		t.Error("try = true after as many misses as hits")
	}
}

// A connection whose request comes well after the connect is served: its
// first read (if the loop made one) found nothing, and epoll reports the
// bytes once they come. So is one that sends its request in pieces, and
// many that connect at once.
func TestEventFirstBytesLate(t *testing.T) {
	p := newTestProcess(t, workertest.Handler(), nil)
	addr, stop := serveTest(t, p, New())
	defer stop(true)
	for range 2 * firstReadProbe { // both ways: read first, and not
		c := workertest.Dial(t, addr, 5*time.Second)
		time.Sleep(20 * time.Millisecond)
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		if _, err := c.Write([]byte("Connection: close\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		b, err := readAll(c)
		c.Close()
		if err != nil || !strings.HasPrefix(b, "HTTP/1.1 200 ") {
			t.Fatalf("late request: got %q, %v", b, err)
		}
	}
	done := make(chan error, 32)
	for range cap(done) {
		go func() {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")); err != nil {
				done <- err
				return
			}
			b, err := readAll(c)
			if err == nil && !strings.HasPrefix(b, "HTTP/1.1 200 ") {
				err = fmt.Errorf("unexpected response %q", b)
			}
			done <- err
		}()
	}
	for range cap(done) {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// readAll reads c to its close, for at most 5 seconds.
func readAll(c net.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestPeer: an IP peer's address is formatted when first asked, once, and
// the allow lists judge it by its IP, as they judge its string; a unix
// socket peer, which has no IP, is allowed.
func TestPeer(t *testing.T) {
	ip := peer{addr: netip.MustParseAddrPort("192.0.2.7:40000")}
	if ip.name != "" {
		t.Fatal("formatted before asked")
	}
	if got := ip.String(); got != "192.0.2.7:40000" || ip.name != got || ip.String() != got {
		t.Errorf("String = %q (kept %q), want 192.0.2.7:40000 kept", got, ip.name)
	}
	v6 := peer{addr: netip.MustParseAddrPort("[2001:db8::1]:443")}
	unixPeer := peer{name: "@"}
	for _, list := range []frontend.AllowList{
		frontend.MustAllowList("192.0.2.0/24"), frontend.MustAllowList("127.0.0.1"), frontend.MustAllowList("2001:db8::/32"), frontend.MustAllowList("*"),
	} {
		for _, p := range []peer{{addr: ip.addr}, v6, unixPeer} {
			want := list.AllowsRemote(p.String())
			if got := p.allowedBy(list); got != want {
				t.Errorf("%s allowed by %s: %v, AllowsRemote says %v", p.String(), list, got, want)
			}
		}
	}
	if !unixPeer.allowedBy(frontend.MustAllowList("127.0.0.1")) {
		t.Error("a unix socket peer refused")
	}
	if (&peer{addr: ip.addr}).allowedBy(frontend.MustAllowList("127.0.0.1")) {
		t.Error("192.0.2.7 allowed by 127.0.0.1")
	}
}
