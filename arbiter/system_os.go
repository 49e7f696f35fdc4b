package arbiter

import (
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"
	"unsafe"

	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/corral-server/corral/internal/metrics"
	"github.com/corral-server/corral/socket"
	"github.com/corral-server/corral/worker"
	"golang.org/x/sys/unix"
)

// osSystem is the real system: fork+exec, kill(2), wait4(2), time.Now.
type osSystem struct{}

func (osSystem) now() time.Time { return time.Now() }

func (osSystem) proc(pid int) (metrics.Proc, error) { return metrics.ReadProc(pid) }

func (osSystem) signal(pid int, sig syscall.Signal) error { return unix.Kill(pid, sig) }

func (osSystem) reap() (int, syscall.WaitStatus, bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return 0, 0, false
		}
		return pid, syscall.WaitStatus(ws), true
	}
}

// spawnWorker forks and execs the worker binary with the fds of the table
// in docs/architecture.md: the listeners, the write end of a status pipe
// and a heartbeat memfd (in exec mode, also a NOTIFY_SOCKET; see exec.go).
func (osSystem) spawnWorker(s spawnSpec) (spawned, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return spawned{}, fmt.Errorf("spawn worker: status pipe: %w", err)
	}
	rfd, wfd := p[0], p[1]
	unix.SetNonblock(rfd, true)
	hb, err := heartbeat.Create()
	if err != nil {
		unix.Close(rfd)
		unix.Close(wfd)
		return spawned{}, fmt.Errorf("spawn worker: %w", err)
	}
	wc := s.wc
	wc.Listeners = socket.Describe(s.listeners)
	wc.StatusFD = socket.FirstFD + len(s.listeners)
	wc.HeartbeatFD = wc.StatusFD + 1

	files := []uintptr{0, 1, 2}
	files = append(files, socket.FDs(s.listeners)...)
	files = append(files, uintptr(wfd), uintptr(hb.FD()))
	if s.tickets >= 0 {
		wc.TicketsFD = len(files)
		files = append(files, uintptr(s.tickets))
	}
	x, err := prepareExec(s, &wc, files)
	if err != nil {
		unix.Close(rfd)
		unix.Close(wfd)
		hb.Close()
		return spawned{}, fmt.Errorf("spawn worker: %w", err)
	}
	env := workerEnv(append(append(slices.Clip(s.cfg.Env), s.env...), worker.EnvConfig+"="+wc.Encode())...)
	argv := []string{workerTitle(s.cfg, s.wc)} // what ps shows
	if len(s.cfg.Args) > 1 {
		argv = append(argv, s.cfg.Args[1:]...)
	}
	pid, err := syscall.ForkExec(s.cfg.Executable, argv, &syscall.ProcAttr{
		Env:   env,
		Files: files,
		// The workers die with the arbiter, even by SIGKILL.
		Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: s.cfg.Credential},
	})
	unix.Close(wfd)
	hb.Release()
	x.forked(s.log, pid, err)
	if err != nil {
		unix.Close(rfd)
		hb.Close()
		return spawned{}, fmt.Errorf("spawn worker: exec %s: %w", s.cfg.Executable, err)
	}
	return spawned{pid: pid, statusFd: rfd, heartbeat: hb, exec: x}, nil
}

func (osSystem) startArbiter(path string, argv, env []string, files []uintptr) (int, error) {
	// No PR_SET_PDEATHSIG: the new arbiter outlives this one.
	return syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env, Files: files})
}

// setProcessName sets the arbiter's comm (ps -o comm, top, pgrep) to name,
// cut to the kernel's 15 bytes, as Gunicorn's proc_name does. prctl
// (PR_SET_NAME) names the calling thread, the loop's; /proc/self/comm names
// the process's main thread, which ps shows, whichever thread runs this.
func setProcessName(name string) error {
	if len(name) > 15 {
		name = name[:15]
	}
	b := append([]byte(name), 0)
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NAME): %w", err)
	}
	return os.WriteFile("/proc/self/comm", []byte(name), 0)
}
