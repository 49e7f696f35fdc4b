package integration

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// corral in a real container (docker_test.go has the engine): PID 1, a
// docker stop under load, orphans, the cgroup's limits, the health check.

// TestContainerPID1Serves: the image as it ships serves with corral as the
// container's PID 1; WINCH (a terminal's resize) leaves the workers be.
func TestContainerPID1Serves(t *testing.T) {
	needDocker(t)
	c, addr, _ := serving(t, nil)
	pid := c.hostPid()
	if cl := cmdline(pid); !strings.HasPrefix(cl, "/corral") {
		t.Fatalf("the container's PID 1 runs %q, want /corral", cl)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if m := regexp.MustCompile(`(?m)^NSpid:\s.*\s1$`).Find(status); m == nil {
		t.Fatalf("corral is not PID 1 in its pid namespace:\n%s", status)
	}
	c.waitLog(`Ready: \d+ workers serving`, 10*time.Second)
	mustGet(t, addr, "/")
	dockerT(t, "kill", "--signal", "WINCH", c.id)
	c.waitLog(`Ignoring WINCH: as PID 1 it means a terminal resize`, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	mustGet(t, addr, "/")
	if strings.Contains(c.logs(), "Graceful stop of workers") {
		t.Error("WINCH stopped the workers of PID 1")
	}
}

// TestContainerDockerStopUnderLoad: docker stop -t above the shutdown
// delay and the graceful timeout drains the herd under load: no request
// fails, a request in flight is answered, and the container exits 0 by
// itself, before docker's SIGKILL.
func TestContainerDockerStopUnderLoad(t *testing.T) {
	needDocker(t)
	c, addr, _ := serving(t, []string{"-e", "CORRAL_SHUTDOWN_DELAY=1", "-e", "CORRAL_GRACEFUL_TIMEOUT=5", "-e", "CORRAL_WORKERS=2"})
	c.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
	defer cancel()
	wait := mixedLoad{keepAlive: 4, close: 8, requests: 1000000}.start(ctx, addr)
	slow := make(chan error, 1)
	go func() {
		code, body, err := get(addr, "/sleep?seconds=2")
		if err == nil && (code != 200 || !strings.HasPrefix(body, "slept")) {
			err = fmt.Errorf("status %d body %q", code, body)
		}
		slow <- err
	}()
	time.Sleep(500 * time.Millisecond)
	begin := time.Now()
	dockerT(t, "stop", "-t", "15", c.id) // 15 > 1 + 5 + a margin
	took := time.Since(begin)
	cancel()
	r := wait()
	t.Logf("docker stop -t 15 under load: %s after %s", r, took.Round(time.Millisecond))
	if code := c.inspect("{{.State.ExitCode}}"); code != "0" {
		t.Errorf("exit code %s after docker stop, want 0", code)
	}
	if took >= 15*time.Second {
		t.Errorf("docker stop took %s: corral did not exit before the SIGKILL", took)
	}
	if err := <-slow; err != nil {
		t.Errorf("the request in flight at docker stop: %v", err)
	}
	// A connect refused once the listeners closed is no lost request:
	// the intake stopped, as it does on TERM outside a container.
	if n := r.keepAlive.failed() + r.close.failed(); n != 0 {
		t.Errorf("%d requests failed: %s", n, r)
	}
	if r.ok() < 200 {
		t.Errorf("too little load: %s", r)
	}
	c.waitLog(`Shutdown delay: serving on for 1s`, time.Second)
}

// TestContainerReapsOrphans: a worker's child exits and leaves its own
// child, which is re-parented to PID 1, corral; when it exits, corral
// reaps it: no zombie stays.
func TestContainerReapsOrphans(t *testing.T) {
	needDocker(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c := runContainer(t, []string{"-e", "CORRAL_BIND=" + addr}, "-w", "2", "--ready", "delay:200ms", "--", "/orphans")
	c.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	pid := c.hostPid()
	for range 10 {
		if body := mustGet(t, addr, "/orphan"); strings.TrimSpace(body) == "" {
			t.Fatal("no grandchild pid")
		}
	}
	// The grandchildren (a second each) are corral's children now.
	orphans := 0
	for p := range childrenOf(pid) {
		if strings.HasSuffix(cmdline(p), "grandchild") {
			orphans++
		}
	}
	if orphans == 0 {
		t.Fatalf("no grandchild was re-parented to PID 1 (host pid %d); its children: %v", pid, childrenOf(pid))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := []string{}
		for p, st := range childrenOf(pid) {
			if cl := cmdline(p); st == 'Z' || strings.HasSuffix(cl, "grandchild") {
				left = append(left, fmt.Sprintf("%d %c %q", p, st, cl))
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphans of PID 1 not reaped: %v", left)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d orphans re-parented to corral as PID 1, all reaped", orphans)
	mustGet(t, addr, "/")
}

// TestContainerCgroupLimits: docker run --cpus and --memory reach -w auto
// and the herd's memory budget (90% of the limit), as --print-config and
// the start-up log say.
func TestContainerCgroupLimits(t *testing.T) {
	needDocker(t)
	for _, tc := range []struct {
		cpus, class string
		workers     int
	}{
		{"2", "goroutine", 2}, {"2", "sync", 5}, {"1", "goroutine", 1}, {"1", "sync", 3}, {"1.5", "event", 2},
	} {
		out := dockerT(t, "run", "--rm", "--network", "none", "--cpus", tc.cpus, "--memory", "512m", dockerImage,
			"--print-config", "-k", tc.class, "demo")
		if got := configValue(out, "workers"); got != strconv.Itoa(tc.workers) {
			t.Errorf("--cpus %s -k %s: workers = %s, want %d\n%s", tc.cpus, tc.class, got, tc.workers, out)
		}
		if want := fmt.Sprintf("the cgroup's CPU quota, %s, rounded up", tc.cpus); !strings.Contains(out, want) {
			t.Errorf("--cpus %s: --print-config does not say %q:\n%s", tc.cpus, want, out)
		}
		if want := "# Memory budget: 460.8 MiB for the herd, 90% of the cgroup's memory limit of 512.0 MiB"; !strings.Contains(out, want) {
			t.Errorf("--memory 512m: --print-config has no %q:\n%s", want, out)
		}
	}
	// The server logs the same at start, and runs that many workers.
	c, _, _ := serving(t, []string{"--cpus", "1", "--memory", "512m"}, "-k", "sync", "demo")
	c.waitLog(`Workers: auto = 3: 1 CPUs \(the cgroup's CPU quota, 1, rounded up\), 2 × CPUs \+ 1 for the sync worker`, 5*time.Second)
	c.waitLog(`Memory budget: 460.8 MiB for the herd`, time.Second)
	c.waitLog(`Ready: 3 workers serving`, 10*time.Second)
	c.waitLog(`Stop: at most 35s \(shutdown-delay 5s \+ graceful-timeout 30s\); the container's stop timeout \(terminationGracePeriodSeconds, docker stop -t\) should be 40 or more`, time.Second)
}

// TestContainerHealthcheck: the image's HEALTHCHECK (corral ctl ping, over
// the control socket at $CORRAL_CONTROL_SOCKET) turns the container healthy.
func TestContainerHealthcheck(t *testing.T) {
	needDocker(t)
	if hc := dockerT(t, "image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", dockerImage); hc != `["CMD","/corral","ctl","ping"]` {
		t.Fatalf("the image's health check is %s, want corral ctl ping", hc)
	}
	// The image's check, run every second instead of every 10 s.
	c, _, _ := serving(t, []string{"--health-interval", "1s", "--health-start-period", "1s"})
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := c.inspect("{{.State.Health.Status}}")
		if st == "healthy" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health %s after 30 s: %s", st, c.inspect("{{json .State.Health}}"))
		}
		time.Sleep(300 * time.Millisecond)
	}
	if log := c.inspect("{{range .State.Health.Log}}{{.ExitCode}} {{.Output}}{{end}}"); !strings.HasPrefix(log, "0 ") || !strings.Contains(log, "workers ready") {
		t.Errorf("the health check's output: %q", log)
	}
}

// TestContainerOwnHandler: examples/docker's image, a Go handler of one's
// own built into a FROM scratch image, serves and goes healthy through its
// own binary's probe.
func TestContainerOwnHandler(t *testing.T) {
	needDocker(t)
	c, addr, _ := servingImage(t, ownImage, []string{"--cpus", "1", "--health-interval", "1s", "--health-start-period", "1s"})
	if body := mustGet(t, addr, "/"); !strings.HasPrefix(body, "hello from pid ") {
		t.Errorf("GET /: %q", body)
	}
	c.waitLog(`Workers: auto = 1: 1 CPUs`, 5*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for c.inspect("{{.State.Health.Status}}") != "healthy" {
		if time.Now().After(deadline) {
			t.Fatalf("not healthy after 30 s: %s", c.inspect("{{json .State.Health}}"))
		}
		time.Sleep(300 * time.Millisecond)
	}
}
