package heartbeat

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBeatAcrossProcesses has a child process beat through an inherited
// memfd, and checks that the parent sees it.
func TestBeatAcrossProcesses(t *testing.T) {
	if fd := os.Getenv("HEARTBEAT_CHILD_FD"); fd != "" {
		n, _ := strconv.Atoi(fd)
		s, err := Open(n)
		if err != nil {
			t.Fatal(err)
		}
		s.Beat()
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
