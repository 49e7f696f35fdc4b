package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/corral-server/corral/internal/logging"
	"github.com/corral-server/corral/socket"
)

// IsWorker reports whether this process was started by an arbiter as a worker.
func IsWorker() bool { return os.Getenv(EnvConfig) != "" }

// Run is the whole life of a worker process: it reads the Config the
// arbiter passed, serves the app with the configured worker type, and
// returns the process's exit code. It never returns before the worker
// has stopped serving.
func Run(apps AppFunc, hooks Hooks) int {
	cfg, err := DecodeConfig(os.Getenv(EnvConfig))
	if err != nil {
		fmt.Fprintln(os.Stderr, "corral worker:", err)
		return ExitBootError
	}
	os.Unsetenv(EnvConfig)
	if cfg.Exec != nil {
		return execCommand(cfg) // returns only if the exec failed
	}
	p := &Process{Config: cfg, Pid: os.Getpid(), status: os.NewFile(uintptr(cfg.StatusFD), "status"),
		inFlight: map[*http.Request]time.Time{}}
	p.Log = logging.New(os.Stderr, slog.LevelInfo)
	code, err := run(p, apps, hooks)
	if err != nil {
		p.Log.Error(fmt.Sprintf("Worker (pid:%d) failed to boot: %v", p.Pid, err))
		p.reportError(err)
	}
	return code
}

func run(p *Process, apps AppFunc, hooks Hooks) (int, error) {
	cfg := p.Config
	level, err := logging.ParseLevel(cfg.LogLevel)
	if err != nil {
		return ExitBootError, err
	}
	errLog, err := logging.OpenFile(cfg.ErrorLog, os.Stderr)
	if err != nil {
		return ExitBootError, err
	}
	p.Log = logging.New(errLog, level)
	if p.access, err = OpenAccessLog(cfg.AccessLog, cfg.AccessLogFormat); err != nil {
		return ExitBootError, err
	}
	class, ok := Lookup(cfg.Class)
	if !ok {
		return ExitBootError, fmt.Errorf("unknown worker class %q", cfg.Class)
	}
	if p.handler, err = apps(cfg.App); err != nil {
		return ExitBootError, err
	}
	if p.Listeners, err = socket.Listen(cfg.Listeners); err != nil {
		return ExitBootError, err
	}
	if err := p.initFront(); err != nil {
		return ExitBootError, err
	}
	p.maxRequests = chooseMaxRequests(cfg.MaxRequests, cfg.MaxRequestsJitter)
	if cfg.HeartbeatFD > 0 {
		if p.heartbeat, err = heartbeat.Open(cfg.HeartbeatFD); err != nil {
			return ExitBootError, err
		}
	}

	// Signals are caught before serving starts, so a stop that comes
	// while the worker boots still drains whatever it accepted.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGABRT,
		syscall.SIGHUP, syscall.SIGWINCH, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	if hooks.PostWorkerInit != nil {
		hooks.PostWorkerInit(p)
	}
	w := class()
	// Beat on a ticker unless the type beats itself: then --timeout
	// catches a wedged process, not a slow request.
	var beat <-chan time.Time
	if sb, ok := w.(SelfBeating); (!ok || !sb.BeatsItself()) && cfg.Timeout > 0 {
		t := time.NewTicker(max(cfg.Timeout/4, 50*time.Millisecond))
		defer t.Stop()
		beat = t.C
	}
	p.Beat()
	p.ready = make(chan struct{})
	ready := p.ready
	done := make(chan error, 1)
	go func() { done <- w.Serve(p) }()

	// A stop that comes before the type is ready waits for it: until then
	// the type may not have the listeners and loops that Stop acts on, and
	// the stop would be lost.
	var pending *bool // graceful, or not
	stop := func(graceful bool) {
		if ready == nil {
			w.Stop(graceful)
		} else if pending == nil || !graceful {
			pending = &graceful
		}
	}

	parent := time.NewTicker(time.Second)
	defer parent.Stop()
	var grace, hardStop <-chan time.Time
	for {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				p.Log.Error(fmt.Sprintf("Worker (pid:%d) stopped serving: %v", p.Pid, err))
			}
			p.Log.Info(fmt.Sprintf("Worker exiting (pid: %d)", p.Pid))
			if hooks.WorkerExit != nil {
				hooks.WorkerExit(p)
			}
			return 0, nil
		case <-ready:
			ready = nil
			if pending != nil {
				w.Stop(*pending)
			}
		case s := <-sigs:
			switch s {
			case syscall.SIGTERM:
				if grace == nil {
					p.draining.Store(true)
					stop(true)
					grace = time.After(cfg.GracefulTimeout)
				}
			case syscall.SIGABRT:
				// The arbiter's timeout: say what we were stuck in.
				p.Log.Error(fmt.Sprintf("Worker (pid:%d) timed out: no heartbeat for %s", p.Pid, cfg.Timeout))
				p.logInFlight()
				return 1, nil
			case syscall.SIGINT, syscall.SIGQUIT:
				p.draining.Store(true)
				stop(false)
				hardStop = time.After(time.Second)
			case syscall.SIGUSR1:
				if err := errLog.Reopen(); err != nil {
					p.Log.Error(err.Error())
				}
				if err := p.access.Reopen(); err != nil {
					p.Log.Error(err.Error())
				}
				p.Log.Info("Reopening log files")
			}
			// HUP, WINCH, TTIN, TTOU and USR2 are the arbiter's; a
			// terminal may send them to the whole process group.
		case <-grace:
			p.Log.Warn(fmt.Sprintf("Worker (pid:%d) graceful timeout (%s), closing connections", p.Pid, cfg.GracefulTimeout))
			stop(false)
			hardStop = time.After(time.Second)
		case <-hardStop:
			return 1, nil
		case <-beat:
			p.Beat()
		case <-parent.C:
			// PR_SET_PDEATHSIG kills us with the arbiter; this catches
			// what it cannot, such as an arbiter that exec'd itself.
			if os.Getppid() != cfg.ArbiterPid {
				p.Log.Info(fmt.Sprintf("Parent changed, shutting down: worker (pid:%d)", p.Pid))
				p.draining.Store(true)
				stop(false)
				hardStop = time.After(time.Second)
			}
		}
	}
}
