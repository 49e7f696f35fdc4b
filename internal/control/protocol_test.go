package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		args string
		want Request
	}{
		{"status", Request{V: 1, Cmd: CmdStatus}},
		{"top", Request{V: 1, Cmd: CmdStatus}},
		{"listeners", Request{V: 1, Cmd: CmdListeners}},
		{"ping", Request{V: 1, Cmd: CmdPing}},
		{"config", Request{V: 1, Cmd: CmdConfig}},
		{"reopen-logs", Request{V: 1, Cmd: CmdReopenLogs}},
		{"reload", Request{V: 1, Cmd: CmdReload}},
		{"reload --wait", Request{V: 1, Cmd: CmdReload, Wait: DefaultWait.Seconds()}},
		{"reload --wait=30s", Request{V: 1, Cmd: CmdReload, Wait: 30}},
		{"reload --canary 2", Request{V: 1, Cmd: CmdReload, Canary: 2}},
		{"reload --wait --canary=1", Request{V: 1, Cmd: CmdReload, Wait: DefaultWait.Seconds(), Canary: 1}},
		{"upgrade --wait=2.5", Request{V: 1, Cmd: CmdUpgrade, Wait: 2.5}},
		{"workers 4", Request{V: 1, Cmd: CmdWorkers, N: 4}},
		{"workers +2", Request{V: 1, Cmd: CmdWorkers, N: 2, Delta: true}},
		{"workers -1", Request{V: 1, Cmd: CmdWorkers, N: -1, Delta: true}},
		{"worker stop 123", Request{V: 1, Cmd: CmdWorkerStop, Pid: 123}},
		{"stop", Request{V: 1, Cmd: CmdStop}},
		{"stop --quick", Request{V: 1, Cmd: CmdStop, Quick: true}},
	} {
		got, err := Parse(strings.Fields(c.args))
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.args, got, err, c.want)
		}
		if err := got.Check(); err != nil {
			t.Errorf("Parse(%q) gives a request Check refuses: %v", c.args, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for args, want := range map[string]string{
		"":                   "no command",
		"frobnicate":         `unknown command "frobnicate"`,
		"workers":            "one count",
		"workers 0":          "1 or more",
		"workers +0":         "changes nothing",
		"workers four":       "no count",
		"workers 1 2":        "one count",
		"worker stop":        "worker stop PID",
		"worker kill 12":     "worker stop PID",
		"worker stop x":      "no pid",
		"reload --now":       "unknown option",
		"reload --wait=soon": "a duration",
		"reload --wait=-1s":  "a duration",
		"stop --slowly":      "unknown option",
		"status extra":       "no arguments",
	} {
		_, err := Parse(strings.Fields(args))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q): %v, want an error with %q", args, err, want)
		}
	}
}

func TestCheck(t *testing.T) {
	r := Request{Cmd: CmdStatus} // a hand-written request without "v"
	if err := r.Check(); err != nil || r.V != 1 {
		t.Errorf("no version: %v, v %d; want accepted as version 1", err, r.V)
	}
	for _, c := range []struct {
		r    Request
		want string
	}{
		{Request{V: 2, Cmd: CmdStatus}, "newer"},
		{Request{V: 1}, `no "cmd"`},
		{Request{V: 1, Cmd: "rm -rf"}, "unknown command"},
		{Request{V: 1, Cmd: CmdWorkers, N: 0}, "1 or more"},
		{Request{V: 1, Cmd: CmdWorkerStop}, "wants a pid"},
		{Request{V: 1, Cmd: CmdReload, Wait: -1}, "0 or more"},
		{Request{V: 1, Cmd: CmdReload, Canary: -1}, "canary"},
		{Request{V: 1, Cmd: CmdUpgrade, Canary: 1}, "canary"},
	} {
		if err := c.r.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%+v): %v, want an error with %q", c.r, err, c.want)
		}
	}
}

// The wire: what a script sends (no "v", spaces) decodes, and an answer
// is one line of JSON.
func TestWire(t *testing.T) {
	var r Request
	if err := json.Unmarshal([]byte(`{ "cmd": "workers", "n": 3 }`), &r); err != nil || r.Check() != nil || r.N != 3 {
		t.Fatalf("hand-written request: %+v %v", r, err)
	}
	var b bytes.Buffer
	if err := WriteLine(&b, Response{V: Version, OK: true, Message: "workers: 2 -> 3", Arbiter: 7}); err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"ok":true,"message":"workers: 2 -> 3","arbiter":7}` + "\n"
	if b.String() != want {
		t.Errorf("answer line %q, want %q", b.String(), want)
	}
}

func TestReadLine(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("{\"cmd\":\"ping\"}\n{\"cmd\":"), 16)
	line, err := ReadLine(br)
	if err != nil || string(line) != `{"cmd":"ping"}` {
		t.Fatalf("first line %q, %v", line, err)
	}
	if _, err := ReadLine(br); err != io.ErrUnexpectedEOF {
		t.Errorf("a line cut short: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := ReadLine(bufio.NewReader(strings.NewReader(""))); err != io.EOF {
		t.Errorf("nothing: %v, want io.EOF", err)
	}
	long := strings.Repeat("x", MaxLine+10) + "\n"
	if _, err := ReadLine(bufio.NewReader(strings.NewReader(long))); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("a line past MaxLine: %v", err)
	}
}
