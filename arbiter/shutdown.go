package arbiter

import (
	"fmt"
	"syscall"
	"time"
)

// A shutdown behind a load balancer: with --shutdown-delay D, TERM first
// turns /readyz to 503 and tells systemd the arbiter drains, while the
// herd keeps accepting and serving as before for D, so that the
// orchestrator takes the endpoint out of its rotation before the intake
// stops; then the graceful stop (stop) runs as without the delay. The
// rules are onStopSignal and delayOver (decide.go).

// delayStop begins the shutdown delay.
func (a *Arbiter) delayStop() {
	a.delayUntil = a.sys.now().Add(a.cfg.ShutdownDelay)
	a.metrics.published = time.Time{} // /readyz turns 503 at this turn's publish, not up to 50 ms later
	a.stopUpgrade()
	a.log.Info(fmt.Sprintf("Shutdown delay: serving on for %s while /readyz answers 503, then a graceful stop (TERM again: at once)", a.cfg.ShutdownDelay))
	notifySystemd(fmt.Sprintf("STOPPING=1\nSTATUS=draining: serving on for %s (--shutdown-delay), then stopping", a.cfg.ShutdownDelay))
}

// stopUpgrade abandons an upgrade still under way: a stopping arbiter
// hands over to nobody.
func (a *Arbiter) stopUpgrade() {
	if a.upgrade != nil && !a.upgrade.ready && a.upgrade.killAt.IsZero() {
		a.log.Info(fmt.Sprintf("Stopping the upgrade to pid %d too", a.upgrade.pid))
		a.abandonUpgrade()
	}
}

// Stopped is how Run's arbiter stopped, for the exit code.
type Stopped struct {
	// Signal began the stop: TERM (graceful), INT or QUIT (quick); 0
	// when the arbiter stopped on its own (a failed boot, a handover).
	Signal syscall.Signal
	// CutShort counts the workers that were SIGKILLed at
	// --graceful-timeout: their requests in flight were lost.
	CutShort int
	// HandedOver: a new arbiter (USR2) serves on.
	HandedOver bool
}

// Stopped reports how the arbiter stopped, once Run returned.
func (a *Arbiter) Stopped() Stopped {
	return Stopped{Signal: a.stopSig, CutShort: a.cutShort, HandedOver: a.handedOver}
}
