package worker

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinCPUs runs every thread of this process on cpus (--cpu-affinity,
// Config.CPUs). It runs first thing in a worker, before the worker starts
// anything, so that what it starts inherits the mask: a wsgi worker's
// Python process, an exec worker's command (the exec keeps it). A thread
// the runtime starts while the list is read is a clone of one that may not
// be pinned yet: a second pass takes it.
func pinCPUs(cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("cpu affinity: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return fmt.Errorf("cpu affinity: pin thread %d to CPUs %v: %w", tid, cpus, err)
			}
		}
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.SetDefaultGOMAXPROCS() // from the new mask, now rather than at the runtime's next check
	}
	return nil
}
