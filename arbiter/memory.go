package arbiter

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// --max-worker-memory: a worker whose PSS (its private pages, and its
// share of the pages it shares: the binary's code is not counted once per
// worker, as RSS counts it) stays above the limit for --memory-grace is
// recycled as --max-requests recycles one: its replacement first, at most
// one a second. The loop measures (measureMemory: /proc, through the
// system seam, at most once a second per worker); manage decides
// (recycleWhy).

// A recycle's reasons: the worker asked for it (--max-requests); the
// start of the reason for memory, which the exit's cause goes by.
const (
	maxRequestsWhy = "reached its max requests"
	memoryWhy      = "is over its memory"
)

// measureMemory reads the PSS of the workers that serve, at most every
// procEvery each (for --max-worker-memory, and for the autoscaler's
// --max-memory budget), and notes since when each one is above the limit.
func (a *Arbiter) measureMemory() {
	limit := a.cfg.MaxWorkerMemory
	if (limit <= 0 && !(a.cfg.scaling() && a.cfg.MaxMemory > 0)) || a.stopping {
		return // neither a worker's limit nor a budget the autoscaler keeps to
	}
	now := a.sys.now()
	for _, w := range a.workers {
		if !w.Ready || w.stopping || w.retiring {
			continue
		}
		if now.Sub(w.procAt) >= procEvery {
			if p, err := a.sys.proc(w.Pid); err == nil {
				w.proc = p
			}
			w.procAt = now
		}
		if limit > 0 {
			w.noteMemory(now, limit)
		}
	}
}

// noteMemory records whether w's last PSS reading is above limit, and
// since when.
func (w *Worker) noteMemory(now time.Time, limit int64) {
	switch {
	case w.proc.PSS <= uint64(limit):
		w.overMemory = time.Time{}
	case w.overMemory.IsZero():
		w.overMemory = now
	}
}

// recycleWhy is why w is to be replaced, "" if it is not: it asked
// (--max-requests), or its PSS has stayed above --max-worker-memory for
// --memory-grace.
func (a *Arbiter) recycleWhy(w *Worker, now time.Time) string {
	switch {
	case w.recycleAsked:
		return maxRequestsWhy
	case a.cfg.MaxWorkerMemory > 0 && !w.overMemory.IsZero() && now.Sub(w.overMemory) >= a.cfg.MemoryGrace:
		return fmt.Sprintf("%s: PSS %s above --max-worker-memory %s for %s",
			memoryWhy, mib(w.proc.PSS), mib(uint64(a.cfg.MaxWorkerMemory)), now.Sub(w.overMemory).Round(time.Second))
	}
	return ""
}

// mib writes bytes in MiB.
func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// memoryLimitEnv is GOMEMLIMIT for a Go worker under --max-memory: its
// share of the budget (over the most workers the herd may have), so the
// Go runtime collects before the herd crosses it. Nothing for an exec
// worker, or when the user set GOMEMLIMIT (in the environment or -e).
func (a *Arbiter) memoryLimitEnv() []string {
	if a.cfg.MaxMemory <= 0 || a.cfg.Command != nil {
		return nil
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		return nil
	}
	for _, kv := range a.cfg.Env {
		if strings.HasPrefix(kv, "GOMEMLIMIT=") {
			return nil
		}
	}
	n := max(a.target, a.cfg.MaxWorkers, 1)
	return []string{"GOMEMLIMIT=" + strconv.FormatInt(a.cfg.MaxMemory/int64(n), 10)}
}
