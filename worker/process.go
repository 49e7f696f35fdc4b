package worker

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/corral-server/corral/internal/scoreboard"
)

// Process is what the runtime gives a worker type: the listeners, the
// handler to serve, the logs, and the status channel to the arbiter.
// It is itself an http.Handler: worker types serve through it so that the
// access log, --max-requests and the drain rule apply to every type alike.
type Process struct {
	Config    *Config
	Pid       int
	Listeners []net.Listener
	Log       *slog.Logger

	handler     http.Handler
	access      *AccessLog
	status      *os.File
	statusMu    sync.Mutex
	readyOnce   sync.Once
	ready       chan struct{} // closed by Ready, when Run made it
	recycleOnce sync.Once
	maxRequests int64 // 0: no limit
	requests    atomic.Int64
	draining    atomic.Bool
	front       frontConfig // protocols and trusted peers, see frontend.go
	heartbeat   *heartbeat.Slot
	board       *scoreboard.Board // nil unless Config.Metrics; see scoreboard.go
	tls         tlsState          // TLS listeners and config, see tls.go
	acceptLog   rateLog           // accept errors, see AcceptFailed

	inFlightMu sync.Mutex
	inFlight   InFlight // the requests in flight, for the abort log: a ring through next and prev
}

// NewProcess returns a Process that serves h on listeners, with heartbeat
// hb (nil for none), as Run boots one but with no status pipe, access log
// or scoreboard: for testing a worker type outside Run, in its own
// package. Ready closes the channel ready; drain marks the start of a stop,
// as the runtime does before it calls the type's Stop.
func NewProcess(cfg *Config, h http.Handler, listeners []net.Listener, log *slog.Logger, hb *heartbeat.Slot) (p *Process, ready <-chan struct{}, drain func()) {
	p = &Process{Config: cfg, Pid: os.Getpid(), Listeners: listeners, Log: log, handler: h, heartbeat: hb,
		ready: make(chan struct{})}
	return p, p.ready, p.drain
}

// Beat tells the arbiter this worker is alive. A worker silent for longer
// than --timeout is aborted.
func (p *Process) Beat() {
	if p.heartbeat != nil {
		p.heartbeat.Beat()
	}
}

// logInFlight logs the requests being served, oldest first: what a worker
// that timed out was stuck in.
func (p *Process) logInFlight() {
	p.inFlightMu.Lock()
	defer p.inFlightMu.Unlock()
	type req struct {
		line  string
		since int64
	}
	var rs []req
	for q := p.inFlight.next; q != nil && q != &p.inFlight; q = q.next {
		rs = append(rs, req{q.shown.Method + " " + q.shown.RequestURI, q.shownStart})
	}
	if len(rs) == 0 {
		p.Log.Error(fmt.Sprintf("Worker (pid:%d) aborted by the arbiter with no request in flight", p.Pid))
		return
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].since < rs[j].since })
	now := heartbeat.Now()
	for _, r := range rs {
		p.Log.Error(fmt.Sprintf("Worker (pid:%d) aborted in request %s (running for %s)", p.Pid, r.line, time.Duration(now-r.since).Round(time.Millisecond)))
	}
}

// Ready tells the arbiter that the worker accepts connections. Only the
// first call counts. A reload retires an old worker only after its
// replacement is ready, so a type calls this only once it really accepts.
func (p *Process) Ready() {
	p.readyOnce.Do(func() {
		if !p.draining.Load() {
			p.setState(scoreboard.Idle)
		}
		p.report(StatusReady)
		if p.ready != nil {
			close(p.ready)
		}
	})
}

// Draining reports whether a graceful stop has begun: responses from now on
// carry "Connection: close".
func (p *Process) Draining() bool { return p.draining.Load() }

// drain marks the start of a graceful or quick stop.
func (p *Process) drain() {
	p.draining.Store(true)
	p.setState(scoreboard.Draining)
}

// Requests is the number of requests served so far.
func (p *Process) Requests() int64 { return p.requests.Load() }

func (p *Process) report(msg string) {
	if p.status == nil {
		return
	}
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	// The pipe is ours alone and the messages are tiny: a write is atomic.
	if _, err := io.WriteString(p.status, msg+"\n"); err != nil {
		p.Log.Debug("status pipe", "error", err)
	}
}

// reportError tells the arbiter, in one line, why this worker exits.
func (p *Process) reportError(err error) {
	p.report(StatusError + " " + strings.ReplaceAll(err.Error(), "\n", " "))
}

// chooseMaxRequests picks this worker's limit in [n, n+jitter], so the
// workers of one generation do not all recycle together.
func chooseMaxRequests(n, jitter int) int64 {
	if n <= 0 {
		return 0
	}
	if jitter > 0 {
		n += rand.IntN(jitter + 1)
	}
	return int64(n)
}

// ServeHTTP serves one request through the app's handler, logs it to the
// access log, counts it on the scoreboard and against --max-requests.
func (p *Process) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := p.Begin(w, r)
	defer func() {
		// A panic goes on to the worker type, which logs it and closes
		// the connection; the access log still gets its line.
		panicked := recover()
		if panicked != nil {
			defer panic(panicked)
		}
		q.End(panicked != nil)
	}()
	p.handler.ServeHTTP(q.Writer(), r)
}

// Handler is the app's handler, as the worker was given it (a worker type
// asks it for more than http.Handler: see event.AsyncHandler).
func (p *Process) Handler() http.Handler { return p.handler }

// InFlight is a request begun by Begin, for a worker type whose handler
// answers after it returns (event.AsyncHandler): End, once the response is
// complete, does what ServeHTTP does after the handler.
type InFlight struct {
	p       *Process
	w       http.ResponseWriter
	r       *http.Request
	rec     recorder
	start   int64     // heartbeat.Now's ns
	end     int64     // heartbeat.Now's ns at End
	wall    time.Time // the access log's start; zero without one
	current bool      // the scoreboard shows this request
	tallied bool      // a batch's request after the first: counted in tally, see Flush

	tally     scoreboard.Tally // the batch's requests after the first, for the scoreboard
	uncounted int64            // those not yet in Process.requests, see Flush

	// The Process's ring of requests in flight, for the abort log, and
	// what the log shows of q: written under Process.inFlightMu only. A
	// batch's request after the first leaves q in the ring at its end,
	// for the next one, and Flush takes it out: a lock a request, not two.
	prev, next *InFlight
	linked     bool
	shown      *http.Request
	shownStart int64
}

// Begin starts serving r as ServeHTTP does before it calls the handler;
// the handler writes to the returned InFlight's Writer.
//
// A request reads the monotonic clock once here and once in End (with an
// access log, the wall clock once more), and takes the in-flight lock
// once in each: no map, and one allocation, the InFlight.
func (p *Process) Begin(w http.ResponseWriter, r *http.Request) *InFlight {
	q := new(InFlight)
	p.begin(q, w, r, 0, false)
	return q
}

// begin is Begin into q, a record that End is done with (ServeRecover's
// callers keep one per connection or batch), started at start (0: now).
// next says that r follows q's last request in a batch (ServeNext): the
// scoreboard counts it in q's tally.
func (p *Process) begin(q *InFlight, w http.ResponseWriter, r *http.Request, start int64, next bool) {
	if !next {
		q.Flush()
	}
	if start == 0 {
		start = heartbeat.Now()
	}
	// Field by field, not a new InFlight: the ring's fields may be in use
	// by the abort log (next, after a batch's request left q linked).
	q.p, q.w, q.r, q.start, q.end, q.tallied, q.current = p, w, r, start, 0, next, false
	q.wall = time.Time{}
	if p.access != nil {
		q.wall = time.Now()
	}
	q.rec = recorder{ResponseWriter: w, p: p}
	p.trustForwarded(r)
	if p.board != nil && !next {
		q.current = p.board.Begin(q.start, r.Method, r.RequestURI)
	}
	p.inFlightMu.Lock()
	if !q.linked {
		q.link(&p.inFlight)
	}
	q.shown, q.shownStart = r, start
	p.inFlightMu.Unlock()
}

// link puts q into the ring whose head is head (an empty head is a ring
// not made yet).
func (q *InFlight) link(head *InFlight) {
	if head.next == nil {
		head.next, head.prev = head, head
	}
	q.prev, q.next = head, head.next
	head.next.prev = q
	head.next = q
	q.linked = true
}

// unlink takes q out of its ring, with the caller holding the lock.
func (q *InFlight) unlink() {
	q.prev.next, q.next.prev = q.next, q.prev
	q.prev, q.next, q.linked, q.shown = nil, nil, false, nil
}

// Flush ends q's batch: its requests after the first (ServeNext's) go on
// the scoreboard and into Requests (and --max-requests), which count them
// only then, and the last leaves the abort log. Their caller flushes once
// the batch is served; a ServeRecover on q flushes too.
func (q *InFlight) Flush() {
	p := q.p
	if p == nil {
		return
	}
	if p.board != nil {
		p.board.Flush(&q.tally)
	}
	if q.linked {
		p.inFlightMu.Lock()
		q.unlink()
		p.inFlightMu.Unlock()
	}
	if n := q.uncounted; n > 0 {
		q.uncounted = 0
		p.countRequests(n)
	}
}

// Ended is when End ran, by heartbeat.Now's clock; 0 before.
func (q *InFlight) Ended() int64 { return q.end }

// Writer is what the handler writes the response to.
func (q *InFlight) Writer() http.ResponseWriter { return &q.rec }

// End logs and counts the request once its response is complete; failed
// says the handler failed (panicked) rather than answered.
func (q *InFlight) End(failed bool) {
	p, rec := q.p, &q.rec
	if !q.tallied {
		p.inFlightMu.Lock()
		q.unlink()
		p.inFlightMu.Unlock()
	}
	if failed {
		if !rec.wroteHeader {
			rec.status = http.StatusInternalServerError
		}
	} else if !rec.wroteHeader {
		rec.WriteHeader(http.StatusOK)
	}
	q.end = heartbeat.Now()
	elapsed := time.Duration(q.end - q.start)
	status := rec.status
	if g, ok := q.w.(interface{ refusedStatus() int }); ok && g.refusedStatus() != 0 {
		status = g.refusedStatus() // the goroutine type answered instead, see guardBody
	}
	if p.board != nil {
		if q.tallied {
			p.board.Count(&q.tally, status, elapsed)
		} else {
			p.board.Done(q.current, status, elapsed)
		}
	}
	if p.access != nil {
		p.access.Log(q.r, status, rec.bytes, rec.Header(), q.wall, elapsed)
	}
	if q.tallied {
		q.uncounted++ // counted by Flush, with the batch's others
	} else {
		p.countRequests(1)
	}
}

// countRequests counts n requests served, against --max-requests.
func (p *Process) countRequests(n int64) {
	if n := p.requests.Add(n); p.maxRequests > 0 && n >= p.maxRequests {
		// The arbiter replaces this worker and then stops it
		// gracefully, so the herd never runs one short.
		p.recycleOnce.Do(func() {
			p.Log.Info(fmt.Sprintf("Max requests reached (%d), asking to be replaced", n))
			p.report(StatusRecycle)
		})
	}
}

// recorder notes the status and size of a response for the access log,
// and closes the connection after the response once the worker drains.
type recorder struct {
	http.ResponseWriter
	p           *Process
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader && code >= 200 {
		r.wroteHeader = true
		r.status = code
		if r.p.draining.Load() {
			r.Header().Set("Connection", "close")
		}
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// WriteString keeps io.WriteString from copying s to a []byte when the
// connection's writer takes strings (both http1's and net/http's do).
func (r *recorder) WriteString(s string) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	n, err := io.WriteString(r.ResponseWriter, s)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom keeps net/http's sendfile path for handlers that io.Copy files.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(r.ResponseWriter, src)
	}
	r.bytes += n
	return n, err
}

func (r *recorder) Flush() {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
