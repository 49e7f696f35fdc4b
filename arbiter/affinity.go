package arbiter

import "golang.org/x/sys/unix"

// --cpu-affinity: each worker runs on one CPU, the one of its slot, so
// that a worker's replacement takes over its CPU and N workers on N CPUs
// get one each. The worker pins itself (worker.Config.CPUs) before it
// starts anything, so what it starts inherits the CPU: for a wsgi worker
// the Python process, which then hands requests and responses back and
// forth with its Go process on one CPU, without a wake-up across CPUs
// (measured: the wsgi hello world 39-67k requests a second from run to
// run unpinned, 61-74k pinned, on two CPUs).

// workerCPUs returns the CPUs of the worker in slot: the slot's one of
// the CPUs the arbiter may run on (its affinity mask: a cpuset or
// taskset narrows it), round robin.
func (a *Arbiter) workerCPUs(slot int) []int {
	if a.cpus == nil {
		a.cpus = allowedCPUs()
	}
	if len(a.cpus) == 0 {
		return nil
	}
	return []int{a.cpus[slot%len(a.cpus)]}
}

// allowedCPUs lists the CPUs in this process's affinity mask.
func allowedCPUs() []int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return nil
	}
	var cpus []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}
