package arbiter

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/control"
)

// The loop's side of the control socket on the fake system: requests are
// queued as the server's goroutines queue them, handleCommands acts.

// withControl gives h's arbiter a control server with no socket: the test
// queues the requests itself.
func withControl(h *decisionTest) {
	h.a.ctl.srv = newControlServer(nil, func() {}, h.a.log)
	h.a.ctl.started = time.Now()
}

// send queues req as a connection's goroutine does and returns where its
// answer comes.
func (h *decisionTest) send(req control.Request) chan control.Response {
	h.t.Helper()
	req.V = control.Version
	if err := req.Check(); err != nil {
		h.t.Fatalf("request %+v: %v", req, err)
	}
	cmd := &command{req: req, reply: make(chan control.Response, 1)}
	s := h.a.ctl.srv
	s.mu.Lock()
	s.queue = append(s.queue, cmd)
	s.mu.Unlock()
	return cmd.reply
}

// answer is the answer on ch, which must be there.
func (h *decisionTest) answer(ch chan control.Response) control.Response {
	h.t.Helper()
	select {
	case r := <-ch:
		return r
	default:
		h.t.Fatalf("no answer yet")
	}
	return control.Response{}
}

func (h *decisionTest) noAnswer(ch chan control.Response) {
	h.t.Helper()
	select {
	case r := <-ch:
		h.t.Fatalf("answered early: %+v", r)
	default:
	}
}

func TestControlWorkers(t *testing.T) {
	h := newDecisionTest(t, testConfig(2))
	withControl(h)
	h.boot()
	set, add, drop, tooFew := h.send(control.Request{Cmd: control.CmdWorkers, N: 3}),
		h.send(control.Request{Cmd: control.CmdWorkers, N: 2, Delta: true}),
		h.send(control.Request{Cmd: control.CmdWorkers, N: -1, Delta: true}),
		h.send(control.Request{Cmd: control.CmdWorkers, N: -9, Delta: true})
	h.a.handleCommands()
	for ch, want := range map[chan control.Response]string{set: "workers: 2 -> 3", add: "workers: 3 -> 5", drop: "workers: 5 -> 4"} {
		if r := h.answer(ch); !r.OK || r.Message != want || r.Arbiter != h.a.pid {
			t.Errorf("answer %+v, want %q", r, want)
		}
	}
	if r := h.answer(tooFew); r.OK || !strings.Contains(r.Error, "one at least") {
		t.Errorf("workers -9: %+v", r)
	}
	h.want(h.turn(), "spawn", "spawn")
}

func TestControlWorkerStopReplacesFirst(t *testing.T) {
	h := newDecisionTest(t, testConfig(2))
	withControl(h)
	pids := h.boot()
	ch := h.send(control.Request{Cmd: control.CmdWorkerStop, Pid: pids[0]})
	gone := h.send(control.Request{Cmd: control.CmdWorkerStop, Pid: 999})
	h.a.handleCommands()
	if r := h.answer(ch); !r.OK {
		t.Fatalf("worker stop: %+v", r)
	}
	if r := h.answer(gone); r.OK || !strings.Contains(r.Error, "no worker with pid 999") {
		t.Errorf("worker stop of no worker: %+v", r)
	}
	h.want(h.turn(), "spawn") // the replacement first
	h.ready(h.sys.pids[2])
	h.want(h.turn(), "stop 101 TERM")
	h.wantLog("Worker (pid:101) asked to stop by corral ctl; replacing it")
}

func TestControlReloadWaitsForItsOutcome(t *testing.T) {
	h := newDecisionTest(t, testConfig(2))
	withControl(h)
	h.boot()
	started := h.send(control.Request{Cmd: control.CmdReload})
	h.a.handleCommands()
	if r := h.answer(started); !r.OK || r.Result != control.ResultStarted || r.Message != "reloading: generation 2, 2 workers" {
		t.Errorf("reload without a wait: %+v", r)
	}
	h.want(h.turn(), "spawn", "spawn")
	waiting := h.send(control.Request{Cmd: control.CmdReload, Wait: 60})
	h.a.handleCommands() // generation 3 supersedes 2
	h.noAnswer(waiting)
	h.want(h.turn(), "stop 103 TERM", "stop 104 TERM", "spawn", "spawn")
	h.ready(105, 106)
	h.turn()
	r := h.answer(waiting)
	if !r.OK || r.Result != control.ResultComplete || !strings.HasPrefix(r.Message, "complete: generation 3, 2 workers serving") {
		t.Errorf("reload --wait: %+v", r)
	}
}

func TestControlReloadWaitReportsAFailedBoot(t *testing.T) {
	h := newDecisionTest(t, testConfig(2))
	withControl(h)
	h.boot()
	ch := h.send(control.Request{Cmd: control.CmdReload, Wait: 60})
	h.a.handleCommands()
	h.want(h.turn(), "spawn", "spawn")
	h.exit(103, exitCode(3))
	h.turn()
	r := h.answer(ch)
	if r.OK || r.Result != control.ResultFailed || !strings.Contains(r.Error, "failed: new worker (pid:103) could not boot: exited with code 3; the old workers keep serving") {
		t.Errorf("a failed reload: %+v", r)
	}
}

func TestControlReloadWaitRunsOut(t *testing.T) {
	h := newDecisionTest(t, testConfig(1))
	withControl(h)
	h.boot()
	ch := h.send(control.Request{Cmd: control.CmdReload, Wait: 0.001})
	h.a.handleCommands()
	h.noAnswer(ch)
	if h.a.controlDue().IsZero() {
		t.Errorf("the loop is not told to wake for the wait's end")
	}
	time.Sleep(5 * time.Millisecond)
	h.a.handleCommands()
	if r := h.answer(ch); r.OK || r.Result != control.ResultPending || !strings.Contains(r.Error, "still under way") {
		t.Errorf("a wait that ran out: %+v", r)
	}
}

func TestControlRefusesWhileStopping(t *testing.T) {
	h := newDecisionTest(t, testConfig(1))
	withControl(h)
	h.boot()
	waiting := h.send(control.Request{Cmd: control.CmdReload, Wait: 60})
	h.a.handleCommands()
	h.a.stop(false)
	reload, ping, status := h.send(control.Request{Cmd: control.CmdReload}), h.send(control.Request{Cmd: control.CmdPing}),
		h.send(control.Request{Cmd: control.CmdStatus})
	h.a.handleCommands()
	for _, ch := range []chan control.Response{waiting, reload, ping} {
		if r := h.answer(ch); r.OK || !strings.Contains(r.Error, "stopping") {
			t.Errorf("while stopping: %+v", r)
		}
	}
	if r := h.answer(status); !r.OK || r.Status.State != "stopping" || len(r.Status.Workers) != 1 {
		t.Errorf("status while stopping: %+v", r)
	}
}

// TestControlServer runs the goroutines' side on a real socket: the peer
// check passes for this user, a bad line is answered, a request reaches
// the queue and its answer comes back.
func TestControlServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.ctl")
	l, err := bindControl(ControlOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	nl, err := l.NetListener()
	if err != nil {
		t.Fatal(err)
	}
	woken := make(chan struct{}, 16)
	h := newDecisionTest(t, testConfig(1))
	s := newControlServer(nl.(*net.UnixListener), func() { woken <- struct{}{} }, h.a.log)
	s.start()
	loop := make(chan struct{})
	go func() { // the loop: answer each queued request
		defer close(loop)
		for range woken {
			for _, cmd := range s.take() {
				cmd.reply <- control.Response{V: 1, OK: true, Message: "did " + cmd.req.Cmd}
			}
			return
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("{oops\n{\"cmd\":\"ping\"}\n"))
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got string
	for strings.Count(got, "\n") < 2 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (so far %q)", err, got)
		}
		got += string(buf[:n])
	}
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if !strings.Contains(lines[0], `"error":"bad request: `) || lines[1] != `{"v":1,"ok":true,"message":"did ping","arbiter":0}` {
		t.Errorf("answers %q", lines)
	}
	<-loop
	for _, cmd := range s.close(control.Response{Error: "exiting"}) {
		t.Errorf("left queued: %+v", cmd.req)
	}
	s.wait(time.Second)
	if r := s.submit(control.Request{V: 1, Cmd: control.CmdPing}); r.Error != "exiting" {
		t.Errorf("a request after close: %+v", r)
	}
	// A second arbiter on the same path is refused, naming nothing it
	// could not learn.
	if _, err := bindControl(ControlOptions{Path: path}); err == nil {
		t.Errorf("bound a live control socket twice")
	}
}

func TestControlFileName(t *testing.T) {
	for _, c := range [][3]string{
		{"", "127.0.0.1:8000", "corral-127.0.0.1_8000.ctl"},
		{"", "/run/app.sock", "corral-run_app.sock.ctl"},
		{"shop api", "127.0.0.1:8000", "corral-shop_api.ctl"},
		{"", "[::1]:80", "corral-1__80.ctl"},
	} {
		if got := controlFileName(c[0], c[1]); got != c[2] {
			t.Errorf("controlFileName(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}

func TestControlReloadOfABadConfiguration(t *testing.T) {
	h := newDecisionTest(t, testConfig(1))
	withControl(h)
	h.boot()
	h.a.Reload = func() (*Config, error) { return nil, errors.New("config file c.toml: line 1: bad key") }
	ch := h.send(control.Request{Cmd: control.CmdReload, Wait: 60})
	h.a.handleCommands()
	r := h.answer(ch)
	if r.OK || r.Result != control.ResultFailed || r.Error != "the configuration did not load: config file c.toml: line 1: bad key" {
		t.Errorf("a reload whose configuration does not load: %+v", r)
	}
	if h.a.generation != 1 || len(h.a.ctl.reloads) != 0 {
		t.Errorf("generation %d, %d reloads waiting; want 1, none", h.a.generation, len(h.a.ctl.reloads))
	}
}

// TestControlConnectionCap: past maxControlConns connections, the next
// waits in the backlog until one closes.
func TestControlConnectionCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.ctl")
	l, err := bindControl(ControlOptions{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	nl, _ := l.NetListener()
	h := newDecisionTest(t, testConfig(1))
	var s *controlServer
	s = newControlServer(nl.(*net.UnixListener), func() {
		for _, cmd := range s.take() {
			cmd.reply <- control.Response{V: 1, OK: true}
		}
	}, h.a.log)
	s.start()
	defer func() { s.close(control.Response{}); s.wait(time.Second) }()
	var held []net.Conn
	for range maxControlConns {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	last, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer last.Close()
	last.Write([]byte(`{"cmd":"ping"}` + "\n"))
	buf := make([]byte, 256)
	last.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := last.Read(buf); err == nil {
		t.Fatalf("connection %d answered at once: %q", maxControlConns+1, buf[:n])
	}
	held[0].Close()
	last.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := last.Read(buf); err != nil || !strings.Contains(string(buf[:n]), `"ok":true`) {
		t.Fatalf("after a connection closed: %q %v", buf[:n], err)
	}
	for _, c := range held[1:] {
		c.Close()
	}
}
