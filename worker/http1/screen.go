package http1

import (
	"io"
	"sync"
)

// Screen stands between a connection and another HTTP/1.1 parser, such as
// net/http's server, and lets through only the requests this package's
// Parser accepts. Its Read reads the connection, runs the bytes through
// the Parser and returns them, except:
//
//   - a request's head is returned only once the Parser has accepted all
//     of it, so the other parser never acts on a head this one refuses;
//   - the empty lines the Parser skips before a request-line are dropped,
//     as the other parser may not skip them;
//   - where the Parser refuses a request, Read returns every byte before
//     it and then a *Refusal, and nothing of the request or after it;
//   - after a request that closes the connection (Request.Close), nothing:
//     Read reads on only to report the source's errors, so that whatever
//     follows cannot reach the other parser even if it disagreed about
//     the close;
//   - after a request that may switch protocols (Request.Upgrade, or
//     CONNECT), everything, unread: what follows belongs to the handler if
//     it switches. (If it does not, the other parser reads on unscreened:
//     the price of serving WebSockets and tunnels through a Screen.)
//
// Bypass ends screening for good, for a connection a handler takes over.
// Idle and Hold let a caller read the source itself while the Screen holds
// nothing, and hand it what it read.
//
// Body bytes are returned as the Parser consumes them (it checks the
// framing and the size, and keeps nothing): a body is streamed, so a
// framing error late in a body comes when the other side has begun to
// read it, which Refusal.InBody says.
//
// A Screen is not safe for concurrent use. Its zero value is ready, with
// the default Config; set Parser.Config (without ProxyProtocol: a PROXY
// preamble is the connection's business, not the other parser's) before
// the first Read. Release gives its storage back to the pools it came from;
// a Screen dropped without it is collected as any other value.
type Screen struct {
	Parser Parser

	// buf holds bytes read and not yet returned: buf[:ready] may be
	// returned, buf[ready:parsed] is the head of a request in progress,
	// which the Parser has consumed and not yet accepted, and
	// buf[parsed:] is not consumed yet. mark is where that request
	// begins, at its empty lines; headOut says its head was made ready.
	buf                 []byte
	pooled              *[]byte // buf's pool entry, if it came from the pool
	ready, parsed, mark int
	headOut             bool
	closed              bool // a request with Close was let through
	// tiny is buf for a small read with nothing held, such as a reader
	// that takes a byte at a time: the pool's 4 KiB would be more than
	// it needs.
	tiny    [64]byte
	bypass  bool // the stream is the handler's: no more screening
	refused *Refusal
}

// A Refusal is what Screen.Read returns in place of a request the Parser
// refused, once every byte before it has been read; it wraps the Parser's
// error, whose Status is the answer to send (0: none, the client went
// away).
type Refusal struct {
	Err error

	// InBody says that the request's head was returned and only its body
	// is refused: whoever parsed the head is reading the body.
	InBody bool
}

func (r *Refusal) Error() string { return r.Err.Error() }
func (r *Refusal) Unwrap() error { return r.Err }

// screenBufSize is the size of the buffer a Screen holds bytes in while a
// head is incomplete; it grows as the Parser's limits allow.
const screenBufSize = 4 << 10

var screenBufs = sync.Pool{New: func() any { b := make([]byte, 0, screenBufSize); return &b }}

// Read fills b with bytes of src that have passed the Parser. It returns
// src's errors once the bytes before them are read, io.EOF included, and
// a *Refusal for a refused request, from then on.
func (s *Screen) Read(src io.Reader, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	s.Parser.DiscardBody = true
	for {
		if s.ready > 0 {
			n := copy(b, s.buf[:s.ready])
			s.drop(n)
			return n, nil
		}
		if s.bypass {
			return src.Read(b)
		}
		if s.refused != nil {
			s.release()
			return 0, s.refused
		}
		if s.closed {
			return 0, s.Discard(src)
		}
		var n int
		var err error
		if len(s.buf) == 0 && len(b) >= screenBufSize/8 {
			// Nothing held: read into b, and copy only what must wait.
			n, err = src.Read(b)
			if n > 0 {
				if out := s.direct(b[:n]); out > 0 {
					return out, nil
				}
			}
		} else {
			s.grow(len(b))
			n, err = src.Read(s.buf[len(s.buf):cap(s.buf)])
			s.buf = s.buf[:len(s.buf)+n]
			if n > 0 {
				s.scan()
				continue
			}
			s.release()
		}
		if err == nil {
			continue
		}
		if err == io.EOF {
			// A head cut short is dropped: the Parser's EOF error for
			// it has status 0, nothing to answer.
			s.buf = s.buf[:0]
			s.ready, s.parsed, s.mark = 0, 0, 0
			s.release()
		}
		return 0, err
	}
}

// Idle reports whether the Screen holds nothing and screens on: a read
// now starts afresh from the source.
func (s *Screen) Idle() bool {
	return len(s.buf) == 0 && s.refused == nil && !s.closed && !s.bypass
}

// Hold takes bytes read from the source by someone else, while Idle, as if
// Read had read them: they go out from the next Read on, once screened.
func (s *Screen) Hold(p []byte) {
	s.Parser.DiscardBody = true
	s.grow(len(p))
	s.buf = append(s.buf, p...)
	s.scan()
}

// Discard reads src until it fails, keeps nothing, and returns the error:
// a read that must wait as the socket would, with nothing to return.
func (s *Screen) Discard(src io.Reader) error {
	var discard []byte
	for {
		if discard == nil {
			p := screenBufs.Get().(*[]byte)
			defer screenBufs.Put(p)
			discard = (*p)[:cap(*p)]
		}
		if _, err := src.Read(discard); err != nil {
			return err
		}
	}
}

// Bypass ends screening: Read returns what it holds as it is, then reads
// the source directly.
func (s *Screen) Bypass() {
	s.bypass = true
	s.ready, s.parsed, s.mark = len(s.buf), len(s.buf), len(s.buf)
}

// direct scans b, fresh from the source with nothing held before it, and
// returns how many of its bytes, at its start, may go to the reader; the
// rest is kept in buf.
func (s *Screen) direct(b []byte) int {
	s.buf = b
	s.scan()
	out, rest := s.ready, s.buf[s.ready:]
	s.buf = nil
	s.ready, s.parsed, s.mark = 0, s.parsed-out, s.mark-out
	if len(rest) > 0 {
		s.grow(len(rest))
		s.buf = append(s.buf, rest...)
	}
	return out
}

// scan runs what buf holds past parsed through the Parser and moves ready.
func (s *Screen) scan() {
	for s.refused == nil {
		n, req, err := s.Parser.Parse(s.buf[s.parsed:])
		s.parsed += n
		switch {
		case err != nil:
			s.refused = &Refusal{Err: err, InBody: s.headOut}
			if s.headOut {
				s.ready = s.parsed
			}
			s.buf = s.buf[:s.ready] // nothing after the refusal goes out
			s.parsed = s.ready
			return
		case req != nil:
			s.head(req.Blank)
			s.ready, s.mark, s.headOut = s.parsed, s.parsed, false
			if req.Upgrade || req.Method == "CONNECT" {
				s.Bypass()
				return
			}
			if req.Close {
				s.closed = true
				s.buf = s.buf[:s.ready]
				s.parsed, s.mark = s.ready, s.ready
				return
			}
			continue
		}
		if h := s.Parser.Head(); h != nil {
			s.head(h.Blank)
			s.ready = s.parsed
		}
		return
	}
}

// head makes the request at mark ready to go out once its head is
// accepted: its empty lines, blank bytes, are cut.
func (s *Screen) head(blank int) {
	if s.headOut {
		return
	}
	s.headOut = true
	if blank > 0 {
		s.buf = append(s.buf[:s.mark], s.buf[s.mark+blank:]...)
		s.parsed -= blank
	}
}

// drop removes the first n bytes of buf, which were returned.
func (s *Screen) drop(n int) {
	s.buf = s.buf[:copy(s.buf, s.buf[n:])]
	s.ready -= n
	s.parsed -= n
	s.mark = max(s.mark-n, 0) // behind ready only while a body goes out
	s.release()
}

// grow makes room in buf for a read of up to want bytes: in tiny for a
// small one with nothing held, else in a buffer from the pool, grown as
// the Parser's limits let a head grow.
func (s *Screen) grow(want int) {
	switch {
	case s.buf == nil && want <= len(s.tiny):
		s.buf = s.tiny[:0]
		return
	case s.pooled == nil:
		s.pooled = screenBufs.Get().(*[]byte)
		s.buf = append((*s.pooled)[:0], s.buf...)
	}
	if cap(s.buf)-len(s.buf) < screenBufSize/4 {
		s.buf = append(s.buf, make([]byte, screenBufSize)...)[:len(s.buf)]
	}
}

// release returns buf's storage once it holds nothing: a connection
// between requests holds no buffer. The Parser's storage stays until
// Release, as giving it back costs an allocation for the next request.
func (s *Screen) release() {
	if len(s.buf) > 0 {
		return
	}
	if s.pooled != nil && cap(s.buf) == screenBufSize {
		*s.pooled = s.buf[:0]
		screenBufs.Put(s.pooled)
	}
	s.buf, s.pooled = nil, nil
}

// Release returns the Screen's storage, the Parser's included, to the pools
// they came from, for a connection that closed.
func (s *Screen) Release() {
	s.buf = s.buf[:0]
	s.ready, s.parsed, s.mark = 0, 0, 0
	s.release()
	s.Parser.Release()
}
