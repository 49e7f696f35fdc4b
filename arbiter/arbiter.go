// Package arbiter owns the master process: it binds the listeners, spawns
// the workers by exec'ing the worker binary, reaps them, stops the ones
// that hang, keeps their number at its target, and turns signals into
// reloads, scaling and stops. One loop owns all of this state; every input
// (the signal self-pipe, the workers' status pipes, the control socket's
// requests) wakes that loop.
package arbiter

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corral-server/corral/internal/logging"
	"github.com/corral-server/corral/internal/metrics"
	"github.com/corral-server/corral/signals"
	"github.com/corral-server/corral/socket"
	"github.com/corral-server/corral/worker"
	"golang.org/x/sys/unix"
)

// Config is the arbiter's configuration. A reload (HUP) replaces it whole
// with what Arbiter.Reload returns.
type Config struct {
	Workers         int                 // how many workers the configuration asks for; with MaxWorkers, the fewest
	MaxWorkers      int                 // -w MIN:MAX: the most workers the load may ask for (autoscale.go); 0 for a fixed count
	ScaleDownDelay  time.Duration       // -w MIN:MAX: how long the herd stays under the low mark before one worker less
	MaxWorkerMemory int64               // --max-worker-memory: a worker whose PSS stays above it is recycled (memory.go); 0 for none
	MemoryGrace     time.Duration       // --memory-grace: how long a worker may stay above MaxWorkerMemory
	ReloadCanary    int                 // --reload-canary: a reload replaces this many workers first and watches them (canary.go); 0 for none
	CanaryWindow    time.Duration       // --canary-window: how long the canaries are watched once ready
	Binds           []string            // addresses to bind, unless systemd passed sockets
	Socket          socket.Options      // backlog, SO_REUSEPORT, umask
	Executable      string              // the worker binary, by path, so a rebuilt one is picked up
	Args            []string            // the worker's argv, argv[0] included
	Command         []string            // exec mode (corral -- COMMAND ARGS): what each worker runs; nil otherwise
	Exec            ExecOptions         // exec mode's readiness, stop signal and output; see exec.go
	Env             []string            // KEY=VALUE pairs added to the workers' environment
	Worker          worker.Config       // the template each worker's Config is made from
	CPUAffinity     string              // --cpu-affinity: "on", "auto" (the flag's default) or "off" ("" is off): each worker on one CPU, by its slot (affinity.go)
	BootTimeout     time.Duration       // from spawn to ready, else the worker is killed
	GracefulTimeout time.Duration       // for a worker to finish after TERM, else SIGKILL
	ShutdownDelay   time.Duration       // after TERM, serve on (with /readyz 503) this long before the drain
	AbortGrace      time.Duration       // after a timeout's SIGABRT, before SIGKILL
	PidFile         string              // written at start, removed at exit; "" for none
	UpgradeBinary   string              // the binary USR2 starts; "" for Executable
	TicketRotation  time.Duration       // TLS session-ticket keys: a new one this often; 0 for DefaultTicketRotation
	Credential      *syscall.Credential // the workers' user and groups (-u, -g); nil: the arbiter's
	Name            string              // --name: the arbiter's comm, the workers' titles (ps), the log's first line
	MetricsBind     string              // --metrics-bind: serve /metrics, /livez, /readyz there; "" for none
	ReadyMin        int                 // --ready-min: /readyz wants this many workers ready
	Control         ControlOptions      // the control socket (corral ctl); see control.go
	MaxMemory       int64               // the herd's memory budget in bytes (--max-memory); 0 for none
	ErrorLog        *logging.File       // reopened on USR1
	Log             *slog.Logger
}

// Hooks are the arbiter-side server hooks, run in the arbiter's loop: a
// hook that blocks stalls the arbiter.
type Hooks struct {
	OnStarting      func(a *Arbiter)                 // before binding
	WhenReady       func(a *Arbiter)                 // once the first generation of workers is ready
	OnReload        func(a *Arbiter)                 // on HUP, before the new generation spawns
	ChildExit       func(a *Arbiter, w Worker)       // after a worker was reaped
	NWorkersChanged func(a *Arbiter, newN, oldN int) // when the target count changes
	OnExit          func(a *Arbiter)                 // just before Run returns
}

// A Watcher reports changed files, for --reload. Its own goroutines may
// only call wake; the loop calls everything else.
type Watcher interface {
	// Start begins watching; wake, safe from any goroutine, makes the
	// loop call Changes soon.
	Start(wake func()) error
	// Changes returns the files changed since the last call once they
	// have settled (debounced), or nil; and when to ask again, zero for
	// "when woken".
	Changes() (files []string, next time.Time)
	Close() error
}

// BootError is what Run returns when, at start-up, no worker could boot,
// or one could not be started at all (Pid is then 0).
type BootError struct {
	Pid    int
	Reason string
}

func (e *BootError) Error() string {
	if e.Pid == 0 {
		return e.Reason // "spawn worker: ...", as the spawn said
	}
	return fmt.Sprintf("worker (pid:%d) failed to boot: %s", e.Pid, e.Reason)
}

// Worker describes one worker process, as the hooks see it.
type Worker struct {
	Pid        int
	Age        int // spawn sequence number
	Generation int // the reload generation it was spawned for
	Started    time.Time
	Ready      bool
	ReadyAt    time.Time
	Status     syscall.WaitStatus // once reaped

	stopping     bool      // asked to stop; its exit is expected
	killAt       time.Time // SIGKILL if still alive then
	killWhy      string    // what the log says at killAt
	killed       bool      // sent SIGKILL: only the reaper has work left
	timedOut     bool      // got SIGABRT for missing its heartbeat
	heartbeat    heartbeatSlot
	retiring     bool // to be replaced, as with --max-requests
	recycleAsked bool
	recycledFor  string    // why it is being replaced: recycleWhy's, when retiring
	overMemory   time.Time // since when its PSS is above --max-worker-memory; zero: it is not
	statusFd     int
	statusBuf    []byte
	lastError    string
	exec         *execWorker // exec mode only; see exec.go

	// Slot is the worker's stable number for the metrics: 0 to N-1,
	// taken over by its replacement (see assignSlot).
	Slot   int
	proc   metrics.Proc // the last /proc reading, at procAt
	procAt time.Time
}

// Arbiter is the master process.
type Arbiter struct {
	Hooks Hooks
	// Reload re-reads the configuration on HUP. When nil, HUP restarts
	// the workers with the configuration they have.
	Reload func() (*Config, error)
	// Watcher, when set, triggers a reload when files change (--reload).
	Watcher Watcher

	sys        system // the OS: spawn, signal, reap, the clock
	cfg        *Config
	stableCfg  *Config // the last configuration whose workers all became ready
	log        *slog.Logger
	pid        int
	cpus       []int // the CPUs --cpu-affinity deals out, read at the first spawn (affinity.go)
	listeners  []*socket.Listener
	pipe       *signals.Pipe
	queue      *signals.Queue
	workers    map[int]*Worker
	target     int // workers wanted now: the config's count, moved by TTIN/TTOU
	configured int // the config's count, to tell whether a reload changed it
	generation int
	age        int
	tickets    *ticketKeys // TLS session-ticket keys shared with the workers, see tickets.go

	everReady    bool // some worker has been ready: boot failures are no longer fatal
	calledReady  bool
	reloadAt     time.Time
	bootFailures int
	nextSpawn    time.Time
	nextWatch    time.Time
	reloadReason string // what the log blames if the reload fails
	lastRecycle  time.Time
	scale        scaler       // -w MIN:MAX: the load-driven target's state (autoscale.go)
	canary       *canaryState // --reload-canary: the reload on trial (canary.go); nil for none
	canaryAsked  int          // corral ctl reload --canary N: the next reload's count, over the configuration's

	upgrade    *upgradeChild  // a new arbiter started by USR2
	parent     *upgradeParent // the arbiter this one takes over from
	handedOver bool           // this arbiter exits for a new one

	delayUntil time.Time // TERM with --shutdown-delay: the drain starts then; zero before
	stopping   bool
	quick      bool
	stopSig    syscall.Signal // what began the stop: TERM, INT or QUIT (a failed boot's stop is INT's)
	cutShort   int            // workers SIGKILLed at --graceful-timeout during the stop
	exitErr    error

	metrics metricsState // --metrics-bind; see metrics.go
	ctl     controlState // --control-socket; see control.go
}

// New returns an arbiter for cfg. Run starts it.
func New(cfg *Config) *Arbiter {
	log := cfg.Log
	if log == nil {
		log = logging.New(os.Stderr, slog.LevelInfo)
	}
	return &Arbiter{sys: osSystem{}, cfg: cfg, stableCfg: cfg, log: log, workers: map[int]*Worker{},
		target: cfg.Workers, configured: cfg.Workers, generation: 1}
}

// Pid is the arbiter's process id.
func (a *Arbiter) Pid() int { return a.pid }

// Target is the number of workers the arbiter keeps now.
func (a *Arbiter) Target() int { return a.target }

// Generation is the current reload generation, 1 at start.
func (a *Arbiter) Generation() int { return a.generation }

// Listeners are the addresses the arbiter listens on.
func (a *Arbiter) Listeners() []string {
	var out []string
	for _, l := range a.listeners {
		out = append(out, a.listenerURL(l))
	}
	return out
}

// Workers lists the live workers, oldest first.
func (a *Arbiter) Workers() []Worker {
	var out []Worker
	for _, w := range a.sortedWorkers() {
		out = append(out, *w)
	}
	return out
}

var handled = []os.Signal{syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR1,
	syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGCHLD}

// Run binds the listeners, runs the workers, and returns when the arbiter
// stops: nil after a TERM, INT or QUIT, a *BootError when no worker could
// boot at start-up, or the error that kept it from starting.
func (a *Arbiter) Run() (err error) {
	// PR_SET_PDEATHSIG fires when the thread that forked a child exits,
	// not the process: every spawn happens on this one locked thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	a.pid = os.Getpid()
	if a.Hooks.OnStarting != nil {
		a.Hooks.OnStarting(a)
	}
	if a.pipe, err = signals.NewPipe(handled...); err != nil {
		return err
	}
	defer a.pipe.Close()
	a.queue = signals.NewQueue(64)
	if err := a.bind(); err != nil {
		return err
	}
	defer socket.CloseAll(a.listeners)
	if err := a.openMetrics(); err != nil {
		return err
	}
	defer a.closeMetrics()
	if err := a.openControl(); err != nil {
		return err
	}
	defer a.closeControl()
	if err := a.writePidFile(); err != nil {
		return err
	}
	defer a.removeOwnPidFile()
	defer a.closeTickets()
	if a.cfg.Name != "" {
		if err := setProcessName(a.cfg.Name); err != nil {
			a.log.Warn(fmt.Sprintf("--name: %v", err))
		}
		a.log.Info(fmt.Sprintf("Starting corral [%s] (pid: %d)", a.cfg.Name, a.pid))
	} else {
		a.log.Info(fmt.Sprintf("Starting corral (pid: %d)", a.pid))
	}
	for _, l := range a.listeners {
		a.log.Info(fmt.Sprintf("Listening at: %s (%d)", a.listenerURL(l), a.pid))
	}
	a.log.Info("Using worker: " + a.cfg.Worker.Class)
	if a.Watcher != nil {
		if err := a.Watcher.Start(a.pipe.Wake); err != nil {
			return err
		}
		defer a.Watcher.Close()
	}
	a.manageWorkers()
	for len(a.workers) > 0 || !a.stopping || (a.upgrade != nil && !a.upgrade.ready) {
		a.sleep()
		a.pipe.Read(a.queue)
		a.handleSignals()
		a.handleCommands()
		a.checkWatcher()
		a.checkUpgrade()
		a.checkParent()
		a.apply(a.delayOver(a.sys.now()))
		a.reapWorkers()
		a.murderWorkers()
		a.autoscale()
		a.measureMemory()
		a.canaryReady()
		a.apply(a.watchCanary(a.sys.now()))
		a.manageWorkers()
		a.checkTickets()
		a.publish(a.stopping)
	}
	a.handoverCounters()
	if a.Hooks.OnExit != nil {
		a.Hooks.OnExit(a)
	}
	if a.exitErr == nil && a.handedOver {
		a.log.Info(fmt.Sprintf("Handed over: Master (pid: %d) exits", a.pid))
	} else if a.exitErr == nil {
		a.log.Info(fmt.Sprintf("Shutting down: Master (pid: %d)", a.pid))
	}
	return a.exitErr
}

func (a *Arbiter) bind() error {
	ls, err := a.inheritUpgrade()
	if err != nil {
		return err
	}
	if ls != nil {
		a.log.Info(fmt.Sprintf("Taking over %d socket(s) from pid %d", len(ls), a.parent.pid))
		a.listeners = ls
		return nil
	}
	if ls, err = socket.Systemd(); err != nil {
		return err
	}
	if ls != nil {
		a.log.Info(fmt.Sprintf("Using %d socket(s) passed by systemd", len(ls)))
	} else if ls, err = socket.Bind(a.cfg.Binds, a.cfg.Socket); err != nil {
		return err
	}
	a.listeners = ls
	return nil
}

// sleep waits for a signal or a worker's status message, at most a second
// (the tick that drives timeouts), less when a spawn, the watcher or a
// stopping worker's SIGKILL is due sooner.
func (a *Arbiter) sleep() {
	wait := time.Second
	due := []time.Time{a.nextSpawn, a.nextWatch, a.controlDue(), a.delayUntil, a.nextSample()}
	for _, w := range a.workers {
		if w.stopping && !w.killed {
			due = append(due, w.killAt)
		}
	}
	now := a.sys.now()
	for _, t := range due {
		if d := t.Sub(now); d > 0 && d < wait {
			wait = d
		}
	}
	fds := []unix.PollFd{{Fd: int32(a.pipe.Fd()), Events: unix.POLLIN}}
	if a.upgrade != nil && !a.upgrade.ready {
		fds = append(fds, unix.PollFd{Fd: int32(a.upgrade.conn), Events: unix.POLLIN})
	}
	if a.parent != nil {
		fds = append(fds, unix.PollFd{Fd: int32(a.parent.conn), Events: unix.POLLIN})
	}
	first := len(fds)
	var polled []*Worker
	for _, w := range a.workers {
		if w.statusFd >= 0 {
			fds = append(fds, unix.PollFd{Fd: int32(w.statusFd), Events: unix.POLLIN})
			polled = append(polled, w)
		}
	}
	afterPoll := a.execPoll(&fds, &wait)
	n, err := unix.Poll(fds, int(wait/time.Millisecond)+1)
	afterPoll(fds)
	if err != nil || n == 0 {
		return // EINTR (the Go runtime preempts with signals) or the tick
	}
	for i, w := range polled {
		if fds[first+i].Revents != 0 {
			a.readStatus(w)
		}
	}
}

func (a *Arbiter) handleSignals() {
	if a.queue.Dropped > 0 {
		a.log.Warn(fmt.Sprintf("Dropped %d signals: too many at once", a.queue.Dropped))
		a.queue.Dropped = 0
	}
	for {
		s, ok := a.queue.Pop()
		if !ok {
			return
		}
		if s == syscall.SIGCHLD {
			continue // reaping runs every turn of the loop
		}
		a.log.Info("Handling signal: "+signals.Name(s), "signal", signals.Name(s))
		switch s {
		case syscall.SIGHUP:
			a.reload("HUP")
		case syscall.SIGTTIN:
			a.moveTarget(a.bounded(a.target+1), "ttin", "TTIN")
		case syscall.SIGTTOU:
			if a.target > 1 {
				a.moveTarget(a.bounded(a.target-1), "ttou", "TTOU")
			}
		case syscall.SIGUSR1:
			a.reopenLogs()
		case syscall.SIGUSR2:
			a.startUpgrade()
		case syscall.SIGWINCH:
			if a.pid == 1 {
				// PID 1 is a container's: there WINCH is a terminal's
				// resize (docker run -t, kubectl attach), not an
				// operator's request, as Gunicorn ignores it unless
				// daemonized.
				a.log.Info("Ignoring WINCH: as PID 1 it means a terminal resize")
				continue
			}
			a.log.Info("Graceful stop of workers")
			a.moveTarget(0, "winch", "WINCH")
		case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT:
			d := a.onStopSignal(s)
			if a.stopSig == 0 || d.verb == quickStop && !a.quick {
				a.stopSig = s // how it stopped, for Stopped
			}
			a.apply([]decision{d})
		}
	}
}

// moveTarget sets the target and records why it changed, for the
// metrics: cause is a word (the label), why the sentence.
func (a *Arbiter) moveTarget(n int, cause, why string) {
	if n == a.target {
		return
	}
	a.setTarget(n)
	a.scale.cause, a.scale.why, a.scale.changed = cause, why, a.sys.now()
}

func (a *Arbiter) setTarget(n int) {
	if n == a.target {
		return
	}
	old := a.target
	a.target = n
	a.log.Info(fmt.Sprintf("Number of workers: %d -> %d", old, n))
	notifySystemd(fmt.Sprintf("STATUS=%d workers wanted, generation %d", n, a.generation))
	if a.Hooks.NWorkersChanged != nil {
		a.Hooks.NWorkersChanged(a, n, old)
	}
}

func (a *Arbiter) reopenLogs() {
	if a.cfg.ErrorLog != nil {
		if err := a.cfg.ErrorLog.Reopen(); err != nil {
			a.log.Error(err.Error())
		}
	}
	// The counts let a soak test see leaks from outside.
	a.log.Info(fmt.Sprintf("Reopening log files (goroutines: %d, workers: %d, target: %d)", runtime.NumGoroutine(), len(a.workers), a.target))
	for _, w := range a.workers {
		a.send(w, syscall.SIGUSR1)
	}
}

// checkWatcher reloads when watched files changed and have settled.
func (a *Arbiter) checkWatcher() {
	if a.Watcher == nil || a.stopping {
		return
	}
	files, next := a.Watcher.Changes()
	a.nextWatch = next
	if len(files) == 0 {
		return
	}
	why := strings.Join(files[:min(len(files), 3)], ", ")
	if len(files) > 3 {
		why += fmt.Sprintf(" and %d more", len(files)-3)
	}
	a.log.Info(fmt.Sprintf("Changed: %s; reloading", why))
	a.reload("change of " + why)
}

// reload starts a new generation of workers with the configuration read
// anew. Old workers stop only as new ones become ready (manageWorkers), so
// a generation that cannot boot never replaces one that serves. reason
// (the signal, or the files that changed) goes into the log.
func (a *Arbiter) reload(reason string) error {
	if a.stopping || a.delaying() {
		return errors.New("the arbiter is stopping")
	}
	cfg := a.cfg
	if a.Reload != nil {
		c, err := a.Reload()
		if err != nil {
			kept := "keeping the current configuration and workers"
			if a.target == 0 {
				kept = "keeping the current configuration; no workers run (stopped by WINCH; TTIN starts one)"
			}
			a.log.Error(fmt.Sprintf("Reload failed: %v; %s", err, kept), "reason", err.Error())
			a.reloadEnded(metrics.ReloadRefused)
			return fmt.Errorf("the configuration did not load: %w", err)
		}
		cfg = c
	}
	if !sameStrings(cfg.Binds, a.cfg.Binds) {
		a.log.Warn("Reload: bind addresses changed; they take effect at the next restart")
	}
	a.cfg = cfg
	a.log = cfg.Log
	// TTIN/TTOU survive a reload unless the configured count changed,
	// and a reload after WINCH brings the workers back.
	if cfg.Workers != a.configured || a.target == 0 {
		a.configured = cfg.Workers
		a.moveTarget(cfg.Workers, "reload", "the reloaded configuration's count")
	}
	if cfg.scaling() && a.target > 0 {
		a.moveTarget(min(max(a.target, cfg.Workers), cfg.MaxWorkers), "reload", "the reloaded configuration's bounds")
	}
	a.generation++
	a.reloadAt = a.sys.now()
	a.reloadReason = reason
	a.canary = nil
	n := cfg.ReloadCanary
	if a.canaryAsked > 0 {
		n, a.canaryAsked = a.canaryAsked, 0
	}
	if n > 0 && n < a.target {
		a.canary = &canaryState{gen: a.generation, n: n}
		a.log.Info(fmt.Sprintf("Canary: generation %d starts with %d of %d workers", a.generation, n, a.target))
	}
	notifyReloading()
	if a.Hooks.OnReload != nil {
		a.Hooks.OnReload(a)
	}
	a.log.Info(fmt.Sprintf("Reloading: generation %d, %d workers", a.generation, a.target), "generation", a.generation)
	return nil
}

// stop begins a shutdown. A graceful one first makes the kernel stop
// taking new connections, so that what is in the backlog gets served and
// nothing accepted is reset when the listeners close.
func (a *Arbiter) stop(quick bool) {
	if a.stopping && (a.quick || !quick) {
		return
	}
	a.stopUpgrade()
	if !a.stopping && !a.delaying() {
		notifySystemd("STOPPING=1")
	}
	a.stopping, a.quick = true, quick
	sig := syscall.SIGTERM
	// Another arbiter shares the listeners while an upgrade hands over:
	// their intake is not this one's to stop.
	shared := a.parent != nil || a.upgrade != nil || a.handedOver
	if quick {
		sig = syscall.SIGQUIT
	} else if !shared {
		for _, l := range a.listeners {
			if err := l.StopIntake(); err != nil {
				// The next best where the filter is refused (a sandbox
				// may refuse SO_ATTACH_FILTER on TCP sockets, as some
				// container hosts do): let go of this process's copy now,
				// so the socket closes with the last worker's, right
				// after that worker accepted what was in the backlog.
				a.log.Warn(fmt.Sprintf("%v; closing the arbiter's copy instead: the socket closes with the last worker's, once it drained the backlog", err))
				l.Close()
			}
		}
	}
	// Each worker's SIGKILL comes at its own --graceful-timeout (stopWorker).
	a.apply(a.stopAll(sig))
}

func (a *Arbiter) sortedWorkers() []*Worker {
	ws := make([]*Worker, 0, len(a.workers))
	for _, w := range a.workers {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Age < ws[j].Age })
	return ws
}

func (a *Arbiter) writePidFile() error {
	if a.cfg.PidFile == "" {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(a.pidFilePath()), ".corral-pid-*")
	if err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	fmt.Fprintf(tmp, "%d\n", a.pid)
	tmp.Chmod(0o644)
	tmp.Close()
	if err := os.Rename(tmp.Name(), a.pidFilePath()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// removeOwnPidFile removes the pid file, and not when a new arbiter takes
// over: it moves its own over this one.
func (a *Arbiter) removeOwnPidFile() {
	if a.cfg.PidFile == "" || a.handedOver {
		return
	}
	removePidFile(a.pidFilePath(), a.pid)
}

// removePidFile removes the pid file at path only if it still names pid.
func removePidFile(path string, pid int) {
	b, err := os.ReadFile(path)
	if err == nil && string(b) == strconv.Itoa(pid)+"\n" {
		os.Remove(path)
	}
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
