package arbiter

import (
	"log/slog"
	"syscall"
	"time"

	"github.com/corral-server/corral/internal/metrics"
	"github.com/corral-server/corral/internal/scoreboard"
	"github.com/corral-server/corral/socket"
	"github.com/corral-server/corral/worker"
)

// system is what the loop asks of the operating system about its
// children: start one, signal one, collect the ones that exited, and what
// time it is. Every deadline the arbiter keeps counts on now, and every
// process it starts or signals goes through here, so the rules that decide
// what to do (decide.go) run in tests against a fake process table and a
// fake clock. osSystem (system_os.go) is the real one.
//
// Only the loop calls it, from its one locked thread: PR_SET_PDEATHSIG
// ties each worker's life to the thread that forked it.
type system interface {
	// now is the time on the arbiter's clock.
	now() time.Time
	// spawnWorker starts one worker as s describes it.
	spawnWorker(s spawnSpec) (spawned, error)
	// startArbiter starts a new arbiter for an upgrade (USR2), with files
	// as its fds 0, 1, 2, 3 ...; unlike a worker, it may outlive this one.
	startArbiter(path string, argv, env []string, files []uintptr) (pid int, err error)
	// signal sends sig to the process pid.
	signal(pid int, sig syscall.Signal) error
	// reap collects one child that exited, without waiting: ok is false
	// when none has.
	reap() (pid int, status syscall.WaitStatus, ok bool)
	// proc reads what /proc tells of the process pid: its CPU time and
	// memory (PSS, for --max-worker-memory).
	proc(pid int) (metrics.Proc, error)
}

// A spawnSpec is one worker to start.
type spawnSpec struct {
	cfg       *Config            // its generation's configuration
	listeners []*socket.Listener // what it inherits at fds 3 ...
	wc        worker.Config      // its own config; age, generation and arbiter pid are set
	log       *slog.Logger       // for exec mode's captured output
	tickets   int                // the session-ticket keys' memfd, -1 for none (tickets.go)
	env       []string           // KEY=VALUE pairs for this worker alone, after cfg.Env (GOMEMLIMIT)
}

// spawned is what the arbiter holds of a worker it started.
type spawned struct {
	pid       int
	statusFd  int // the read end of its status pipe, non-blocking; -1 for none
	heartbeat heartbeatSlot
	exec      *execWorker // exec mode only
}

// heartbeatSlot is a worker's heartbeat as the arbiter sees it; the real
// one is a *heartbeat.Slot, shared memory the worker writes.
type heartbeatSlot interface {
	Beat()                    // record a beat now (the arbiter beats for exec workers)
	Since() time.Duration     // how long ago the last beat was
	Board() *scoreboard.Board // the worker's scoreboard in the same memory; nil for none
	Close()                   // unmap it, once the worker is reaped
}
