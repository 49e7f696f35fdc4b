package event

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/corral-server/corral/worker"
	"github.com/corral-server/corral/worker/frontend"
	"github.com/corral-server/corral/worker/http1"
)

// The event worker's front ends beyond plain HTTP and uwsgi: the PROXY
// protocol header on its loops' connections, and FastCGI on goroutines.

// wantProxy sets up the connection to read a PROXY header first, as
// frontend.ProxyConn does for the other worker types: from a peer
// --proxy-allow-from allows; a peer it does not is served as it is in auto
// mode and refused (false) in v1 and v2 mode.
func (c *eventConn) wantProxy(fe *frontend.FrontEnd) bool {
	if fe.Proxy == frontend.ProxyOff || fe.Proxy == "" {
		return true
	}
	if c.remote.allowedBy(fe.ProxyAllow) {
		c.proxy = fe.Proxy
		return true
	}
	if fe.Proxy == frontend.ProxyAuto {
		return true
	}
	c.l.p.Log.Warn(fmt.Sprintf("PROXY protocol: refused connection from %s, which --proxy-allow-from does not allow", c.remote.String()))
	return false
}

// readProxy reads the PROXY header at the start of c.in, if c.proxy's mode
// wants one there, and reports whether the connection goes on to its
// protocol: false while the header is incomplete, and when it is malformed
// or missing, which closes the connection without an answer. A header
// naming a client makes it the connection's remote address.
func (c *eventConn) readProxy() bool {
	version, known := http1.ProxyVersion(c.in)
	switch {
	case !known:
		if c.eof {
			c.refuseProxy(fmt.Errorf("%w: no whole signature after %q", http1.ErrInvalidProxyLine, c.in))
		}
		return false
	case version == 0 && c.proxy == frontend.ProxyAuto:
		c.proxy = ""
		return true
	case version == 0, c.proxy == frontend.ProxyV1 && version != 1, c.proxy == frontend.ProxyV2 && version != 2:
		c.refuseProxy(fmt.Errorf("%w: want a %s header, got %q", http1.ErrInvalidProxyLine, c.proxy, c.in[:min(len(c.in), 16)]))
		return false
	}
	n, info, err := http1.ParseProxy(c.in)
	if err == nil && n == 0 && c.eof {
		err = fmt.Errorf("%w: v%d header cut short after %d bytes", http1.ErrInvalidProxyLine, version, len(c.in))
	}
	if err != nil {
		c.refuseProxy(err)
		return false
	}
	if n == 0 {
		return false
	}
	c.in = c.in[:copy(c.in, c.in[n:])]
	if info.Version != 0 && !info.Local {
		c.remote = peer{addr: info.Source}
	}
	c.proxy = ""
	return true
}

func (c *eventConn) refuseProxy(err error) {
	c.l.p.Log.Warn(fmt.Sprintf("PROXY protocol: connection from %s: %v", c.remote.String(), err))
	c.close()
}

// eventGoConns are an event worker's FastCGI connections, each served on
// its own goroutine by frontend's ConnServer. The loops count them against
// --worker-connections, keep running (and beating) while any is open, and
// close them as the goroutine worker does in a stop: at once in a quick
// one, in a graceful one once idle for --drain-idle (the ConnServer itself
// closes a kept connection after its request while the worker drains).
type eventGoConns struct {
	mu    sync.Mutex
	conns map[net.Conn]*goConnState
	wg    sync.WaitGroup
}

// goConnState is a FastCGI connection's last http.ConnState, and since when.
type goConnState struct {
	state http.ConnState
	since time.Time
}

// serveGo serves the FastCGI connection nfd, accepted by a loop, on a
// goroutine; it was counted in e.conns and is uncounted when it closes.
func (e *eventWorker) serveGo(fe *frontend.FrontEnd, nfd int) {
	f := os.NewFile(uintptr(nfd), "fastcgi")
	c, err := net.FileConn(f) // a duplicate, in Go's poller
	f.Close()
	if err != nil {
		e.p.Log.Warn(fmt.Sprintf("fastcgi: %v", err))
		e.conns.Add(-1)
		return
	}
	c = fe.WrapConn(c)
	g := &e.gos
	g.mu.Lock()
	if g.conns == nil {
		g.conns = map[net.Conn]*goConnState{}
	}
	g.conns[c] = &goConnState{state: http.StateNew, since: time.Now()}
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fe.ConnServer(e.p, g.track).ServeConn(c)
		g.mu.Lock()
		delete(g.conns, c)
		g.mu.Unlock()
		e.conns.Add(-1)
	}()
}

// track is the ConnServer's ConnState hook.
func (g *eventGoConns) track(c net.Conn, s http.ConnState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st := g.conns[c]; st != nil {
		st.state, st.since = s, time.Now()
	}
}

func (g *eventGoConns) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// closeIdle closes the connections idle for at least d with nothing unread.
func (g *eventGoConns) closeIdle(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c, st := range g.conns {
		idle := st.state == http.StateIdle || st.state == http.StateNew
		if idle && time.Since(st.since) >= d && !worker.HasUnread(c) {
			c.Close()
		}
	}
}

func (g *eventGoConns) closeAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		c.Close()
	}
}

// wait waits for every connection's goroutine to return.
func (g *eventGoConns) wait() { g.wg.Wait() }
