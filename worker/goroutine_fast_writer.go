package worker

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/corral-server/corral/worker/http1"
)

// fastWriter is the response writer of the fast path's handlers:
// http1.ResponseWriter (Flush and FlushError included), with what a
// handler gets from net/http's server beyond it, through
// http.ResponseController (the access log's recorder, in front, unwraps
// to it): Hijack, the connection's read and write deadlines, and
// EnableFullDuplex, which has nothing to do, the body being read whole;
// and sendfile(2) for a file body (ReadFrom). It sends no trailers, as
// http1's does not.
// After a Hijack it writes nothing: http.ErrHijacked, as net/http's.
type fastWriter struct {
	http1.ResponseWriter
	c *fastConn
}

func (w *fastWriter) WriteHeader(code int) {
	if !w.c.hijacked {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *fastWriter) Write(b []byte) (int, error) {
	if w.c.hijacked {
		return 0, http.ErrHijacked
	}
	return w.ResponseWriter.Write(b)
}

func (w *fastWriter) WriteString(s string) (int, error) {
	if w.c.hijacked {
		return 0, http.ErrHijacked
	}
	return w.ResponseWriter.WriteString(s)
}

func (w *fastWriter) Flush() { w.FlushError() }

func (w *fastWriter) FlushError() error {
	if w.c.hijacked {
		return http.ErrHijacked
	}
	return w.ResponseWriter.FlushError()
}

// ReadFrom sends a file's bytes (an *os.File under an io.LimitedReader,
// what io.Copy of a file gives, as for http.ServeContent) by the socket's
// own ReadFrom, sendfile(2), once the head and what came before it are
// out, for a body under a declared Content-Length; anything else goes
// through the writer's buffer.
func (w *fastWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.c.hijacked {
		return 0, http.ErrHijacked
	}
	var sent int64
	if lr, ok := src.(*io.LimitedReader); ok {
		if f, ok := lr.R.(*os.File); ok {
			k, err := w.WriteOutside(lr.N, func(n int64) (int64, error) {
				return w.c.tc.ReadFrom(io.LimitReader(f, n))
			})
			sent, lr.N = k, lr.N-k
			if err != nil {
				return sent, err
			}
		}
	}
	n, err := io.Copy(struct{ io.Writer }{&w.ResponseWriter}, src)
	return sent + n, err
}

// Hijack hands the connection to the handler, as net/http's does: the
// responses before this one, and this one's head if WriteHeader ran, are
// written first; the reader yields what the client sent after the request
// and was already read before the socket's; the deadlines are cleared.
// From then on the fast path never touches the connection, which is
// reported hijacked (out of the drain's and the cap's count).
func (w *fastWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := w.c
	if c.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if !c.serving {
		return nil, nil, errHijackAfterHandler
	}
	c.watchEnd() // its bytes are the handler's too
	var err error
	if w.Status() != 0 {
		err = w.ResponseWriter.FlushError()
	} else {
		err = c.flush()
	}
	if err != nil {
		return nil, nil, err
	}
	c.hijacked = true
	tc := c.tc
	tc.SetDeadline(time.Time{})
	rest := bytes.Clone(c.buf[c.parsed:c.hi])
	c.outPooled = nil // the writer may still point into it: not the pool's any more
	tc.enterState(http.StateHijacked, 0, 0)
	c.g.forget(tc)
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(rest), tc), max(4096, len(rest)))
	if len(rest) > 0 {
		r.Peek(len(rest)) // Buffered reports them, as net/http's reader does
	}
	return tc, bufio.NewReadWriter(r, bufio.NewWriter(tc)), nil
}

// errHijackAfterHandler is Hijack's error once the handler has returned.
var errHijackAfterHandler = errors.New("worker: Hijack after the handler returned")

func (w *fastWriter) SetReadDeadline(t time.Time) error  { return w.c.tc.SetReadDeadline(t) }
func (w *fastWriter) SetWriteDeadline(t time.Time) error { return w.c.tc.SetWriteDeadline(t) }
func (w *fastWriter) EnableFullDuplex() error            { return nil }
