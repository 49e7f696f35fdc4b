// Package signals owns how the arbiter hears signals: a self-pipe that turns
// each delivered signal into one byte, a bounded queue of pending signals,
// and the short names the logs and the CLI use (HUP, TTIN, ...).
//
// The arbiter's loop waits on the pipe's read end together with its other
// fds, so a signal wakes the loop and the loop alone acts on it.
package signals

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Pipe delivers signals as bytes on a non-blocking, close-on-exec pipe.
// Each byte is the signal number, so the read end is both the wake-up
// and the record of which signals came.
type Pipe struct {
	r, w  int
	ch    chan os.Signal
	done  chan struct{}
	once  sync.Once
	relay sync.WaitGroup
}

// NewPipe starts relaying sigs to a new pipe. The caller must Close it.
func NewPipe(sigs ...os.Signal) (*Pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("signals: pipe2: %w", err)
	}
	p := &Pipe{r: fds[0], w: fds[1], ch: make(chan os.Signal, 64), done: make(chan struct{})}
	signal.Notify(p.ch, sigs...)
	p.relay.Add(1)
	go p.forward()
	return p, nil
}

// forward writes one byte per signal. It only writes: the arbiter's state is
// touched by the loop that reads the pipe, never here.
func (p *Pipe) forward() {
	defer p.relay.Done()
	for {
		select {
		case s := <-p.ch:
			n, ok := s.(syscall.Signal)
			if !ok {
				continue
			}
			// A full pipe means the loop is far behind; dropping the byte
			// loses one signal, as a busy kernel would coalesce it anyway.
			_, _ = unix.Write(p.w, []byte{byte(n)})
		case <-p.done:
			return
		}
	}
}

// Fd is the read end, for poll.
func (p *Pipe) Fd() int { return p.r }

// Read drains the pipe into q without blocking.
func (p *Pipe) Read(q *Queue) {
	var buf [64]byte
	for {
		n, err := unix.Read(p.r, buf[:])
		for _, b := range buf[:max(n, 0)] {
			q.Push(syscall.Signal(b))
		}
		if err != nil || n < len(buf) {
			return
		}
	}
}

// Close stops the relay and closes both ends. Signals that arrive later get
// their default disposition back.
func (p *Pipe) Close() error {
	p.once.Do(func() {
		signal.Stop(p.ch)
		close(p.done)
		p.relay.Wait()
		unix.Close(p.r)
		unix.Close(p.w)
	})
	return nil
}

// Wake writes a zero byte so a loop waiting on the pipe returns at once.
// It is safe from any goroutine; the zero byte is not queued as a signal.
func (p *Pipe) Wake() { _, _ = unix.Write(p.w, []byte{0}) }

// Queue is a bounded FIFO of pending signals. Like Gunicorn's SIG_QUEUE it
// drops what comes past its capacity, so a flood of signals cannot grow the
// arbiter's memory; Dropped counts them for the log.
type Queue struct {
	sigs    []syscall.Signal
	limit   int
	Dropped int
}

// NewQueue returns a queue that holds at most limit signals.
func NewQueue(limit int) *Queue { return &Queue{limit: limit} }

// Push appends s, or counts it as dropped when the queue is full. Zero is
// the wake-up byte and is ignored.
func (q *Queue) Push(s syscall.Signal) {
	if s == 0 {
		return
	}
	if len(q.sigs) >= q.limit {
		q.Dropped++
		return
	}
	q.sigs = append(q.sigs, s)
}

// Pop removes and returns the oldest signal; ok is false when empty.
func (q *Queue) Pop() (s syscall.Signal, ok bool) {
	if len(q.sigs) == 0 {
		return 0, false
	}
	s = q.sigs[0]
	q.sigs = q.sigs[1:]
	return s, true
}

// Len is the number of pending signals.
func (q *Queue) Len() int { return len(q.sigs) }

var names = map[syscall.Signal]string{
	syscall.SIGHUP: "HUP", syscall.SIGINT: "INT", syscall.SIGQUIT: "QUIT",
	syscall.SIGTERM: "TERM", syscall.SIGKILL: "KILL", syscall.SIGUSR1: "USR1",
	syscall.SIGUSR2: "USR2", syscall.SIGTTIN: "TTIN", syscall.SIGTTOU: "TTOU",
	syscall.SIGWINCH: "WINCH", syscall.SIGCHLD: "CHLD", syscall.SIGABRT: "ABRT",
	syscall.SIGPIPE: "PIPE", syscall.SIGALRM: "ALRM", syscall.SIGSEGV: "SEGV",
}

// Name returns the short upper-case name of s ("HUP"), or "SIG<n>".
func Name(s syscall.Signal) string {
	if n, ok := names[s]; ok {
		return n
	}
	return fmt.Sprintf("SIG%d", int(s))
}

// Parse accepts "TERM", "SIGTERM", "term" or a number and returns the signal.
func Parse(s string) (syscall.Signal, error) {
	u := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "SIG")
	for sig, n := range names {
		if n == u {
			return sig, nil
		}
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
