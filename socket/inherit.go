package socket

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// FirstFD is where inherited listeners start in a child, as in systemd's
// socket activation: fds 3, 4, ... in bind order.
const FirstFD = 3

// Inherited describes one listener a child finds at fd FD.
type Inherited struct {
	FD   int    `json:"fd"`
	Bind string `json:"bind"` // the bind address as the user wrote it
	Addr string `json:"addr"` // the bound address: "http://127.0.0.1:8000" or "unix:/path"
	// Protocol is what the bind address named ("http", "uwsgi",
	// "fastcgi"); "" means the worker's default protocol.
	Protocol string `json:"protocol,omitempty"`
}

// Describe lists ls as a child started with Files(ls) will find them.
func Describe(ls []*Listener) []Inherited {
	out := make([]Inherited, len(ls))
	for i, l := range ls {
		out[i] = Inherited{FD: FirstFD + i, Bind: l.Bind, Addr: l.URL(), Protocol: l.Protocol}
	}
	return out
}

// FDs returns the listeners' descriptors in the order a child inherits
// them, for its fd table at FirstFD onwards.
func FDs(ls []*Listener) []uintptr {
	fds := make([]uintptr, len(ls))
	for i, l := range ls {
		fds[i] = uintptr(l.fd)
	}
	return fds
}

// SystemdEnv returns LISTEN_FDS and LISTEN_FDNAMES for a child that
// inherits ls at FirstFD; the child's LISTEN_PID is the child's business.
// A name may not hold ':' (the list separator), so addresses are written
// with '_' in its place.
func SystemdEnv(ls []*Listener) []string {
	names := make([]string, len(ls))
	for i, l := range ls {
		names[i] = strings.ReplaceAll(l.Bind, ":", "_")
	}
	return []string{
		"LISTEN_FDS=" + strconv.Itoa(len(ls)),
		"LISTEN_FDNAMES=" + strings.Join(names, ":"),
	}
}

// Listen turns inherited fds into net.Listeners. Each fd is closed after
// it is duplicated into its listener.
func Listen(in []Inherited) ([]net.Listener, error) {
	var out []net.Listener
	for _, d := range in {
		f := os.NewFile(uintptr(d.FD), d.Addr)
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, fmt.Errorf("inherit listener fd %d (%s): %w", d.FD, d.Addr, err)
		}
		if ul, ok := l.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false) // the arbiter owns the socket file
		}
		out = append(out, l)
	}
	return out, nil
}
