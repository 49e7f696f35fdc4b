//go:build soak

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// arbiterStats is what a leak would grow: open fds, resident memory,
// goroutines; and the arbiter's target worker count (from the USR1 line).
type arbiterStats struct{ fds, rssKB, goroutines, target int }

func (s *server) stats(t *testing.T) arbiterStats {
	t.Helper()
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.Pid))
	var st arbiterStats
	st.fds = len(fds)
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "VmRSS:" {
			st.rssKB, _ = strconv.Atoi(f[1])
		}
	}
	before := strings.Count(s.log.String(), "Reopening log files (goroutines:")
	s.signal(syscall.SIGUSR1)
	m := s.waitLogN(`\[`+strconv.Itoa(s.Pid)+`\] \[INFO\] Reopening log files \(goroutines: (\d+), workers: \d+, target: (\d+)\)`, before+1, 5*time.Second)
	st.goroutines, _ = strconv.Atoi(m[len(m)-1][1])
	st.target, _ = strconv.Atoi(m[len(m)-1][2])
	return st
}

// TestSoak sends 1,000 HUPs and 1,000 TTIN/TTOU under light load, then
// checks that the arbiter holds what it held before, and that no worker
// is left as a zombie or an orphan. make soak runs it (about 5 minutes).
// warmUp sends 20 HUPs, so first-use allocations do not count as growth.
func warmUp(s *server) {
	for i := 0; i < 20; i++ {
		s.signal(syscall.SIGHUP)
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSoak(t *testing.T) {
	hups, scales := 1000, 1000
	if n, err := strconv.Atoi(os.Getenv("SOAK_SIGNALS")); err == nil {
		hups, scales = n, n
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "corral")
	copyFile(t, corralBin, bin)
	s := start(t, bin, []string{"-w", "2", "-b", "127.0.0.1:0", "demo"})
	s.waitLog(`Ready: 2 workers`, 10*time.Second)
	warmUp(s)
	s.waitLogN(`Reload complete: generation \d+,`, 1, 15*time.Second)
	time.Sleep(2 * time.Second)
	before := s.stats(t)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	load := make(chan *loadResult)
	loadCtx, stopLoad := context.WithCancel(ctx)
	go func() { load <- keepAliveLoad(loadCtx, s.Addr, 2, 100000000, "/") }()
	for i := 0; i < hups && ctx.Err() == nil; i++ {
		s.signal(syscall.SIGHUP)
		time.Sleep(150 * time.Millisecond)
	}
	for i := 0; i < scales && ctx.Err() == nil; i++ {
		if i%2 == 0 {
			s.signal(syscall.SIGTTIN)
		} else {
			s.signal(syscall.SIGTTOU)
		}
		time.Sleep(60 * time.Millisecond)
	}
	stopLoad()
	r := <-load
	t.Logf("soak load: %s", r)
	if r.failed() != 0 {
		t.Errorf("requests failed during the soak: %s", r)
	}
	// Let the last generation settle and the old workers drain. Signals
	// of one kind that arrive together coalesce, so the last generation
	// is the one the log names, not 21+hups.
	// TTIN and TTOU that arrive together merge too, so the count to
	// expect is the arbiter's target, not 2.
	s.waitReloaded("", 30*time.Second)
	time.Sleep(3 * time.Second)
	// Each worker holds its status pipe in the arbiter: bring the herd
	// back to its size before the soak, so that the fds compare.
	for i, st := 0, s.stats(t); st.target != before.target && i < 20; i, st = i+1, s.stats(t) {
		if st.target > before.target {
			s.signal(syscall.SIGTTOU)
		} else {
			s.signal(syscall.SIGTTIN)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Measure once the herd has settled at the target: a worker still
	// draining after the last TTOU holds its status pipe until reaped.
	s.waitWorkers(before.target, 30*time.Second)
	time.Sleep(time.Second)
	after := s.stats(t)
	t.Logf("arbiter before: %+v, after: %+v", before, after)
	if after.fds != before.fds {
		t.Errorf("arbiter fds %d -> %d", before.fds, after.fds)
	}
	if after.goroutines != before.goroutines {
		t.Errorf("arbiter goroutines %d -> %d", before.goroutines, after.goroutines)
	}
	if d := float64(after.rssKB-before.rssKB) / float64(before.rssKB); d > 0.10 || d < -0.10 {
		t.Errorf("arbiter RSS %d kB -> %d kB (%+.0f%%)", before.rssKB, after.rssKB, 100*d)
	}
	// No zombie among the arbiter's children, and no worker of this test
	// outside them.
	kids := map[int]bool{}
	for _, p := range s.children() {
		kids[p] = true
	}
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", s.Pid))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, p := range strings.Fields(string(b)) {
			n, _ := strconv.Atoi(p)
			if isZombie(n) {
				t.Errorf("zombie worker %d", n)
			}
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, e := range procs {
		exe, err := os.Readlink(e)
		if err != nil || strings.TrimSuffix(exe, " (deleted)") != bin {
			continue
		}
		n, _ := strconv.Atoi(strings.Split(e, "/")[2])
		if n != s.Pid && !kids[n] && !isZombie(n) {
			t.Errorf("orphan worker %d runs %s outside the arbiter", n, bin)
		}
	}
}
