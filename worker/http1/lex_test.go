package http1

import (
	"math/rand/v2"
	"testing"
)

// TestAllIn checks the word-at-a-time scan against the tables, for every
// byte value at every position of every length up to 24, among neighbours
// that are plain, high (obs-text) or borderline.
func TestAllIn(t *testing.T) {
	slow := func(b []byte, tab *[256]bool) bool {
		for _, c := range b {
			if !tab[c] {
				return false
			}
		}
		return true
	}
	rng := rand.New(rand.NewPCG(1, 2))
	fill := []byte{'a', 0xff, 0x80, 0x20, 0x21, 0x7e, '\t'}
	for _, tc := range []struct {
		tab   *[256]bool
		below uint64
	}{{&valueTab, 0x20}, {&targetTab, 0x21}} {
		for n := 1; n <= 24; n++ {
			b := make([]byte, n)
			for _, f := range fill {
				for pos := range n {
					for c := range 256 {
						for i := range b {
							b[i] = f
							if rng.IntN(4) == 0 {
								b[i] = fill[rng.IntN(len(fill))]
							}
						}
						b[pos] = byte(c)
						if got, want := allIn(b, tc.tab, tc.below), slow(b, tc.tab); got != want {
							t.Fatalf("allIn(%q, below %#x) = %v, want %v", b, tc.below, got, want)
						}
					}
				}
			}
		}
	}
}
