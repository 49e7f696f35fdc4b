package arbiter

import (
	"slices"
	"testing"
)

// Slots take the CPUs in turn, and a slot past the last CPU wraps.
func TestWorkerCPUsRoundRobin(t *testing.T) {
	a := &Arbiter{cpus: []int{2, 5, 7}}
	for slot, want := range []int{2, 5, 7, 2, 5} {
		if got := a.workerCPUs(slot); !slices.Equal(got, []int{want}) {
			t.Errorf("slot %d: CPUs %v, want [%d]", slot, got, want)
		}
	}
	if got := allowedCPUs(); len(got) == 0 {
		t.Error("allowedCPUs: none, want this process's mask")
	}
}
