package arbiter

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/corral-server/corral/signals"
	"github.com/corral-server/corral/socket"
	"github.com/corral-server/corral/worker"
	"golang.org/x/sys/unix"
)

// Backoff for workers that keep dying before they are ready.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// spawnWorker starts one worker of the current generation.
func (a *Arbiter) spawnWorker() error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("spawn worker: status pipe: %w", err)
	}
	rfd, wfd := p[0], p[1]
	unix.SetNonblock(rfd, true)
	hb, err := heartbeat.Create()
	if err != nil {
		unix.Close(rfd)
		unix.Close(wfd)
		return fmt.Errorf("spawn worker: %w", err)
	}
	a.age++
	wc := a.cfg.Worker
	wc.Age, wc.Generation, wc.ArbiterPid = a.age, a.generation, a.pid
	wc.Listeners = socket.Describe(a.listeners)
	wc.StatusFD = socket.FirstFD + len(a.listeners)
	wc.HeartbeatFD = wc.StatusFD + 1

	files := []uintptr{0, 1, 2}
	files = append(files, socket.FDs(a.listeners)...)
	files = append(files, uintptr(wfd), uintptr(hb.FD()))
	x, err := a.execPrepare(&wc, files)
	if err != nil {
		unix.Close(rfd)
		unix.Close(wfd)
		hb.Close()
		return fmt.Errorf("spawn worker: %w", err)
	}
	env := workerEnv(append(a.cfg.Env, worker.EnvConfig+"="+wc.Encode())...)
	pid, err := syscall.ForkExec(a.cfg.Executable, a.cfg.Args, &syscall.ProcAttr{
		Env:   env,
		Files: files,
		// The workers die with the arbiter, even by SIGKILL.
		Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: a.cfg.Credential},
	})
	unix.Close(wfd)
	hb.Release()
	x.forked(a, pid, err)
	if err != nil {
		unix.Close(rfd)
		hb.Close()
		return fmt.Errorf("spawn worker: exec %s: %w", a.cfg.Executable, err)
	}
	a.workers[pid] = &Worker{Pid: pid, Age: a.age, Generation: a.generation, Started: time.Now(), statusFd: rfd, heartbeat: hb, exec: x}
	a.log.Info(fmt.Sprintf("Booting worker with pid: %d", pid))
	return nil
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
		w.Ready, w.ReadyAt = true, time.Now()
		a.everReady = true
		a.bootFailures = 0
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
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		if a.upgrade != nil && pid == a.upgrade.pid {
			a.upgradeExited(syscall.WaitStatus(ws))
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
		w.heartbeat.Close()
		w.Status = syscall.WaitStatus(ws)
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
	reason := exitReason(w.Status)
	switch {
	case w.timedOut:
		a.log.Error(fmt.Sprintf("Worker (pid:%d) %s after its timeout", w.Pid, reason))
	case w.stopping:
		a.log.Info(fmt.Sprintf("Worker (pid:%d) %s", w.Pid, reason))
	case w.Ready:
		if w.Status.Signaled() && w.Status.Signal() == syscall.SIGKILL {
			a.log.Error(fmt.Sprintf("Worker (pid:%d) was sent SIGKILL! Perhaps out of memory?", w.Pid))
		} else {
			a.log.Error(fmt.Sprintf("Worker (pid:%d) %s unexpectedly", w.Pid, reason))
		}
	default:
		a.bootFailed(w, reason)
	}
}

// bootFailed handles a worker that died before it was ready: fatal at
// start-up, the end of a reload while older workers still serve, and
// otherwise a reason to wait longer before the next spawn.
func (a *Arbiter) bootFailed(w *Worker, reason string) {
	why := reason
	if w.lastError != "" {
		why = w.lastError + " (" + reason + ")"
	}
	a.log.Error(fmt.Sprintf("Worker (pid:%d) failed to boot: %s", w.Pid, why))
	switch {
	case !a.everReady && !a.stopping:
		a.exitErr = &BootError{Pid: w.Pid, Reason: why}
		a.log.Error("Reason: no worker could boot; shutting down")
		a.stop(true)
	case w.Generation == a.generation && a.olderGenerationServes():
		a.abortReload(w, why)
	default:
		a.bootFailures++
		delay := min(minBackoff<<(a.bootFailures-1), maxBackoff)
		if a.bootFailures > 20 {
			delay = maxBackoff
		}
		a.nextSpawn = time.Now().Add(delay)
		a.log.Warn(fmt.Sprintf("Next worker spawn in %s (%d boot failures in a row)", delay, a.bootFailures))
	}
}

func (a *Arbiter) olderGenerationServes() bool {
	for _, w := range a.workers {
		if w.Generation != a.generation && w.Ready && !w.stopping {
			return true
		}
	}
	return false
}

// abortReload gives up on the generation being rolled out: its workers
// still booting stop, and the workers that serve (old ones, and new ones
// that did become ready) carry on as the current generation, under the
// last configuration that booted.
func (a *Arbiter) abortReload(failed *Worker, why string) {
	a.log.Error(fmt.Sprintf("Reload failed (after %s): new worker (pid:%d) could not boot: %s; the old workers keep serving",
		a.reloadReason, failed.Pid, why))
	a.generation++
	for _, w := range a.workers {
		if w.stopping {
			continue
		}
		if !w.Ready {
			a.signalWorker(w, syscall.SIGTERM)
			continue
		}
		w.Generation = a.generation
	}
	a.cfg = a.stableCfg
	a.reloadAt = time.Time{}
	a.notifyStatus()
}

// murderWorkers kills workers that overstay: booting past --boot-timeout,
// stopping past --graceful-timeout, or silent past --timeout. A silent
// worker gets SIGABRT first, so it can log what it was stuck in, and
// SIGKILL after --abort-grace.
func (a *Arbiter) murderWorkers() {
	now := time.Now()
	timeout := a.cfg.Worker.Timeout
	for _, w := range a.workers {
		switch {
		case w.stopping && now.After(w.killAt):
			a.log.Warn(fmt.Sprintf("Worker (pid:%d) %s; killing it", w.Pid, w.killWhy))
			unix.Kill(w.Pid, syscall.SIGKILL)
			w.killAt = now.Add(time.Hour) // once
		case w.Ready && !w.stopping && timeout > 0 && w.heartbeat.Since() > timeout:
			a.log.Error(fmt.Sprintf("WORKER TIMEOUT (pid:%d)", w.Pid))
			unix.Kill(w.Pid, syscall.SIGABRT)
			// Stopping: its replacement spawns now, and its exit is expected.
			w.stopping, w.timedOut = true, true
			w.killAt = now.Add(a.cfg.AbortGrace)
			w.killWhy = fmt.Sprintf("still alive %s after SIGABRT", a.cfg.AbortGrace)
		case !w.stopping && !w.Ready && a.cfg.BootTimeout > 0 && now.Sub(w.Started) > a.cfg.BootTimeout:
			w.lastError = fmt.Sprintf("not ready within the boot timeout (%s)", a.cfg.BootTimeout)
			unix.Kill(w.Pid, syscall.SIGKILL)
			w.Started = now.Add(time.Hour) // once; the reaper reports it
		}
	}
	if a.stopping && now.After(a.stopAt) {
		for _, w := range a.workers {
			unix.Kill(w.Pid, syscall.SIGKILL)
		}
		a.stopAt = now.Add(time.Hour)
	}
}

// manageWorkers brings the workers to the target: it spawns what is
// missing, retires old-generation and recycled workers one for one as
// their replacements become ready, and trims the surplus after TTOU.
func (a *Arbiter) manageWorkers() {
	if a.stopping {
		return
	}
	now := time.Now()
	var cur, replaceable []*Worker
	for _, w := range a.sortedWorkers() {
		if w.stopping {
			continue
		}
		if w.recycleAsked && !w.retiring && w.Generation == a.generation && now.Sub(a.lastRecycle) >= time.Second {
			// One recycle a second at most, so workers that reach
			// --max-requests together do not all restart together.
			w.retiring = true
			a.lastRecycle = now
			a.log.Info(fmt.Sprintf("Worker (pid:%d) reached its max requests; replacing it", w.Pid))
		}
		switch {
		case w.Generation != a.generation && !w.Ready:
			a.signalWorker(w, syscall.SIGTERM) // superseded before it served
		case w.Generation != a.generation || w.retiring:
			replaceable = append(replaceable, w)
		default:
			cur = append(cur, w)
		}
	}
	// TTOU or WINCH: stop the surplus, those not ready first, then the oldest.
	if extra := len(cur) - a.target; extra > 0 {
		sort.SliceStable(cur, func(i, j int) bool { return !cur[i].Ready && cur[j].Ready })
		for _, w := range cur[:extra] {
			a.signalWorker(w, syscall.SIGTERM)
		}
		cur = cur[extra:]
	}
	ready := 0
	for _, w := range cur {
		if w.Ready {
			ready++
		}
	}
	// An old worker stops only when a new one is ready to take its place.
	for i, w := range replaceable {
		if len(replaceable)-i+ready <= a.target {
			break
		}
		a.signalWorker(w, syscall.SIGTERM)
	}
	if missing := a.target - len(cur); missing > 0 && !now.Before(a.nextSpawn) {
		for range missing {
			if err := a.spawnWorker(); err != nil {
				a.log.Error(err.Error())
				a.bootFailures++
				a.nextSpawn = now.Add(min(minBackoff<<min(a.bootFailures-1, 20), maxBackoff))
				break
			}
		}
	}
	if ready == a.target && a.target > 0 {
		a.generationReady()
	}
}

// generationReady runs when every worker of the current generation is ready.
func (a *Arbiter) generationReady() {
	for _, w := range a.workers {
		if w.Generation != a.generation && !w.stopping {
			return // old workers still to retire
		}
	}
	a.stableCfg = a.cfg
	if !a.reloadAt.IsZero() {
		a.log.Info(fmt.Sprintf("Reload complete: generation %d, %d workers serving, %s after %s",
			a.generation, a.target, time.Since(a.reloadAt).Round(time.Millisecond), a.reloadReason))
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
