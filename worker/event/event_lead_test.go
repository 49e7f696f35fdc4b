package event

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/corral-server/corral/worker"
	"github.com/corral-server/corral/worker/internal/workertest"
)

// A herd of two event workers on one listener, as the arbiter's are (the
// same socket, inherited): each answers with its name.
type leadHerd struct {
	addr    string
	ino     uint64 // the listener's socket inode
	workers []*eventWorker
	stops   []func(graceful bool) error
}

func newLeadHerd(t *testing.T, n int, cfg worker.Config) *leadHerd {
	t.Helper()
	// Serve would set GOMAXPROCS for each worker and put it back as it
	// returns, out of order with two in one process.
	t.Setenv("GOMAXPROCS", "2")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &leadHerd{addr: l.Addr().String()}
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	f.Close()
	h.ino = st.Ino
	ls := []net.Listener{l} // the same socket for each: a worker closes its own once it serves
	for len(ls) < n {
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		li, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, li)
	}
	for i, li := range ls {
		hb, err := heartbeat.Create()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(hb.Close)
		name := fmt.Sprint("worker", i)
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg := cfg
		cfg.DrainIdle = 200 * time.Millisecond
		p, ready, drain := worker.NewProcess(&cfg, handler, []net.Listener{li}, log, hb)
		w := New()
		h.workers = append(h.workers, w.(*eventWorker))
		h.stops = append(h.stops, workertest.Serve(t, func() error { return w.Serve(p) }, ready, drain, w.Stop))
	}
	return h
}

// waiting lists the workers whose loops have the listener in their epoll
// set, from the kernel's account of each set (/proc/self/fdinfo).
func (h *leadHerd) waiting(t *testing.T) []int {
	t.Helper()
	var ws []int
	for i, w := range h.workers {
		for _, l := range w.loops {
			b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", l.epfd))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), fmt.Sprintf(" ino:%x ", h.ino)) {
				ws = append(ws, i)
				break
			}
		}
	}
	return ws
}

// leadGet sends one request on c and returns the body: the name of the
// worker that answered.
func leadGet(t *testing.T, c net.Conn, r *bufio.Reader, close bool) string {
	t.Helper()
	req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	if close {
		req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// getOnce sends one request on a connection of its own.
func getOnce(t *testing.T, addr string) string {
	t.Helper()
	c := workertest.Dial(t, addr, 5*time.Second)
	defer c.Close()
	return leadGet(t, c, bufio.NewReader(c), true)
}

// With a connection per request at a rate one loop serves, one worker
// waits on the listener and takes them all: the other is not woken for
// any. (Unless the lead, starved of CPU on a loaded machine, asks for
// help: then the other may take a few.)
func TestLeadAcceptsAlone(t *testing.T) {
	h := newLeadHerd(t, 2, worker.Config{})
	if ws := h.waiting(t); len(ws) != 1 {
		t.Fatalf("workers waiting on the listener: %v, want one", ws)
	}
	served := map[string]int{}
	for range 200 {
		served[getOnce(t, h.addr)]++
	}
	lead := fmt.Sprint("worker", h.waiting(t)[0])
	if served[lead] < 190 {
		t.Fatalf("200 connections one after the other: served by %v, want (almost) all by the lead, %s", served, lead)
	}
}

// A burst of clients that stay connected is shared out: wrk's 64 all
// went to one of two workers before.
func TestLeadSharesKeptConnections(t *testing.T) {
	h := newLeadHerd(t, 2, worker.Config{})
	lead := h.waiting(t)
	if len(lead) != 1 {
		t.Fatalf("workers waiting on the listener: %v, want one", lead)
	}
	const n = 64
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns[i] = workertest.Dial(t, h.addr, 5*time.Second)
		}()
	}
	wg.Wait()
	served := map[string]int{}
	for _, c := range conns {
		defer c.Close()
		served[leadGet(t, c, bufio.NewReader(c), false)]++
	}
	for _, name := range []string{"worker0", "worker1"} {
		if served[name] < n/4 {
			t.Fatalf("%d kept connections at once: served %v, want each worker at least %d", n, served, n/4)
		}
	}
	// Once its help is over (leadHold, seen at a scan), the reserve steps back.
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(leadHold + 2*eventTick + 2*time.Second)
	for !slices.Equal(h.waiting(t), lead) {
		if time.Now().After(deadline) {
			t.Fatalf("workers waiting on the listener after the burst: %v, want the lead's alone, %v", h.waiting(t), lead)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// When the lead stops, another worker leads at once: nothing waits for it.
func TestLeadHandsOver(t *testing.T) {
	h := newLeadHerd(t, 2, worker.Config{})
	lead := getOnce(t, h.addr)
	var i int
	fmt.Sscan(strings.TrimPrefix(lead, "worker"), &i)
	if err := h.stops[i](true); err != nil {
		t.Fatalf("stopping the lead, %s: %v", lead, err)
	}
	other := fmt.Sprint("worker", 1-i)
	for range 50 {
		start := time.Now()
		if got := getOnce(t, h.addr); got != other {
			t.Fatalf("after %s stopped: served by %q, want %s", lead, got, other)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("after %s stopped: a request took %v", lead, d)
		}
	}
}

// A lead at --worker-connections asks for help: the connection past its
// cap is served by another worker, not left in the backlog.
func TestLeadAtCapAsksForHelp(t *testing.T) {
	h := newLeadHerd(t, 2, worker.Config{KeepAlive: 5 * time.Second, WorkerConnections: 2})
	served := map[string]int{}
	for range 3 {
		c := workertest.Dial(t, h.addr, 5*time.Second)
		defer c.Close()
		served[leadGet(t, c, bufio.NewReader(c), false)]++
	}
	if len(served) != 2 {
		t.Fatalf("3 kept connections, a cap of 2 a worker: served %v, want both workers", served)
	}
}
