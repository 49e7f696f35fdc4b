package arbiter

import "testing"

// The count an upgrade hands over follows the rule of a reload.
func TestHandoverStateKeepsTheCount(t *testing.T) {
	for _, c := range []struct {
		name                   string
		state                  handoverState
		configured, wantTarget int
	}{
		{"TTIN twice", handoverState{Version: handoverVersion, Target: 4, Configured: 2}, 2, 4},
		{"the configured count changed", handoverState{Version: handoverVersion, Target: 4, Configured: 2}, 3, 3},
		{"after WINCH", handoverState{Version: handoverVersion, Target: 0, Configured: 2}, 2, 2},
		{"an older arbiter, no state", handoverState{}, 2, 2},
		{"a version this one cannot read", handoverState{Version: handoverVersion + 1, Target: 4, Configured: 2}, 2, 2},
	} {
		h := newDecisionTest(t, testConfig(c.configured))
		h.a.takeState(c.state, 7)
		if h.a.target != c.wantTarget {
			t.Errorf("%s: target %d, want %d", c.name, h.a.target, c.wantTarget)
		}
		from := h.a.stateForUpgrade()
		if from.Target != h.a.target || from.Configured != c.configured || from.Version != handoverVersion {
			t.Errorf("%s: hands over %+v", c.name, from)
		}
	}
}
