package signals

import (
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestPipeDeliversRealSignals(t *testing.T) {
	p, err := NewPipe(syscall.SIGUSR1, syscall.SIGUSR2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, s := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGUSR1} {
		if err := syscall.Kill(syscall.Getpid(), s); err != nil {
			t.Fatal(err)
		}
		// Signal delivery through os/signal is asynchronous and may
		// coalesce identical pending signals; wait for each.
		waitReadable(t, p.Fd())
		q := NewQueue(8)
		p.Read(q)
		got, ok := q.Pop()
		if !ok || got != s {
			t.Fatalf("got %v %v, want %v", got, ok, s)
		}
	}
}

func waitReadable(t *testing.T, fd int) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(5*time.Second/time.Millisecond))
	if err != nil || n != 1 {
		t.Fatalf("pipe not readable: n=%d err=%v", n, err)
	}
}

func TestWakeIsNotASignal(t *testing.T) {
	p, err := NewPipe(syscall.SIGUSR1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Wake()
	waitReadable(t, p.Fd())
	q := NewQueue(8)
	p.Read(q)
	if q.Len() != 0 {
		t.Fatalf("wake byte queued as a signal: %d", q.Len())
	}
}

func TestQueueIsBounded(t *testing.T) {
	q := NewQueue(3)
	for i := 0; i < 5; i++ {
		q.Push(syscall.SIGTTIN)
	}
	if q.Len() != 3 || q.Dropped != 2 {
		t.Fatalf("len=%d dropped=%d, want 3 and 2", q.Len(), q.Dropped)
	}
	q.Push(syscall.SIGHUP)
	for i := 0; i < 3; i++ {
		if s, ok := q.Pop(); !ok || s != syscall.SIGTTIN {
			t.Fatalf("pop %d: %v %v", i, s, ok)
		}
	}
	if _, ok := q.Pop(); ok {
		t.Fatal("queue not empty")
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"TERM": syscall.SIGTERM, "sigquit": syscall.SIGQUIT, "ttin": syscall.SIGTTIN, "10": syscall.Signal(10)} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := Parse("BOGUS"); err == nil {
		t.Error("Parse(BOGUS) succeeded")
	}
	if Name(syscall.SIGWINCH) != "WINCH" || Name(syscall.Signal(40)) != "SIG40" {
		t.Errorf("names: %s %s", Name(syscall.SIGWINCH), Name(syscall.Signal(40)))
	}
}
