package worker

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// guardBody applies --max-body and --body-timeout to the requests h
// serves. net/http streams a body to the handler as it arrives, where the
// sync and event types read it whole first; the limits and the answers
// are theirs: a body over --max-body gets 413, one that does not arrive in
// time (see BodyTimedOut) 408, and the connection closes after either. A
// Content-Length over the limit is refused before the handler runs, a
// chunked body once the handler has read past the limit. The answer goes
// out only if the handler has not begun a response of its own, and
// replaces whatever the handler answers after its read failed. (The fast
// path serves only bodies that arrived whole within --max-body: it hands
// any other to net/http, and so to guardBody.)
func guardBody(cfg *Config, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cfg.MaxBody > 0 && r.ContentLength > cfg.MaxBody {
			refuse(w, http.StatusRequestEntityTooLarge)
			return
		}
		if r.Body == nil || r.Body == http.NoBody || (cfg.MaxBody <= 0 && cfg.BodyTimeout <= 0) {
			h.ServeHTTP(w, r)
			return
		}
		gw := &guardedWriter{ResponseWriter: w}
		b := &guardedBody{ReadCloser: r.Body, w: gw, rc: http.NewResponseController(w), timeout: cfg.BodyTimeout, start: time.Now()}
		if cfg.MaxBody > 0 {
			// Tells net/http, too, to read no further and close.
			b.ReadCloser = http.MaxBytesReader(w, r.Body, cfg.MaxBody)
		}
		r.Body = b
		h.ServeHTTP(gw, r)
	})
}

// refuse answers code with Connection: close.
func refuse(w http.ResponseWriter, code int) {
	w.Header().Set("Connection", "close")
	http.Error(w, strconv.Itoa(code)+" "+http.StatusText(code), code)
}

// guardedBody is a request body read within --max-body and --body-timeout.
// Each read gets the connection's deadline by bodyDeadline; at the end of
// the body the deadline is cleared, since net/http's background read of
// the connection, which begins then, would cancel the request's context
// at a deadline that passes while the handler still works.
type guardedBody struct {
	io.ReadCloser
	w       *guardedWriter
	rc      *http.ResponseController
	timeout time.Duration
	start   time.Time
	read    int64
}

func (b *guardedBody) Read(p []byte) (int, error) {
	if b.timeout > 0 {
		b.rc.SetReadDeadline(bodyDeadline(time.Now(), b.start, b.read, b.timeout))
	}
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
	case errors.As(err, &tooLarge):
		b.w.refuse(http.StatusRequestEntityTooLarge)
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.w.refuse(http.StatusRequestTimeout)
	case b.timeout > 0:
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// errRefused is what a handler's writes return once its request was
// refused while it read the body.
var errRefused = errors.New("the request was refused: its body is over --max-body or came too slowly")

// guardedWriter is the handler's response writer under guardBody: it
// notes whether the response has begun and, once the body's read failed,
// drops what the handler writes after the refusal.
type guardedWriter struct {
	http.ResponseWriter
	started bool
	refused int // the status answered instead of the handler's, or 0
}

func (w *guardedWriter) refuse(code int) {
	if w.started || w.refused != 0 {
		return
	}
	w.refused = code
	refuse(w.ResponseWriter, code)
}

// refusedStatus is the status answered instead of the handler's, for the
// access log; 0 if none.
func (w *guardedWriter) refusedStatus() int { return w.refused }

func (w *guardedWriter) WriteHeader(code int) {
	if w.refused != 0 {
		return
	}
	if code >= 200 {
		w.started = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *guardedWriter) Write(b []byte) (int, error) {
	if w.refused != 0 {
		return 0, errRefused
	}
	w.started = true
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps net/http's sendfile path.
func (w *guardedWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.refused != 0 {
		return 0, errRefused
	}
	w.started = true
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(w.ResponseWriter, src)
}

func (w *guardedWriter) Flush() {
	if w.refused != 0 {
		return
	}
	w.started = true
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach net/http's writer.
func (w *guardedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
