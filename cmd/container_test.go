package cmd

import (
	"io"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-server/corral/arbiter"
	"github.com/corral-server/corral/internal/cgroup"
)

func TestMemoryBudget(t *testing.T) {
	limited := cgroup.Limits{Affinity: 2, Memory: 512 << 20}
	for _, c := range []struct {
		v      string
		l      cgroup.Limits
		want   int64
		note   string
		errSub string
	}{
		{v: "auto", l: limited, want: 483183820, note: "460.8 MiB for the herd, 90% of the cgroup's memory limit of 512.0 MiB"},
		{v: "auto", l: cgroup.Limits{Affinity: 2}, want: 0, note: "none"},
		{v: "50%", l: limited, want: 256 << 20, note: "256.0 MiB"},
		{v: "1G", l: limited, want: 1 << 30, note: "1024.0 MiB"},
		{v: "300MiB", want: 300 << 20, note: "300.0 MiB"},
		{v: "2GB", want: 2e9},
		{v: "4096", want: 4096},
		{v: "0", want: 0},
		{v: "12x", errSub: `got "12x"`},
		{v: "-1M", errSub: "want bytes"},
		{v: "150%", errSub: "from 0 to 100%"},
	} {
		got, note, err := memoryBudget(c.v, c.l)
		switch {
		case c.errSub != "":
			if err == nil || !strings.Contains(err.Error(), c.errSub) {
				t.Errorf("%q: error %v, want %q", c.v, err, c.errSub)
			}
		case err != nil || got != c.want || !strings.Contains(note, c.note):
			t.Errorf("%q: %d %q %v; want %d, a note with %q", c.v, got, note, err, c.want, c.note)
		}
	}
}

func TestWorkersAuto(t *testing.T) {
	p := testProgram()
	s, err := p.parse([]string{"corral", "-w", "auto", "-k", "sync", "--print-config"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cpus := s.limits.CPUs()
	if s.arbiter.Workers != 2*cpus+1 || s.values["workers"] != strconv.Itoa(2*cpus+1) {
		t.Fatalf("-w auto -k sync on %d CPUs: %d workers (printed %s), want %d", cpus, s.arbiter.Workers, s.values["workers"], 2*cpus+1)
	}
	if !strings.HasPrefix(s.notes[0], "Workers: auto = ") {
		t.Fatalf("notes %q: want the auto workers first", s.notes)
	}
	for _, bad := range []string{"many", "-3", "0"} {
		if _, err := p.parse([]string{"corral", "-w", bad}, io.Discard); err == nil {
			t.Errorf("-w %s: no error", bad)
		}
	}
}

func TestStopNote(t *testing.T) {
	s, err := testProgram().parse([]string{"corral", "--shutdown-delay", "10", "--graceful-timeout", "30"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.arbiter.ShutdownDelay != 10*time.Second {
		t.Fatalf("ShutdownDelay %s", s.arbiter.ShutdownDelay)
	}
	want := "Stop: at most 40s (shutdown-delay 10s + graceful-timeout 30s); the container's stop timeout (terminationGracePeriodSeconds, docker stop -t) should be 45 or more"
	if got := s.notes[len(s.notes)-1]; got != want {
		t.Fatalf("note %q, want %q", got, want)
	}
	if _, err := testProgram().parse([]string{"corral", "--shutdown-delay", "-1"}, io.Discard); err == nil {
		t.Error("--shutdown-delay -1: no error")
	}
}

func TestStopCode(t *testing.T) {
	for _, c := range []struct {
		st   arbiter.Stopped
		want int
	}{
		{arbiter.Stopped{Signal: syscall.SIGTERM}, 0},
		{arbiter.Stopped{HandedOver: true}, 0},
		{arbiter.Stopped{Signal: syscall.SIGTERM, CutShort: 2}, 4},
		{arbiter.Stopped{Signal: syscall.SIGINT}, 130},
		{arbiter.Stopped{Signal: syscall.SIGQUIT, CutShort: 1}, 131},
	} {
		if got := stopCode(c.st); got != c.want {
			t.Errorf("%+v: exit code %d, want %d", c.st, got, c.want)
		}
	}
}

func TestReadyzURL(t *testing.T) {
	for bind, want := range map[string]string{
		"0.0.0.0:9100":   "http://127.0.0.1:9100/readyz",
		":9100":          "http://127.0.0.1:9100/readyz",
		"127.0.0.2:9":    "http://127.0.0.2:9/readyz",
		"[::]:9100":      "http://[::1]:9100/readyz",
		"localhost:9100": "http://localhost:9100/readyz",
	} {
		if got := readyzURL(bind); got != want {
			t.Errorf("readyzURL(%q) = %q, want %q", bind, got, want)
		}
	}
}
