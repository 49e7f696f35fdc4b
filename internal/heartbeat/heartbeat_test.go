package heartbeat

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/scoreboard"
	"golang.org/x/sys/unix"
)

// TestBeatAcrossProcesses has a child process beat and count a request on
// its scoreboard through an inherited memfd, and checks that the parent
// sees both.
func TestBeatAcrossProcesses(t *testing.T) {
	if fd := os.Getenv("HEARTBEAT_CHILD_FD"); fd != "" {
		n, _ := strconv.Atoi(fd)
		s, err := Open(n)
		if err != nil {
			t.Fatal(err)
		}
		s.Beat()
		b := s.Board()
		b.Init()
		b.SetState(scoreboard.Idle)
		b.Done(b.Begin(Now(), "GET", "/"), 204, time.Millisecond)
		return
	}
	s, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Make the slot look stale, then let the child beat.
	*s.word() = Now() - int64(time.Hour)
	if s.Since() < 59*time.Minute {
		t.Fatalf("stale slot reads %s", s.Since())
	}
	f := os.NewFile(uintptr(dupNoCloexec(t, s.FD())), "hb")
	cmd := exec.Command(os.Args[0], "-test.run=^TestBeatAcrossProcesses$")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = append(os.Environ(), "HEARTBEAT_CHILD_FD=3")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	f.Close()
	if d := s.Since(); d > 10*time.Second {
		t.Fatalf("the child's beat was not seen: last beat %s ago", d)
	}
	if c := s.Board().Read(); !c.Valid || c.State != scoreboard.Idle || c.Requests[1] != 1 {
		t.Fatalf("the child's scoreboard reads valid %v, state %s, 2xx %d; want true, idle, 1", c.Valid, c.State, c.Requests[1])
	}
}

func dupNoCloexec(t *testing.T, fd int) int {
	n, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNowIsMonotonic(t *testing.T) {
	a := Now()
	time.Sleep(time.Millisecond)
	if b := Now(); b <= a {
		t.Fatalf("Now went from %d to %d", a, b)
	}
}

// TestNowIsTheSystemMonotonicClock checks Now against clock_gettime
// itself: the arbiter and its workers compare readings across processes.
func TestNowIsTheSystemMonotonicClock(t *testing.T) {
	for range 100 {
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		before := ts.Nano()
		now := Now()
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		after := ts.Nano()
		// A few microseconds of slack for the offset taken at start.
		if now < before-10_000 || now > after+10_000 {
			t.Fatalf("Now() = %d, not between clock_gettime's %d and %d", now, before, after)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestOldMemfdHasNoBoard: a memfd of the old eight bytes (a worker binary
// from before the scoreboard, beside a newer one during a reload) maps as
// a heartbeat without a board.
func TestOldMemfdHasNoBoard(t *testing.T) {
	fd, err := unix.MemfdCreate("old-heartbeat", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, 8); err != nil {
		t.Fatal(err)
	}
	s, err := Open(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Beat()
	if s.Board() != nil || s.Since() > time.Second {
		t.Fatalf("board %v, last beat %s ago; want none, just now", s.Board(), s.Since())
	}
}

// TestMonoOfIsNow: a reading of this process's clock, as CLOCK_MONOTONIC
// nanoseconds, is what Now says at that moment.
func TestMonoOfIsNow(t *testing.T) {
	before := Now()
	m := MonoOf(time.Now())
	after := Now()
	if m < before || m > after {
		t.Fatalf("MonoOf(time.Now()) = %d, not between Now's %d and %d", m, before, after)
	}
}
