package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
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
	if len(cfg.CPUs) > 0 {
		if err := pinCPUs(cfg.CPUs); err != nil {
			fmt.Fprintln(os.Stderr, "corral worker:", err) // it serves on, unpinned
		}
	}
	if cfg.Exec != nil {
		return execCommand(cfg) // returns only if the exec failed
	}
	// What an exec worker's command finds in its environment, a Go app
	// finds in its own: which worker it is (the demo's /fail reads the
	// generation).
	os.Setenv(EnvWorkerAge, strconv.Itoa(cfg.Age))
	os.Setenv(EnvWorkerGeneration, strconv.Itoa(cfg.Generation))
	p := &Process{Config: cfg, Pid: os.Getpid(), status: os.NewFile(uintptr(cfg.StatusFD), "status")}
	p.Log = logging.New(os.Stderr, slog.LevelInfo)
	code, err := run(p, apps, hooks)
	if err != nil {
		p.Log.Error(fmt.Sprintf("Worker (pid:%d) failed to boot: %v", p.Pid, err))
		p.reportError(err)
	}
	return code
}

// run boots the worker, serves until its type's Serve returns or a
// signal ends the process, and returns the exit code.
func run(p *Process, apps AppFunc, hooks Hooks) (int, error) {
	w, errLog, err := p.boot(apps)
	if err != nil {
		return ExitBootError, err
	}
	// Signals are caught before serving starts, so a stop that comes
	// while the worker boots still drains whatever it accepted.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, caughtSignals...)
	defer signal.Stop(sigs)
	if hooks.PostWorkerInit != nil {
		hooks.PostWorkerInit(p)
	}
	s := p.start(w, errLog)
	defer s.stopTickers()
	code, served := s.wait(sigs)
	if served && hooks.WorkerExit != nil {
		hooks.WorkerExit(p)
	}
	return code, nil
}

// caughtSignals are the signals a worker catches: its own (TERM, INT,
// QUIT, ABRT, USR1), and the arbiter's (HUP, WINCH, TTIN, TTOU, USR2),
// which it ignores: a terminal may send them to the whole process group.
var caughtSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGABRT,
	syscall.SIGHUP, syscall.SIGWINCH, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGUSR2}

// boot readies p to serve: the logs, the app's handler (the program's, or
// the one the type loads itself), the listeners, the front ends, the
// heartbeat and the scoreboard. It returns the worker and the error log, which USR1 reopens.
func (p *Process) boot(apps AppFunc) (Worker, *logging.File, error) {
	cfg := p.Config
	level, err := logging.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, nil, err
	}
	errLog, err := logging.OpenFile(cfg.ErrorLog, os.Stderr)
	if err != nil {
		return nil, nil, err
	}
	p.Log = logging.NewFormat(errLog, level, cfg.LogFormat)
	if p.access, err = OpenAccessLog(cfg.AccessLog, cfg.AccessLogFormat); err != nil {
		return nil, nil, err
	}
	if p.access != nil {
		p.access.ErrorLog = p.Log
	}
	class, ok := Lookup(cfg.Class)
	if !ok {
		return nil, nil, fmt.Errorf("unknown worker class %q", cfg.Class)
	}
	w := class()
	if l, ok := w.(AppLoader); ok {
		p.handler, err = l.LoadApp(p)
	} else {
		p.handler, err = apps(cfg.App)
	}
	if err != nil {
		return nil, nil, err
	}
	if p.Listeners, err = socket.Listen(cfg.Listeners); err != nil {
		return nil, nil, err
	}
	if err := p.initFront(); err != nil {
		return nil, nil, err
	}
	if err := p.initTLS(class); err != nil {
		return nil, nil, err
	}
	p.maxRequests = chooseMaxRequests(cfg.MaxRequests, cfg.MaxRequestsJitter)
	if cfg.HeartbeatFD > 0 {
		if p.heartbeat, err = heartbeat.Open(cfg.HeartbeatFD); err != nil {
			return nil, nil, err
		}
		if cfg.Metrics {
			if p.board = p.heartbeat.Board(); p.board != nil {
				p.board.Init()
			}
		}
	}
	return w, errLog, nil
}

// serving is the runtime's state while a worker type serves: whether the
// type is ready yet, the stop held until it is, and the timers that bound
// a stop once it began.
type serving struct {
	p      *Process
	w      Worker
	errLog *logging.File
	done   chan error       // Serve's result
	ready  <-chan struct{}  // closed by Ready; nil once seen
	held   *bool            // a stop that came before Ready: graceful, or not
	grace  <-chan time.Time // --graceful-timeout, from the first TERM
	hard   <-chan time.Time // the second a quick stop has to end Serve
	beat   *time.Ticker     // the runtime's heartbeat; nil for a SelfBeating type
	beats  <-chan time.Time // beat.C, or nil
	parent *time.Ticker     // when to check that the arbiter is still the parent
}

// start runs w.Serve on p, with the heartbeat on a ticker unless w beats
// itself: then --timeout catches a wedged process, not a slow request.
func (p *Process) start(w Worker, errLog *logging.File) *serving {
	s := &serving{p: p, w: w, errLog: errLog, done: make(chan error, 1)}
	if sb, ok := w.(SelfBeating); (!ok || !sb.BeatsItself()) && p.Config.Timeout > 0 {
		s.beat = time.NewTicker(max(p.Config.Timeout/4, 50*time.Millisecond))
		s.beats = s.beat.C
	}
	p.Beat()
	p.ready = make(chan struct{})
	s.ready = p.ready
	go func() { s.done <- w.Serve(p) }()
	s.parent = time.NewTicker(time.Second)
	return s
}

func (s *serving) stopTickers() {
	if s.beat != nil {
		s.beat.Stop()
	}
	s.parent.Stop()
}

// wait handles events until the worker exits, and returns its exit code;
// served says that Serve returned, rather than a signal or a timer ending
// the process first.
func (s *serving) wait(sigs <-chan os.Signal) (code int, served bool) {
	for {
		select {
		case err := <-s.done:
			s.exiting(err)
			return 0, true
		case <-s.ready:
			s.becameReady()
		case sig := <-sigs:
			if code, exit := s.signal(sig); exit {
				return code, false
			}
		case <-s.grace:
			s.p.Log.Warn(fmt.Sprintf("Worker (pid:%d) graceful timeout (%s), closing connections", s.p.Pid, s.p.Config.GracefulTimeout))
			s.quit()
		case <-s.hard:
			return 1, false
		case <-s.beats:
			s.p.Beat()
		case <-s.parent.C:
			s.checkParent()
		}
	}
}

// signal acts on sig; exit says that the process ends now, with code.
func (s *serving) signal(sig os.Signal) (code int, exit bool) {
	p := s.p
	switch sig {
	case syscall.SIGTERM:
		s.drain()
	case syscall.SIGABRT:
		// The arbiter's timeout: say what we were stuck in.
		p.Log.Error(fmt.Sprintf("Worker (pid:%d) timed out: no heartbeat for %s", p.Pid, p.Config.Timeout))
		p.logInFlight()
		return 1, true
	case syscall.SIGINT, syscall.SIGQUIT:
		s.quit()
	case syscall.SIGUSR1:
		s.reopenLogs()
	}
	// HUP, WINCH, TTIN, TTOU and USR2 are the arbiter's; a terminal may
	// send them to the whole process group.
	return 0, false
}

// drain begins a graceful stop, which --graceful-timeout bounds; a TERM
// while one is under way changes nothing.
func (s *serving) drain() {
	if s.grace != nil {
		return
	}
	s.p.drain()
	s.stop(true)
	s.grace = time.After(s.p.Config.GracefulTimeout)
}

// quit begins a quick stop: the type closes everything, and Serve has a
// second to return before the process exits anyway.
func (s *serving) quit() {
	s.p.drain()
	s.stop(false)
	s.hard = time.After(time.Second)
}

// stop asks the type to stop. A stop that comes before the type is ready
// waits for it: until then the type may not have the listeners and loops
// that Stop acts on, and the stop would be lost. Of held stops, a quick
// one wins over a graceful one.
func (s *serving) stop(graceful bool) {
	if s.ready == nil {
		s.w.Stop(graceful)
	} else if s.held == nil || !graceful {
		s.held = &graceful
	}
}

// becameReady applies the stop held until the type was ready.
func (s *serving) becameReady() {
	s.ready = nil
	if s.held != nil {
		s.w.Stop(*s.held)
	}
}

func (s *serving) reopenLogs() {
	if err := s.errLog.Reopen(); err != nil {
		s.p.Log.Error(err.Error())
	}
	if err := s.p.access.Reopen(); err != nil {
		s.p.Log.Error(err.Error())
	}
	s.p.Log.Info("Reopening log files")
}

// checkParent stops quickly once the arbiter is no longer the parent.
// PR_SET_PDEATHSIG kills a worker with the arbiter; this catches what it
// cannot, such as an arbiter that exec'd itself.
func (s *serving) checkParent() {
	if os.Getppid() != s.p.Config.ArbiterPid {
		s.p.Log.Info(fmt.Sprintf("Parent changed, shutting down: worker (pid:%d)", s.p.Pid))
		s.quit()
	}
}

// exiting logs the end of Serve.
func (s *serving) exiting(err error) {
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.p.Log.Error(fmt.Sprintf("Worker (pid:%d) stopped serving: %v", s.p.Pid, err))
	}
	s.p.Log.Info(fmt.Sprintf("Worker exiting (pid: %d)", s.p.Pid))
}
