package arbiter

import (
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/metrics"
)

// --shutdown-delay on the fake system: TERM keeps the herd serving, and
// /readyz 503, until the delay ends; then the drain as without it.

func delayConfig(n int, delay time.Duration) *Config {
	cfg := testConfig(n)
	cfg.ShutdownDelay = delay
	return cfg
}

// readiness is what /readyz would answer now.
func (h *decisionTest) readiness() int {
	code, _ := metrics.Readiness(h.a.snapshot(h.sys.clock))
	return code
}

func TestDecisionShutdownDelayServesThenDrains(t *testing.T) {
	h := newDecisionTest(t, delayConfig(2, 5*time.Second))
	h.boot() // 101, 102
	if code := h.readiness(); code != http.StatusOK {
		t.Fatalf("/readyz %d before TERM, want 200", code)
	}
	h.signal(syscall.SIGTERM)
	h.wantSent() // no worker is told anything: they serve on
	h.wantLog("Shutdown delay: serving on for 5s while /readyz answers 503")
	if code := h.readiness(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d during the delay, want 503", code)
	}
	// The herd is kept as before: a worker that dies is replaced.
	h.exit(101, killedBy(syscall.SIGSEGV))
	h.want(h.turn(), "spawn") // 103
	h.ready(103)
	h.want(h.turn())
	// A reload or an upgrade now would outlive the stop: refused.
	h.signal(syscall.SIGHUP, syscall.SIGUSR2)
	h.want(h.turn())
	if h.a.generation != 1 || h.a.upgrade != nil {
		t.Fatalf("generation %d, upgrade %v during the delay; want 1, none", h.a.generation, h.a.upgrade)
	}
	h.advance(5*time.Second - time.Millisecond)
	h.want(h.turn())
	h.advance(time.Millisecond)
	h.want(h.turn(), "drain")
	h.wantSent("102 TERM", "103 TERM")
	if !h.a.stopping || h.a.quick {
		t.Fatal("not in a graceful stop after the delay")
	}
	h.exit(102, exitCode(0))
	h.exit(103, exitCode(0))
	h.want(h.turn())
	if got := h.a.Stopped(); got.Signal != syscall.SIGTERM || got.CutShort != 0 {
		t.Fatalf("Stopped() = %+v, want TERM, none cut short", got)
	}
}

func TestDecisionSecondTermSkipsTheShutdownDelay(t *testing.T) {
	h := newDecisionTest(t, delayConfig(2, 30*time.Second))
	h.boot()
	h.signal(syscall.SIGTERM)
	h.advance(time.Second)
	h.want(h.turn())
	h.wantSent()
	h.signal(syscall.SIGTERM)
	h.wantSent("101 TERM", "102 TERM")
	h.advance(29 * time.Second)
	h.want(h.turn()) // the delay's end decides nothing more
	h.wantSent()
}

func TestDecisionQuitDuringTheShutdownDelayIsQuick(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGQUIT} {
		h := newDecisionTest(t, delayConfig(2, 30*time.Second))
		h.boot()
		h.signal(syscall.SIGTERM, sig)
		h.wantSent("101 QUIT", "102 QUIT")
		if !h.a.quick {
			t.Fatalf("%v during the delay: not a quick stop", sig)
		}
		if got := h.a.Stopped().Signal; got != sig {
			t.Fatalf("Stopped().Signal = %v, want %v", got, sig)
		}
	}
}

func TestDecisionTermWithoutShutdownDelayDrainsAtOnce(t *testing.T) {
	h := newDecisionTest(t, delayConfig(2, 0))
	h.boot()
	h.signal(syscall.SIGTERM)
	h.wantSent("101 TERM", "102 TERM")
	if code := h.readiness(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d while stopping, want 503", code)
	}
}

func TestDecisionStopCountsWorkersCutShort(t *testing.T) {
	cfg := delayConfig(2, 0)
	cfg.GracefulTimeout = time.Second
	h := newDecisionTest(t, cfg)
	h.boot()
	h.signal(syscall.SIGTERM)
	h.exit(101, exitCode(0))
	h.advance(time.Second + time.Millisecond)
	h.want(h.turn(), "kill 102")
	if got := h.a.Stopped().CutShort; got != 1 {
		t.Fatalf("Stopped().CutShort = %d, want 1", got)
	}
}

func TestDecisionWinchIgnoredAsPID1(t *testing.T) {
	h := newDecisionTest(t, testConfig(2))
	h.boot()
	h.a.pid = 1
	h.signal(syscall.SIGWINCH)
	h.want(h.turn())
	h.wantSent()
	if h.a.target != 2 {
		t.Fatalf("target %d after WINCH as PID 1, want 2", h.a.target)
	}
	h.wantLog("Ignoring WINCH")
}
