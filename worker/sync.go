package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker/frontend"
	"github.com/corral-server/corral/worker/http1"
)

func init() { Register("sync", func() Worker { return new(syncWorker) }) }

// syncWorker serves one connection at a time, as Gunicorn's sync worker:
// it accepts, reads one request, runs the handler, writes the response
// with "Connection: close" and closes. It beats the heartbeat between
// requests only, so --timeout limits each request: a handler that runs
// past it gets the worker aborted and replaced. While idle it waits for a
// connection in poll(2) for at most a quarter of --timeout, and beats.
type syncWorker struct {
	p     *Process
	cfg   *http1.Config
	wake  int // eventfd: Stop wakes the poll
	ctx   context.Context
	abort context.CancelFunc // a quick stop cancels the request in flight
	rctx  *ConnContext       // the requests' context, a child of ctx that ends with its request (Ended)

	stopping atomic.Bool // a stop of either kind began
	quick    atomic.Bool

	mu  sync.Mutex
	cur net.Conn // the connection being served

	parser http1.Parser
	rw     http1.ResponseWriter
	q      InFlight // the request in flight, reused
	in     []byte
	out    []byte
}

// syncReadTimeout bounds the wait for a request on an accepted connection
// when --timeout does not bound it tighter.
const syncReadTimeout = HeaderReadTimeout

func (s *syncWorker) BeatsItself() bool { return true }

func (s *syncWorker) Serve(p *Process) error {
	s.p = p
	s.cfg = ParserConfig(p)
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	s.mu.Lock()
	s.wake = fd
	s.ctx, s.abort = context.WithCancel(context.Background())
	s.rctx = &ConnContext{Parent: s.ctx}
	if s.quick.Load() {
		s.abort()
	}
	s.mu.Unlock()
	defer s.abort()
	defer func() {
		s.mu.Lock()
		unix.Close(s.wake)
		s.wake = -1
		s.mu.Unlock()
	}()
	fds := make([]unix.PollFd, 0, len(p.Listeners)+1)
	for _, l := range p.Listeners {
		lfd, err := ListenerFD(l)
		if err != nil {
			return err
		}
		fds = append(fds, unix.PollFd{Fd: int32(lfd), Events: unix.POLLIN})
	}
	fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	defer func() {
		for _, l := range p.Listeners {
			l.Close()
		}
	}()
	wait := 1000 // milliseconds
	if t := p.Config.Timeout; t > 0 {
		wait = int(min(max(t/4, 10*time.Millisecond), time.Second) / time.Millisecond)
	}
	p.Ready()
	paused := false // an accept failed for want of a resource: wait on the wake-up alone
	for !s.stopping.Load() {
		p.Beat()
		if paused {
			paused = false
			unix.Poll(fds[len(fds)-1:], int(acceptPause/time.Millisecond))
			continue
		}
		n, err := unix.Poll(fds, wait)
		if err == unix.EINTR || n == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		for i, l := range p.Listeners {
			if fds[i].Revents == 0 || s.stopping.Load() {
				continue
			}
			c, err := acceptNow(l)
			if err != nil {
				if !errors.Is(err, unix.EAGAIN) {
					p.AcceptFailed(err)
					paused = paused || IsResourceError(err)
				}
				continue
			}
			p.Beat()
			s.serveConn(i, c)
			p.Beat()
		}
	}
	if s.quick.Load() {
		return nil
	}
	// A graceful stop: serve what the kernel already accepted.
	for i, l := range p.Listeners {
		for !s.quick.Load() {
			c, err := acceptNow(l)
			if err != nil {
				break
			}
			p.Beat()
			s.serveConn(i, c)
		}
	}
	return nil
}

func (s *syncWorker) Stop(graceful bool) {
	s.stopping.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !graceful {
		s.quick.Store(true)
		if s.abort != nil {
			s.abort()
		}
		if s.cur != nil {
			s.cur.Close()
		}
	}
	if s.wake > 0 {
		unix.Write(s.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}
}

// serveConn serves one request on c, from listener i, and closes c.
func (s *syncWorker) serveConn(i int, c net.Conn) {
	s.mu.Lock()
	if s.quick.Load() {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.cur = c
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.cur = nil
		s.mu.Unlock()
		s.parser.Release()
		if cap(s.in) > 64<<10 {
			s.in = nil
		}
		if cap(s.out) > 64<<10 {
			s.out = nil
		}
	}()
	fe := s.p.FrontEnd(i)
	c = fe.WrapConn(c)
	if config := s.p.listenerTLS(i); config != nil {
		if c = s.p.handshakeTLS(c, config, s.ioTimeout()); c == nil {
			return
		}
	}
	if fe.Protocol != frontend.ProtocolHTTP {
		defer c.Close()
		cs := fe.ConnServer(s.p, nil)
		// One request per connection, as over HTTP: a FastCGI connection
		// the web server keeps (FCGI_KEEP_CONN) would hold this worker
		// while the others' requests wait in the backlog.
		cs.IdleTimeout = 0
		cs.ServeConn(&lingeringConn{BaseConn: frontend.BaseConn{Conn: c}})
		return
	}
	s.serveHTTP(c)
}

// ioTimeout is how long a sync worker waits on a client, to read the
// request or to write the response: within --timeout, so that a slow
// client costs a connection, not the worker.
func (s *syncWorker) ioTimeout() time.Duration {
	if t := s.p.Config.Timeout; t > 0 {
		return min(syncReadTimeout, t/2)
	}
	return syncReadTimeout
}

func (s *syncWorker) serveHTTP(c net.Conn) {
	linger := false
	defer func() { closeConn(c, linger) }()
	s.parser.Reset()
	s.parser.Config = s.cfg
	start := time.Now()
	whole := start.Add(s.ioTimeout()) // the request, head and body
	c.SetReadDeadline(whole)
	if cap(s.in) == 0 {
		s.in = make([]byte, 0, 4096)
	}
	in := s.in[:0]
	var req *http1.Request
	var received int64
	for req == nil {
		if len(in) == cap(in) {
			in = append(in, 0)[:len(in)]
		}
		if t := s.p.Config.BodyTimeout; t > 0 && s.parser.Head() != nil {
			if d := bodyDeadline(time.Now(), start, received, t); d.Before(whole) {
				c.SetReadDeadline(d)
			}
		}
		n, rerr := c.Read(in[len(in):cap(in)])
		in = in[:len(in)+n]
		received += int64(n)
		if n > 0 {
			used, r, err := s.parser.Parse(in)
			in = in[:copy(in, in[used:])]
			if err != nil {
				s.answerError(c, err)
				linger = true
				return
			}
			req = r
			if req == nil && s.parser.NeedContinue() {
				s.parser.ContinueSent()
				if _, err := c.Write(http1.AppendContinue(s.out[:0])); err != nil {
					return
				}
			}
		}
		if req == nil && rerr != nil {
			if rerr == io.EOF {
				if err := s.parser.EOF(); err != nil && http1.Status(err) != 0 {
					s.answerError(c, err)
				}
			} else if errors.Is(rerr, os.ErrDeadlineExceeded) && received > 0 {
				// A request begun but not received in time; a connection
				// that sent nothing closes without an answer.
				s.answerError(c, http1.ErrRequestTimeout)
				linger = true
			}
			return
		}
	}
	s.in = in
	hr, err := http1.ToHTTP(s.rctx, req, frontend.RemoteAddr(c))
	if err != nil {
		s.answerError(c, err)
		linger = true
		return
	}
	hr.TLS = connTLS(c)
	c.SetWriteDeadline(time.Now().Add(max(s.ioTimeout(), time.Second)))
	s.rw.Send = func(b []byte) error { _, err := c.Write(b); return err }
	s.rw.Reset(s.out[:0], req.Method, req.Major, req.Minor, true)
	ok := ServeRecover(s.p, &s.q, &s.rw, hr)
	s.rctx = s.rctx.Ended()
	if !ok {
		if !s.rw.Started() {
			s.answerError(c, errHandlerPanic)
		}
		return
	}
	out, err := s.rw.Finish()
	s.out = out[:0]
	if err == nil && len(out) > 0 {
		c.Write(out)
	}
	s.rw.Send = nil
	linger = HasUnread(c)
}

// errHandlerPanic stands for a handler's panic in answerError.
var errHandlerPanic = errors.New("handler panicked")

// answerError writes the response to a request that failed to parse.
func (s *syncWorker) answerError(c net.Conn, err error) {
	if err == errHandlerPanic {
		s.out = writeError(c, c, s.out[:0], http.StatusInternalServerError)
		return
	}
	s.out = s.p.refuse(c, c, s.out[:0], err)
}

// lingeringConn closes with closeConn's linger. A web server that keeps
// FastCGI connections may have sent its next request by the time the sync
// worker, one request per connection, closes: closing over those bytes
// would reset the connection and could destroy the response just written.
// The web server then sees the close, and sends that request elsewhere.
type lingeringConn struct {
	frontend.BaseConn
	once sync.Once
}

func (c *lingeringConn) Close() error {
	c.once.Do(func() { closeConn(c.Conn, true) })
	return nil
}
