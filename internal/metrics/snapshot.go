// Package metrics owns what the arbiter tells about the herd: the Snapshot
// its loop publishes (every worker's scoreboard and what the arbiter knows
// of each process, the herd's monotonic totals, the listeners' accept
// queues), the Prometheus exposition of it, and the health endpoints, on
// the --metrics-bind listener. The loop only builds and publishes
// snapshots; the server reads the latest from its own goroutines, so a
// slow or hostile scraper cannot stall the loop.
package metrics

import (
	"time"

	"github.com/corral-server/corral/internal/scoreboard"
)

// Snapshot is everything the arbiter knows, at one turn of its loop. A
// published snapshot is never changed.
type Snapshot struct {
	Taken      time.Time
	Generation int
	Target     int // the workers wanted now
	// -w MIN:MAX: the bounds the load moves Target within; 0, 0 for a
	// fixed count.
	MinWorkers, MaxWorkers int
	// Why Target last changed: a word (queue, busy, idle, bounds, ttin,
	// ttou, ctl, winch, reload; "" if it never did), the log's sentence, when.
	TargetCause   string
	TargetWhy     string
	TargetChanged time.Time
	Canary        CanaryState // --reload-canary: where a canary reload is
	ReadyMin      int         // --ready-min: /readyz wants at least this many ready
	Stopping      bool        // a stop (TERM, INT, QUIT, a handover) has begun
	Workers       []Worker
	Listeners     []Listener
	// Counters are the herd's totals, monotonic across recycles,
	// reloads, crashes and upgrades.
	Counters Counters
}

// Worker is one live worker process.
type Worker struct {
	Slot       int // stable: a replacement takes the slot of the worker it replaces
	Pid        int
	Generation int
	Age        int // spawn sequence number, as Gunicorn's worker age
	Exec       bool
	Started    time.Time
	Ready      bool
	ReadyAfter time.Duration // from spawn to ready, once ready
	Stopping   bool          // asked to stop: draining
	// Counts toward the target: not stopping, not being replaced, of the
	// current generation. Of two workers in one slot, this one is shown.
	Current  bool
	LastBeat time.Duration // since the last heartbeat
	Proc     Proc
	Board    scoreboard.Counts // Valid is false for exec workers
}

// State is the worker's state: the scoreboard's, corrected by what the
// arbiter knows (a worker it asked to stop is draining; an exec worker,
// which has no scoreboard, is booting until ready, then idle).
func (w *Worker) State() scoreboard.State {
	switch {
	case w.Stopping:
		return scoreboard.Draining
	case !w.Ready:
		return scoreboard.Booting
	case w.Board.Valid && w.Board.State != scoreboard.Booting:
		return w.Board.State
	}
	return scoreboard.Idle
}

// Listener is one listening socket's accept queue.
type Listener struct {
	Name  string // the listener's URL, as the log names it
	Depth int
	Limit int
	Err   bool // the queue could not be read
}

// ExitCause is why a worker exited, as corral_worker_exits_total labels it.
type ExitCause int

// The causes.
const (
	ExitStopped     ExitCause = iota // asked to: reload, TTOU, TERM, a handover
	ExitRecycle                      // replaced after --max-requests
	ExitTimeout                      // silent past --timeout
	ExitBootFailure                  // died before it was ready
	ExitMemory                       // replaced for staying over --max-worker-memory, or a SIGKILL it was not sent: the OOM killer, most likely
	ExitSignal                       // killed by another signal it was not sent
	ExitCode                         // exited by itself while serving
	numExitCauses
)

var exitCauseNames = [numExitCauses]string{"stopped", "recycle", "timeout", "boot_failure", "memory", "signal", "exit_code"}

func (c ExitCause) String() string { return exitCauseNames[c] }

// ReloadResult is how a reload ended, as corral_reloads_total labels it.
type ReloadResult int

// The results.
const (
	ReloadComplete ReloadResult = iota // every new worker ready, every old one retired
	ReloadFailed                       // a new worker could not boot; the old ones serve on
	ReloadRefused                      // the configuration did not load; nothing changed
	numReloadResults
)

var reloadResultNames = [numReloadResults]string{"complete", "failed", "refused"}

func (r ReloadResult) String() string { return reloadResultNames[r] }

// CanaryState is where a canary reload (--reload-canary) is, as
// corral_canary_state labels it.
type CanaryState int

// The states.
const (
	CanaryNone     CanaryState = iota // no canary reload under way
	CanaryBooting                     // the canaries are starting
	CanaryWatching                    // all of them ready: watched for --canary-window
	numCanaryStates
)

var canaryStateNames = [numCanaryStates]string{"none", "booting", "watching"}

func (s CanaryState) String() string { return canaryStateNames[s] }

// CanaryOutcome is how a canary reload ended, as
// corral_canary_reloads_total labels it: an outcome and its reason.
type CanaryOutcome int

// The outcomes.
const (
	CanaryPromoted    CanaryOutcome = iota // the window passed: the rest of the generation rolled
	CanaryCrashed                          // rolled back: a canary crashed while watched
	CanaryTimedOut                         // rolled back: a canary missed its --timeout while watched
	CanaryErrors                           // rolled back: the canaries' 5xx share passed the threshold
	CanaryBootFailure                      // rolled back: a canary could not boot (the reload failed)
	numCanaryOutcomes
)

var canaryOutcomeLabels = [numCanaryOutcomes][2]string{
	{"promoted", "window_passed"}, {"rolled_back", "crash"}, {"rolled_back", "timeout"},
	{"rolled_back", "5xx"}, {"rolled_back", "boot_failure"},
}

// Labels are the outcome's labels: outcome, then reason.
func (o CanaryOutcome) Labels() (outcome, reason string) {
	return canaryOutcomeLabels[o][0], canaryOutcomeLabels[o][1]
}

// SpawnBuckets are the upper bounds, in seconds, of the spawn-to-ready
// histogram: from a Go worker's tens of milliseconds to an app that loads
// for a minute.
var SpawnBuckets = [...]float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// SpawnHistogram counts workers by their time from spawn to ready.
type SpawnHistogram struct {
	Counts [len(SpawnBuckets) + 1]uint64 `json:"counts"` // not cumulative; the last is +Inf
	Sum    float64                       `json:"sum"`
}

// Observe counts one worker ready after d.
func (h *SpawnHistogram) Observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(SpawnBuckets) && s > SpawnBuckets[i] {
		i++
	}
	h.Counts[i]++
	h.Sum += s
}

// Counters are the arbiter's counters, the part of its state that a new
// arbiter inherits over the upgrade socket (USR2) so that none of them
// goes down.
type Counters struct {
	Requests     scoreboard.Totals         `json:"requests"` // the herd's scoreboards, summed
	Exits        [numExitCauses]uint64     `json:"exits"`
	Reloads      [numReloadResults]uint64  `json:"reloads"`
	Canaries     [numCanaryOutcomes]uint64 `json:"canaries"` // canary reloads by outcome
	SpawnToReady SpawnHistogram            `json:"spawn_to_ready"`
}

// Add adds o to c.
func (c *Counters) Add(o Counters) {
	c.Requests.Add(o.Requests)
	for i := range c.Exits {
		c.Exits[i] += o.Exits[i]
	}
	for i := range c.Reloads {
		c.Reloads[i] += o.Reloads[i]
	}
	for i := range c.Canaries {
		c.Canaries[i] += o.Canaries[i]
	}
	for i := range c.SpawnToReady.Counts {
		c.SpawnToReady.Counts[i] += o.SpawnToReady.Counts[i]
	}
	c.SpawnToReady.Sum += o.SpawnToReady.Sum
}

// Herd keeps the herd's request totals monotonic. A worker's scoreboard
// counts from zero and goes away with the worker; the totals are the final
// counts of every worker that is gone (folded in once, when it is reaped)
// plus the live workers' counts.
type Herd struct {
	gone scoreboard.Totals
	last scoreboard.Totals
}

// Fold adds a dead worker's final counts to the totals. The worker must
// be gone: it no longer counts among the live ones passed to Total.
func (h *Herd) Fold(final scoreboard.Totals) { h.gone.Add(final) }

// Gone is the sum of what was folded in: the totals once no worker lives,
// what an arbiter hands over to its successor.
func (h *Herd) Gone() scoreboard.Totals { return h.gone }

// Total is the herd's totals with live, the counts of every live worker.
// It never returns less than it did before, counter by counter, should a
// worker's memory ever read less than it did (a worker cannot unsend a
// response, but it can scribble on its own slot).
func (h *Herd) Total(live []scoreboard.Totals) scoreboard.Totals {
	t := h.gone
	for _, l := range live {
		t.Add(l)
	}
	t.Max(h.last)
	h.last = t
	return t
}
