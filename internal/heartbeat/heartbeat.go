// Package heartbeat owns a worker's proof of life: eight bytes of shared
// memory (a memfd that the arbiter creates and the worker inherits) in
// which the worker stores the CLOCK_MONOTONIC time of its last beat. The
// arbiter reads every worker's slot each tick without a system call, and a
// wall-clock jump cannot make a worker look dead.
package heartbeat

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Slot is one worker's heartbeat, mapped into this process.
type Slot struct {
	mem []byte
	fd  int // the memfd, until the arbiter passed it on; -1 after Release
}

// Create makes a new slot, already beating now, for a worker to inherit
// through FD.
func Create() (*Slot, error) {
	fd, err := unix.MemfdCreate("corral-heartbeat", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, 8); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("heartbeat: ftruncate: %w", err)
	}
	s, err := mmap(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	s.Beat()
	return s, nil
}

// Open maps the slot a worker inherited at fd; the fd is closed, the
// mapping stays.
func Open(fd int) (*Slot, error) {
	s, err := mmap(fd)
	unix.Close(fd)
	if err != nil {
		return nil, err
	}
	s.fd = -1
	return s, nil
}

func mmap(fd int) (*Slot, error) {
	mem, err := unix.Mmap(fd, 0, 8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: mmap: %w", err)
	}
	return &Slot{mem: mem, fd: fd}, nil
}

// FD is the memfd to pass to the worker.
func (s *Slot) FD() int { return s.fd }

// Release closes the memfd once the worker has it; the mapping stays.
func (s *Slot) Release() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}

// Close unmaps the slot (and closes the memfd if still open).
func (s *Slot) Close() {
	s.Release()
	if s.mem != nil {
		unix.Munmap(s.mem)
		s.mem = nil
	}
}

func (s *Slot) word() *int64 { return (*int64)(unsafe.Pointer(&s.mem[0])) }

// Beat records that the worker is alive now.
func (s *Slot) Beat() { atomic.StoreInt64(s.word(), Now()) }

// Since is how long ago the last beat was.
func (s *Slot) Since() time.Duration {
	return time.Duration(Now() - atomic.LoadInt64(s.word()))
}

// Now is CLOCK_MONOTONIC in nanoseconds: one clock for every process on
// the machine, unlike Go's monotonic readings, which count from each
// process's start. It is read through Go's clock (the vDSO) and offset by
// one CLOCK_MONOTONIC reading taken at start: clock_gettime through
// x/sys/unix is a real system call, and the event worker reads the clock
// several times per request.
func Now() int64 { return monoBase + int64(time.Since(monoStart)) }

// monoStart is when CLOCK_MONOTONIC read monoBase: the midpoint of the
// narrowest of a few pairs of Go readings around a clock_gettime.
var monoStart, monoBase = func() (start time.Time, base int64) {
	gap := time.Duration(1<<63 - 1)
	for range 5 {
		var ts unix.Timespec
		t0 := time.Now()
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		if d := time.Since(t0); d < gap {
			gap, start, base = d, t0.Add(d/2), ts.Nano()
		}
	}
	return start, base
}()
