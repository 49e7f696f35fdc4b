// Package cgroup reads the CPU and memory limits a container (or a
// systemd unit) puts on this process, from its cgroup, v1 or v2: the CPU
// count -w auto sizes the herd by, computed as Go's runtime computes
// GOMAXPROCS, and the memory limit the herd's budget (--max-memory) is a
// share of. It reads files only; nothing here changes a cgroup.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits are the limits on this process, as read by Read.
type Limits struct {
	// Affinity is how many CPUs the process may run on
	// (sched_getaffinity; a cpuset cgroup shows here).
	Affinity int
	// Quota is the CPU bandwidth limit in CPUs (quota / period), the
	// smallest on the way from the process's cgroup up to the root; 0
	// for none.
	Quota float64
	// Memory is the memory limit in bytes, the smallest on the way up;
	// 0 for none.
	Memory int64
	// CPUFrom and MemoryFrom name the file each limit was read from, ""
	// for none: what a log line tells a user.
	CPUFrom, MemoryFrom string
}

// CPUs is the number of CPUs the herd can keep busy: the affinity, capped
// by the quota rounded up, at least 1. It is Go's own GOMAXPROCS default
// (Go 1.25's) less the runtime's floor of 2, which is for the garbage
// collector's sake, not a count of cores: --cpus 1 is one CPU here.
func (l Limits) CPUs() int {
	n := max(l.Affinity, 1)
	if l.Quota > 0 {
		n = min(n, max(int(math.Ceil(l.Quota)), 1))
	}
	return n
}

// Read reads the limits on the calling process.
func Read() (Limits, error) { return readAt("/") }

// readAt reads the limits with root as the file system's root, so a test
// can lay out its own /proc/self and cgroup files under a folder.
func readAt(root string) (Limits, error) {
	l := Limits{Affinity: affinity()}
	mounts, err := readMounts(filepath.Join(root, "proc/self/mountinfo"))
	if err != nil {
		return l, err
	}
	groups, err := readGroups(filepath.Join(root, "proc/self/cgroup"))
	if err != nil {
		return l, err
	}
	if dir, top, v2, ok := locate("cpu", mounts, groups, root); ok {
		l.Quota, l.CPUFrom = walk(dir, top, func(d string) (float64, string, bool) { return cpuQuota(d, v2) })
	}
	if dir, top, v2, ok := locate("memory", mounts, groups, root); ok {
		var m float64
		m, l.MemoryFrom = walk(dir, top, func(d string) (float64, string, bool) { return memoryLimit(d, v2) })
		l.Memory = int64(m)
	}
	return l, nil
}

// affinity is how many CPUs sched_getaffinity allows; runtime.NumCPU if it
// fails.
func affinity() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return runtime.NumCPU()
	}
	return set.Count()
}

// A mount is a cgroup file system in /proc/self/mountinfo.
type mount struct {
	root, point string          // the cgroup its root is, where it is mounted
	v2          bool            // cgroup2
	controllers map[string]bool // v1: the controllers of the hierarchy
}

func readMounts(path string) ([]mount, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	defer f.Close()
	var ms []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 3 {
			continue
		}
		m := mount{root: unescape(fields[3]), point: unescape(fields[4])}
		switch tail[0] {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			m.controllers = map[string]bool{}
			for _, o := range strings.Split(tail[2], ",") {
				m.controllers[o] = true
			}
		default:
			continue
		}
		ms = append(ms, m)
	}
	return ms, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readGroups reads /proc/self/cgroup: the process's cgroup by v1
// controller, and under "" its v2 cgroup.
func readGroups(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	groups := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		// 4:memory:/docker/abc   2:cpu,cpuacct:/docker/abc   0::/system.slice/x
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			groups[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			groups[c] = parts[2]
		}
	}
	return groups, nil
}

// locate finds the folder of the process's cgroup for a controller: the
// v1 hierarchy that has it, else the v2 one (a hybrid system keeps its
// controllers in v1). top is the mount point, where the walk up stops.
func locate(controller string, mounts []mount, groups map[string]string, root string) (dir, top string, v2, ok bool) {
	find := func(want func(mount) bool, group string) bool {
		path, has := groups[group]
		if !has {
			return false
		}
		for _, m := range mounts {
			if !want(m) {
				continue
			}
			// A container sees its own cgroup as the mount's root, and
			// /proc/self/cgroup may name it from the host's root.
			rel := path
			if m.root != "/" {
				rel = strings.TrimPrefix(path, m.root)
			}
			top = filepath.Join(root, m.point)
			dir = filepath.Join(top, rel)
			if !strings.HasPrefix(dir, top) {
				dir = top
			}
			return true
		}
		return false
	}
	if find(func(m mount) bool { return m.controllers[controller] }, controller) {
		return dir, top, false, true
	}
	if find(func(m mount) bool { return m.v2 }, "") {
		return dir, top, true, true
	}
	return "", "", false, false
}

// walk reads a limit in dir and each folder above it up to top and
// returns the smallest, and the file it came from; 0 and "" when none is
// set. A folder that is missing (the process's cgroup may be hidden from
// it) or has no limit is passed over.
func walk(dir, top string, read func(dir string) (float64, string, bool)) (float64, string) {
	var best float64
	var from string
	for {
		if v, file, ok := read(dir); ok && (best == 0 || v < best) {
			best, from = v, file
		}
		if dir == top || len(dir) <= len(top) {
			return best, from
		}
		dir = filepath.Dir(dir)
	}
}

// cpuQuota reads a folder's CPU bandwidth limit in CPUs: v2's cpu.max
// ("200000 100000", or "max 100000" for none), v1's cpu.cfs_quota_us (-1
// for none) over cpu.cfs_period_us.
func cpuQuota(dir string, v2 bool) (float64, string, bool) {
	if v2 {
		file := filepath.Join(dir, "cpu.max")
		f, err := readFields(file)
		if err != nil || len(f) != 2 || f[0] == "max" {
			return 0, "", false
		}
		q, err1 := strconv.ParseFloat(f[0], 64)
		p, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
			return 0, "", false
		}
		return q / p, file, true
	}
	file := filepath.Join(dir, "cpu.cfs_quota_us")
	q, err1 := readNumber(file)
	p, err2 := readNumber(filepath.Join(dir, "cpu.cfs_period_us"))
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, "", false
	}
	return q / p, file, true
}

// noMemoryLimit: v1 writes "no limit" as the largest page-aligned int64
// (9223372036854771712); anything from here up means none.
const noMemoryLimit = 1 << 62

// memoryLimit reads a folder's memory limit in bytes: v2's memory.max
// ("max" for none), v1's memory.limit_in_bytes.
func memoryLimit(dir string, v2 bool) (float64, string, bool) {
	name := "memory.limit_in_bytes"
	if v2 {
		name = "memory.max"
	}
	file := filepath.Join(dir, name)
	n, err := readNumber(file)
	if err != nil || n <= 0 || n >= noMemoryLimit {
		return 0, "", false
	}
	return n, file, true
}

var errNotNumber = errors.New("not a number")

func readNumber(file string) (float64, error) {
	f, err := readFields(file)
	if err != nil {
		return 0, err
	}
	if len(f) != 1 {
		return 0, errNotNumber
	}
	return strconv.ParseFloat(f[0], 64)
}

func readFields(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}
