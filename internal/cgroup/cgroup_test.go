package cgroup

import (
	"os"
	"path/filepath"
	"testing"
)

// layout writes files under a fresh root: path -> content.
func layout(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for path, content := range files {
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	v1Mounts = `31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	v1Groups = "12:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n"
	v2Mounts = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
)

func TestDockerV1Limits(t *testing.T) {
	// docker run --cpus 2 --memory 512m on cgroup v1: the container's
	// cgroup is the mount's root.
	root := layout(t, map[string]string{
		"proc/self/mountinfo":                         v1Mounts,
		"proc/self/cgroup":                            v1Groups,
		"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":  "200000\n",
		"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
		"sys/fs/cgroup/memory/memory.limit_in_bytes":  "536870912\n",
	})
	l, err := readAt(root)
	if err != nil {
		t.Fatal(err)
	}
	if l.Quota != 2 || l.Memory != 512<<20 {
		t.Fatalf("quota %v, memory %d; want 2, 512 MiB", l.Quota, l.Memory)
	}
	if filepath.Base(l.CPUFrom) != "cpu.cfs_quota_us" || filepath.Base(l.MemoryFrom) != "memory.limit_in_bytes" {
		t.Fatalf("read from %q and %q", l.CPUFrom, l.MemoryFrom)
	}
}

func TestV2LimitsTheSmallestOnTheWayUp(t *testing.T) {
	root := layout(t, map[string]string{
		"proc/self/mountinfo":                        v2Mounts,
		"proc/self/cgroup":                           "0::/kubepods/pod1/ctr\n",
		"sys/fs/cgroup/kubepods/cpu.max":             "max 100000\n",
		"sys/fs/cgroup/kubepods/pod1/cpu.max":        "150000 100000\n",
		"sys/fs/cgroup/kubepods/pod1/ctr/cpu.max":    "400000 100000\n",
		"sys/fs/cgroup/kubepods/memory.max":          "1073741824\n",
		"sys/fs/cgroup/kubepods/pod1/ctr/memory.max": "max\n",
	})
	l, err := readAt(root)
	if err != nil {
		t.Fatal(err)
	}
	if l.Quota != 1.5 || l.Memory != 1<<30 {
		t.Fatalf("quota %v, memory %d; want 1.5 (the pod's), 1 GiB (kubepods')", l.Quota, l.Memory)
	}
	l.Affinity = 8
	if n := l.CPUs(); n != 2 {
		t.Fatalf("CPUs() = %d for a quota of 1.5 on 8 CPUs, want 2 (rounded up)", n)
	}
}

func TestNoLimits(t *testing.T) {
	root := layout(t, map[string]string{
		"proc/self/mountinfo":                         v1Mounts,
		"proc/self/cgroup":                            "12:memory:/\n3:cpu,cpuacct:/\n0::/\n",
		"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us":  "-1\n",
		"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
		"sys/fs/cgroup/memory/memory.limit_in_bytes":  "9223372036854771712\n",
	})
	l, err := readAt(root)
	if err != nil {
		t.Fatal(err)
	}
	if l.Quota != 0 || l.Memory != 0 || l.CPUFrom != "" || l.MemoryFrom != "" {
		t.Fatalf("%+v, want no limits", l)
	}
	if l.CPUs() != l.Affinity {
		t.Fatalf("CPUs() = %d without a quota, want the affinity %d", l.CPUs(), l.Affinity)
	}
}

func TestCPUs(t *testing.T) {
	for _, c := range []struct {
		l    Limits
		want int
	}{
		{Limits{Affinity: 4}, 4},
		{Limits{Affinity: 4, Quota: 2}, 2},
		{Limits{Affinity: 4, Quota: 0.5}, 1}, // Go's GOMAXPROCS would be 2
		{Limits{Affinity: 2, Quota: 8}, 2},   // the affinity caps
		{Limits{Affinity: 0}, 1},
	} {
		if got := c.l.CPUs(); got != c.want {
			t.Errorf("%+v: CPUs() = %d, want %d", c.l, got, c.want)
		}
	}
}

func TestReadHere(t *testing.T) {
	// Whatever this machine's cgroups are, Read works on them.
	l, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	if l.Affinity < 1 || l.CPUs() < 1 || l.Memory < 0 {
		t.Fatalf("%+v", l)
	}
}
