package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The container tests run corral in a real container engine: Debian's
// docker.io (make deps installs it). When no engine answers on the tests'
// own socket, the tests start dockerd there, always without any network
// of its own (--bridge=none, no iptables, no forwarding, no masquerade),
// and every container runs with --network host: no bridge, no container
// address, all traffic on 127.0.0.1. The images are FROM scratch with the
// binaries built here, so nothing is pulled. If dockerd cannot start, the
// tests fail with its log, not skip.

const (
	dockerRoot  = "/var/lib/corral-docker" // the test engine's data, exec root, socket, pid file and log
	dockerImage = "corral-test/corral:it"
	ownImage    = "corral-test/own-handler:it" // examples/docker
)

// engine is the test container engine, started (and its image built) once
// for the test binary.
var engine struct {
	once    sync.Once
	err     error
	cli     string        // the docker client
	host    string        // DOCKER_HOST
	started *exec.Cmd     // dockerd, when the tests started it
	exited  chan struct{} // closed when that dockerd has exited (its Wait returned)
	mu      sync.Mutex    // serializes image builds
	built   bool
}

// stopDockerd stops the dockerd the tests started, if they did; TestMain
// runs it at the end.
func stopDockerd() {
	d := engine.started
	if d == nil {
		return
	}
	d.Process.Signal(syscall.SIGTERM)
	select {
	case <-engine.exited:
	case <-time.After(15 * time.Second):
		d.Process.Kill()
	}
}

// docker runs the docker client against the test engine.
func docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, engine.cli, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+engine.host)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

func dockerT(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := docker(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// needDocker starts the engine if need be and builds the test image; it
// fails the test, with the reason, when it cannot.
func needDocker(t *testing.T) {
	t.Helper()
	engine.once.Do(func() { engine.err = startEngine() })
	if engine.err != nil {
		t.Fatalf("container engine: %v", engine.err)
	}
	engine.mu.Lock()
	defer engine.mu.Unlock()
	if !engine.built {
		if err := buildImage(t); err != nil {
			t.Fatalf("build the test image: %v", err)
		}
		engine.built = true
	}
}

func startEngine() error {
	engine.cli = "/usr/bin/docker" // docker.io's client, of the daemon's version
	if _, err := os.Stat(engine.cli); err != nil {
		cli, lerr := exec.LookPath("docker")
		if lerr != nil {
			return errors.New("no docker client: install docker.io (make deps does)")
		}
		engine.cli = cli
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/dockerd"); serr != nil {
			return errors.New("no dockerd: install docker.io (make deps does)")
		}
		dockerd = "/usr/sbin/dockerd"
	}
	sock := filepath.Join(dockerRoot, "docker.sock")
	engine.host = "unix://" + sock
	if answers(10 * time.Second) {
		return nil // started before, by an earlier run: the same flags
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("dockerd needs root; running as uid %d", os.Geteuid())
	}
	if err := os.MkdirAll(dockerRoot, 0o700); err != nil {
		return err
	}
	var why []string
	// overlay2 first; vfs where overlay cannot mount (an overlay root).
	for _, driver := range []string{"overlay2", "vfs"} {
		logPath := filepath.Join(dockerRoot, "dockerd-"+driver+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			return err
		}
		d := exec.Command(dockerd,
			"--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
			"--storage-driver="+driver,
			"--data-root="+filepath.Join(dockerRoot, "data-"+driver), "--exec-root="+filepath.Join(dockerRoot, "exec"),
			"--pidfile="+filepath.Join(dockerRoot, "dockerd.pid"), "-H", engine.host)
		d.Stdout, d.Stderr = logf, logf
		d.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // its own session: no signal of ours reaches it
		if err := d.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start dockerd: %v", err)
		}
		exited := make(chan struct{})
		go func() { d.Wait(); close(exited) }()
		up := false
		deadline := time.Now().Add(60 * time.Second)
		for !up && time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Now()
				continue
			case <-time.After(300 * time.Millisecond):
			}
			up = answers(5 * time.Second)
		}
		logf.Close()
		if up {
			engine.started, engine.exited = d, exited
			return nil
		}
		d.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			d.Process.Kill()
			<-exited
		}
		b, _ := os.ReadFile(logPath)
		why = append(why, fmt.Sprintf("--storage-driver=%s: %s", driver, tail(string(b), 8)))
	}
	return fmt.Errorf("dockerd did not start:\n%s", strings.Join(why, "\n"))
}

// answers reports whether the test engine answers within timeout.
func answers(timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := docker(ctx, "info", "--format", "{{.ServerVersion}}")
	return err == nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// buildImage builds the test images: the final stage of the repo's
// Dockerfile and of examples/docker's.
func buildImage(t *testing.T) error {
	err := buildStage(t, "Dockerfile", "COPY --from=build /out/corral /corral\n", dockerImage,
		[][2]string{{"corral", "./cmd/corral"}, {"orphans", "./integration/testdata/orphans"}})
	if err != nil {
		return err
	}
	return buildStage(t, "examples/docker/Dockerfile", "COPY --from=build /out/server /server\n", ownImage,
		[][2]string{{"server", "./examples/docker"}})
}

// buildStage builds a Dockerfile's final stage (FROM scratch to the end:
// its environment, user, health check, entry point) as tag, with static
// binaries built here in place of what copyLine takes from the build
// stage: each binary [name, package] goes to /name.
func buildStage(t *testing.T, dockerfile, copyLine, tag string, binaries [][2]string) error {
	df, err := os.ReadFile(filepath.Join(repoRoot, dockerfile))
	if err != nil {
		return err
	}
	i := bytes.LastIndex(df, []byte("\nFROM scratch\n"))
	if i < 0 {
		return fmt.Errorf("%s: no final FROM scratch stage", dockerfile)
	}
	stage := string(df[i+1:])
	if !strings.Contains(stage, copyLine) {
		return fmt.Errorf("%s's final stage has no %q", dockerfile, strings.TrimSpace(copyLine))
	}
	var copies strings.Builder
	dir := t.TempDir()
	for _, b := range binaries {
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, b[0]), b[1])
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v: %s", b[1], err, out)
		}
		fmt.Fprintf(&copies, "COPY %s /%s\n", b[0], b[0])
	}
	stage = strings.Replace(stage, copyLine, copies.String(), 1)
	// The stage's other copies from the build stage are empty folders
	// (mkdir in the build stage): make them here.
	folders := regexp.MustCompile(`(?m)^COPY --from=build( --chown=\S+)? /out/(\S+) (\S+)$`)
	for _, m := range folders.FindAllStringSubmatch(stage, -1) {
		if err := os.MkdirAll(filepath.Join(dir, m[2]), 0o755); err != nil {
			return err
		}
	}
	stage = folders.ReplaceAllString(stage, "COPY$1 $2 $3")
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(stage), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, err = docker(ctx, "build", "-q", "-t", tag, dir)
	return err
}

// container is one container a test runs.
type container struct {
	t  *testing.T
	id string
}

// runContainer starts a container of the test image on the host's
// network (never a bridge), with dockerArgs before the image and args
// after it; it is removed when the test ends.
func runContainer(t *testing.T, dockerArgs []string, args ...string) *container {
	t.Helper()
	return runImage(t, dockerImage, dockerArgs, args...)
}

// runImage is runContainer for any of the test images.
func runImage(t *testing.T, image string, dockerArgs []string, args ...string) *container {
	t.Helper()
	all := append([]string{"run", "-d", "--network", "host"}, dockerArgs...)
	all = append(append(all, image), args...)
	c := &container{t: t, id: dockerT(t, all...)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("container log:\n%s", c.logs())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		docker(ctx, "rm", "-f", c.id)
	})
	return c
}

func (c *container) logs() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := docker(ctx, "logs", c.id)
	return out
}

func (c *container) inspect(format string) string {
	return dockerT(c.t, "inspect", "--format", format, c.id)
}

// hostPid is the host's pid of the container's PID 1.
func (c *container) hostPid() int {
	pid, _ := strconv.Atoi(c.inspect("{{.State.Pid}}"))
	if pid <= 0 {
		c.t.Fatalf("container %s has no running PID 1", c.id)
	}
	return pid
}

// waitLog waits for a line of the container's log to match re.
func (c *container) waitLog(re string, timeout time.Duration) []string {
	c.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		if m := rx.FindStringSubmatch(c.logs()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("container log has no %q after %s", re, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePort is a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serving runs a container of the image as it ships (its CMD, demo)
// on free loopback ports, and waits until it serves.
func serving(t *testing.T, dockerArgs []string, args ...string) (c *container, addr, metricsAddr string) {
	t.Helper()
	return servingImage(t, dockerImage, dockerArgs, args...)
}

// servingImage is serving for any of the test images.
func servingImage(t *testing.T, image string, dockerArgs []string, args ...string) (c *container, addr, metricsAddr string) {
	t.Helper()
	addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	metricsAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dockerArgs = append([]string{"-e", "CORRAL_BIND=" + addr, "-e", "CORRAL_METRICS_BIND=" + metricsAddr}, dockerArgs...)
	c = runImage(t, image, dockerArgs, args...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _, _ := get(addr, "/"); code == 200 {
			return c, addr, metricsAddr
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container does not serve at %s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// procStat is a process's state and parent, from the host's /proc.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0][0], ppid, true
}

// childrenOf lists the host pids whose parent is pid, with their states.
func childrenOf(pid int) map[int]byte {
	out := map[int]byte{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, pp, ok := procStat(p); ok && pp == pid {
			out[p] = st
		}
	}
	return out
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(bytes.TrimRight(b, "\x00")), "\x00", " ")
}
