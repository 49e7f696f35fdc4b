package worker

import (
	"io"
	"net"
	"sync"

	"github.com/corral-server/corral/internal/scoreboard"
	"github.com/corral-server/corral/worker/frontend"
)

// The worker's side of the scoreboard (internal/scoreboard), filled when
// the arbiter serves metrics (Config.Metrics). Process.ServeHTTP counts the
// requests of every type and front end; connections, bytes and parse
// errors are counted where they are seen: the front ends (FrontEnd.Count,
// ParseError) for the types that serve net.Conns (the goroutine type's
// trackedConn counts itself where a countedConn would be its only
// wrapper), the sync type's and
// net/http's parse errors in their types, the event loop by itself.

// Board is p's scoreboard, nil unless the metrics are on. A type that
// serves sockets itself, not net.Conns the front ends count, counts its
// connections there (ConnOpened, ConnClosed) and the bytes it reads and
// writes (AddRead, AddWritten); the requests are ServeHTTP's to count.
func (p *Process) Board() *scoreboard.Board { return p.board }

// setState records the worker's state on its scoreboard.
func (p *Process) setState(s scoreboard.State) {
	if p.board != nil {
		p.board.SetState(s)
	}
}

// ParseError counts a request refused before it reached the app, answered
// with code (0: closed without an answer, as a malformed uwsgi packet is).
// A type that parses requests itself calls it for each one it refuses.
func (p *Process) ParseError(code int) {
	if p.board != nil {
		p.board.ParseError(code)
	}
}

// countConn counts c as an open connection until it is closed, and the
// bytes read from and written to it. It returns c itself when the metrics
// are off.
func (p *Process) countConn(c net.Conn) net.Conn {
	if p.board == nil {
		return c
	}
	p.board.ConnOpened()
	return &countedConn{BaseConn: frontend.BaseConn{Conn: c}, board: p.board}
}

// countedConn counts a connection's bytes on the scoreboard, and its
// close. It keeps what the types look for on a connection: sendfile
// (ReadFrom), and through BaseConn the half-close and the fd (SIOCINQ).
type countedConn struct {
	frontend.BaseConn
	board *scoreboard.Board
	once  sync.Once
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.board.AddRead(n)
	return n, err
}

func (c *countedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.board.AddWritten(n)
	return n, err
}

// ReadFrom keeps sendfile: io.Copy hands r to the socket's own ReadFrom.
func (c *countedConn) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.Conn, r)
	c.board.AddWritten(int(n))
	return n, err
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.board.ConnClosed)
	return err
}
