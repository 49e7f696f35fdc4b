package metrics

import (
	"strconv"
	"time"

	"github.com/corral-server/corral/internal/scoreboard"
	"github.com/prometheus/client_golang/prometheus"
)

// The series, named and documented once; docs/metrics.md lists them all.
var (
	descRequests = prometheus.NewDesc("corral_requests_total",
		"Requests answered by the app, by status class; the herd's total, kept across worker recycles, reloads, crashes and upgrades.", []string{"class"}, nil)
	descDuration = prometheus.NewDesc("corral_request_duration_seconds",
		"Time from a request's head being read to its handler returning, over the whole herd.", nil, nil)
	descParseErrors = prometheus.NewDesc("corral_request_parse_errors_total",
		"Requests refused before they reached the app (malformed or over a limit), by the status answered.", []string{"code"}, nil)
	descConnections = prometheus.NewDesc("corral_connections_total",
		"Client connections accepted by the workers.", nil, nil)
	descReadBytes = prometheus.NewDesc("corral_read_bytes_total",
		"Bytes read from client connections.", nil, nil)
	descWrittenBytes = prometheus.NewDesc("corral_written_bytes_total",
		"Bytes written to client connections.", nil, nil)
	descConnsOpen = prometheus.NewDesc("corral_connections_open",
		"Client connections open now, over the herd.", nil, nil)
	descInFlight = prometheus.NewDesc("corral_requests_in_flight",
		"Requests being served now, over the herd.", nil, nil)

	descWorkers = prometheus.NewDesc("corral_workers",
		"Worker processes alive now, by state.", []string{"state"}, nil)
	descWorkersTarget = prometheus.NewDesc("corral_workers_target",
		"The number of workers the arbiter keeps: --workers, moved by TTIN and TTOU, and by the load within -w MIN:MAX.", nil, nil)
	descWorkersBounds = prometheus.NewDesc("corral_workers_bound",
		"-w MIN:MAX: the bounds the load moves the target within; absent for a fixed count.", []string{"bound"}, nil)
	descTargetChanged = prometheus.NewDesc("corral_workers_target_changed_timestamp_seconds",
		"When the target last changed, labelled with why: queue, busy (the load wanted one more), idle (one less), ttin, ttou, ctl, winch, reload, bounds; absent if it never did.", []string{"cause"}, nil)
	descWorkersRunning = prometheus.NewDesc("corral_workers_running",
		"Worker processes alive now, whatever their state.", nil, nil)
	descWorkersReady = prometheus.NewDesc("corral_workers_ready",
		"Workers ready and not stopping: what /readyz compares with --ready-min.", nil, nil)
	descGeneration = prometheus.NewDesc("corral_generation",
		"The current generation of workers, 1 at start, one more for each reload.", nil, nil)
	descStopping = prometheus.NewDesc("corral_stopping",
		"1 once the arbiter is stopping (TERM, INT, QUIT, or handing over after USR2).", nil, nil)
	descReloads = prometheus.NewDesc("corral_reloads_total",
		"Reloads (HUP, --reload) by how they ended.", []string{"result"}, nil)
	descCanaryState = prometheus.NewDesc("corral_canary_state",
		"Where a canary reload (--reload-canary) is: 1 for the current state, none, booting (the canaries start) or watching (for --canary-window).", []string{"state"}, nil)
	descCanaryReloads = prometheus.NewDesc("corral_canary_reloads_total",
		"Canary reloads by how they ended: promoted once the window passed, or rolled back, with the reason.", []string{"outcome", "reason"}, nil)
	descExits = prometheus.NewDesc("corral_worker_exits_total",
		"Worker processes that exited, by cause.", []string{"cause"}, nil)
	descSpawnToReady = prometheus.NewDesc("corral_worker_spawn_to_ready_seconds",
		"Time from a worker's spawn to its readiness.", nil, nil)
	descQueueDepth = prometheus.NewDesc("corral_listener_queue_depth",
		"Connections established in a listener's accept queue that no worker has accepted yet.", []string{"listener"}, nil)
	descQueueLimit = prometheus.NewDesc("corral_listener_queue_limit",
		"The most connections a listener's accept queue holds (the listen backlog).", []string{"listener"}, nil)

	descWorkerPid = prometheus.NewDesc("corral_worker_pid",
		"The process id of the worker in a slot.", []string{"slot"}, nil)
	descWorkerGeneration = prometheus.NewDesc("corral_worker_generation",
		"The generation of the worker in a slot.", []string{"slot"}, nil)
	descWorkerAge = prometheus.NewDesc("corral_worker_age",
		"The spawn sequence number of the worker in a slot (Gunicorn's worker age).", []string{"slot"}, nil)
	descWorkerStart = prometheus.NewDesc("corral_worker_start_time_seconds",
		"When the worker in a slot was spawned, in seconds since the epoch.", []string{"slot"}, nil)
	descWorkerReady = prometheus.NewDesc("corral_worker_ready_seconds",
		"How long the worker in a slot took from spawn to ready; absent until it is ready.", []string{"slot"}, nil)
	descWorkerState = prometheus.NewDesc("corral_worker_state",
		"1 for the state the worker in a slot is in, 0 for the others.", []string{"slot", "state"}, nil)
	descWorkerCPU = prometheus.NewDesc("corral_worker_cpu_seconds_total",
		"User and system CPU time of the worker in a slot; starts again at its replacement.", []string{"slot"}, nil)
	descWorkerRSS = prometheus.NewDesc("corral_worker_resident_memory_bytes",
		"Resident memory of the worker in a slot (Rss of /proc/PID/smaps_rollup).", []string{"slot"}, nil)
	descWorkerPSS = prometheus.NewDesc("corral_worker_proportional_memory_bytes",
		"Proportional memory of the worker in a slot: shared pages divided among the processes that map them (Pss).", []string{"slot"}, nil)
	descWorkerBeat = prometheus.NewDesc("corral_worker_heartbeat_age_seconds",
		"Time since the worker in a slot last beat its heartbeat.", []string{"slot"}, nil)
	descWorkerRequests = prometheus.NewDesc("corral_worker_requests_total",
		"Requests answered by the worker in a slot; starts again at its replacement (corral_requests_total does not).", []string{"slot"}, nil)
	descWorkerInFlight = prometheus.NewDesc("corral_worker_requests_in_flight",
		"Requests the worker in a slot is serving now.", []string{"slot"}, nil)
	descWorkerConns = prometheus.NewDesc("corral_worker_connections_open",
		"Client connections the worker in a slot holds open now.", []string{"slot"}, nil)
	descWorkerCurrent = prometheus.NewDesc("corral_worker_current_request_seconds",
		"How long the request the worker in a slot shows on its scoreboard has run; absent while it serves none.", []string{"slot"}, nil)
)

// allDescs is every series the collector can produce.
var allDescs = []*prometheus.Desc{
	descRequests, descDuration, descParseErrors, descConnections, descReadBytes, descWrittenBytes,
	descConnsOpen, descInFlight, descWorkers, descWorkersTarget, descWorkersBounds, descTargetChanged, descWorkersRunning, descWorkersReady,
	descGeneration, descStopping, descReloads, descCanaryState, descCanaryReloads, descExits, descSpawnToReady, descQueueDepth, descQueueLimit,
	descWorkerPid, descWorkerGeneration, descWorkerAge, descWorkerStart, descWorkerReady, descWorkerState,
	descWorkerCPU, descWorkerRSS, descWorkerPSS, descWorkerBeat, descWorkerRequests, descWorkerInFlight,
	descWorkerConns, descWorkerCurrent,
}

// collector turns the latest published Snapshot into const metrics.
type collector struct {
	latest func() *Snapshot
	now    func() int64 // CLOCK_MONOTONIC ns, for the current request's age
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.latest()
	if s == nil {
		return
	}
	e := emit(ch)
	e.totals(s)
	e.herd(s)
	e.workers(s, c.now())
}

// emit sends const metrics to a Collect's channel.
type emit chan<- prometheus.Metric

func (e emit) counter(d *prometheus.Desc, v float64, labels ...string) {
	e <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func (e emit) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// totals: the herd's monotonic counters and histograms.
func (e emit) totals(s *Snapshot) {
	t := &s.Counters.Requests
	for i, n := range t.Requests {
		e.counter(descRequests, float64(n), strconv.Itoa(i+1)+"xx")
	}
	e <- prometheus.MustNewConstHistogram(descDuration, t.RequestCount(), float64(t.DurationSum)/1e9,
		cumulative(scoreboard.Buckets[:], t.Buckets[:]))
	for i, n := range t.ParseErrors {
		code := "other"
		if i < len(scoreboard.ParseErrorCodes) {
			code = strconv.Itoa(scoreboard.ParseErrorCodes[i])
		}
		e.counter(descParseErrors, float64(n), code)
	}
	e.counter(descConnections, float64(t.Connections))
	e.counter(descReadBytes, float64(t.BytesRead))
	e.counter(descWrittenBytes, float64(t.BytesWritten))
	for i, n := range s.Counters.Reloads {
		e.counter(descReloads, float64(n), ReloadResult(i).String())
	}
	for i, n := range s.Counters.Canaries {
		outcome, reason := CanaryOutcome(i).Labels()
		e.counter(descCanaryReloads, float64(n), outcome, reason)
	}
	for i, n := range s.Counters.Exits {
		e.counter(descExits, float64(n), ExitCause(i).String())
	}
	h := &s.Counters.SpawnToReady
	var spawned uint64
	for _, n := range h.Counts {
		spawned += n
	}
	e <- prometheus.MustNewConstHistogram(descSpawnToReady, spawned, h.Sum, cumulative(SpawnBuckets[:], h.Counts[:]))
}

// herd: the worker count, its states and the listeners' queues.
func (e emit) herd(s *Snapshot) {
	e.gauge(descWorkersTarget, float64(s.Target))
	if s.MaxWorkers > 0 {
		e.gauge(descWorkersBounds, float64(s.MinWorkers), "min")
		e.gauge(descWorkersBounds, float64(s.MaxWorkers), "max")
	}
	if s.TargetCause != "" {
		e.gauge(descTargetChanged, float64(s.TargetChanged.UnixNano())/1e9, s.TargetCause)
	}
	e.gauge(descWorkersRunning, float64(len(s.Workers)))
	e.gauge(descGeneration, float64(s.Generation))
	e.gauge(descStopping, boolValue(s.Stopping))
	for st := range numCanaryStates {
		e.gauge(descCanaryState, boolValue(s.Canary == st), st.String())
	}
	e.gauge(descWorkersReady, float64(s.ReadyWorkers()))
	var byState [4]int
	var open, inFlight int64
	for i := range s.Workers {
		w := &s.Workers[i]
		byState[w.State()]++
		open += w.Board.ConnsOpen
		inFlight += w.Board.InFlight
	}
	for _, st := range scoreboard.States() {
		e.gauge(descWorkers, float64(byState[st]), st.String())
	}
	e.gauge(descConnsOpen, float64(open))
	e.gauge(descInFlight, float64(inFlight))
	for _, l := range s.Listeners {
		if l.Err {
			continue
		}
		e.gauge(descQueueDepth, float64(l.Depth), l.Name)
		e.gauge(descQueueLimit, float64(l.Limit), l.Name)
	}
}

// workers: the per-slot series.
func (e emit) workers(s *Snapshot, now int64) {
	for _, w := range s.ShownWorkers() {
		slot := strconv.Itoa(w.Slot)
		e.gauge(descWorkerPid, float64(w.Pid), slot)
		e.gauge(descWorkerGeneration, float64(w.Generation), slot)
		e.gauge(descWorkerAge, float64(w.Age), slot)
		e.gauge(descWorkerStart, float64(w.Started.UnixNano())/1e9, slot)
		if w.Ready {
			e.gauge(descWorkerReady, w.ReadyAfter.Seconds(), slot)
		}
		state := w.State()
		for _, st := range scoreboard.States() {
			e.gauge(descWorkerState, boolValue(st == state), slot, st.String())
		}
		e.counter(descWorkerCPU, w.Proc.CPU.Seconds(), slot)
		e.gauge(descWorkerRSS, float64(w.Proc.RSS), slot)
		e.gauge(descWorkerPSS, float64(w.Proc.PSS), slot)
		e.gauge(descWorkerBeat, w.LastBeat.Seconds(), slot)
		if !w.Board.Valid {
			continue // an exec worker: what the arbiter knows, no more
		}
		e.counter(descWorkerRequests, float64(w.Board.RequestCount()), slot)
		e.gauge(descWorkerInFlight, float64(w.Board.InFlight), slot)
		e.gauge(descWorkerConns, float64(w.Board.ConnsOpen), slot)
		if w.Board.CurrentStart != 0 {
			e.gauge(descWorkerCurrent, max(0, time.Duration(now-w.Board.CurrentStart).Seconds()), slot)
		}
	}
}

// cumulative turns per-bucket counts (the last one +Inf) into the
// cumulative counts by upper bound that a Prometheus histogram has.
func cumulative(bounds []float64, counts []uint64) map[float64]uint64 {
	m := make(map[float64]uint64, len(bounds))
	var n uint64
	for i, b := range bounds {
		n += counts[i]
		m[b] = n
	}
	return m
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ReadyWorkers counts the workers ready and not stopping, of any generation:
// through a reload the old ones serve until the new ones are ready.
func (s *Snapshot) ReadyWorkers() int {
	n := 0
	for i := range s.Workers {
		if s.Workers[i].Ready && !s.Workers[i].Stopping {
			n++
		}
	}
	return n
}

// ShownWorkers is one worker per slot, for the series labelled by slot.
// While a replacement boots its slot holds two workers: the one that
// serves (ready, not stopping) is shown, then the one that counts toward
// the target (Current), then the newest. So a slot's series move to the
// replacement when it takes over.
func (s *Snapshot) ShownWorkers() []*Worker {
	rank := func(w *Worker) int {
		r := 0
		if w.Ready && !w.Stopping {
			r += 2
		}
		if w.Current {
			r++
		}
		return r
	}
	bySlot := map[int]*Worker{}
	var order []int
	for i := range s.Workers {
		w := &s.Workers[i]
		old, ok := bySlot[w.Slot]
		switch {
		case !ok:
			order = append(order, w.Slot)
			bySlot[w.Slot] = w
		case rank(w) > rank(old), rank(w) == rank(old) && w.Age > old.Age:
			bySlot[w.Slot] = w
		}
	}
	out := make([]*Worker, 0, len(order))
	for _, slot := range order {
		out = append(out, bySlot[slot])
	}
	return out
}
