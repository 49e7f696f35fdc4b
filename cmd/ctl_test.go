package cmd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/control"
)

func TestCtlOptions(t *testing.T) {
	o, rest, err := parseCtlOptions([]string{"--socket", "/run/a.ctl", "--json", "reload", "--wait"})
	if err != nil || o.socket != "/run/a.ctl" || !o.json || strings.Join(rest, " ") != "reload --wait" {
		t.Errorf("got %+v %q %v", o, rest, err)
	}
	if o, _, err := parseCtlOptions([]string{"--socket=/x", "status"}); err != nil || o.socket != "/x" {
		t.Errorf("--socket=: %+v %v", o, err)
	}
	for _, args := range [][]string{{}, {"--json"}, {"--socket"}, {"--frob", "status"}} {
		if _, _, err := parseCtlOptions(args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	if _, _, err := parseCtlOptions([]string{"--help"}); err != errHelp {
		t.Errorf("--help: %v", err)
	}
}

func TestCtlExitCodes(t *testing.T) {
	p := &Program{Name: "corral"}
	var out, errOut bytes.Buffer
	if code := p.ctl([]string{"frobnicate"}, &out, &errOut); code != ctlNoConnect || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Errorf("a bad command: exit %d, %q", code, errOut.String())
	}
	errOut.Reset()
	missing := filepath.Join(t.TempDir(), "none.ctl")
	if code := p.ctl([]string{"--socket", missing, "ping"}, &out, &errOut); code != ctlNoConnect || !strings.Contains(errOut.String(), "cannot connect to "+missing) {
		t.Errorf("no arbiter: exit %d, %q", code, errOut.String())
	}
	out.Reset()
	if code := p.ctl([]string{"--help"}, &out, &errOut); code != ctlDone || !strings.Contains(out.String(), "worker stop PID") {
		t.Errorf("--help: exit %d, %q", code, out.String())
	}
}

func TestCtlFindsTheSocket(t *testing.T) {
	t.Setenv("CORRAL_CONTROL_SOCKET", "")
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	if _, err := findControlSocket(""); err == nil || !strings.Contains(err.Error(), "no control socket in "+dir) {
		t.Errorf("none: %v", err)
	}
	one := filepath.Join(dir, "corral-a.ctl")
	os.WriteFile(one, nil, 0o600)
	if got, err := findControlSocket(""); err != nil || got != one {
		t.Errorf("one: %q %v", got, err)
	}
	os.WriteFile(filepath.Join(dir, "corral-b.ctl"), nil, 0o600)
	if _, err := findControlSocket(""); err == nil || !strings.Contains(err.Error(), "2 control sockets") {
		t.Errorf("two: %v", err)
	}
	t.Setenv("CORRAL_CONTROL_SOCKET", "/run/x.ctl")
	if got, _ := findControlSocket(""); got != "/run/x.ctl" {
		t.Errorf("from the environment: %q", got)
	}
	if got, _ := findControlSocket("/given"); got != "/given" {
		t.Errorf("given: %q", got)
	}
}

func TestCtlStatusTable(t *testing.T) {
	st := &control.Status{Pid: 10, Version: "1.2", Uptime: 125, Generation: 3, Target: 2, State: "running",
		Workers: []control.Worker{
			{Slot: 0, Pid: 11, Generation: 3, Age: 4, State: "busy", Current: true, Uptime: 61, Requests: 1041, InFlight: 1,
				Request: "GET /slow", RequestFor: 2.5, RSS: 13 << 20, PSS: 5 << 20, LastBeat: 0.25, Scoreboard: true},
			{Slot: 1, Pid: 12, Generation: 2, Age: 3, State: "draining", Uptime: 3700, RSS: 900 << 10, LastBeat: 1},
		}}
	var b bytes.Buffer
	printStatus(&b, st, map[int]float64{11: 12.5})
	want := `arbiter pid 10, version 1.2, up 2m05s, generation 3, target 2 workers, running
SLOT  PID  GEN  STATE     AGE  UPTIME  REQUESTS  REQ/S  IN FLIGHT  REQUEST    FOR    RSS    PSS   HEARTBEAT
0     11   3    busy      4    1m01s   1041      12.5   1          GET /slow  2.50s  13.0M  5.0M  0.25s ago
1*    12   2    draining  3    1h01m   -         -      -          -          -      900K   -     1.00s ago
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestCtlRates(t *testing.T) {
	rt := &rateTracker{last: map[int]sample{}}
	t0 := time.Unix(100, 0)
	st := &control.Status{Workers: []control.Worker{{Pid: 1, Requests: 10}}}
	if r := rt.rates(st, t0); len(r) != 0 {
		t.Errorf("first look: %v, want no rate yet", r)
	}
	st.Workers = []control.Worker{{Pid: 1, Requests: 30}, {Pid: 2, Requests: 5}}
	if r := rt.rates(st, t0.Add(2*time.Second)); r[1] != 10 || len(r) != 1 {
		t.Errorf("rates %v, want 10/s for pid 1 and none for the new pid 2", r)
	}
}

// TestControlSocketSetting: --control-socket's default folder, none, and
// a relative path made absolute.
func TestControlSocketSetting(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "run"), 0o755)
	t.Chdir(dir)
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("CORRAL_CONTROL_SOCKET", "")
	load := func(args ...string) *settings {
		t.Helper()
		s, err := testProgram().parse(append([]string{"corral"}, args...), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if o := load().arbiter.Control; o.Path != "" || o.Dir != fmt.Sprintf("/tmp/corral-%d", os.Getuid()) || !o.PrivateDir {
		t.Errorf("default: %+v", o)
	}
	if o := load("-p", "run/app.pid").arbiter.Control; o.Dir != filepath.Join(dir, "run") || o.PrivateDir {
		t.Errorf("with a pid file: %+v", o)
	}
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	if o := load().arbiter.Control; o.Dir != "/run/user/1000" || o.PrivateDir {
		t.Errorf("with XDG_RUNTIME_DIR: %+v", o)
	}
	if o := load("--control-socket", "none").arbiter.Control; o.Path != "" || o.Dir != "" {
		t.Errorf("none: %+v", o)
	}
	s := load("--control-socket", "c.ctl")
	if o := s.arbiter.Control; o.Path != filepath.Join(dir, "c.ctl") || o.Version == "" || !strings.Contains(o.Settings(), `control-socket = "c.ctl"`) {
		t.Errorf("a relative path: %+v", o)
	}
	if _, err := testProgram().parse([]string{"corral", "--control-socket", "/nonexistent/c.ctl"}, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "--control-socket /nonexistent/c.ctl: folder /nonexistent: does not exist") {
		t.Errorf("a missing folder: %v", err)
	}
}
