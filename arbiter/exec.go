package arbiter

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corral-server/corral/socket"
	"github.com/corral-server/corral/worker"
	"golang.org/x/sys/unix"
)

// Exec mode (Config.Command set): each worker is the corral binary as a
// shim that execs the command with the listeners at fds 3.. and systemd's
// variables (see worker/exec.go). The command tells the arbiter it is
// ready, and alive, over its own NOTIFY_SOCKET, as it would tell systemd:
//
//	READY=1      the worker is ready (the path of the status pipe's "ready")
//	WATCHDOG=1   a heartbeat; --timeout applies from the first one on
//	STATUS=...   logged with the worker's pid
//	STOPPING=1   logged
//
// The socket is a datagram socket in the abstract namespace, one per
// worker, bound by the arbiter before the spawn. Messages from a process
// of another user than the arbiter's, the workers' (-u) or root are
// dropped: the trust a 0700 directory would give, with no file to clean up.

// ExecOptions are exec mode's settings.
type ExecOptions struct {
	// ReadyDelay, for --ready delay:D, counts a worker ready D after its
	// spawn (or at READY=1, if that comes first). Zero is --ready notify:
	// only READY=1 makes a worker ready.
	ReadyDelay time.Duration
	// StopSignal replaces TERM for a graceful stop (--stop-signal); zero
	// is TERM. A quick stop sends QUIT; SIGKILL follows as for any worker.
	StopSignal syscall.Signal
	// CaptureOutput sends the command's stdout and stderr to the error
	// log, a line at a time, prefixed with the worker's pid.
	CaptureOutput bool
}

// execWorker is an exec-mode worker's extra state, owned by the loop.
type execWorker struct {
	notifyFd   int         // the arbiter's end of the worker's NOTIFY_SOCKET; -1 once closed
	notifyName string      // "@corral/..."
	watchdog   bool        // sent WATCHDOG=1: --timeout applies from now on
	outR, outW int         // the output pipe (read end for the arbiter, write end for the worker); -1 when not capturing
	tail       *outputTail // the last lines of its output, when capturing
}

// prepareExec, for a worker about to spawn in exec mode, creates its
// NOTIFY_SOCKET and output pipe, fills wc.Exec, and points the child's
// stdout and stderr (files[1], files[2]) at the pipe. It returns nil
// outside exec mode.
func prepareExec(s spawnSpec, wc *worker.Config, files []uintptr) (*execWorker, error) {
	cfg := s.cfg
	if len(cfg.Command) == 0 {
		return nil, nil
	}
	x := &execWorker{notifyFd: -1, outR: -1, outW: -1}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	x.notifyFd = fd
	var rnd [8]byte
	rand.Read(rnd[:])
	x.notifyName = fmt.Sprintf("@corral/%d/%d/%s", wc.ArbiterPid, wc.Age, hex.EncodeToString(rnd[:]))
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: x.notifyName}); err != nil {
		x.close()
		return nil, fmt.Errorf("notify socket: bind %s: %w", x.notifyName, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		x.close()
		return nil, fmt.Errorf("notify socket: SO_PASSCRED: %w", err)
	}
	if cfg.Exec.CaptureOutput {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			x.close()
			return nil, fmt.Errorf("output pipe: %w", err)
		}
		x.outR, x.outW = p[0], p[1]
		files[1], files[2] = uintptr(x.outW), uintptr(x.outW)
	}
	env := append(socket.SystemdEnv(s.listeners), "NOTIFY_SOCKET="+x.notifyName)
	if t := cfg.Worker.Timeout; t > 0 {
		env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(t.Microseconds(), 10))
	}
	wc.Exec = &worker.ExecConfig{Command: cfg.Command, Env: env}
	return x, nil
}

// forked runs after the spawn: the child's end of the output pipe closes
// here, and on success the output starts flowing to the log. On failure
// everything closes.
func (x *execWorker) forked(log *slog.Logger, pid int, err error) {
	if x == nil {
		return
	}
	if x.outW >= 0 {
		unix.Close(x.outW)
		x.outW = -1
	}
	if err != nil {
		x.close()
		return
	}
	if x.outR >= 0 {
		x.tail = newOutputTail()
		go logOutput(x.outR, pid, log, x.tail) // the goroutine owns the read end now
		x.outR = -1
	}
}

// close closes what the arbiter holds for the worker.
func (x *execWorker) close() {
	for _, fd := range []*int{&x.notifyFd, &x.outR, &x.outW} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// execReaped reads a reaped exec worker's last messages and closes its socket.
func (a *Arbiter) execReaped(w *Worker) {
	if w.exec == nil {
		return
	}
	a.execReadNotify(w)
	w.exec.close()
}

// stopSignal maps a graceful stop's TERM to --stop-signal for exec workers.
func (a *Arbiter) stopSignal(w *Worker, sig syscall.Signal) syscall.Signal {
	if w.exec != nil && sig == syscall.SIGTERM && a.cfg.Exec.StopSignal != 0 {
		return a.cfg.Exec.StopSignal
	}
	return sig
}

// execPoll adds the exec workers' notify sockets to the loop's poll set
// and shortens the wait to the next --ready delay. The function it returns
// runs after the poll: it reads the sockets that have messages, and does
// what is due each turn (delay readiness, the heartbeat before the first
// WATCHDOG=1).
func (a *Arbiter) execPoll(fds *[]unix.PollFd, wait *time.Duration) func([]unix.PollFd) {
	first := len(*fds)
	var polled []*Worker
	now := a.sys.now()
	for _, w := range a.workers {
		if w.exec == nil {
			continue
		}
		if w.exec.notifyFd >= 0 {
			*fds = append(*fds, unix.PollFd{Fd: int32(w.exec.notifyFd), Events: unix.POLLIN})
			polled = append(polled, w)
		}
		if d := a.cfg.Exec.ReadyDelay; d > 0 && !w.Ready && !w.stopping {
			if until := w.Started.Add(d).Sub(now); until > 0 && until < *wait {
				*wait = until
			}
		}
	}
	return func(fds []unix.PollFd) {
		for i, w := range polled {
			if first+i < len(fds) && fds[first+i].Revents != 0 {
				a.execReadNotify(w)
			}
		}
		a.execTick()
	}
}

// execTick runs every turn of the loop, before murderWorkers.
func (a *Arbiter) execTick() {
	now := a.sys.now()
	for _, w := range a.workers {
		x := w.exec
		if x == nil {
			continue
		}
		// Many programs never send WATCHDOG=1: until one does, the
		// arbiter beats for it, so --timeout starts at its first beat.
		if !x.watchdog {
			w.heartbeat.Beat()
		}
		if w.Ready || w.stopping {
			continue
		}
		if d := a.cfg.Exec.ReadyDelay; d > 0 && now.Sub(w.Started) >= d {
			a.handleStatus(w, worker.StatusReady)
		}
	}
}

// lastOutput is what a boot failure's final error adds for an exec
// worker: the last lines of its output, which hold the program's reason.
func lastOutput(w *Worker) string {
	if w.exec == nil || w.exec.tail == nil {
		return ""
	}
	lines := w.exec.tail.last(200 * time.Millisecond)
	if len(lines) == 0 {
		return ""
	}
	return "; its last output: " + strings.Join(lines, " | ")
}

// bootTimeoutError is what the reaper reports for a worker killed at
// --boot-timeout. Under --ready notify, an exec worker's is a hint: what
// was missing is most likely READY=1.
func (a *Arbiter) bootTimeoutError(w *Worker) string {
	d := a.cfg.BootTimeout
	if w.exec != nil && a.cfg.Exec.ReadyDelay == 0 {
		return fmt.Sprintf("no READY=1 on NOTIFY_SOCKET within the boot timeout (%s); "+
			"a program that does not speak sd_notify needs --ready delay:DURATION", d)
	}
	return fmt.Sprintf("not ready within the boot timeout (%s)", d)
}

// execReadNotify reads every datagram waiting on w's NOTIFY_SOCKET.
func (a *Arbiter) execReadNotify(w *Worker) {
	x := w.exec
	var buf [4096]byte
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*16))
	for x.notifyFd >= 0 {
		n, oobn, _, _, err := unix.Recvmsg(x.notifyFd, buf[:], oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return // EAGAIN: all read
		}
		if !a.execTrusted(w, oob[:oobn]) {
			continue
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			a.execHandleNotify(w, line)
		}
	}
}

// execTrusted checks the sender's credentials, and closes any fds sent
// along (FDSTORE=1 is not supported).
func (a *Arbiter) execTrusted(w *Worker, oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	for _, m := range msgs {
		if fds, err := unix.ParseUnixRights(&m); err == nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
		if c, err := unix.ParseUnixCredentials(&m); err == nil {
			cred = c
		}
	}
	if cred == nil {
		return false
	}
	if int(cred.Pid) == w.Pid || cred.Uid == 0 || int(cred.Uid) == os.Geteuid() ||
		(a.cfg.Credential != nil && cred.Uid == a.cfg.Credential.Uid) {
		return true
	}
	a.log.Warn(fmt.Sprintf("Worker (pid:%d): dropped a notify message from pid %d, uid %d", w.Pid, cred.Pid, cred.Uid))
	return false
}

func (a *Arbiter) execHandleNotify(w *Worker, line string) {
	k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
	switch k {
	case "":
	case "READY":
		if v == "1" {
			a.handleStatus(w, worker.StatusReady)
		}
	case "WATCHDOG":
		if v == "1" {
			w.exec.watchdog = true
			w.heartbeat.Beat()
		}
	case "STATUS":
		a.log.Info(fmt.Sprintf("Worker (pid:%d) status: %s", w.Pid, v))
	case "STOPPING":
		if v == "1" {
			a.log.Info(fmt.Sprintf("Worker (pid:%d) is stopping", w.Pid))
		}
	case "ERRNO":
		w.lastError = "ERRNO=" + v
	default:
		a.log.Debug(fmt.Sprintf("Worker (pid:%d) notify message ignored: %q", w.Pid, line))
	}
}
