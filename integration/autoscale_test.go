package integration

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// -w 1:4 under a slow-request load: the herd grows to 4 in steps sized
// from the accept queue, holds while the load is steady, and shrinks back
// to 1, one worker at a time, once it stops, with no request failed.
func TestScaleUpAndDownUnderLoad(t *testing.T) {
	s, maddr := startMetrics(t, "-w", "1:4", "-k", "sync", "--scale-down-delay", "2", "-b", "127.0.0.1:0", "demo")
	s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
	if m := scrape(t, maddr); m[`corral_workers_bound{bound="min"}`] != 1 || m[`corral_workers_bound{bound="max"}`] != 4 || m["corral_workers_target"] != 1 {
		t.Fatalf("at start: bounds %v:%v, target %v; want 1:4, 1", m[`corral_workers_bound{bound="min"}`], m[`corral_workers_bound{bound="max"}`], m["corral_workers_target"])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	done := make(chan *loadResult, 1)
	go func() { done <- keepAliveLoad(ctx, s.Addr, 8, 4000, "/sleep?seconds=0.05") }()

	s.waitLog(`Scaling: \d -> 4 workers: \d+ connections waiting in the accept queue`, 20*time.Second)
	s.waitWorkers(4, 10*time.Second)
	ups := regexp.MustCompile(`Scaling: (\d) -> (\d) workers: \d+ connections waiting`).FindAllStringSubmatch(s.log.String(), -1)
	if len(ups) == 0 || len(ups) > 3 || ups[0][1] != "1" {
		t.Fatalf("steps up %q, want 1 to 3 steps from 1, each for the queue:\n%s", ups, s.log)
	}
	waitSample(t, maddr, `corral_workers_target`, 4, 5*time.Second)
	if m := scrape(t, maddr); !hasKey(m, `corral_workers_target_changed_timestamp_seconds{cause="queue"}`) {
		t.Errorf("no target change labelled queue: %v", m)
	}
	// Steady load, longer than --scale-down-delay: no step.
	time.Sleep(3 * time.Second)
	cancel()
	r := <-done
	if strings.Contains(s.log.String(), "Scaling: 4 -> 3") {
		t.Fatalf("a step down under a steady load:\n%s", s.log)
	}
	if r.failed() != 0 || r.ok < 100 {
		t.Fatalf("load: %s", r)
	}
	for _, step := range []string{"4 -> 3", "3 -> 2", "2 -> 1"} {
		s.waitLog(`Scaling: `+step+` workers: busy share under 30% for 2s`, 20*time.Second)
	}
	s.waitWorkers(1, 10*time.Second)
	if m := scrape(t, maddr); !hasKey(m, `corral_workers_target_changed_timestamp_seconds{cause="idle"}`) || m["corral_workers_target"] != 1 {
		t.Errorf("after the load: target %v, want 1 changed for idle", m["corral_workers_target"])
	}
	if n := strings.Count(s.log.String(), "Scaling: "); n != len(ups)+3 {
		t.Errorf("%d steps, want %d up and 3 down:\n%s", n, len(ups), s.log)
	}
	// TTIN moves the count within the bounds, and the load brings it back.
	s.signal(syscall.SIGTTIN)
	s.waitWorkers(2, 10*time.Second)
	s.waitLog(`Scaling: 2 -> 1 workers`, 20*time.Second)
}

// A Python herd that knows nothing of corral scales from the accept queue
// of corral's own listener, and shrinks once the load stops.
func TestScaleExecPythonFromTheAcceptQueue(t *testing.T) {
	s, _ := startExec(t, []string{"-w", "1:3", "--scale-down-delay", "1", "-b", "127.0.0.1:0", "--ready", "notify",
		"--", python(t), "examples/python/app.py"},
		func(c *exec.Cmd) {
			c.Dir = repoRoot
			c.Env = append(c.Env, "APP_SERIAL=1", "APP_SLEEP=0.05")
		})
	s.waitLog(`Ready: 1 workers serving`, 15*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	done := make(chan *loadResult, 1)
	go func() { done <- closeLoad(ctx, "tcp", s.Addr, 6, 3000, "/") }()
	s.waitLog(`Scaling: [12] -> 3 workers: \d+ connections waiting in the accept queue`, 25*time.Second)
	s.waitWorkers(3, 10*time.Second)
	time.Sleep(time.Second) // the three serve the load a while
	cancel()
	if r := <-done; r.failed() != 0 || r.ok < 20 {
		t.Fatalf("load: %s", r)
	}
	s.waitLog(`Scaling: 2 -> 1 workers: busy share under 30% for 1s`, 20*time.Second)
	s.waitWorkers(1, 10*time.Second)
}
