package arbiter

import "fmt"

// handoverVersion is the version of handoverState this binary writes. A
// field is only ever added (a reader ignores what it does not know, and
// finds zero in what an older writer left out); the version changes when
// a field's meaning does, and a reader then ignores a state it cannot
// read: the new arbiter starts from its command line, as before.
const handoverVersion = 1

// handoverState is what an arbiter learned while it ran that its command
// line does not say, passed to the new arbiter of an upgrade (USR2) in
// CORRAL_UPGRADE, so that the upgrade changes the binary and nothing else.
type handoverState struct {
	Version int `json:"version"`
	// Target is the number of workers wanted, the configured count moved
	// by TTIN and TTOU; Configured is that configured count.
	Target     int `json:"target"`
	Configured int `json:"configured"`
}

// stateForUpgrade is this arbiter's state for the new one.
func (a *Arbiter) stateForUpgrade() handoverState {
	return handoverState{Version: handoverVersion, Target: a.target, Configured: a.configured}
}

// takeState adopts the state the old arbiter handed over. The count
// follows the rule of a reload: TTIN and TTOU survive unless the
// configured count changed, and a target of 0 (after WINCH) brings the
// configured workers back.
func (a *Arbiter) takeState(s handoverState, from int) {
	switch s.Version {
	case 0:
		return // an older binary handed over no state
	case handoverVersion:
	default:
		a.log.Warn(fmt.Sprintf("Upgrade: pid %d handed over state version %d, this binary reads %d; starting from the command line",
			from, s.Version, handoverVersion))
		return
	}
	if s.Configured == a.configured && s.Target > 0 && s.Target != a.target {
		a.log.Info(fmt.Sprintf("Number of workers: %d, as pid %d had them (TTIN/TTOU)", s.Target, from))
		a.target = s.Target
	}
}
