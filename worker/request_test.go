package worker

import (
	"testing"
	"time"
)

func TestBodyTimedOut(t *testing.T) {
	const s = int64(time.Second)
	for _, c := range []struct {
		name                  string
		now, start, last, got int64
		timeout               time.Duration
		want                  bool
	}{
		{"no timeout", 1000 * s, 0, 0, 0, 0, false},
		{"a pause shorter than the timeout", 5 * s, 0, 4 * s, 10 << 20, 2 * time.Second, false},
		{"a pause longer than the timeout", 7 * s, 0, 4 * s, 10 << 20, 2 * time.Second, true},
		{"a byte a second: too slow after the first timeout", 61 * s, 0, 61 * s, 61, 60 * time.Second, true},
		{"a byte a second, within the first timeout", 59 * s, 0, 59 * s, 59, 60 * time.Second, false},
		{"500 bytes a second keeps going", 600 * s, 0, 600 * s, 600 * 500, 60 * time.Second, false},
		{"400 bytes a second ends", 600 * s, 0, 600 * s, 600 * 400, 60 * time.Second, true},
	} {
		if got := BodyTimedOut(c.now, c.start, c.last, c.got, c.timeout); got != c.want {
			t.Errorf("%s: BodyTimedOut = %v", c.name, got)
		}
	}
}

func TestBodyDeadline(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if d := bodyDeadline(start.Add(time.Second), start, 0, 0); !d.IsZero() {
		t.Errorf("no timeout: deadline %v", d)
	}
	// Fast so far: the pause rule decides.
	if d := bodyDeadline(start.Add(3*time.Second), start, 1<<20, 2*time.Second); !d.Equal(start.Add(5 * time.Second)) {
		t.Errorf("fast body: deadline %v", d.Sub(start))
	}
	// 10 bytes in 1.9 s: the rate rule decides, at 2 s + 10/500 s.
	if d := bodyDeadline(start.Add(1900*time.Millisecond), start, 10, 2*time.Second); !d.Equal(start.Add(2020 * time.Millisecond)) {
		t.Errorf("slow body: deadline %v", d.Sub(start))
	}
	if a := bodyAllowance(1 << 62); a <= 0 {
		t.Errorf("bodyAllowance overflows: %v", a)
	}
}
