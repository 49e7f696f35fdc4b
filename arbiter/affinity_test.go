package arbiter

import (
	"slices"
	"testing"

	"github.com/corral-server/corral/worker"
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

// auto pins wsgi workers only, and only with a worker for every CPU.
func TestPinsWorkers(t *testing.T) {
	for _, c := range []struct {
		mode, class string
		target      int
		cpus        []int
		want        bool
	}{
		{"on", "event", 1, []int{0, 1}, true},
		{"off", "wsgi", 4, []int{0, 1}, false},
		{"", "wsgi", 4, []int{0, 1}, false},
		{"auto", "wsgi", 2, []int{0, 1}, true},
		{"auto", "wsgi", 5, []int{0, 1}, true},
		{"auto", "wsgi", 1, []int{0, 1}, false},  // fewer workers than CPUs: a share of a large machine
		{"auto", "wsgi", 3, []int{3}, false},     // one CPU: nothing to pair across
		{"auto", "event", 4, []int{0, 1}, false}, // Go workers have no second process
	} {
		a := &Arbiter{cfg: &Config{CPUAffinity: c.mode, Worker: worker.Config{Class: c.class}}, target: c.target, cpus: c.cpus}
		if got := a.pinsWorkers(); got != c.want {
			t.Errorf("--cpu-affinity %q, -k %s, %d workers on CPUs %v: pins %v, want %v", c.mode, c.class, c.target, c.cpus, got, c.want)
		}
	}
}
