// Package scoreboard owns the layout of a worker's scoreboard: a fixed,
// versioned block of 64-bit words in the memory that the worker shares with
// the arbiter (the heartbeat memfd, see internal/heartbeat), in which the
// worker counts what it serves and the arbiter reads it each tick without a
// system call, as Apache's scoreboard does.
//
// The writer side is the worker: any of its goroutines may call the Board's
// methods at once, and a request costs a handful of uncontended atomic adds.
// The reader side is the arbiter: Read takes a copy of every word, and a
// consistent copy of the current request (as a seqlock). Counters only grow
// while the worker lives; the arbiter folds a dead worker's last copy into
// the herd's totals (see internal/metrics).
package scoreboard

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"
)

// Version is the layout's version, in the board's first word. A reader
// refuses a board of another version rather than misread it: a worker binary
// of another release may run beside a new arbiter during a reload.
const Version = 1

// magic marks a board that a worker has initialized ("corral" and the
// version), so a zeroed page (an exec worker's, a worker that died at boot)
// reads as empty rather than as version 0.
const magic = uint64(0x636f7272616c<<16) | Version

// State is what a worker is doing, as the arbiter reports it.
type State uint64

// The states. Busy is not stored: a worker that is Idle with requests in
// flight reads as Busy, so no request pays for a state change.
const (
	Booting State = iota
	Idle
	Busy
	Draining
)

var stateNames = [...]string{"booting", "idle", "busy", "draining"}

// String is the state's name as the metrics label it: booting, idle, busy, draining.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint64(s))
}

// States lists every state, in order.
func States() []State { return []State{Booting, Idle, Busy, Draining} }

// Buckets are the upper bounds of the request duration histogram, in
// seconds: Prometheus's default buckets. A last, implicit bucket is +Inf.
var Buckets = [...]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NumBuckets is len(Buckets)+1, the +Inf bucket included.
const NumBuckets = len(Buckets) + 1

// bucketNanos are Buckets in nanoseconds, for the writer's comparison.
var bucketNanos = func() (ns [len(Buckets)]int64) {
	for i, b := range Buckets {
		ns[i] = int64(b * 1e9)
	}
	return ns
}()

// ParseErrorCodes are the statuses a worker answers a request it could not
// parse with (see worker/http1.Status); any other code counts as the last,
// "other", entry of Totals.ParseErrors.
var ParseErrorCodes = [...]int{400, 408, 413, 414, 417, 431, 501, 505}

// NumParseErrors is len(ParseErrorCodes)+1, "other" included.
const NumParseErrors = len(ParseErrorCodes) + 1

// CurrentMax is how many bytes of the current request's "METHOD target"
// the board keeps; a longer one is truncated.
const CurrentMax = 120

// layout is the board in memory, version 1. Every field is a 64-bit word
// at a fixed offset; new fields go at the end with a new Version.
type layout struct {
	magic      atomic.Uint64
	state      atomic.Uint64
	connsOpen  atomic.Int64
	connsTotal atomic.Uint64
	// started counts requests begun; those not yet in answered are in
	// flight. answered counts requests by status class and duration
	// bucket at once, so that a request costs one add for both.
	started      atomic.Uint64
	answered     [5][NumBuckets]atomic.Uint64
	durationSum  atomic.Uint64 // nanoseconds
	bytesRead    atomic.Uint64
	bytesWritten atomic.Uint64
	parseErrors  [NumParseErrors]atomic.Uint64

	// The current request. owner counts its claims, a sequence as a
	// seqlock's: 4k is free, 4k+1 claimed and being written, 4k+2 shown.
	// Only the claimant writes the fields below, with plain stores (a
	// locked one costs more); the reader loads them between two loads of
	// owner that agree on a shown claim.
	owner    atomic.Uint64
	curStart int64  // CLOCK_MONOTONIC ns (heartbeat.Now)
	curLen   uint64 // bytes of curText in use
	curText  [CurrentMax / 8]uint64
}

// Size is how many bytes a board takes.
const Size = int(unsafe.Sizeof(layout{}))

// Board is one worker's scoreboard, over shared memory.
type Board struct {
	l *layout
}

// At returns the board laid over mem, which must be 8-byte aligned (an
// mmap is) and at least Size bytes long, and stays mapped while the board
// is used. It neither initializes nor checks the memory: the worker calls
// Init, the reader's Read checks the version.
func At(mem []byte) (*Board, error) {
	if len(mem) < Size {
		return nil, fmt.Errorf("scoreboard: %d bytes of memory, need %d", len(mem), Size)
	}
	if uintptr(unsafe.Pointer(&mem[0]))%8 != 0 {
		return nil, fmt.Errorf("scoreboard: memory is not 8-byte aligned")
	}
	return &Board{l: (*layout)(unsafe.Pointer(&mem[0]))}, nil
}

// Init marks the board as this version's and the worker as booting. The
// worker calls it once, before any other writer method.
func (b *Board) Init() {
	b.l.state.Store(uint64(Booting))
	b.l.magic.Store(magic)
}

// SetState records Booting, Idle (ready; Busy while requests are in flight)
// or Draining.
func (b *Board) SetState(s State) { b.l.state.Store(uint64(s)) }

// ConnOpened counts a connection accepted.
func (b *Board) ConnOpened() {
	b.l.connsOpen.Add(1)
	b.l.connsTotal.Add(1)
}

// ConnClosed counts a connection closed.
func (b *Board) ConnClosed() { b.l.connsOpen.Add(-1) }

// AddRead counts n bytes read from clients.
func (b *Board) AddRead(n int) {
	if n > 0 {
		b.l.bytesRead.Add(uint64(n))
	}
}

// AddWritten counts n bytes written to clients.
func (b *Board) AddWritten(n int) {
	if n > 0 {
		b.l.bytesWritten.Add(uint64(n))
	}
}

// ParseError counts a request refused before it reached the app, answered
// with code.
func (b *Board) ParseError(code int) {
	i := NumParseErrors - 1
	for j, c := range ParseErrorCodes {
		if c == code {
			i = j
			break
		}
	}
	b.l.parseErrors[i].Add(1)
}

// Begin counts a request in flight, from start (CLOCK_MONOTONIC ns, as
// heartbeat.Now). When no other request holds the board's current-request
// fields it records start and "method target" there and returns true; the
// caller passes that on to Done. With several requests in flight, the
// board shows the one that found it free: under load, an old one.
func (b *Board) Begin(start int64, method, target string) (current bool) {
	b.l.started.Add(1)
	o := b.l.owner.Load()
	if o%4 != 0 || !b.l.owner.CompareAndSwap(o, o+1) {
		return false
	}
	b.l.curStart = start
	b.l.curLen = uint64(b.putText(method, target))
	b.l.owner.Store(o + 2) // shown: after the fields, for the reader
	return true
}

// putText stores "method target", truncated, in curText, and returns its
// length. Only the words in use are written.
func (b *Board) putText(method, target string) int {
	var buf [CurrentMax + 8]byte
	n := copy(buf[:CurrentMax], method)
	if n < CurrentMax {
		buf[n] = ' '
		n++
		n += copy(buf[n:CurrentMax], target)
	}
	for i := 0; i*8 < n; i++ {
		b.l.curText[i] = binary.LittleEndian.Uint64(buf[i*8:])
	}
	return n
}

// Done counts a request answered with status after d, and ends what Begin
// started; current is what Begin returned. It costs two atomic adds, and
// one more to free the current request.
func (b *Board) Done(current bool, status int, d time.Duration) {
	class, i := cell(status, d)
	b.l.answered[class][i].Add(1)
	if d > 0 {
		b.l.durationSum.Add(uint64(d))
	}
	if current {
		b.l.owner.Add(2) // free: the next claim may write
	}
}

// cell is where answered counts a request answered with status after d.
func cell(status int, d time.Duration) (class, bucket int) {
	class = status/100 - 1
	if class < 0 || class > 4 {
		class = 4 // not a status: the server's fault
	}
	for bucket < len(bucketNanos) && int64(d) > bucketNanos[bucket] {
		bucket++
	}
	return class, bucket
}

// Tally holds the counts of a run of requests for a board, for a writer
// that serves several in a row (a pipelined batch): Count costs no atomic
// operation, and Flush puts the run on the board with three, where Begin
// and Done cost six a request. Requests tallied but not flushed are not
// on the board, neither in flight nor answered; the zero Tally is empty.
type Tally struct {
	n             uint64 // requests, all answered alike (class, bucket)
	class, bucket int
	sum           uint64 // their durations, in nanoseconds
}

// Count tallies a request answered with status after d; one answered
// unlike those in t first flushes them.
func (b *Board) Count(t *Tally, status int, d time.Duration) {
	class, bucket := cell(status, d)
	if t.n > 0 && (class != t.class || bucket != t.bucket) {
		b.Flush(t)
	}
	t.n++
	t.class, t.bucket = class, bucket
	if d > 0 {
		t.sum += uint64(d)
	}
}

// Flush puts t's requests on the board, begun and answered, and empties t.
func (b *Board) Flush(t *Tally) {
	if t.n == 0 {
		return
	}
	b.l.started.Add(t.n)
	b.l.answered[t.class][t.bucket].Add(t.n)
	if t.sum > 0 {
		b.l.durationSum.Add(t.sum)
	}
	*t = Tally{}
}

// Totals are a board's counters: what only grows while the worker lives,
// and what the arbiter sums over the herd.
type Totals struct {
	Connections  uint64                 `json:"connections"`
	Requests     [5]uint64              `json:"requests"` // by status class: [0] 1xx ... [4] 5xx
	Buckets      [NumBuckets]uint64     `json:"buckets"`  // not cumulative; the last is +Inf
	DurationSum  uint64                 `json:"duration_sum_ns"`
	BytesRead    uint64                 `json:"bytes_read"`
	BytesWritten uint64                 `json:"bytes_written"`
	ParseErrors  [NumParseErrors]uint64 `json:"parse_errors"` // by ParseErrorCodes, then other
}

// Add adds o to t.
func (t *Totals) Add(o Totals) {
	t.Connections += o.Connections
	for i := range t.Requests {
		t.Requests[i] += o.Requests[i]
	}
	for i := range t.Buckets {
		t.Buckets[i] += o.Buckets[i]
	}
	t.DurationSum += o.DurationSum
	t.BytesRead += o.BytesRead
	t.BytesWritten += o.BytesWritten
	for i := range t.ParseErrors {
		t.ParseErrors[i] += o.ParseErrors[i]
	}
}

// Max raises every counter of t to o's where o's is higher.
func (t *Totals) Max(o Totals) {
	t.Connections = max(t.Connections, o.Connections)
	for i := range t.Requests {
		t.Requests[i] = max(t.Requests[i], o.Requests[i])
	}
	for i := range t.Buckets {
		t.Buckets[i] = max(t.Buckets[i], o.Buckets[i])
	}
	t.DurationSum = max(t.DurationSum, o.DurationSum)
	t.BytesRead = max(t.BytesRead, o.BytesRead)
	t.BytesWritten = max(t.BytesWritten, o.BytesWritten)
	for i := range t.ParseErrors {
		t.ParseErrors[i] = max(t.ParseErrors[i], o.ParseErrors[i])
	}
}

// RequestCount is the number of requests answered, every class.
func (t *Totals) RequestCount() uint64 {
	var n uint64
	for _, c := range t.Requests {
		n += c
	}
	return n
}

// Counts is a copy of a whole board, as Read takes it.
type Counts struct {
	Totals
	Valid     bool  // the board was initialized by a worker of this Version
	State     State // Busy when Idle with requests in flight
	ConnsOpen int64
	InFlight  int64
	// Current is the request the board shows, if any: its start
	// (CLOCK_MONOTONIC ns) and "METHOD target", truncated to CurrentMax.
	CurrentStart int64
	Current      string
}

// Read copies the board. It makes no system call and never blocks the
// writers: the current request is retried while a writer changes it, and
// left out if that takes more than a few tries. Read is for another
// mapping of the board (the arbiter's): the writer's plain stores of the
// current request race, in Go's terms, with a reader in its own process.
func (b *Board) Read() Counts {
	var c Counts
	l := b.l
	if l.magic.Load() != magic {
		return c
	}
	c.Valid = true
	c.State = State(l.state.Load())
	c.ConnsOpen = l.connsOpen.Load()
	c.Connections = l.connsTotal.Load()
	// answered before started: each only grows, and no request is
	// answered before it started, so in flight never reads negative.
	for class := range l.answered {
		for i := range l.answered[class] {
			n := l.answered[class][i].Load()
			c.Requests[class] += n
			c.Buckets[i] += n
		}
	}
	c.InFlight = int64(l.started.Load() - c.RequestCount())
	c.DurationSum = l.durationSum.Load()
	c.BytesRead = l.bytesRead.Load()
	c.BytesWritten = l.bytesWritten.Load()
	for i := range c.ParseErrors {
		c.ParseErrors[i] = l.parseErrors[i].Load()
	}
	if c.State == Idle && c.InFlight > 0 {
		c.State = Busy
	}
	c.CurrentStart, c.Current = b.readCurrent()
	return c
}

func (b *Board) readCurrent() (int64, string) {
	l := b.l
	for range 100 {
		o := l.owner.Load()
		switch o % 4 {
		case 0:
			return 0, "" // free: no request shown
		case 1:
			continue // being written
		}
		start := atomic.LoadInt64(&l.curStart)
		n := min(int(atomic.LoadUint64(&l.curLen)), CurrentMax)
		var buf [CurrentMax]byte
		for i := 0; i*8 < n; i++ {
			binary.LittleEndian.PutUint64(buf[i*8:], atomic.LoadUint64(&l.curText[i]))
		}
		if l.owner.Load() == o {
			return start, string(buf[:n])
		}
	}
	return 0, ""
}
