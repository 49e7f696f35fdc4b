// Command termload is the load generator of bench/term.sh: C connections send GET / in a loop
// until the server they load stops, and every failure is classified by what was established
// when it happened, which wrk cannot tell apart once the listener goes away (wrk retries a
// refused connect at once, so it counts thousands of them, and it counts a connect that hangs
// on a dropped SYN as a request timeout).
//
//	go build -o /tmp/benchbin/termload ./termload
//	/tmp/benchbin/termload -addr 127.0.0.1:8080 -c 32 [-close] &
//	sleep 3; kill -USR1 $!; kill -TERM $SERVER_PID; wait $!
//
// It writes "termload: running" on stderr once it handles SIGUSR1, which marks the moment the
// server is told to stop.  From then on, a connection whose connect fails (refused, or timed
// out) stops: each connection counts at most one such failure after the mark.  Before the
// mark, a failed connect is retried after 10 ms.  The run ends when every connection has
// stopped, at -max, or on SIGINT/SIGTERM, and prints one line on stdout:
//
//	WRK_RESULT requests=N duration_us=N p50_us=N p99_us=N connect=N read=N write=N timeout=N
//	    status=N before=N after=N refused=N unanswered=N mark_us=N
//
// requests: complete responses (any status); status: those not 2xx; before/after: requests
// completed before/after the mark.  connect: connects that failed (refused or timed out: the
// server never accepted the connection); refused: those refused.  read: the connection broke
// (reset, or closed) before the whole response was read; unanswered: those of them that got no
// byte of the response at all.  write: sending the request failed.  timeout: no whole response
// within -timeout.  read, write, timeout and status are failures on connections the server's
// kernel had accepted.  mark_us: when SIGUSR1 came, from the start.  Keep -addr on loopback.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type counts struct {
	requests, status, before, after                    int64
	connect, refused, read, unanswered, write, timeout int64
	lat                                                []time.Duration
}

// countingConn counts the bytes read since the last reset, to tell a request that got no
// answer at all from one cut off halfway.
type countingConn struct {
	net.Conn
	n int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n += int64(n)
	return n, err
}

// load is one run: its settings, the mark, and the stop flag every connection checks.
type load struct {
	addr         string
	closeEach    bool
	timeout      time.Duration
	dialTimeout  time.Duration
	req          []byte
	start        time.Time
	marked, stop atomic.Bool
	markAt       atomic.Int64 // ns since start
}

func main() {
	l := &load{start: time.Now()}
	conns := flag.Int("c", 32, "connections")
	maxRun := flag.Duration("max", 60*time.Second, "stop after this long in any case")
	flag.StringVar(&l.addr, "addr", "127.0.0.1:8080", "server address (keep it on loopback)")
	flag.BoolVar(&l.closeEach, "close", false, "send Connection: close: a new connection per request")
	flag.DurationVar(&l.timeout, "timeout", 2*time.Second, "the most a request may take, as wrk's --timeout")
	flag.DurationVar(&l.dialTimeout, "dial-timeout", 5*time.Second, "the most a connect may take")
	flag.Parse()

	req := "GET / HTTP/1.1\r\nHost: " + l.addr + "\r\n"
	if l.closeEach {
		req += "Connection: close\r\n"
	}
	l.req = []byte(req + "\r\n")

	l.handleSignals()
	time.AfterFunc(*maxRun, func() { l.stop.Store(true) })
	// From here on SIGUSR1 is handled (before, it would kill the process): say so.
	fmt.Fprintln(os.Stderr, "termload: running")

	results := make([]counts, *conns)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func(r *counts) {
			defer wg.Done()
			l.connection(r)
		}(&results[i])
	}
	wg.Wait()
	l.report(time.Since(l.start), total(results))
}

// handleSignals sets the mark at the first SIGUSR1 and stops the run at SIGINT or SIGTERM.
func (l *load) handleSignals() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			if s == syscall.SIGUSR1 {
				if !l.marked.Load() {
					l.markAt.Store(int64(time.Since(l.start)))
					l.marked.Store(true)
				}
				continue
			}
			l.stop.Store(true)
		}
	}()
}

// connection sends requests one after the other on one connection at a time, reconnecting
// when the server closes it, until the run stops or a connect fails after the mark.
func (l *load) connection(r *counts) {
	var cc *countingConn
	var br *bufio.Reader
	drop := func() {
		if cc != nil {
			cc.Close()
			cc = nil
		}
	}
	defer drop()
	for !l.stop.Load() {
		if cc == nil {
			c, err := net.DialTimeout("tcp", l.addr, l.dialTimeout)
			if err != nil {
				r.connect++
				if errors.Is(err, syscall.ECONNREFUSED) {
					r.refused++
				}
				if l.marked.Load() {
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			cc = &countingConn{Conn: c}
			br = bufio.NewReader(cc)
		}
		if keep := l.request(cc, br, r); !keep {
			drop()
		}
	}
}

// request sends one request on cc and counts its outcome in r; it says whether the
// connection may carry the next one.
func (l *load) request(cc *countingConn, br *bufio.Reader, r *counts) (keep bool) {
	t0 := time.Now()
	cc.SetDeadline(t0.Add(l.timeout))
	cc.n = 0
	if _, err := cc.Write(l.req); err != nil {
		r.write++
		return false
	}
	resp, err := http.ReadResponse(br, nil)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			r.timeout++
		} else {
			r.read++
			if cc.n == 0 {
				r.unanswered++
			}
		}
		return false
	}
	now := time.Now()
	r.requests++
	r.lat = append(r.lat, now.Sub(t0))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		r.status++
	}
	if l.marked.Load() && int64(now.Sub(l.start)) >= l.markAt.Load() {
		r.after++
	} else {
		r.before++
	}
	return !l.closeEach && !resp.Close
}

// total adds up every connection's counts, latencies sorted.
func total(results []counts) counts {
	var t counts
	for _, r := range results {
		t.requests += r.requests
		t.status += r.status
		t.before += r.before
		t.after += r.after
		t.connect += r.connect
		t.refused += r.refused
		t.read += r.read
		t.unanswered += r.unanswered
		t.write += r.write
		t.timeout += r.timeout
		t.lat = append(t.lat, r.lat...)
	}
	sort.Slice(t.lat, func(i, j int) bool { return t.lat[i] < t.lat[j] })
	return t
}

// report prints the WRK_RESULT line.
func (l *load) report(dur time.Duration, t counts) {
	pct := func(p float64) int64 {
		if len(t.lat) == 0 {
			return 0
		}
		return t.lat[int(p*float64(len(t.lat)-1))].Microseconds()
	}
	mark := int64(-1)
	if l.marked.Load() {
		mark = time.Duration(l.markAt.Load()).Microseconds()
	}
	fmt.Printf("WRK_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d timeout=%d status=%d before=%d after=%d refused=%d unanswered=%d mark_us=%d\n",
		t.requests, dur.Microseconds(), pct(0.50), pct(0.99), t.connect, t.read, t.write, t.timeout, t.status,
		t.before, t.after, t.refused, t.unanswered, mark)
}
