package worker

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecConfig is exec mode's part of a worker's Config (corral -- COMMAND):
// the worker process is then a shim that hands its listeners to COMMAND
// the way systemd does and execs it, keeping its pid.
type ExecConfig struct {
	// Command is the program, by resolved path, and its arguments.
	Command []string `json:"command"`
	// Env is set for the command on top of the inherited environment:
	// LISTEN_FDS, LISTEN_FDNAMES, NOTIFY_SOCKET, and WATCHDOG_USEC when
	// --timeout is on. The shim adds what only it knows (LISTEN_PID).
	Env []string `json:"env"`
}

// Environment variables the shim sets for the command.
const (
	EnvWorkerAge  = "CORRAL_WORKER_AGE"  // the worker's spawn sequence number
	EnvArbiterPid = "CORRAL_ARBITER_PID" // the arbiter's pid
)

// execReplaced are the variables the shim removes from the inherited
// environment before it sets its own: the command must never see an
// outer systemd's sockets, notify socket or watchdog as its own.
var execReplaced = []string{EnvConfig, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID",
	"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", EnvWorkerAge, EnvArbiterPid}

// execCommand is the shim: it leaves exactly fds 0-2 and the listeners
// (3 ... 3+n-1) open across exec, sets the environment of systemd's socket
// activation, and execs the command. PR_SET_PDEATHSIG survives exec (set
// again on the exec'ing thread), so the command dies with the arbiter as
// any worker does. The shim writes
// nothing on the status pipe unless the exec fails: then one "error" line,
// which the arbiter logs as the boot failure's reason, and it exits with
// ExitBootError. Readiness and heartbeats come from the command itself,
// over NOTIFY_SOCKET, to the arbiter.
func execCommand(cfg *Config) int {
	status := cfg.StatusFD
	fail := func(err error) int {
		msg := StatusError + " " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"
		if status > 0 {
			unix.Write(status, []byte(msg))
		}
		return ExitBootError
	}
	x := cfg.Exec
	if len(x.Command) == 0 {
		return fail(fmt.Errorf("exec: no command"))
	}
	// The arbiter beats an exec worker's heartbeat itself, on WATCHDOG=1.
	if cfg.HeartbeatFD > 0 {
		unix.Close(cfg.HeartbeatFD)
	}
	if err := execFds(socketFDs(cfg)); err != nil {
		return fail(err)
	}
	env := execEnv(os.Environ(), x.Env, os.Getpid(), cfg)
	// The parent-death signal belongs to a thread: the arbiter's fork set
	// it on this process's first thread, but execve from any other (Go
	// runs goroutines where it likes) makes that thread the process, and
	// the setting would be lost: the command would outlive a killed
	// arbiter. So: this thread, set again, and the arbiter still there.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fail(fmt.Errorf("prctl(PR_SET_PDEATHSIG): %w", err))
	}
	if cfg.ArbiterPid != 0 && os.Getppid() != cfg.ArbiterPid {
		return fail(fmt.Errorf("exec: the arbiter (pid %d) is gone", cfg.ArbiterPid))
	}
	err := syscall.Exec(x.Command[0], x.Command, env)
	return fail(fmt.Errorf("exec %s: %w", x.Command[0], err))
}

// socketFDs lists the listener fds the command inherits.
func socketFDs(cfg *Config) map[int]bool {
	keep := map[int]bool{}
	for _, l := range cfg.Listeners {
		keep[l.FD] = true
	}
	return keep
}

// execFds makes every fd above 2 close-on-exec except the listeners, whose
// flag it clears. The status pipe closes at the exec too: the arbiter reads
// that as the shim's end, not the worker's.
func execFds(keep map[int]bool) error {
	for fd := range keep {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("exec: listener fd %d: %w", fd, err)
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("exec: list fds: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 || keep[fd] {
			continue
		}
		unix.CloseOnExec(fd) // ReadDir's own fd is gone already: EBADF, harmless
	}
	return nil
}

// CloseOnExec makes every fd above 2 close-on-exec, so that a process a
// worker type starts (the wsgi type's Python) inherits none of the
// worker's own: the listeners, the status pipe, the heartbeat.
func CloseOnExec() error { return execFds(nil) }

// execEnv is the command's environment: the inherited one without the
// variables the shim owns, then the arbiter's (x.Env), then LISTEN_PID and
// WATCHDOG_PID (this pid, which the exec keeps), the worker's age and the
// arbiter's pid.
func execEnv(inherited, set []string, pid int, cfg *Config) []string {
	env := make([]string, 0, len(inherited)+len(set)+4)
	for _, kv := range inherited {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, r := range execReplaced {
			if k == r {
				drop = true
				break
			}
		}
		if !drop {
			env = append(env, kv)
		}
	}
	env = append(env, set...)
	env = append(env, "LISTEN_PID="+strconv.Itoa(pid))
	for _, kv := range set {
		if strings.HasPrefix(kv, "WATCHDOG_USEC=") {
			env = append(env, "WATCHDOG_PID="+strconv.Itoa(pid))
		}
	}
	return append(env,
		EnvWorkerAge+"="+strconv.Itoa(cfg.Age),
		EnvArbiterPid+"="+strconv.Itoa(cfg.ArbiterPid))
}
