// Package tickets owns the TLS session-ticket keys that every worker of an
// arbiter shares, so a session a client resumes may land on any worker:
// a small memfd that the arbiter creates and writes (crypto/rand keys,
// the newest first) and every worker inherits, maps read-only and reads
// again when its sequence number moves. The keys never pass through the
// environment or a file on disk.
//
// The memory is a sequence lock of 64-bit words, all read and written
// atomically: the sequence (odd while the arbiter writes), the number of
// keys, then the keys.
package tickets

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KeyLen is the length of a session-ticket key (tls.Config.SetSessionTicketKeys).
const KeyLen = 32

// MaxKeys is how many keys the memory holds: the one that encrypts new
// tickets and the previous one, which still decrypts.
const MaxKeys = 2

const (
	wordsPerKey = KeyLen / 8
	words       = 2 + MaxKeys*wordsPerKey // sequence, count, keys
	size        = words * 8
)

// Key is one session-ticket key.
type Key [KeyLen]byte

// NewKey makes a key from crypto/rand.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("session ticket key: %w", err)
	}
	return k, nil
}

// Shared is the keys' memory, mapped into this process.
type Shared struct {
	mem []byte
	fd  int // the memfd, for children to inherit; -1 in a worker
}

// Create makes the memory, with no keys yet, for the arbiter.
func Create() (*Shared, error) {
	fd, err := unix.MemfdCreate("corral-tickets", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("session tickets: memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("session tickets: ftruncate: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("session tickets: mmap: %w", err)
	}
	return &Shared{mem: mem, fd: fd}, nil
}

// Open maps, read-only, the memory a worker inherited at fd, and closes fd.
func Open(fd int) (*Shared, error) {
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ, unix.MAP_SHARED)
	unix.Close(fd)
	if err != nil {
		return nil, fmt.Errorf("session tickets: mmap fd %d: %w", fd, err)
	}
	return &Shared{mem: mem, fd: -1}, nil
}

// FD is the memfd to pass to a worker.
func (s *Shared) FD() int { return s.fd }

// Close unmaps the memory and closes the memfd.
func (s *Shared) Close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
	if s.mem != nil {
		unix.Munmap(s.mem)
		s.mem = nil
	}
}

func (s *Shared) word(i int) *uint64 { return (*uint64)(unsafe.Pointer(&s.mem[i*8])) }

// Publish makes keys (the newest first, at most MaxKeys) the shared ones.
// Only one process, the arbiter, writes.
func (s *Shared) Publish(keys []Key) {
	keys = keys[:min(len(keys), MaxKeys)]
	seq := atomic.LoadUint64(s.word(0))
	atomic.StoreUint64(s.word(0), seq+1) // odd: being written
	atomic.StoreUint64(s.word(1), uint64(len(keys)))
	for i, k := range keys {
		for j := range wordsPerKey {
			atomic.StoreUint64(s.word(2+i*wordsPerKey+j), binary.LittleEndian.Uint64(k[j*8:]))
		}
	}
	atomic.StoreUint64(s.word(0), seq+2)
}

// Seq is the memory's sequence number: it moves with every Publish.
func (s *Shared) Seq() uint64 { return atomic.LoadUint64(s.word(0)) }

// ErrNoKeys is Read's error before the arbiter published any key.
var ErrNoKeys = errors.New("session tickets: no keys published")

// Read returns the keys, the newest first, and the sequence number they
// were read at.
func (s *Shared) Read() ([]Key, uint64, error) {
	for {
		seq := atomic.LoadUint64(s.word(0))
		if seq%2 == 1 {
			continue // the arbiter is writing: a few stores, spin
		}
		n := min(int(atomic.LoadUint64(s.word(1))), MaxKeys)
		keys := make([]Key, n)
		for i := range keys {
			for j := range wordsPerKey {
				binary.LittleEndian.PutUint64(keys[i][j*8:], atomic.LoadUint64(s.word(2+i*wordsPerKey+j)))
			}
		}
		if atomic.LoadUint64(s.word(0)) != seq {
			continue
		}
		if n == 0 {
			return nil, seq, ErrNoKeys
		}
		return keys, seq, nil
	}
}
