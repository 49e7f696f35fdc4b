// Package heartbeat owns a worker's slot of shared memory: one page (a
// memfd that the arbiter creates and the worker inherits) that starts with
// the worker's proof of life, the CLOCK_MONOTONIC time of its last beat,
// and holds its scoreboard (package internal/scoreboard) from byte 64 on.
// The arbiter reads every worker's slot each tick without a system call,
// and a wall-clock jump cannot make a worker look dead.
package heartbeat

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/corral-server/corral/internal/scoreboard"
	"golang.org/x/sys/unix"
)

// The slot's layout: the beat in the first word, the scoreboard on its own
// cache line after it, the whole a page.
const (
	boardOffset = 64
	size        = 4096
)

// The scoreboard must fit in the page.
var _ [size - boardOffset - scoreboard.Size]byte

// Slot is one worker's heartbeat and scoreboard, mapped into this process.
type Slot struct {
	mem   []byte
	fd    int               // the memfd, until the arbiter passed it on; -1 after Release
	board *scoreboard.Board // nil when the memfd is too small (another release's)
}

// Create makes a new slot, already beating now, for a worker to inherit
// through FD.
func Create() (*Slot, error) {
	fd, err := unix.MemfdCreate("corral-heartbeat", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, size); err != nil {
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

// mmap maps the memfd: the whole page, or only the beat when the memfd is
// smaller (made by a corral from before the scoreboard).
func mmap(fd int) (*Slot, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("heartbeat: fstat: %w", err)
	}
	n := size
	if st.Size < size {
		n = 8
	}
	mem, err := unix.Mmap(fd, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: mmap: %w", err)
	}
	s := &Slot{mem: mem, fd: fd}
	if n == size {
		s.board, _ = scoreboard.At(mem[boardOffset:])
	}
	return s, nil
}

// Board is the worker's scoreboard in this slot, or nil if the slot has
// none (a memfd from another release of corral).
func (s *Slot) Board() *scoreboard.Board { return s.board }

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
		s.mem, s.board = nil, nil
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

// MonoOf is t, a reading of this process's clock (time.Now), as
// CLOCK_MONOTONIC nanoseconds, as Now is: no clock read of its own.
func MonoOf(t time.Time) int64 { return monoBase + int64(t.Sub(monoStart)) }

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
