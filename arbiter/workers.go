package arbiter

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/corral-server/corral/internal/control"
	"github.com/corral-server/corral/internal/metrics"
	"github.com/corral-server/corral/signals"
	"github.com/corral-server/corral/worker"
	"golang.org/x/sys/unix"
)

// spawnWorker starts one worker of the current generation.
func (a *Arbiter) spawnWorker() error {
	a.age++
	wc := a.cfg.Worker
	wc.Age, wc.Generation, wc.ArbiterPid = a.age, a.generation, a.pid
	tfd, err := a.ticketsFD()
	if err != nil {
		return fmt.Errorf("spawn worker: %w", err)
	}
	// The scoreboard feeds the metrics, the control socket's status, the
	// autoscaler and the canary's watch.
	wc.Slot, wc.Metrics = a.assignSlot(), a.metrics.server != nil || a.ctl.srv != nil || a.cfg.scaling() || a.cfg.ReloadCanary > 0
	if a.pinsWorkers() {
		wc.CPUs = a.workerCPUs(wc.Slot)
	}
	c, err := a.sys.spawnWorker(spawnSpec{cfg: a.cfg, listeners: a.listeners, wc: wc, log: a.log, tickets: tfd, env: a.memoryLimitEnv()})
	if err != nil {
		return err
	}
	a.workers[c.pid] = &Worker{Pid: c.pid, Age: a.age, Generation: a.generation, Slot: wc.Slot, Started: a.sys.now(),
		statusFd: c.statusFd, heartbeat: c.heartbeat, exec: c.exec}
	on := ""
	if len(wc.CPUs) > 0 {
		on = fmt.Sprintf(" on CPU %d", wc.CPUs[0])
	}
	a.log.Info(fmt.Sprintf("Booting worker with pid: %d%s", c.pid, on), "worker", c.pid, "generation", a.generation)
	return nil
}

// workerTitle is a worker's argv[0], what ps shows, as Gunicorn's process
// titles: "corral: worker [NAME] gen 3", NAME being --name, else the app,
// else the command's name.
func workerTitle(cfg *Config, wc worker.Config) string {
	prog := "corral"
	if len(cfg.Args) > 0 {
		prog = filepath.Base(cfg.Args[0])
	}
	name := cfg.Name
	if name == "" {
		name = wc.App
	}
	if name == "" && len(cfg.Command) > 0 {
		name = filepath.Base(cfg.Command[0])
	}
	if name == "" {
		return fmt.Sprintf("%s: worker gen %d", prog, wc.Generation)
	}
	return fmt.Sprintf("%s: worker [%s] gen %d", prog, name, wc.Generation)
}

// readStatus reads what a worker wrote on its status pipe.
func (a *Arbiter) readStatus(w *Worker) {
	var buf [512]byte
	for w.statusFd >= 0 {
		n, err := unix.Read(w.statusFd, buf[:])
		if n > 0 {
			w.statusBuf = append(w.statusBuf, buf[:n]...)
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if n == 0 && err == nil { // EOF: the worker is gone or going
			unix.Close(w.statusFd)
			w.statusFd = -1
		}
		break
	}
	for {
		i := bytes.IndexByte(w.statusBuf, '\n')
		if i < 0 {
			break
		}
		line := string(w.statusBuf[:i])
		w.statusBuf = w.statusBuf[i+1:]
		a.handleStatus(w, line)
	}
}

func (a *Arbiter) handleStatus(w *Worker, line string) {
	switch {
	case line == worker.StatusReady:
		if w.Ready {
			return
		}
		w.Ready, w.ReadyAt = true, a.sys.now()
		a.everReady = true
		a.bootFailures = 0
		a.workerReady(w)
		a.log.Debug(fmt.Sprintf("Worker (pid:%d) ready in %s", w.Pid, w.ReadyAt.Sub(w.Started).Round(time.Millisecond)))
	case line == worker.StatusRecycle:
		w.recycleAsked = true
	case strings.HasPrefix(line, worker.StatusError+" "):
		w.lastError = strings.TrimPrefix(line, worker.StatusError+" ")
	default:
		a.log.Warn(fmt.Sprintf("Worker (pid:%d) sent an unknown status %q", w.Pid, line))
	}
}

// reapWorkers collects every child that exited.
func (a *Arbiter) reapWorkers() {
	for {
		pid, ws, ok := a.sys.reap()
		if !ok {
			return
		}
		if a.upgrade != nil && pid == a.upgrade.pid {
			a.upgradeExited(ws)
			continue
		}
		w, ok := a.workers[pid]
		if !ok {
			continue
		}
		a.readStatus(w) // its last words: an error line, a late "ready"
		a.execReaped(w)
		if w.statusFd >= 0 {
			unix.Close(w.statusFd)
			w.statusFd = -1
		}
		delete(a.workers, pid)
		w.Status = ws
		a.foldWorker(w) // before its scoreboard is unmapped
		w.heartbeat.Close()
		a.workerExited(w)
		if a.Hooks.ChildExit != nil {
			a.Hooks.ChildExit(a, *w)
		}
	}
}

func exitReason(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by signal " + signals.Name(ws.Signal())
	}
	return fmt.Sprintf("exited with code %d", ws.ExitStatus())
}

func (a *Arbiter) workerExited(w *Worker) {
	a.canaryExited(w)
	reason := exitReason(w.Status)
	attrs := []any{"worker", w.Pid, "generation", w.Generation, "reason", exitCause(w).String()}
	switch {
	case w.timedOut:
		a.log.Error(fmt.Sprintf("Worker (pid:%d) %s after its timeout", w.Pid, reason), attrs...)
	case w.stopping:
		a.log.Info(fmt.Sprintf("Worker (pid:%d) %s", w.Pid, reason), attrs...)
	case w.Ready:
		if w.Status.Signaled() && w.Status.Signal() == syscall.SIGKILL {
			a.log.Error(fmt.Sprintf("Worker (pid:%d) was sent SIGKILL! Perhaps out of memory?", w.Pid), attrs...)
		} else {
			a.log.Error(fmt.Sprintf("Worker (pid:%d) %s unexpectedly", w.Pid, reason), attrs...)
		}
	default:
		a.bootFailed(w, reason)
	}
}

// bootFailed handles a worker that died before it was ready (see
// afterBootFailure).
func (a *Arbiter) bootFailed(w *Worker, reason string) {
	why := reason
	if w.lastError != "" {
		why = w.lastError + " (" + reason + ")"
	}
	a.log.Error(fmt.Sprintf("Worker (pid:%d) failed to boot: %s", w.Pid, why), "worker", w.Pid, "generation", w.Generation, "reason", why)
	a.apply(a.afterBootFailure(w, why))
}

// abortReload gives up on the generation being rolled out: the workers
// that serve (old ones, and new ones that did become ready) carry on as
// the current generation, under the last configuration that booted. The
// new workers still booting are stopped by decisions of their own.
func (a *Arbiter) abortReload(failed *Worker, why string) {
	if a.canary != nil {
		a.canaryEnded(metrics.CanaryBootFailure)
	}
	a.log.Error(fmt.Sprintf("Reload failed (after %s): new worker (pid:%d) could not boot: %s; the old workers keep serving",
		a.reloadReason, failed.Pid, why), "worker", failed.Pid, "generation", a.generation, "reason", why)
	a.fallBack(fmt.Sprintf("new worker (pid:%d) could not boot: %s; the old workers keep serving", failed.Pid, why),
		func(*Worker) bool { return true })
}

// fallBack ends a failed reload, failed for why: the serving workers that
// keep says (of those ready and not stopping) become the current
// generation, under the last configuration that booted; the others, now
// of an older one, are replaced by workers of it.
func (a *Arbiter) fallBack(why string, keep func(*Worker) bool) {
	a.reloadEnded(metrics.ReloadFailed)
	a.reloadsDone(control.ResultFailed, why)
	a.canary = nil
	a.generation++
	for _, w := range a.workers {
		if w.Ready && !w.stopping && keep(w) {
			w.Generation = a.generation
		}
	}
	a.cfg = a.stableCfg
	a.reloadAt = time.Time{}
	a.notifyStatus()
}

// murderWorkers kills the workers that overstay (see overdue).
func (a *Arbiter) murderWorkers() {
	a.apply(a.overdue(a.sys.now()))
}

// manageWorkers brings the workers to the target (see manage).
func (a *Arbiter) manageWorkers() {
	if a.stopping {
		return
	}
	a.apply(a.manage(a.sys.now()))
}

// generationReady runs when every worker of the current generation is
// ready and no older one is left serving.
func (a *Arbiter) generationReady() {
	a.stableCfg = a.cfg
	if !a.reloadAt.IsZero() {
		a.log.Info(fmt.Sprintf("Reload complete: generation %d, %d workers serving, %s after %s",
			a.generation, a.target, a.sys.now().Sub(a.reloadAt).Round(time.Millisecond), a.reloadReason), "generation", a.generation)
		a.reloadEnded(metrics.ReloadComplete)
		a.reloadsDone(control.ResultComplete, fmt.Sprintf("generation %d, %d workers serving, %s",
			a.generation, a.target, a.sys.now().Sub(a.reloadAt).Round(time.Millisecond)))
		a.reloadAt = time.Time{}
		a.notifyStatus()
	}
	if !a.calledReady {
		a.calledReady = true
		a.log.Info(fmt.Sprintf("Ready: %d workers serving", a.target))
		a.tellParentReady()
		if a.parent == nil { // a new arbiter speaks for the service once it took over
			a.notifyStatus()
		}
		if a.Hooks.WhenReady != nil {
			a.Hooks.WhenReady(a)
		}
	}
}
