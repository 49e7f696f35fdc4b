package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// rateLogEvery is the least time between two lines of one recurring error.
const rateLogEvery = time.Minute

// rateLog writes a recurring error to the error log without flooding it:
// the first line at once, then at most one line a minute, which counts the
// occurrences it left out. A fault that repeats thousands of times a
// second (accept at the fd limit, writes to a full disk) costs a line a
// minute, and the operator still learns how often it happened. The zero
// value is ready to use.
type rateLog struct {
	mu      sync.Mutex
	last    time.Time // when the last line was written; zero: never
	dropped int       // occurrences since then that wrote no line
	now     func() time.Time
}

// print logs msg at level unless a line went out less than a minute ago.
func (r *rateLog) print(log *slog.Logger, level slog.Level, msg string) {
	r.mu.Lock()
	now := time.Now()
	if r.now != nil {
		now = r.now()
	}
	if !r.last.IsZero() && now.Sub(r.last) < rateLogEvery {
		r.dropped++
		r.mu.Unlock()
		return
	}
	dropped, since := r.dropped, now.Sub(r.last)
	r.last, r.dropped = now, 0
	r.mu.Unlock()
	if dropped > 0 {
		msg = fmt.Sprintf("%s (and %d more in the last %s)", msg, dropped, since.Round(time.Second))
	}
	if log != nil {
		log.Log(context.Background(), level, msg)
	}
}
