package http1

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// The uwsgi protocol is how nginx's uwsgi_pass hands a request to an
// application server: a 4-byte header (modifier1, the size of the
// variables block as a little-endian uint16, modifier2), the variables
// block (CGI variables such as REQUEST_METHOD and HTTP_HOST, each name and
// value preceded by its little-endian uint16 length), then CONTENT_LENGTH
// bytes of body. nginx sends one request per connection and reads the
// response, an HTTP/1.x message, until the connection closes.

// DefaultUwsgiMaxVars caps a uwsgi packet's variables block when no other
// limit is given. nginx's headers fit in 32 KiB by default
// (large_client_header_buffers 4 8k).
const DefaultUwsgiMaxVars = 32 << 10

// UwsgiHeader is the 4-byte header of a uwsgi packet.
type UwsgiHeader struct {
	Modifier1 uint8
	DataSize  uint16 // the size of the variables block that follows
	Modifier2 uint8
}

// ParseUwsgiHeader decodes the 4-byte packet header. Only modifier1 0 (a
// request with CGI variables, what nginx's uwsgi_pass sends) is accepted,
// and a block larger than maxVars (0 or negative: DefaultUwsgiMaxVars) is
// refused. Errors wrap ErrUwsgi; the second also wraps
// ErrLimitRequestHeaders, for which Status answers 431.
func ParseUwsgiHeader(b [4]byte, maxVars int) (UwsgiHeader, error) {
	h := UwsgiHeader{Modifier1: b[0], DataSize: binary.LittleEndian.Uint16(b[1:3]), Modifier2: b[3]}
	if maxVars <= 0 {
		maxVars = DefaultUwsgiMaxVars
	}
	if h.Modifier1 != 0 {
		return h, errorf(ErrUwsgi, "modifier1 %d is not supported (only 0, an HTTP request)", h.Modifier1)
	}
	if int(h.DataSize) > maxVars {
		return h, fmt.Errorf("%w: %w: variables block of %d bytes is over the limit of %d", ErrUwsgi, ErrLimitRequestHeaders, h.DataSize, maxVars)
	}
	return h, nil
}

// UwsgiVar is one variable of a uwsgi packet, as the web server sent it.
type UwsgiVar struct {
	Name, Value []byte
}

// AppendUwsgiVars decodes a variables block and appends its variables to
// dst in wire order, duplicates included. The names and values are slices
// of block (with their capacity cut to their length, so that appending to
// one cannot overwrite the next). A length that runs past the block, an
// empty name, or bytes left over too few for a length are errors wrapping
// ErrUwsgi; dst is then returned as it was given.
func AppendUwsgiVars(dst []UwsgiVar, block []byte) ([]UwsgiVar, error) {
	n0 := len(dst)
	for i := 0; len(block) > 0; i++ {
		name, rest, err := uwsgiString(block, i, "name")
		if err != nil {
			return dst[:n0], err
		}
		if len(name) == 0 {
			return dst[:n0], errorf(ErrUwsgi, "variable %d has an empty name", i)
		}
		value, rest, err := uwsgiString(rest, i, "value")
		if err != nil {
			return dst[:n0], err
		}
		dst = append(dst, UwsgiVar{Name: name, Value: value})
		block = rest
	}
	return dst, nil
}

// uwsgiString splits the length-prefixed string at the start of b, the
// what of variable i, from the rest.
func uwsgiString(b []byte, i int, what string) (s, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, errorf(ErrUwsgi, "variable %d: %d byte(s) left, too few for the %s length", i, len(b), what)
	}
	n := int(binary.LittleEndian.Uint16(b))
	if n > len(b)-2 {
		return nil, nil, errorf(ErrUwsgi, "variable %d: %s length %d overruns the block (%d bytes left)", i, what, n, len(b)-2)
	}
	return b[2 : 2+n : 2+n], b[2+n:], nil
}

// UwsgiRequest is one packet decoded by a UwsgiParser. It, and every byte
// slice in it, is owned by that parser and stays valid only until the
// next call to its Parse, Reset or Release method.
type UwsgiRequest struct {
	Modifier2 uint8

	Vars []UwsgiVar // in wire order, duplicates kept

	// ContentLength is the value of CONTENT_LENGTH (the last one, should
	// there be several, as in a map built from Vars), 0 when it is absent
	// or empty.
	ContentLength int64

	Body []byte // the whole body: ContentLength bytes
}

// Var returns the value of the last variable called name, as a map built
// from r.Vars would hold it.
func (r *UwsgiRequest) Var(name string) (value []byte, ok bool) {
	for i := len(r.Vars) - 1; i >= 0; i-- {
		if string(r.Vars[i].Name) == name {
			return r.Vars[i].Value, true
		}
	}
	return nil, false
}

type uwsgiState uint8

const (
	usHeader uwsgiState = iota // in, or before, the 4-byte header
	usVars                     // in the variables block
	usBody                     // in the body
)

// uwsgiScratch is the memory a packet is decoded into, pooled like the
// Parser's scratch.
type uwsgiScratch struct {
	req   UwsgiRequest
	block []byte
	vars  []UwsgiVar
	body  []byte
}

var uwsgiPool = sync.Pool{New: func() any { return new(uwsgiScratch) }}

// UwsgiParser decodes the uwsgi packets of one connection, fed its bytes as
// they arrive, the way Parser decodes HTTP/1.1 requests. The zero value is
// ready to use; set the limits before the first call to Parse. A
// UwsgiParser is not safe for concurrent use.
type UwsgiParser struct {
	// MaxVars caps the variables block of a packet; 0 or negative means
	// DefaultUwsgiMaxVars. A block cannot exceed 65535 bytes anyway.
	MaxVars int

	// MaxBody caps CONTENT_LENGTH; 0 or negative means no limit. The body
	// is held in memory whole, but only as it arrives: a large declared
	// length reserves nothing.
	MaxBody int64

	s         *uwsgiScratch
	state     uwsgiState
	err       error // sticky
	hdr       [4]byte
	nhdr      int   // bytes of hdr received
	size      int   // of the variables block
	remaining int64 // bytes of the block or body still to come
}

// Parse consumes bytes from b, the connection's unconsumed input. It
// returns how many bytes it consumed and, once one has arrived whole, body
// included, the packet. A nil request and nil error mean that more input is
// needed; unlike Parser, UwsgiParser consumes everything it is given until
// a packet is complete, so the caller need not keep anything. used is never
// more than len(b).
//
// After a packet, the next call starts on the next one; nginx sends only
// one per connection, and a caller serving it that way can ignore the
// rest. The returned request is valid until the next call to Parse, Reset
// or Release.
//
// An error is final: it wraps ErrUwsgi, every later call returns it, and
// Status(err) is the status to answer, if any: 413 for a body over MaxBody
// (which also wraps ErrBodyTooLarge), 431 for a variables block over
// MaxVars (ErrLimitRequestHeaders), 400 for malformed packets: a modifier1
// other than 0, a variables block that AppendUwsgiVars refuses, or a
// CONTENT_LENGTH that is neither empty nor a decimal length.
func (p *UwsgiParser) Parse(b []byte) (used int, req *UwsgiRequest, err error) {
	if p.err != nil {
		return 0, nil, p.err
	}
	for {
		rest := b[used:]
		switch p.state {
		case usHeader:
			if len(rest) == 0 {
				return used, nil, nil
			}
			if p.nhdr == 0 {
				p.begin()
			}
			c := copy(p.hdr[p.nhdr:], rest)
			p.nhdr += c
			used += c
			if p.nhdr < len(p.hdr) {
				return used, nil, nil
			}
			h, err := ParseUwsgiHeader(p.hdr, p.MaxVars)
			if err != nil {
				return p.fail(used, err)
			}
			p.s.req.Modifier2 = h.Modifier2
			p.size = int(h.DataSize)
			p.remaining = int64(p.size)
			p.state = usVars

		case usVars:
			take := min(len(rest), int(p.remaining))
			p.s.block = append(p.s.block, rest[:take]...)
			used += take
			p.remaining -= int64(take)
			if p.remaining > 0 {
				return used, nil, nil
			}
			if err := p.vars(); err != nil {
				return p.fail(used, err)
			}
			if p.s.req.ContentLength == 0 {
				return p.complete(used)
			}
			p.remaining = p.s.req.ContentLength
			p.state = usBody

		case usBody:
			if len(rest) == 0 {
				return used, nil, nil
			}
			take := len(rest)
			if int64(take) > p.remaining {
				take = int(p.remaining)
			}
			p.s.body = append(p.s.body, rest[:take]...)
			used += take
			p.remaining -= int64(take)
			if p.remaining > 0 {
				return used, nil, nil
			}
			return p.complete(used)
		}
	}
}

// EOF tells the parser that the peer closed the connection. It returns nil
// between packets, and otherwise an error wrapping ErrUwsgi and
// ErrNoMoreData, for which Status is 0: there is no one to answer.
func (p *UwsgiParser) EOF() error {
	if p.err != nil {
		return p.err
	}
	switch p.state {
	case usHeader:
		if p.nhdr == 0 {
			return nil
		}
		p.err = fmt.Errorf("%w: %w: header cut short after %d of 4 bytes", ErrUwsgi, ErrNoMoreData, p.nhdr)
	case usVars:
		p.err = fmt.Errorf("%w: %w: variables block cut short after %d of %d bytes", ErrUwsgi, ErrNoMoreData, len(p.s.block), p.size)
	case usBody:
		p.err = fmt.Errorf("%w: %w: body cut short after %d of %d bytes", ErrUwsgi, ErrNoMoreData, len(p.s.body), p.s.req.ContentLength)
	}
	return p.err
}

// Reset prepares the parser for a new connection, keeping its limits and
// storage.
func (p *UwsgiParser) Reset() {
	*p = UwsgiParser{MaxVars: p.MaxVars, MaxBody: p.MaxBody, s: p.s}
}

// Release returns the parser's storage to a pool shared by all
// UwsgiParsers, so that a connection that is done with its packet, or
// waits for one, holds no buffer; the next Parse takes storage from the
// pool again. The last request returned becomes invalid. Release does
// nothing while a packet is partly decoded.
func (p *UwsgiParser) Release() {
	s := p.s
	if s == nil || (p.err == nil && (p.state != usHeader || p.nhdr > 0)) {
		return
	}
	p.s = nil
	if cap(s.body) > keepScratch {
		s.body = nil
	}
	s.req = UwsgiRequest{}
	uwsgiPool.Put(s)
}

// begin resets the per-packet state at a packet's first byte.
func (p *UwsgiParser) begin() {
	if p.s == nil {
		p.s = uwsgiPool.Get().(*uwsgiScratch)
	}
	s := p.s
	if cap(s.body) > keepScratch {
		s.body = nil
	}
	s.block = s.block[:0]
	s.vars = s.vars[:0]
	s.body = s.body[:0]
	s.req = UwsgiRequest{}
}

// vars decodes the complete variables block and the body's length.
func (p *UwsgiParser) vars() error {
	s := p.s
	var err error
	if s.vars, err = AppendUwsgiVars(s.vars[:0], s.block); err != nil {
		return err
	}
	r := &s.req
	r.Vars = s.vars
	cl, _ := r.Var("CONTENT_LENGTH")
	if len(cl) == 0 {
		return nil // absent or empty: no body, as CGI has it
	}
	n, ok := parseContentLength(cl)
	if !ok {
		return errorf(ErrUwsgi, "CONTENT_LENGTH %s is not a length", quote(cl))
	}
	if p.MaxBody > 0 && n > p.MaxBody {
		return fmt.Errorf("%w: %w: CONTENT_LENGTH %d exceeds %d", ErrUwsgi, ErrBodyTooLarge, n, p.MaxBody)
	}
	r.ContentLength = n
	return nil
}

func (p *UwsgiParser) complete(used int) (int, *UwsgiRequest, error) {
	s := p.s
	r := &s.req
	r.Body = s.body[:len(s.body):len(s.body)]
	p.state = usHeader
	p.nhdr = 0
	return used, r, nil
}

func (p *UwsgiParser) fail(used int, err error) (int, *UwsgiRequest, error) {
	p.err = err
	return used, nil, err
}
