package event

// freeList is a loop's stack of things to reuse (read and write buffers,
// uwsgi parsers, uwsgi request stores): used by the loop's goroutine only,
// so it needs no lock, unlike a sync.Pool, and keeps what it holds across
// GCs.
type freeList[T any] struct{ free []T }

// pop takes the thing pushed last; false if there is none.
func (f *freeList[T]) pop() (T, bool) {
	var zero T
	n := len(f.free)
	if n == 0 {
		return zero, false
	}
	x := f.free[n-1]
	f.free[n-1] = zero // the list does not keep what it gave out
	f.free = f.free[:n-1]
	return x, true
}

// push keeps x for a later pop.
func (f *freeList[T]) push(x T) { f.free = append(f.free, x) }

// len is how many things the list holds.
func (f *freeList[T]) len() int { return len(f.free) }
