package tickets

import (
	"os"
	"os/exec"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestKeysAcrossProcesses has a child map the memory through an inherited
// fd and check the keys the parent published, newest first.
func TestKeysAcrossProcesses(t *testing.T) {
	if fd := os.Getenv("TICKETS_CHILD_FD"); fd != "" {
		n, _ := strconv.Atoi(fd)
		s, err := Open(n)
		if err != nil {
			t.Fatal(err)
		}
		keys, _, err := s.Read()
		if err != nil || len(keys) != 2 || keys[0][0] != 2 || keys[1][0] != 1 {
			t.Fatalf("child read %v, %v", keys, err)
		}
		return
	}
	s, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.Read(); err != ErrNoKeys {
		t.Fatalf("Read before Publish: %v", err)
	}
	k1, k2 := Key{1}, Key{2}
	s.Publish([]Key{k1})
	seq1 := s.Seq()
	s.Publish([]Key{k2, k1, {3}}) // a third key is dropped
	keys, seq, err := s.Read()
	if err != nil || len(keys) != 2 || keys[0] != k2 || keys[1] != k1 || seq == seq1 || seq%2 != 0 {
		t.Fatalf("Read = %v, %d, %v (seq before %d)", keys, seq, err, seq1)
	}
	dup, err := unix.Dup(s.FD()) // without FD_CLOEXEC
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "tickets")
	defer f.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKeysAcrossProcesses$")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = append(os.Environ(), "TICKETS_CHILD_FD=3")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestNewKeyIsRandom(t *testing.T) {
	a, err1 := NewKey()
	b, err2 := NewKey()
	if err1 != nil || err2 != nil || a == b || a == (Key{}) {
		t.Fatalf("NewKey: %x %v, %x %v", a, err1, b, err2)
	}
}
