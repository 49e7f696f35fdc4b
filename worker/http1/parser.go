package http1

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

type state uint8

const (
	stStart       state = iota // at a request boundary
	stProxy                    // looking for a PROXY preamble
	stRequestLine              // before the request-line
	stHeaders                  // in the header section
	stBody                     // in a Content-Length body
	stChunkSize                // before a chunk-size line
	stChunkData                // in chunk data
	stChunkEnd                 // before the CRLF that ends chunk data
	stTrailers                 // in the trailer section
	stClosed                   // after a request that closes the connection
)

// field locates one header or trailer field in scratch.buf: the name is
// buf[off:off+nameLen] and the value follows it up to end. Offsets, not
// slices, because buf may be reallocated while the section is parsed.
type field struct {
	off, nameLen, end int
	underscore        bool // the name has a "_": see closeField
}

// scratch is the memory a request is parsed into. It is pooled, so that a
// connection between requests need not hold any (see Parser.Release).
type scratch struct {
	req      Request
	buf      []byte // names and values of header and trailer fields
	fields   []field
	headers  []Header
	trailers []Header
	body     []byte
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// keepScratch bounds the buffers kept for reuse: one large upload must not
// pin its size for the rest of a keep-alive connection or in the pool.
const keepScratch = 64 << 10

// Parser parses the requests of one connection. The zero value is ready to
// use with DefaultConfig settings; set Config and TrustedPeer before the
// first call to Parse. A Parser is not safe for concurrent use.
//
// Parse is fed the connection's bytes as they arrive:
//
//	var pending []byte
//	for {
//		pending = append(pending, readSome()...)
//		for {
//			n, req, err := p.Parse(pending)
//			pending = pending[n:]
//			if err != nil {
//				// answer Status(err) if non-zero, then close
//			}
//			if req == nil {
//				break // need more bytes; see NeedContinue
//			}
//			// serve req; close after the response if req.Close
//		}
//	}
//
// and EOF is called when the peer closes its side.
type Parser struct {
	// Config holds the settings; nil means the defaults. It is read at the
	// start of each request.
	Config *Config

	// TrustedPeer says that the peer is a front proxy listed in
	// forwarded_allow_ips (see the TrustedPeer function): only then are
	// Config.SecureSchemeHeaders and Config.ForwarderHeaders honoured.
	TrustedPeer bool

	// DiscardBody checks a body's framing and size without keeping its
	// bytes: Request.Body stays empty. For a Screen, which passes the
	// bytes on to another parser instead.
	DiscardBody bool

	cfg     *Config
	lim     limits
	limFrom Limits // the Config.Limits lim was normalised from
	limSet  bool
	s       *scratch
	state   state
	err     error // sticky: after an error the connection is unusable

	begun   bool  // a request has begun on this connection; no PROXY preamble any more
	blank   uint8 // empty lines skipped before this request's request-line
	blankN  uint8 // their bytes
	tail    int   // bytes left unconsumed by the last Parse
	scanned int   // bytes of the pending line already searched for CRLF

	// The header or trailer section being parsed.
	open       bool // the last field may still be continued by obs-fold
	openLen    int  // its size so far, as counted against FieldSize
	kept       int  // fields kept in this section
	section    int  // bytes of this section so far
	trailerAt  int  // index in scratch.fields of the first trailer field
	schemeSeen bool

	remaining    int64 // bytes left in the Content-Length body or current chunk
	bodyLen      int64 // bytes of the body so far, kept or not
	bodyStarted  bool  // a byte of the body has arrived
	continueSent bool

	proxy    ProxyInfo
	hasProxy bool

	// The request-target is the one string a request would otherwise
	// allocate. lastTarget is reused when the next request repeats it, and
	// other short targets are carved out of strs, a block that is only ever
	// appended to, so the strings made from it never change.
	lastTarget string
	strs       []byte

	// okHost is the last Host value found valid, a string of its own: the
	// requests of a kept connection repeat it, so it is checked once.
	// hostChecked says a Host was checked on this connection: the first
	// request's is not kept, so a connection per request allocates none.
	okHost      string
	hostChecked bool
}

// NewParser returns a Parser using Gunicorn's default settings with limits l.
func NewParser(l Limits) *Parser {
	c := DefaultConfig()
	c.Limits = l
	return &Parser{Config: c}
}

// Parse consumes bytes from buf, the connection's unconsumed input. It
// returns how many bytes it consumed and, when one is complete including its
// whole body, a request. A nil request and nil error mean that more input is
// needed: the caller keeps buf[n:], appends to it what it reads next, and
// calls Parse again with the result. Bytes once presented and not consumed
// must be presented again unchanged. Incomplete lines are never consumed,
// but the parser remembers how far it has searched them, so feeding a line
// one byte at a time costs linear, not quadratic, time.
//
// After a request is returned, the next call starts on the next, pipelined
// request. If the returned request has Close set, any later input is
// consumed and discarded. The returned Request is valid until the next call
// to Parse, Reset or Release.
//
// An error is final: it wraps one of the package's sentinel errors, the
// caller should answer Status(err) and close the connection, and every later
// call returns the same error.
func (p *Parser) Parse(buf []byte) (n int, req *Request, err error) {
	if p.err != nil {
		return 0, nil, p.err
	}
	if p.state == stClosed {
		p.tail = 0
		return len(buf), nil, nil
	}
	for {
		rest := buf[n:]
		switch p.state {
		case stStart:
			if len(rest) == 0 {
				return p.more(buf, n)
			}
			if !p.begun {
				p.begun = true
				if p.config().ProxyProtocol == ProxyAuto {
					p.begin()
					p.state = stProxy
					continue
				}
			}
			if c := rest[0]; c == '\r' || c == '\n' {
				// RFC 9112 section 2.2: ignore an empty line before the
				// request-line, which old clients send after a POST body.
				// A CR not followed by LF is a bare CR, which the
				// request-line rejects.
				adv := 1
				if c == '\r' {
					if len(rest) < 2 {
						return p.more(buf, n)
					}
					adv = 2
				}
				if c == '\n' || rest[1] == '\n' {
					if p.blank++; p.blank > maxBlankLines {
						return p.fail(n, errorf(ErrInvalidRequestLine, "more than %d empty lines before the request line", maxBlankLines))
					}
					p.blankN += uint8(adv)
					n += adv
					continue
				}
			}
			p.begin()
			p.state = stRequestLine

		case stProxy:
			// The preamble is optional: only a signature commits to one.
			version, ok := ProxyVersion(rest)
			if !ok {
				return p.more(buf, n)
			}
			if version != 0 {
				adv, info, err := ParseProxy(rest)
				if err != nil {
					return p.fail(n, err)
				}
				if adv == 0 {
					return p.more(buf, n)
				}
				p.proxy, p.hasProxy = info, true
				n += adv
			}
			// Empty lines may follow the preamble, as they may begin
			// any connection.
			p.state = stStart

		case stRequestLine:
			line, adv, ok := p.readLine(rest)
			l := p.lim.requestLine
			if !ok {
				// The line could still end in a CR; past that it is too long.
				if l > 0 && len(rest) > l+1 {
					return p.fail(n, errorf(ErrLimitRequestLine, "request line longer than %d bytes", l))
				}
				return p.more(buf, n)
			}
			if l > 0 && len(line) > l {
				return p.fail(n, errorf(ErrLimitRequestLine, "request line of %d bytes, limit %d", len(line), l))
			}
			if err := p.requestLine(line); err != nil {
				return p.fail(n, err)
			}
			n += adv
			p.state = stHeaders
			p.startSection()

		case stHeaders, stTrailers:
			trailer := p.state == stTrailers
			if len(rest) == 0 {
				return p.more(buf, n)
			}
			// The first byte of a line settles whether it continues the
			// previous field. Acting on it at once, rather than when the
			// line is complete, makes the outcome independent of how the
			// input is sliced: a later, too long line cannot pre-empt the
			// previous field's error in one slicing and not in another.
			if p.open {
				if !isOWS(rest[0]) {
					if err := p.closeField(trailer); err != nil {
						return p.fail(n, err)
					}
				} else if !p.cfg.PermitObsoleteFolding {
					return p.fail(n, errorf(ErrObsoleteFolding, "continuation line after field %s", quote(p.s.header(p.s.fields[len(p.s.fields)-1]).Name)))
				}
			}
			line, adv, ok := p.readLine(rest)
			if !ok {
				if len(rest) > p.lim.fieldSize || p.section+len(rest) > p.lim.section {
					return p.fail(n, errorf(ErrLimitRequestHeaders, "field line longer than %d bytes", p.lim.fieldSize))
				}
				return p.more(buf, n)
			}
			p.section += adv
			if p.section > p.lim.section {
				return p.fail(n, errorf(ErrLimitRequestHeaders, "field section larger than %d bytes", p.lim.section))
			}
			n += adv
			if len(line) > 0 {
				if err := p.fieldLine(line); err != nil {
					return p.fail(n, err)
				}
				continue
			}
			if trailer {
				return p.complete(n)
			}
			done, err := p.finishHead()
			if err != nil {
				return p.fail(n, err)
			}
			if done {
				return p.complete(n)
			}

		case stBody, stChunkData:
			if len(rest) == 0 {
				return p.more(buf, n)
			}
			p.bodyStarted = true
			take := len(rest)
			if int64(take) > p.remaining {
				take = int(p.remaining)
			}
			if !p.DiscardBody {
				p.s.body = append(p.s.body, rest[:take]...)
			}
			p.bodyLen += int64(take)
			n += take
			p.remaining -= int64(take)
			if p.remaining > 0 {
				return p.more(buf, n)
			}
			if p.state == stBody {
				return p.complete(n)
			}
			p.state = stChunkEnd

		case stChunkEnd:
			if len(rest) < 2 {
				if len(rest) == 1 && rest[0] != '\r' {
					return p.fail(n, errorf(ErrChunkMissingTerminator, "chunk data followed by %q, not CRLF", rest[0]))
				}
				return p.more(buf, n)
			}
			if rest[0] != '\r' || rest[1] != '\n' {
				return p.fail(n, errorf(ErrChunkMissingTerminator, "chunk data followed by %q, not CRLF", rest[:2]))
			}
			n += 2
			p.state = stChunkSize

		case stChunkSize:
			if len(rest) > 0 {
				p.bodyStarted = true
			}
			line, adv, ok := p.readLine(rest)
			if !ok {
				if len(rest) > p.lim.fieldSize+1 {
					return p.fail(n, errorf(ErrInvalidChunkSize, "chunk-size line longer than %d bytes", p.lim.fieldSize))
				}
				return p.more(buf, n)
			}
			if len(line) > p.lim.fieldSize {
				return p.fail(n, errorf(ErrInvalidChunkSize, "chunk-size line longer than %d bytes", p.lim.fieldSize))
			}
			size, err := parseChunkLine(line)
			if err != nil {
				return p.fail(n, err)
			}
			n += adv
			if size == 0 {
				p.state = stTrailers
				p.startSection()
				continue
			}
			if m := p.lim.maxBody; m > 0 && p.bodyLen+size > m {
				return p.fail(n, errorf(ErrBodyTooLarge, "chunked body exceeds %d bytes", m))
			}
			p.remaining = size
			p.state = stChunkData

		default:
			panic("http1: invalid parser state")
		}
	}
}

// EOF tells the parser that the peer closed the connection. It returns nil
// at a request boundary (or after a closing request), and otherwise an error
// wrapping ErrNoMoreData. A chunked body cut off after its last chunk also
// wraps ErrChunkMissingTerminator, which is what Gunicorn reports there.
func (p *Parser) EOF() error {
	if p.err != nil {
		return p.err
	}
	switch p.state {
	case stStart, stClosed:
		return nil
	case stChunkEnd, stTrailers:
		p.err = fmt.Errorf("%w: %w: input ended before the end of the chunked body", ErrChunkMissingTerminator, ErrNoMoreData)
	case stBody, stChunkSize, stChunkData:
		p.err = errorf(ErrNoMoreData, "input ended in the body after %d bytes", p.bodyLen)
	default:
		p.err = errorf(ErrNoMoreData, "input ended in the request head")
	}
	return p.err
}

// Head returns the request whose header section is complete but whose body
// is still arriving, or nil. Its Body holds what has arrived so far. An event
// loop may use it to reject a request early (authentication, a 413) instead
// of reading the body.
func (p *Parser) Head() *Request {
	if p.err != nil {
		return nil
	}
	switch p.state {
	case stBody, stChunkSize, stChunkData, stChunkEnd, stTrailers:
		r := &p.s.req
		r.Body = p.s.body
		return r
	}
	return nil
}

// NeedContinue reports whether the client is waiting for an interim
// "HTTP/1.1 100 Continue" response before it sends the body: the current
// request's header section is complete, it carried "Expect: 100-continue",
// its body is not empty, and no byte of the body has arrived. It stays true
// until a body byte arrives or ContinueSent is called, so an event loop can
// check it after every Parse that returns no request.
func (p *Parser) NeedContinue() bool {
	r := p.Head()
	return r != nil && r.Expect100 && !p.bodyStarted && !p.continueSent
}

// ContinueSent records that "100 Continue" was written for the current
// request, so that NeedContinue reports false.
func (p *Parser) ContinueSent() { p.continueSent = true }

// Proxy returns what a PROXY protocol preamble said about the connection, if
// Config.ProxyProtocol is ProxyAuto and the peer sent one.
func (p *Parser) Proxy() (ProxyInfo, bool) { return p.proxy, p.hasProxy }

// Reset prepares the Parser for a new connection, keeping Config,
// TrustedPeer and its storage.
func (p *Parser) Reset() {
	*p = Parser{Config: p.Config, TrustedPeer: p.TrustedPeer, DiscardBody: p.DiscardBody, s: p.s, lastTarget: p.lastTarget, strs: p.strs, okHost: p.okHost}
}

// Idle reports whether no request is partly parsed (or the Parser failed):
// a Reset then loses nothing of the connection's, and the Parser may serve
// another (a server that keeps free Parsers for its connections).
func (p *Parser) Idle() bool { return p.err != nil || p.state == stStart || p.state == stClosed }

// Release returns the Parser's storage to a pool shared by all Parsers, so
// that a connection waiting for its next request holds no buffer; the next
// Parse takes storage from the pool again. Call it when the connection goes
// idle. The last Request returned becomes invalid. Release does nothing while
// a request is partly parsed.
func (p *Parser) Release() {
	s := p.s
	if s == nil || (p.err == nil && p.state != stStart && p.state != stClosed) {
		return
	}
	// lastTarget may point into the block about to be dropped, and would
	// keep all of it alive for as long as the connection idles: keep a
	// copy of just its bytes. A copy made by an earlier Release, or a
	// target of its own size, is kept as it is, so that a connection
	// released after each request (idle between them) copies a repeated
	// target once, not once a request.
	if inBlock(p.lastTarget, p.strs) {
		p.lastTarget = strings.Clone(p.lastTarget)
	}
	p.s = nil
	p.strs = nil
	if cap(s.buf) > keepScratch {
		return
	}
	if cap(s.body) > keepScratch {
		s.body = nil
	}
	s.req = Request{}
	clear(s.headers[:cap(s.headers)])
	clear(s.trailers[:cap(s.trailers)])
	scratchPool.Put(s)
}

func (p *Parser) more(buf []byte, n int) (int, *Request, error) {
	p.tail = len(buf) - n
	return n, nil, nil
}

func (p *Parser) fail(n int, err error) (int, *Request, error) {
	p.err = err
	return n, nil, err
}

// config returns the settings in force: Config, or the defaults.
func (p *Parser) config() *Config {
	if p.Config == nil {
		return defaultConfig
	}
	return p.Config
}

// begin resets the per-request state at the first byte of a request.
func (p *Parser) begin() {
	p.cfg = p.config()
	if p.cfg.Limits != p.limFrom || !p.limSet {
		// Normalised again only when the settings change: this runs at
		// the start of every request.
		p.lim, p.limFrom, p.limSet = p.cfg.Limits.normalize(), p.cfg.Limits, true
	}
	if p.s == nil {
		p.s = scratchPool.Get().(*scratch)
	}
	s := p.s
	if cap(s.body) > keepScratch {
		s.body = nil
	}
	if cap(s.buf) > keepScratch {
		s.buf = nil
	}
	s.buf = s.buf[:0]
	s.fields = s.fields[:0]
	s.body = s.body[:0]
	s.req = Request{ContentLength: -1, Blank: int(p.blankN)}
	p.scanned = 0
	p.remaining = 0
	p.bodyLen = 0
	p.bodyStarted = false
	p.continueSent = false
	p.schemeSeen = false
}

func (p *Parser) complete(n int) (int, *Request, error) {
	s := p.s
	r := &s.req
	r.Body = s.body[:len(s.body):len(s.body)]
	if r.Chunked {
		s.trailers = s.trailers[:0]
		for _, f := range s.fields[p.trailerAt:] {
			s.trailers = append(s.trailers, s.header(f))
		}
		if len(s.trailers) > 0 {
			r.Trailers = s.trailers
		}
	}
	p.state = stStart
	if r.Close {
		p.state = stClosed
	}
	p.blank, p.blankN = 0, 0
	p.tail = 0
	return n, r, nil
}

func (s *scratch) header(f field) Header {
	v := f.off + f.nameLen
	return Header{Name: s.buf[f.off:v:v], Value: s.buf[v:f.end:f.end]}
}

// readLine returns the line at the start of b, without its CRLF, and the
// number of bytes it occupies with the CRLF. Only CRLF ends a line: a bare
// CR or LF stays in the line, where validation rejects it.
func (p *Parser) readLine(b []byte) (line []byte, adv int, ok bool) {
	if len(b) >= 2 && b[0] == '\r' && b[1] == '\n' {
		// The empty line that ends every head: no search.
		p.scanned = 0
		return b[:0], 2, true
	}
	from := p.scanned - 1 // the CR of a CRLF may be the last byte seen
	if from < 0 || from > len(b) {
		from = 0
	}
	// The first LF with a CR before it: IndexByte is several times
	// quicker than bytes.Index on a line's few dozen bytes.
	for {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			p.scanned = len(b)
			return nil, 0, false
		}
		i += from
		if i > 0 && b[i-1] == '\r' {
			p.scanned = 0
			return b[:i-1], i + 1, true
		}
		from = i + 1 // a bare LF, part of the line
	}
}

// requestLine parses method SP request-target SP HTTP-version. Exactly one
// SP separates the parts (RFC 9112 section 3); anything else lands in the
// target or the version and fails there.
func (p *Parser) requestLine(line []byte) error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 0 {
		return errorf(ErrInvalidRequestLine, "request line %s has no spaces", quote(line))
	}
	// The usual line ends in " HTTP/1.1": where the target has none of
	// the bytes a target cannot hold (SP among them), that SP is the
	// second, and the one scan over the target both finds and checks it.
	sp2 := len(line) - len(" HTTP/1.1")
	clean := sp2 > sp1 && line[sp2] == ' ' && allIn(line[sp1+1:sp2], &targetTab, 0x21)
	if !clean {
		sp2 = bytes.IndexByte(line[sp1+1:], ' ')
		if sp2 < 0 {
			return errorf(ErrInvalidRequestLine, "request line %s has one part too few", quote(line))
		}
		sp2 += sp1 + 1
	}
	method, target, version := line[:sp1], line[sp1+1:sp2], line[sp2+1:]
	r := &p.s.req

	if !p.cfg.PermitUnconventionalMethod {
		// Gunicorn: 3 to 20 characters, no lower case, no "#".
		if len(method) < 3 || len(method) > 20 || !conventional(method) {
			return errorf(ErrInvalidRequestMethod, "unconventional method %s", quote(method))
		}
	}
	if !isToken(method) {
		return errorf(ErrInvalidRequestMethod, "method %s is not a token", quote(method))
	}
	r.Method = internMethod(method, p.cfg.CasefoldMethod)

	if !clean {
		if err := checkTargetBytes(target); err != nil {
			return err
		}
	}
	if err := checkTargetForm(r.Method, target); err != nil {
		return err
	}
	r.Target = p.internTarget(target)

	if len(version) != 8 || string(version[:5]) != "HTTP/" || version[6] != '.' ||
		!isDigit(version[5]) || !isDigit(version[7]) {
		return errorf(ErrInvalidHTTPVersion, "malformed version %s", quote(version))
	}
	r.Major, r.Minor = int(version[5]-'0'), int(version[7]-'0')
	if r.Major != 1 && !p.cfg.PermitUnconventionalVersion {
		return fmt.Errorf("%w: %w: %s", ErrInvalidHTTPVersion, ErrHTTPVersionNotSupported, version)
	}
	return nil
}

// maxBlankLines is how many empty lines (CRLF or a bare LF) may precede a
// request-line. RFC 9112 section 2.2 asks a server to ignore at least one;
// two is what net/http's server tolerates after a POST (four CR or LF
// bytes), and more is not a client's robustness but someone probing for a
// parser that counts differently.
const maxBlankLines = 2

// checkHost reports whether r's Host is a valid value, remembering the
// last one that was.
func (p *Parser) checkHost(r *Request) bool {
	h := r.Host
	if string(h) == p.okHost {
		r.host = p.okHost
		return true
	}
	if !validHost(h) {
		return false
	}
	if p.hostChecked && len(h) <= strBlock/8 {
		p.okHost = string(h)
		r.host = p.okHost
	}
	p.hostChecked = true
	return true
}

// strBlock is the size of the blocks short targets are carved from.
const strBlock = 4096

func (p *Parser) internTarget(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if string(b) == p.lastTarget {
		return p.lastTarget
	}
	var s string
	if len(b) > strBlock/8 || p.strs == nil {
		// Long, or the first target since the parser was new or
		// released: a connection that sends one request at a time gets
		// an exact-size string, and a block only once it sends varied
		// targets in a row.
		s = string(b)
		if p.strs == nil {
			p.strs = make([]byte, 0) // the next one may use a block
		}
	} else {
		s = carve(&p.strs, b)
	}
	p.lastTarget = s
	return s
}

// carve returns b as a string made of bytes appended to *block, a new
// block of strBlock bytes when b does not fit (len(b) <= strBlock). The
// bytes of a block below its length are never written again, so the
// string never changes; the old block stays alive exactly as long as a
// string made from it does.
func carve(block *[]byte, b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(*block)-len(*block) < len(b) {
		*block = make([]byte, 0, strBlock)
	}
	off := len(*block)
	*block = append(*block, b...)
	return unsafe.String(&(*block)[off], len(b))
}

// inBlock reports whether s's bytes lie in block's backing array (carved
// from it).
func inBlock(s string, block []byte) bool {
	if len(s) == 0 || cap(block) == 0 {
		return false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(block[:cap(block)])))
	at := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	return at >= base && at < base+uintptr(cap(block))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// conventional reports whether a method has no lower-case letter and no
// "#", Gunicorn's rule; a loop, not bytes.ContainsAny, as it runs on every
// request.
func conventional(m []byte) bool {
	for _, c := range m {
		if 'a' <= c && c <= 'z' || c == '#' {
			return false
		}
	}
	return true
}

// internMethod avoids allocating a string for the common methods.
func internMethod(m []byte, upper bool) string {
	if upper {
		m = bytes.ToUpper(m)
	}
	switch string(m) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "HEAD":
		return "HEAD"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	case "CONNECT":
		return "CONNECT"
	case "TRACE":
		return "TRACE"
	}
	return string(m)
}

func (p *Parser) startSection() {
	p.open = false
	p.openLen = 0
	p.kept = 0
	p.section = 0
}

// fieldLine handles one non-empty line of a header or trailer section once
// Parse has closed or continued the previous field. Size is checked first,
// as it is for an incomplete line, so that any slicing of the same bytes
// fails the same way.
func (p *Parser) fieldLine(line []byte) error {
	s := p.s
	if p.open {
		// The caller has ruled out everything but a permitted obs-fold.
		p.openLen += len(line) + 2
		if p.openLen > p.lim.fieldSize {
			return errorf(ErrLimitRequestHeaders, "folded field longer than %d bytes", p.lim.fieldSize)
		}
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, trimOWS(line)...)
		s.fields[len(s.fields)-1].end = len(s.buf)
		return nil
	}
	if p.kept >= p.lim.fields {
		return errorf(ErrLimitRequestHeaders, "more than %d fields", p.lim.fields)
	}
	if len(line)+2 > p.lim.fieldSize {
		return errorf(ErrLimitRequestHeaders, "field line of %d bytes, limit %d", len(line)+2, p.lim.fieldSize)
	}
	// One pass finds the colon, checks the name and notes an underscore;
	// a name that is not all tchar up to the colon takes the long way,
	// which tells what is wrong with it.
	colon, underscore := 0, false
	for colon < len(line) && tokenTab[line[colon]] {
		underscore = underscore || line[colon] == '_'
		colon++
	}
	name := line[:colon]
	if colon == 0 || colon == len(line) || line[colon] != ':' {
		colon = bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errorf(ErrInvalidHeader, "field line %s has no name", quote(line))
		}
		name = line[:colon]
		if p.cfg.StripHeaderSpaces {
			name = trimRightOWS(name)
		}
		if !isToken(name) {
			return errorf(ErrInvalidHeaderName, "field name %s", quote(name))
		}
		underscore = bytes.IndexByte(name, '_') >= 0
	}
	off := len(s.buf)
	s.buf = append(s.buf, name...)
	s.buf = append(s.buf, trimOWS(line[colon+1:])...)
	s.fields = append(s.fields, field{off: off, nameLen: len(name), end: len(s.buf), underscore: underscore})
	p.open = true
	p.openLen = len(line) + 2
	return nil
}

// closeField finishes the last field once no continuation line can follow.
func (p *Parser) closeField(trailer bool) error {
	if !p.open {
		return nil
	}
	p.open = false
	s := p.s
	f := &s.fields[len(s.fields)-1]
	name := s.buf[f.off : f.off+f.nameLen : f.off+f.nameLen]
	if !validValue(s.buf[f.off+f.nameLen : f.end]) {
		return errorf(ErrInvalidHeader, "control character in the value of %s", quote(name))
	}
	if !trailer && !p.TrustedPeer && !f.underscore {
		p.kept++ // the usual field: nothing more to check
		return nil
	}
	h := s.header(*f)
	if trailer && forbiddenTrailer(h.Name) {
		return errorf(ErrInvalidHeaderName, "%s is not allowed in trailers", quote(h.Name))
	}
	if p.TrustedPeer && !trailer {
		r := &s.req
		for _, sh := range p.cfg.SecureSchemeHeaders {
			if !asciiEqualFold(h.Name, sh.Name) {
				continue
			}
			scheme := "http"
			if string(h.Value) == sh.Value {
				scheme = "https"
			}
			if p.schemeSeen && scheme != r.Scheme {
				return errorf(ErrInvalidSchemeHeaders, "%s says %s, an earlier field %s", quote(h.Name), scheme, r.Scheme)
			}
			p.schemeSeen = true
			r.Scheme = scheme
		}
	}
	if f.underscore && !p.forwarder(h.Name) {
		switch p.cfg.HeaderMap {
		case HeaderMapDangerous:
		case HeaderMapRefuse:
			return errorf(ErrInvalidHeaderName, "%s contains an underscore", quote(h.Name))
		default:
			s.buf = s.buf[:f.off]
			s.fields = s.fields[:len(s.fields)-1]
			return nil
		}
	}
	p.kept++
	return nil
}

func (p *Parser) forwarder(name []byte) bool {
	if !p.TrustedPeer {
		return false
	}
	for _, f := range p.cfg.ForwarderHeaders {
		if f == "*" || asciiEqualFold(name, f) {
			return true
		}
	}
	return false
}

// forbiddenTrailer reports the fields that would change framing or routing
// if a recipient merged trailers into the header section (RFC 9110 section
// 6.5.1).
func forbiddenTrailer(name []byte) bool {
	return equalFold(name, "content-length") || equalFold(name, "transfer-encoding") ||
		equalFold(name, "host") || equalFold(name, "trailer")
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// finishHead interprets the fields that decide framing and persistence once
// the header section is complete. done reports a request without a body.
func (p *Parser) finishHead() (done bool, err error) {
	s := p.s
	r := &s.req
	p.trailerAt = len(s.fields)

	http11 := r.Major > 1 || r.Major == 1 && r.Minor >= 1
	var (
		te                codings
		clSeen, typeSeen  bool
		hostSeen          bool
		closeTok, keepTok bool
	)
	// One pass builds the field list and reads the fields that frame
	// the request (a name shorter or longer than all of theirs is none).
	s.headers = s.headers[:0]
	for _, f := range s.fields {
		h := s.header(f)
		s.headers = append(s.headers, h)
		if f.nameLen < len("host") || f.nameLen > len("transfer-encoding") {
			continue
		}
		switch {
		case equalFold(h.Name, "content-length"):
			// Any repetition, even of the same value, and the list form
			// "5, 5" are refused: Gunicorn's strict reading of RFC 9112
			// section 6.3, which leaves no room for a proxy to disagree.
			if clSeen {
				return false, errorf(ErrInvalidHeader, "more than one Content-Length")
			}
			clSeen = true
			n, ok := parseContentLength(h.Value)
			if !ok {
				return false, errorf(ErrInvalidHeader, "Content-Length %s", quote(h.Value))
			}
			r.ContentLength = n
		case equalFold(h.Name, "transfer-encoding"):
			te.add(h.Value)
		case equalFold(h.Name, "host"):
			// RFC 9112 section 3.2: more than one Host is a 400.
			if hostSeen {
				return false, errorf(ErrInvalidHeader, "more than one Host")
			}
			hostSeen = true
			r.Host = h.Value
		case equalFold(h.Name, "content-type"):
			if typeSeen {
				return false, errorf(ErrInvalidHeader, "more than one Content-Type")
			}
			typeSeen = true
		case equalFold(h.Name, "connection"):
			for tok := range bytes.SplitSeq(h.Value, []byte(",")) {
				tok = trimOWS(tok)
				closeTok = closeTok || equalFold(tok, "close")
				keepTok = keepTok || equalFold(tok, "keep-alive")
			}
		case equalFold(h.Name, "upgrade"):
			r.Upgrade = true
		case equalFold(h.Name, "expect"):
			// RFC 9110 section 10.1.1: an HTTP/1.0 client cannot mean it.
			if !http11 {
				break
			}
			if !equalFold(h.Value, "100-continue") {
				return false, errorf(ErrExpectationFailed, "Expect %s", quote(h.Value))
			}
			r.Expect100 = true
		}
	}
	if len(s.headers) > 0 {
		r.Headers = s.headers
	}
	if te.present {
		if err := te.check(http11, clSeen); err != nil {
			return false, err
		}
	}
	// RFC 9112 section 3.2: every HTTP/1.1 request names its host, even
	// one whose absolute-form target names it too (the target then wins,
	// see ToHTTP), and the name is an RFC 3986 host with an optional port.
	// Checked after framing, so that a request with both problems gets the
	// framing error, the one that decides where the next request starts.
	if hostSeen {
		if !p.checkHost(r) {
			return false, errorf(ErrInvalidHeader, "Host %s is not host [\":\" port]", quote(r.Host))
		}
	} else if http11 && !p.cfg.permitNoHost {
		return false, errorf(ErrInvalidHeader, "HTTP/%d.%d request without Host", r.Major, r.Minor)
	}
	r.Close = closeTok || (!http11 && !keepTok)

	switch {
	case te.present:
		r.Chunked = true
		r.ContentLength = -1
		p.state = stChunkSize
		return false, nil
	case r.ContentLength > 0:
		if m := p.lim.maxBody; m > 0 && r.ContentLength > m {
			return false, errorf(ErrBodyTooLarge, "Content-Length %d exceeds %d", r.ContentLength, m)
		}
		p.remaining = r.ContentLength
		p.state = stBody
		return false, nil
	}
	return true, nil
}

// parseContentLength accepts 1*DIGIT only: no sign, no spaces, no list.
func parseContentLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// codings accumulates the Transfer-Encoding fields of a request. Codings
// stack left to right across fields (RFC 9110 section 5.3), so only the list
// as a whole can be judged, by check.
type codings struct {
	present bool   // a Transfer-Encoding field was sent
	n       int    // codings listed
	chunked int    // how many of them are chunked
	last    int    // index of the last chunked, -1 if none
	other   []byte // the first coding that is not chunked
}

// add applies one Transfer-Encoding field value.
func (c *codings) add(v []byte) {
	if !c.present {
		c.present, c.last = true, -1
	}
	for e := range bytes.SplitSeq(v, []byte(",")) {
		e = trimOWS(e)
		if len(e) == 0 {
			continue // RFC 9110 section 5.6.1: empty list elements are ignored
		}
		if equalFold(e, "chunked") {
			c.chunked++
			c.last = c.n
		} else if c.other == nil {
			c.other = e
		}
		c.n++
	}
}

// check decides a request with Transfer-Encoding. The final coding must be
// chunked, applied once (RFC 9112 sections 6.1 and 6.3: otherwise the body
// length cannot be known and the answer is 400); HTTP/1.0 cannot use it
// (section 6.1), nor can it be combined with Content-Length, the shape of
// request smuggling (section 6.3). Any other coding before the final
// chunked is one this server does not implement (section 6.1: 501):
// identity is no coding since RFC 7230, chunked takes no parameters, and
// gzip, deflate or compress would reach the handler undecoded, with
// nothing in net/http's Request to say so. That is also where net/http's
// server and nginx stand.
func (c *codings) check(http11, clSeen bool) error {
	switch {
	case c.n == 0:
		return errorf(ErrInvalidHeader, "empty Transfer-Encoding")
	case !http11:
		return errorf(ErrInvalidHeader, "Transfer-Encoding before HTTP/1.1")
	case clSeen:
		return errorf(ErrInvalidHeader, "both Content-Length and Transfer-Encoding")
	case c.chunked > 1:
		return errorf(ErrInvalidHeader, "chunked applied twice")
	case c.last != c.n-1:
		return errorf(ErrInvalidHeader, "Transfer-Encoding without a final chunked")
	case c.other != nil:
		return errorf(ErrUnsupportedTransferCoding, "%s", quote(c.other))
	}
	return nil
}
