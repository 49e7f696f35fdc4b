package arbiter

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corral-server/corral/internal/control"
	"github.com/corral-server/corral/socket"
	"golang.org/x/sys/unix"
)

// envUpgrade tells an arbiter started by USR2 that it takes over from its
// parent: which inherited fds are the listeners, and which fd is the
// handover socket.
const envUpgrade = "CORRAL_UPGRADE"

type upgradeEnv struct {
	Parent    int                `json:"parent"`
	Conn      int                `json:"conn"`
	Listeners []socket.Inherited `json:"listeners"`
	State     handoverState      `json:"state"`             // see handover.go
	Metrics   *socket.Inherited  `json:"metrics,omitempty"` // the --metrics-bind socket, after Conn
	Control   *socket.Inherited  `json:"control,omitempty"` // the control socket, last
}

// The handover follows cloudflare/tableflip: the new arbiter inherits the
// listeners and one end of a socketpair. It writes "ready" once its first
// generation of workers serves; the old arbiter then drains its own workers
// and exits, which the new one sees as end of file on the socketpair.

// upgradeChild is the old arbiter's view of an upgrade under way.
type upgradeChild struct {
	pid     int
	conn    int
	started time.Time
	ready   bool
	killAt  time.Time // after abandonUpgrade's TERM: SIGKILL if still alive then
	killed  bool      // sent that SIGKILL
}

// upgradeParent is the new arbiter's view of the one it takes over from.
type upgradeParent struct {
	pid  int
	conn int
	said []byte // what it wrote: its metrics' counters, as it exits
}

// startUpgrade starts a new arbiter from the binary on disk (USR2). The
// error says why none started; it is logged too.
func (a *Arbiter) startUpgrade() error {
	switch {
	case a.stopping || a.delaying():
		return errors.New("the arbiter is stopping")
	case a.upgrade != nil:
		a.log.Warn(fmt.Sprintf("USR2 refused: an upgrade to pid %d is under way", a.upgrade.pid))
		return fmt.Errorf("refused: an upgrade to pid %d is under way", a.upgrade.pid)
	case a.parent != nil:
		a.log.Warn(fmt.Sprintf("USR2 refused: still taking over from pid %d", a.parent.pid))
		return fmt.Errorf("refused: still taking over from pid %d", a.parent.pid)
	}
	bin := a.cfg.UpgradeBinary
	if bin == "" {
		bin = a.cfg.Executable
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		a.log.Error(fmt.Sprintf("Upgrade failed: socketpair: %v", err))
		return fmt.Errorf("socketpair: %w", err)
	}
	unix.SetNonblock(fds[0], true)
	ue := upgradeEnv{Parent: a.pid, Conn: socket.FirstFD + len(a.listeners), Listeners: socket.Describe(a.listeners),
		State: a.stateForUpgrade()}
	files := append([]uintptr{0, 1, 2}, socket.FDs(a.listeners)...)
	files = append(files, uintptr(fds[1]))
	if l := a.metrics.listener; l != nil {
		ue.Metrics = &socket.Describe([]*socket.Listener{l})[0]
		ue.Metrics.FD = ue.Conn + 1
		files = append(files, socket.FDs([]*socket.Listener{l})...)
	}
	ue.Control, files = passControl(a.ctl.listener, files)
	b, _ := json.Marshal(ue)
	env := append(os.Environ(), envUpgrade+"="+string(b))
	pid, err := a.sys.startArbiter(bin, a.cfg.Args, env, files)
	unix.Close(fds[1])
	if err != nil {
		unix.Close(fds[0])
		a.log.Error(fmt.Sprintf("Upgrade failed: exec %s: %v; still serving", bin, err))
		return fmt.Errorf("exec %s: %w", bin, err)
	}
	a.upgrade = &upgradeChild{pid: pid, conn: fds[0], started: a.sys.now()}
	a.log.Info(fmt.Sprintf("Upgrading: started new arbiter %s (pid: %d)", bin, pid))
	return nil
}

// checkUpgrade reads the new arbiter's word and gives up on it past
// --boot-timeout.
func (a *Arbiter) checkUpgrade() {
	u := a.upgrade
	if u == nil || u.ready {
		return
	}
	var buf [64]byte
	n, _ := unix.Read(u.conn, buf[:])
	if n > 0 && strings.Contains(string(buf[:n]), "ready") {
		u.ready = true
		a.log.Info(fmt.Sprintf("Upgrade: new arbiter (pid: %d) serves; stopping this one's workers", u.pid))
		a.upgradesDone(control.ResultComplete, fmt.Sprintf("new arbiter (pid %d) serves; this one (pid %d) stops", u.pid, a.pid))
		a.handOver()
		return
	}
	now := a.sys.now()
	if !u.killAt.IsZero() {
		if now.After(u.killAt) && !u.killed {
			a.sys.signal(u.pid, syscall.SIGKILL)
			u.killed = true
		}
		return
	}
	if a.cfg.BootTimeout > 0 && now.Sub(u.started) > a.cfg.BootTimeout {
		a.log.Error(fmt.Sprintf("Upgrade failed: new arbiter (pid: %d) not ready within the boot timeout (%s); stopping it, still serving",
			u.pid, a.cfg.BootTimeout))
		a.upgradesDone(control.ResultFailed, fmt.Sprintf("new arbiter (pid %d) not ready within the boot timeout (%s); the old one serves on", u.pid, a.cfg.BootTimeout))
		a.abandonUpgrade()
	}
}

// abandonUpgrade stops the new arbiter. TERM, not KILL: it drains what
// its workers accepted, and, still taking over, it leaves the shared
// listeners' intake alone.
func (a *Arbiter) abandonUpgrade() {
	u := a.upgrade
	a.sys.signal(u.pid, syscall.SIGTERM)
	// A second more than a worker gets: the new arbiter SIGKILLs its own
	// workers at --graceful-timeout, then reaps them and exits.
	u.killAt = a.sys.now().Add(a.cfg.GracefulTimeout + time.Second)
}

// upgradeExited handles the exit of the new arbiter, which the reaper found.
func (a *Arbiter) upgradeExited(ws syscall.WaitStatus) {
	u := a.upgrade
	unix.Close(u.conn)
	a.upgrade = nil
	if u.ready {
		return // it serves; this arbiter is on its way out
	}
	a.log.Error(fmt.Sprintf("Upgrade failed: new arbiter (pid: %d) %s before it was ready; still serving", u.pid, exitReason(ws)))
	a.upgradesDone(control.ResultFailed, fmt.Sprintf("new arbiter (pid %d) %s before it was ready; the old one serves on", u.pid, exitReason(ws)))
	// It removes its PIDFILE.2 when it exits, unless it was killed.
	if a.cfg.PidFile != "" {
		removePidFile(a.cfg.PidFile+".2", u.pid)
	}
}

// handOver stops this arbiter's workers gracefully and exits, leaving the
// listeners, their socket files and the pid file to the new arbiter.
func (a *Arbiter) handOver() {
	a.handedOver = true
	// This arbiter is still the service's main process: systemd, with
	// the unit's NotifyAccess=main, takes MAINPID= only from it, and only
	// from the new main process after that (its READY=1 once it took over).
	notifySystemd("MAINPID=" + strconv.Itoa(a.upgrade.pid))
	for _, l := range a.listeners {
		l.Disown()
	}
	if a.metrics.listener != nil {
		a.metrics.listener.Disown()
	}
	a.controlHandedOver()
	a.stopping = true
	a.apply(a.stopAll(syscall.SIGTERM))
}

// inheritUpgrade takes the listeners from the arbiter that started this
// one with USR2, if it did.
func (a *Arbiter) inheritUpgrade() ([]*socket.Listener, error) {
	v := os.Getenv(envUpgrade)
	if v == "" {
		return nil, nil
	}
	os.Unsetenv(envUpgrade)
	var ue upgradeEnv
	if err := json.Unmarshal([]byte(v), &ue); err != nil {
		return nil, fmt.Errorf("%s: %w", envUpgrade, err)
	}
	var ls []*socket.Listener
	for _, in := range ue.Listeners {
		l, err := socket.Adopt(in.FD, in.Bind)
		if err != nil {
			socket.CloseAll(ls)
			return nil, err
		}
		ls = append(ls, l) // its socket file is the parent's until the takeover: see checkParent
	}
	if in := ue.Metrics; in != nil {
		l, err := socket.Adopt(in.FD, in.Bind)
		if err != nil {
			socket.CloseAll(ls)
			return nil, err
		}
		a.metrics.adopted = l // its socket file too is the parent's until the takeover
	}
	if in := ue.Control; in != nil {
		if err := a.adoptControl(in); err != nil {
			socket.CloseAll(ls)
			return nil, err
		}
	}
	unix.CloseOnExec(ue.Conn)
	unix.SetNonblock(ue.Conn, true)
	a.parent = &upgradeParent{pid: ue.Parent, conn: ue.Conn}
	a.takeState(ue.State, ue.Parent)
	return ls, nil
}

// tellParentReady runs when this arbiter's first generation serves.
func (a *Arbiter) tellParentReady() {
	if a.parent == nil {
		return
	}
	if _, err := unix.Write(a.parent.conn, []byte("ready\n")); err != nil {
		a.log.Error(fmt.Sprintf("Upgrade: cannot tell pid %d we are ready: %v", a.parent.pid, err))
	}
}

// checkParent completes the takeover once the old arbiter has exited: its
// end of the socketpair closes with it.
func (a *Arbiter) checkParent() {
	p := a.parent
	if p == nil {
		return
	}
	var buf [4096]byte
	for {
		n, err := unix.Read(p.conn, buf[:])
		if n > 0 {
			if len(p.said) < 1<<20 {
				p.said = append(p.said, buf[:n]...)
			}
			continue
		}
		if n < 0 || err == unix.EAGAIN || err == unix.EINTR {
			return
		}
		break // end of file: the old arbiter is gone
	}
	unix.Close(p.conn)
	// The unix socket files become this arbiter's to remove only now:
	// one that exits before it took over (its workers could not boot, it
	// got TERM) must leave them to the old arbiter, which serves on.
	for _, l := range a.listeners {
		l.Own()
	}
	if a.metrics.adopted != nil {
		a.metrics.adopted.Own()
	}
	a.takeCounters(p.said)
	a.controlTakenOver()
	if a.cfg.PidFile != "" {
		if err := os.Rename(a.pidFilePath(), a.cfg.PidFile); err != nil {
			a.log.Error(fmt.Sprintf("Upgrade: move pid file: %v", err))
		}
	}
	a.parent = nil
	a.log.Info(fmt.Sprintf("Upgrade complete: pid %d took over from pid %d", a.pid, p.pid))
	notifySystemd("MAINPID=" + strconv.Itoa(a.pid) + "\nREADY=1")
}

// pidFilePath is where this arbiter writes its pid: PIDFILE.2 while it
// takes over from another, as Gunicorn does.
func (a *Arbiter) pidFilePath() string {
	if a.parent != nil {
		return a.cfg.PidFile + ".2"
	}
	return a.cfg.PidFile
}
