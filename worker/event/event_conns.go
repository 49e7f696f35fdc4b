package event

import "iter"

// connTable is a loop's connections by fd: a table indexed by the fd, as
// the kernel hands out the lowest free one, so that finding the
// connection of each of epoll's events is an index, not a map lookup
// (one per event: per request on a kept connection).
type connTable struct {
	byFD []*eventConn
	n    int
}

// get returns the connection on fd, nil if none.
func (t *connTable) get(fd int32) *eventConn {
	if uint(fd) < uint(len(t.byFD)) {
		return t.byFD[fd]
	}
	return nil
}

// put adds c, on its fd.
func (t *connTable) put(c *eventConn) {
	fd := int(c.fd)
	if fd >= len(t.byFD) {
		t.byFD = append(t.byFD, make([]*eventConn, fd+1-len(t.byFD)+len(t.byFD)/2)...)
	}
	if t.byFD[fd] == nil {
		t.n++
	}
	t.byFD[fd] = c
}

// remove takes out the connection on fd.
func (t *connTable) remove(fd int32) {
	if uint(fd) < uint(len(t.byFD)) && t.byFD[fd] != nil {
		t.byFD[fd] = nil
		t.n--
	}
}

// len is how many connections the table holds.
func (t *connTable) len() int { return t.n }

// all yields every connection, lowest fd first; the loop's body may
// remove its connection (close does).
func (t *connTable) all() iter.Seq[*eventConn] {
	return func(yield func(*eventConn) bool) {
		for _, c := range t.byFD {
			if c != nil && !yield(c) {
				return
			}
		}
	}
}
