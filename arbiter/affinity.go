package arbiter

import "golang.org/x/sys/unix"

// --cpu-affinity on (or auto, for wsgi workers, see pinsWorkers): each
// worker runs on one CPU, the one of its slot, so
// that a worker's replacement takes over its CPU and N workers on N CPUs
// get one each. The worker pins itself (worker.Config.CPUs) before it
// starts anything, so what it starts inherits the CPU: for a wsgi worker
// the Python process, which then hands requests and responses back and
// forth with its Go process on one CPU, without a wake-up across CPUs
// (measured: the wsgi hello world 39-67k requests a second from run to
// run unpinned, 61-74k pinned, on two CPUs).

// CPUAffinityModes are --cpu-affinity's values.
var CPUAffinityModes = []string{"auto", "on", "off"}

// pinsWorkers reports whether the next worker gets a CPU: with "on", any;
// with "auto", a wsgi worker while the herd has a worker for every CPU it
// may use. Then the CPUs are the herd's (a machine or cpuset of its own,
// -w at least the CPUs), and pairing each worker's Go and Python on one
// CPU is what the hand-over between them wants. With fewer workers than
// CPUs, as in a container whose quota is a few CPUs of a large machine's
// mask, pinning would put every such container's workers on the mask's
// first CPUs: auto leaves them to the kernel. Off is the default: with
// nginx on the same CPUs, pinned workers cannot move off the CPU nginx is
// busy on, and measured behind nginx's proxy_pass they served 10-20%
// fewer requests than unpinned ones (serving clients directly, 30-60%
// more).
func (a *Arbiter) pinsWorkers() bool {
	switch a.cfg.CPUAffinity {
	case "on":
		return true
	case "auto":
		if a.cfg.Worker.Class != "wsgi" {
			return false
		}
		if a.cpus == nil {
			a.cpus = allowedCPUs()
		}
		return len(a.cpus) > 1 && a.target >= len(a.cpus)
	}
	return false
}

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
