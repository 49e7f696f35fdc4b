package arbiter

import "golang.org/x/sys/unix"

// --cpu-affinity on (or auto, for wsgi workers, see pinsWorkers): each
// worker runs on one CPU, the one of its slot, so that a worker's
// replacement takes over its CPU and N workers on N CPUs get one each.
// The worker pins itself (worker.Config.CPUs) before it starts anything,
// so what it starts inherits the CPU: for a wsgi worker the Python
// process, which then hands requests and responses back and forth with
// its Go process on one CPU, without a wake-up across CPUs (measured on
// two CPUs, clients served directly: the wsgi hello world 36-50k requests
// a second from run to run unpinned, 54-68k pinned).

// CPUAffinityModes are --cpu-affinity's values.
var CPUAffinityModes = []string{"auto", "on", "off"}

// pinsWorkers reports whether the next worker gets a CPU: with "on", any;
// with "auto", a wsgi worker while the herd has a worker for every CPU it
// may use. Then the CPUs are the herd's (a machine or cpuset of its own,
// -w at least the CPUs), and pairing each worker's Go and Python on one
// CPU is what the hand-over between them wants. With fewer workers than
// CPUs, as in a container whose quota is a few CPUs of a large machine's
// mask, pinning would put every such container's workers on the mask's
// first CPUs: auto leaves them to the kernel. Auto is the default: a wsgi
// worker serves clients directly (nginx is no longer needed for slow
// ones), and so, measured on two CPUs in four runs, the hello world's
// requests a second went from 1.28-1.56 times uWSGI's, as the kernel
// happened to place the processes, to 1.69-2.64 times. With nginx on the
// same CPUs, pinned workers cannot move off the CPU nginx is busy on:
// behind its proxy_pass they served 8% more to 32% fewer than unpinned
// ones, so the README has nginx users turn it off.
func (a *Arbiter) pinsWorkers() bool {
	switch a.cfg.CPUAffinity {
	case "on":
		return true
	case "auto":
		n := len(a.allowed())
		return a.cfg.Worker.Class == "wsgi" && n > 1 && a.target >= n
	}
	return false
}

// workerCPUs returns the CPUs of the worker in slot: the slot's one of
// the CPUs the arbiter may run on (its affinity mask: a cpuset or
// taskset narrows it), round robin.
func (a *Arbiter) workerCPUs(slot int) []int {
	cpus := a.allowed()
	if len(cpus) == 0 {
		return nil
	}
	return []int{cpus[slot%len(cpus)]}
}

// allowed returns the CPUs of the arbiter's mask, read once.
func (a *Arbiter) allowed() []int {
	if a.cpus == nil {
		a.cpus = allowedCPUs()
	}
	return a.cpus
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
