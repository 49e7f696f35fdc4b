package integration

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestShutdownDelayServesThenDrains: with --shutdown-delay, TERM turns
// /readyz to 503 at once while / still answers 200 on new connections for
// the delay; then the graceful stop loses nothing, and the exit code is 0.
func TestShutdownDelayServesThenDrains(t *testing.T) {
	const delay = 2 * time.Second
	s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0",
		"--shutdown-delay", "2", "--graceful-timeout", "10", "demo"})
	metricsAddr := s.waitLog(`Serving metrics at: http://(\S+)`, 5*time.Second)[1]
	s.waitLog(`Ready: 2 workers`, 10*time.Second)
	if code, body, err := get(metricsAddr, "/readyz"); code != 200 {
		t.Fatalf("/readyz before TERM: %d %q %v", code, body, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := make(chan *loadResult)
	go func() { res <- closeLoad(ctx, "tcp", s.Addr, 16, 1000000, "/") }()
	slow := make(chan error, 1)
	go func() { // in flight through the delay and into the drain
		code, body, err := get(s.Addr, "/sleep?seconds=3")
		if err == nil && (code != 200 || !strings.HasPrefix(body, "slept")) {
			err = fmt.Errorf("status %d body %q", code, body)
		}
		slow <- err
	}()
	time.Sleep(300 * time.Millisecond)
	term := time.Now()
	s.signal(syscall.SIGTERM)
	s.waitLog(`Shutdown delay: serving on for 2s`, time.Second)
	polls := 0
	for time.Since(term) < delay-400*time.Millisecond {
		if code, body, err := get(metricsAddr, "/readyz"); code != 503 {
			t.Errorf("/readyz %s after TERM: %d %q %v, want 503", time.Since(term).Round(time.Millisecond), code, body, err)
		}
		if code, _, err := get(s.Addr, "/"); code != 200 {
			t.Errorf("GET / on a new connection %s after TERM: %d %v, want 200", time.Since(term).Round(time.Millisecond), code, err)
		}
		polls++
		time.Sleep(100 * time.Millisecond)
	}
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after TERM, want 0", code)
	}
	if took := time.Since(term); took < delay {
		t.Errorf("stopped %s after TERM, before the delay of %s ran out", took.Round(time.Millisecond), delay)
	}
	cancel()
	r := <-res
	t.Logf("TERM with a 2 s shutdown delay under load: %s; %d polls during the delay", r, polls)
	if err := <-slow; err != nil {
		t.Errorf("request in flight at TERM: %v", err)
	}
	if r.failed() != 0 {
		t.Errorf("accepted connections failed: %s", r)
	}
	if r.ok < 200 || polls < 5 {
		t.Errorf("too little load: %s, %d polls", r, polls)
	}
}

// TestSecondTermSkipsTheShutdownDelay: a second TERM starts the drain at
// once.
func TestSecondTermSkipsTheShutdownDelay(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "1", "-b", "127.0.0.1:0", "--shutdown-delay", "60", "demo"})
	s.waitLog(`Ready: 1 workers`, 10*time.Second)
	s.signal(syscall.SIGTERM)
	s.waitLog(`Shutdown delay: serving on for 1m0s`, time.Second)
	mustGet(t, s.Addr, "/")
	begin := time.Now()
	s.signal(syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	t.Logf("second TERM to exit: %s", time.Since(begin).Round(time.Millisecond))
}

// TestStopCutShortExitsWith4: a graceful stop that had to SIGKILL a worker
// at --graceful-timeout says so in its exit code.
func TestStopCutShortExitsWith4(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "1", "-b", "127.0.0.1:0", "--graceful-timeout", "1", "demo"})
	s.waitLog(`Ready: 1 workers`, 10*time.Second)
	go get(s.Addr, "/sleep?seconds=10")
	time.Sleep(300 * time.Millisecond)
	s.signal(syscall.SIGTERM)
	if code := s.wait(10 * time.Second); code != 4 {
		t.Errorf("exit code %d after a stop cut short, want 4", code)
	}
}
