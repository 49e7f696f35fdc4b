package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// -w auto inside a cgroup with a CPU quota that the test makes itself
// (v1 or v2, whichever hierarchy has the cpu controller here), below the
// CPUs the affinity allows, so that the herd's size proves the quota was
// read and not the affinity.

// TestAutoWorkersFromACgroupQuota: corral started inside a cgroup whose
// quota is one CPU less than its affinity (half a CPU on a one-CPU
// machine) runs the quota's CPUs, rounded up, times the type's factor
// (cmd/container.go's autoWorkers: 2 × CPUs + 1 for sync, 1 per CPU for
// goroutine), and its workers are in that cgroup too.
func TestAutoWorkersFromACgroupQuota(t *testing.T) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatalf("sched_getaffinity: %v", err)
	}
	affinity := set.Count()
	quota, cpus := float64(affinity-1), affinity-1
	if affinity < 2 {
		quota, cpus = 0.5, 1
	}
	cg := makeCPUCgroup(t, quota)
	for _, tc := range []struct {
		class   string
		workers int
		why     string
	}{
		{"sync", 2*cpus + 1, "2 × CPUs \\+ 1 for the sync worker"},
		{"goroutine", cpus, "1 per CPU for the goroutine worker"},
	} {
		t.Run(tc.class, func(t *testing.T) {
			s := cg.start(t, "-w", "auto", "-k", tc.class, "-b", "127.0.0.1:0", "demo")
			s.waitLog(fmt.Sprintf(`Workers: auto = %d: %d CPUs \(the cgroup's CPU quota, %s, rounded up\), %s`,
				tc.workers, cpus, regexp.QuoteMeta(strconv.FormatFloat(quota, 'g', -1, 64)), tc.why), 10*time.Second)
			s.waitLog(fmt.Sprintf(`Ready: %d workers serving`, tc.workers), 10*time.Second)
			kids := s.children()
			if len(kids) != tc.workers {
				t.Fatalf("%d workers (%v) under a quota of %g CPUs (affinity %d), want %d", len(kids), kids, quota, affinity, tc.workers)
			}
			for _, pid := range append(kids, s.Pid) {
				if in := cg.member(pid); !in {
					t.Errorf("pid %d is not in %s", pid, cg.dir)
				}
			}
			mustGet(t, s.Addr, "/")
		})
	}
}

// cpuCgroup is a cgroup a test made, with a CPU quota, and removes at the
// test's end.
type cpuCgroup struct {
	t      *testing.T
	dir    string // the cgroup's folder
	parent string // the cgroup its processes go back to
	rel    string // its path in the hierarchy, as /proc/PID/cgroup shows it
	v2     bool
}

// makeCPUCgroup makes a child of this process's cgroup with a quota of
// cpus CPUs (period 100 ms), in the hierarchy that has the cpu controller:
// cgroup v1's cpu (cpu.cfs_quota_us, cpu.cfs_period_us) or cgroup v2's
// (cpu.max, with "+cpu" in the parent's cgroup.subtree_control, which it
// turns on if it must and back off after). It fails the test, saying why,
// if the machine does not let it: this test does not skip.
func makeCPUCgroup(t *testing.T, cpus float64) *cpuCgroup {
	t.Helper()
	mount, rel, v2, err := cpuHierarchy()
	if err != nil {
		t.Fatalf("-w auto's quota test needs a cgroup with the cpu controller: %v", err)
	}
	cg := &cpuCgroup{t: t, parent: filepath.Join(mount, rel), v2: v2}
	cg.dir = filepath.Join(cg.parent, fmt.Sprintf("corral-test-%d", os.Getpid()))
	cg.rel = filepath.Join(rel, filepath.Base(cg.dir))
	const period = 100000 // µs
	quota := strconv.Itoa(int(cpus * period))
	if v2 {
		control := filepath.Join(cg.parent, "cgroup.subtree_control")
		on, err := os.ReadFile(control)
		if err != nil {
			t.Fatalf("cgroup v2 at %s: %v", cg.parent, err)
		}
		if !strings.Contains(" "+string(on)+" ", " cpu ") {
			if err := os.WriteFile(control, []byte("+cpu"), 0); err != nil {
				t.Fatalf("cgroup v2: turning the cpu controller on for %s's children (+cpu to %s): %v (a cgroup with processes of its own cannot delegate it)", cg.parent, control, err)
			}
			t.Cleanup(func() { os.WriteFile(control, []byte("-cpu"), 0) })
		}
	}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		t.Fatalf("making the test's cgroup: %v (is %s writable? this test runs as root)", err, cg.parent)
	}
	t.Cleanup(cg.remove)
	files := map[string]string{"cpu.cfs_period_us": strconv.Itoa(period), "cpu.cfs_quota_us": quota}
	order := []string{"cpu.cfs_period_us", "cpu.cfs_quota_us"}
	if v2 {
		files, order = map[string]string{"cpu.max": quota + " " + strconv.Itoa(period)}, []string{"cpu.max"}
	}
	for _, name := range order {
		if err := os.WriteFile(filepath.Join(cg.dir, name), []byte(files[name]), 0); err != nil {
			t.Fatalf("setting the test cgroup's quota: %v", err)
		}
	}
	return cg
}

// start starts corral with args inside the cgroup: a shell puts itself
// there, then execs corral, so that corral reads its limits from the
// cgroup from its first instruction, as in a container.
func (cg *cpuCgroup) start(t *testing.T, args ...string) *server {
	t.Helper()
	procs := filepath.Join(cg.dir, "cgroup.procs")
	return start(t, "/bin/sh", append([]string{"-c", `echo $$ >"$0" && exec "$@"`, procs, corralBin}, args...))
}

// member reports whether pid is in the cgroup.
func (cg *cpuCgroup) member(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && parts[2] == cg.rel && (cg.v2 && parts[0] == "0" || !cg.v2 && hasController(parts[1], "cpu")) {
			return true
		}
	}
	return false
}

// remove moves what is left in the cgroup back to its parent and removes
// it; the test's servers are gone by then (their cleanups run first).
func (cg *cpuCgroup) remove() {
	var err error
	for range 50 {
		if err = os.Remove(cg.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if b, rerr := os.ReadFile(filepath.Join(cg.dir, "cgroup.procs")); rerr == nil {
			for _, pid := range strings.Fields(string(b)) {
				os.WriteFile(filepath.Join(cg.parent, "cgroup.procs"), []byte(pid), 0)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	cg.t.Errorf("removing the test's cgroup %s: %v", cg.dir, err)
}

// cpuHierarchy finds the cgroup hierarchy with the cpu controller: its
// mount point, this process's path in it, and whether it is cgroup v2.
// A controller is in one hierarchy at a time: cgroup v1's cpu mount if
// there is one, else v2's, if its root offers cpu.
func cpuHierarchy() (mount, rel string, v2 bool, err error) {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", "", false, err
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", "", false, err
	}
	var v2mount string
	for _, line := range strings.Split(string(info), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 {
			continue
		}
		switch {
		case g[0] == "cgroup" && hasController(g[2], "cpu"):
			// v1: this process's path in the hierarchy, from the
			// mount's root.
			for _, l := range strings.Split(string(own), "\n") {
				parts := strings.SplitN(l, ":", 3)
				if len(parts) == 3 && hasController(parts[1], "cpu") {
					r, err := filepath.Rel(f[3], parts[2])
					if err != nil || strings.HasPrefix(r, "..") {
						return "", "", false, fmt.Errorf("this process's cpu cgroup %s is outside the mount of %s (root %s)", parts[2], f[4], f[3])
					}
					return f[4], parts[2], false, nil
				}
			}
			return "", "", false, fmt.Errorf("cgroup v1 cpu is mounted at %s but /proc/self/cgroup has no cpu line:\n%s", f[4], own)
		case g[0] == "cgroup2" && v2mount == "":
			v2mount = f[4]
		}
	}
	if v2mount == "" {
		return "", "", false, fmt.Errorf("no cgroup file system is mounted (/proc/self/mountinfo has neither cgroup with cpu nor cgroup2)")
	}
	if c, _ := os.ReadFile(filepath.Join(v2mount, "cgroup.controllers")); !strings.Contains(" "+strings.TrimSpace(string(c))+" ", " cpu ") {
		return "", "", false, fmt.Errorf("cgroup v2 at %s offers no cpu controller (cgroup.controllers: %q) and no v1 hierarchy has it", v2mount, c)
	}
	for _, l := range strings.Split(string(own), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return v2mount, p, true, nil
		}
	}
	return "", "", false, fmt.Errorf("cgroup v2 at %s, but /proc/self/cgroup has no 0:: line:\n%s", v2mount, own)
}

// hasController reports whether a comma-separated list (a v1 mount's
// options, or a /proc/PID/cgroup line's controllers) names controller.
func hasController(list, controller string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == controller {
			return true
		}
	}
	return false
}
