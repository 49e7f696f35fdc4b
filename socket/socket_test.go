package socket

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseAddr(t *testing.T) {
	good := map[string]Addr{
		"127.0.0.1:8000":   {"tcp", "127.0.0.1:8000", ""},
		":9000":            {"tcp", ":9000", ""},
		"[::1]:80":         {"tcp", "[::1]:80", ""},
		"localhost":        {"tcp", "localhost:8000", ""},
		"[::1]":            {"tcp", "[::1]:8000", ""},
		"tcp://0.0.0.0:1":  {"tcp", "0.0.0.0:1", ""},
		"unix:/tmp/x.sock": {"unix", "/tmp/x.sock", ""},
		"unix:///a/b":      {"unix", "/a/b", ""},
		"fd://5":           {"fd", "5", ""},
		// A protocol prefix names the listener's protocol.
		"http://127.0.0.1:80":          {"tcp", "127.0.0.1:80", "http"},
		"uwsgi://127.0.0.1:3031":       {"tcp", "127.0.0.1:3031", "uwsgi"},
		"fastcgi://127.0.0.1:9000":     {"tcp", "127.0.0.1:9000", "fastcgi"},
		"fastcgi://unix:/run/app.sock": {"unix", "/run/app.sock", "fastcgi"},
		"uwsgi://[::1]":                {"tcp", "[::1]:8000", "uwsgi"},
		"uwsgi://fd://4":               {"fd", "4", "uwsgi"},
	}
	for in, want := range good {
		got, err := ParseAddr(in)
		if err != nil || got != want {
			t.Errorf("ParseAddr(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "unix:", "fd://x", "fd://-1", "1.2.3.4:99999", "h:port",
		"uwsgi://", "fastcgi://unix:", "scgi://127.0.0.1:1", "uwsgi://1.2.3.4:99999"} {
		if _, err := ParseAddr(in); err == nil {
			t.Errorf("ParseAddr(%q) succeeded", in)
		}
	}
}

func TestAddrStringRoundTrips(t *testing.T) {
	for _, in := range []string{"127.0.0.1:8000", "unix:/tmp/x.sock", "fd://5", "uwsgi://127.0.0.1:3031",
		"fastcgi://unix:/run/app.sock", "http://[::1]:80", "uwsgi://fd://4"} {
		a, err := ParseAddr(in)
		if err != nil || a.String() != in {
			t.Errorf("ParseAddr(%q).String() = %q, %v", in, a.String(), err)
		}
	}
}

func TestBindWithProtocolNamesIt(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "f.sock")
	ls, err := Bind([]string{"uwsgi://127.0.0.1:0", "fastcgi://unix:" + sock, "127.0.0.1:0", "http://127.0.0.1:0"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(ls)
	want := []struct{ proto, url string }{
		{"uwsgi", "uwsgi://" + ls[0].Addr.String()},
		{"fastcgi", "fastcgi://unix:" + sock},
		{"", "http://" + ls[2].Addr.String()},
		{"http", "http://" + ls[3].Addr.String()},
	}
	for i, w := range want {
		if ls[i].Protocol != w.proto || ls[i].URL() != w.url {
			t.Errorf("listener %d: protocol %q URL %q; want %q %q", i, ls[i].Protocol, ls[i].URL(), w.proto, w.url)
		}
	}
	in := Describe(ls)
	for i, w := range want {
		if in[i].Protocol != w.proto || in[i].Addr != w.url {
			t.Errorf("Describe[%d] = %+v, want protocol %q", i, in[i], w.proto)
		}
	}
}

func TestBindTCPWithBacklogAndReusePort(t *testing.T) {
	ls, err := Bind([]string{"127.0.0.1:0"}, Options{Backlog: 77, ReusePort: true})
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(ls)
	l := ls[0]
	fd := l.Fd()
	// For a listening socket the kernel reports its backlog in tcpi_sacked.
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		t.Fatal(err)
	}
	if info.Sacked != 77 {
		t.Errorf("backlog %d, want 77", info.Sacked)
	}
	if v, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT); v != 1 {
		t.Error("SO_REUSEPORT not set")
	}
	if v, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR); v != 1 {
		t.Error("SO_REUSEADDR not set")
	}
	if l.URL() != "http://"+l.Addr.String() || l.Addr.(*net.TCPAddr).Port == 0 {
		t.Errorf("URL %s addr %s", l.URL(), l.Addr)
	}
	// The same address without SO_REUSEPORT on our side is in use.
	if _, err := Bind([]string{l.Addr.String()}, Options{}); err == nil {
		t.Error("second bind of a used port succeeded")
	}
}

func TestBindIPv6(t *testing.T) {
	ls, err := Bind([]string{"[::1]:0"}, Options{})
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	defer CloseAll(ls)
	c, err := net.Dial("tcp", ls[0].Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestBindUnixModeStaleAndAlive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	ls, err := Bind([]string{"unix:" + path}, Options{Umask: 0o077})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %o, want 700 from umask 077", fi.Mode().Perm())
	}
	// A live socket is not removed.
	if _, err := Bind([]string{"unix:" + path}, Options{}); err == nil {
		t.Fatal("bound over a live unix socket")
	}
	// A stale one (no listener: the fd is closed but the file stays) is.
	unix.Close(ls[0].Fd())
	if _, err := os.Stat(path); err != nil {
		t.Fatal("socket file gone too early")
	}
	ls2, err := Bind([]string{"unix:" + path}, Options{})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ls2[0].Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left the socket file: %v", err)
	}
	// A regular file is never removed.
	os.WriteFile(path, []byte("x"), 0o600)
	if _, err := Bind([]string{"unix:" + path}, Options{}); err == nil {
		t.Error("bound over a regular file")
	}
}

func TestAdoptFD(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := ln.(*net.TCPListener).File()
	ln.Close()
	fd, _ := unix.Dup(int(f.Fd()))
	f.Close()
	ls, err := Bind([]string{"fd://" + strconv.Itoa(fd)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(ls)
	if ls[0].Network() != "tcp" {
		t.Errorf("network %s", ls[0].Network())
	}
	// A non-socket fd is refused with a clear error.
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	if _, err := Adopt(int(r.Fd()), "pipe"); err == nil {
		t.Error("adopted a pipe")
	}
}

func TestStopIntakeKeepsBacklogAndDropsNew(t *testing.T) {
	ls, err := Bind([]string{"127.0.0.1:0"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer CloseAll(ls)
	l := ls[0]
	queued, err := net.Dial("tcp", l.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer queued.Close()
	if err := l.StopIntake(); err != nil {
		t.Fatal(err)
	}
	// A new connection attempt is neither accepted nor refused: its SYN is
	// dropped, so the dial times out.
	_, err = net.DialTimeout("tcp", l.Addr.String(), 300*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial after StopIntake: %v, want a timeout", err)
	}
	// The connection already in the backlog is still there to accept.
	if fl, _ := unix.FcntlInt(uintptr(l.Fd()), unix.F_GETFL, 0); fl&unix.O_NONBLOCK == 0 {
		t.Fatal("listener is blocking")
	}
	nl, err := l.NetListener()
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	nl.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
	c, err := nl.Accept()
	if err != nil {
		t.Fatalf("queued connection lost: %v", err)
	}
	c.Close()
	if err := l.ResumeIntake(); err != nil {
		t.Fatal(err)
	}
	c2, err := net.DialTimeout("tcp", l.Addr.String(), 2*time.Second)
	if err != nil {
		t.Fatalf("dial after ResumeIntake: %v", err)
	}
	c2.Close()
	// A server that adopts the socket after one that stopped its intake
	// (systemd keeps a socket across restarts) takes connections.
	if err := l.StopIntake(); err != nil {
		t.Fatal(err)
	}
	dup, _ := unix.Dup(l.Fd())
	next, err := Adopt(dup, "systemd:0")
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	c3, err := net.DialTimeout("tcp", l.Addr.String(), 2*time.Second)
	if err != nil {
		t.Fatalf("dial after a new server adopted the socket: %v", err)
	}
	c3.Close()
}

// On a unix socket StopIntake removes the file this process owns: a new
// client finds nothing to connect to, one already queued is still there
// to accept, and a server bound on the path since keeps its file.
func TestStopIntakeOnUnixRefusesNewKeepsBacklog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ls, err := Bind([]string{"unix:" + path}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := ls[0]
	queued, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer queued.Close()
	if err := l.StopIntake(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("unix", path); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("dial after StopIntake: %v, want ENOENT", err)
	}
	nl, err := l.NetListener()
	if err != nil {
		t.Fatal(err)
	}
	nl.(*net.UnixListener).SetDeadline(time.Now().Add(2 * time.Second))
	c, err := nl.Accept()
	if err != nil {
		t.Fatalf("queued connection lost: %v", err)
	}
	c.Close()
	nl.Close()
	next, err := Bind([]string{"unix:" + path}, Options{})
	if err != nil {
		t.Fatalf("bind the path again: %v", err)
	}
	defer CloseAll(next)
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("closing the stopped listener removed the next server's file: %v", err)
	}
	// A socket file this process does not own stays.
	dup, _ := unix.Dup(next[0].Fd())
	adopted, err := Adopt(dup, "unix:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer adopted.Close()
	if err := adopted.StopIntake(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("StopIntake removed a socket file it does not own: %v", err)
	}
}

func TestSystemdAdoption(t *testing.T) {
	// Put a listening socket at fd 3 of this process, as systemd would.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := ln.(*net.TCPListener).File()
	ln.Close()
	saved, _ := unix.Dup(3) // fd 3 may be in use by the test binary
	if err := unix.Dup2(int(f.Fd()), 3); err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer func() { unix.Dup2(saved, 3); unix.Close(saved) }()

	t.Setenv("LISTEN_FDS", "1")
	t.Setenv("LISTEN_FDNAMES", "web")
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()+1))
	if ls, err := Systemd(); err != nil || ls != nil {
		t.Fatalf("sockets for another pid adopted: %v %v", ls, err)
	}
	t.Setenv("LISTEN_FDS", "1")
	t.Setenv("LISTEN_FDNAMES", "web")
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	ls, err := Systemd()
	if err != nil || len(ls) != 1 {
		t.Fatalf("Systemd() = %v, %v", ls, err)
	}
	defer CloseAll(ls)
	if ls[0].Bind != "web" {
		t.Errorf("name %q, want web", ls[0].Bind)
	}
	if os.Getenv("LISTEN_FDS") != "" {
		t.Error("LISTEN_FDS left in the environment")
	}
}

// With DeferAccept, a connection reaches the backlog with its first
// bytes, not with its handshake; without, at once.
func TestBindDeferAccept(t *testing.T) {
	for _, deferred := range []bool{false, true} {
		ls, err := Bind([]string{"127.0.0.1:0"}, Options{DeferAccept: deferred})
		if err != nil {
			t.Fatal(err)
		}
		l := ls[0]
		fd := l.Fd()
		if v, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT); (v != 0) != deferred {
			t.Errorf("DeferAccept %v: TCP_DEFER_ACCEPT is %d", deferred, v)
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", l.Addr.String())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the handshake is long done
		nfd, _, err := unix.Accept(fd)
		if deferred {
			if err != unix.EAGAIN {
				t.Errorf("DeferAccept: a connection that sent nothing was accepted (err %v)", err)
				unix.Close(nfd)
			}
			c.Write([]byte("G"))
			deadline := time.Now().Add(time.Second)
			for nfd, _, err = unix.Accept(fd); err == unix.EAGAIN && time.Now().Before(deadline); nfd, _, err = unix.Accept(fd) {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if err != nil {
			t.Errorf("DeferAccept %v: accept: %v", deferred, err)
		} else {
			unix.Close(nfd)
		}
		c.Close()
		CloseAll(ls)
	}
}
