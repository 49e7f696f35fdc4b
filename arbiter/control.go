package arbiter

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/corral-server/corral/internal/control"
	"github.com/corral-server/corral/internal/heartbeat"
	"github.com/corral-server/corral/socket"
	"golang.org/x/sys/unix"
)

// The control socket (--control-socket; `corral ctl` is its client). Its
// goroutines (controlServer) accept, check each peer's uid, read requests
// and write answers; they touch none of the arbiter's state. A request
// reaches the loop as a signal does: queued, and the loop woken through
// the self-pipe. The loop acts on it in handleCommands and answers, at
// once or, for a reload or an upgrade that waits, when it has its outcome
// (reloadsDone, upgradesDone) or its wait ran out. The loop never waits
// for a client: the answer goes into a channel with room for it.

// ControlOptions configure the control socket. With neither Path nor
// Dir there is none.
type ControlOptions struct {
	Path string // the socket file, as --control-socket gave it
	// Dir is where the default socket goes when Path is "": the file is
	// corral-NAME.ctl, NAME being --name, else the first listener's
	// address as bound (a port 0 bind names its real port, so that two
	// arbiters never pick one path).
	Dir string
	// PrivateDir: Dir is corral's own (/tmp/corral-UID), created 0700
	// when missing and refused when another user owns it.
	PrivateDir bool
	Version    string        // the version status reports
	Settings   func() string // the effective settings, for config; nil for none
}

// ErrControlInUse is in the error Run returns when something (another
// arbiter, most likely) answers on the control socket's path.
var ErrControlInUse = errors.New("in use")

// Limits on the control socket's clients, so that none can hold the
// arbiter's memory or goroutines.
const (
	maxControlConns  = 64               // more wait in the listen backlog
	maxQueued        = 256              // requests waiting for the loop; more are answered "busy"
	controlIdle      = 60 * time.Second // a connection may wait this long between requests
	controlWrite     = 10 * time.Second
	loopAnswerWithin = 30 * time.Second // past a request's own wait: the loop is stuck
	controlCloseWait = 2 * time.Second  // at exit, for the answers being written
)

// controlState is the loop's side of the control socket.
type controlState struct {
	srv      *controlServer
	listener *socket.Listener // the socket; shared with the other arbiter during an upgrade
	adopted  *socket.Listener // the socket of the arbiter this one takes over from
	started  time.Time
	reloads  []*waiter // reloads waiting for their outcome
	upgrades []*waiter
}

// A waiter is a command whose answer waits for an outcome.
type waiter struct {
	cmd      *command
	deadline time.Time
	started  string // what the answer says was started
}

// command is one request, queued for the loop.
type command struct {
	req   control.Request
	reply chan control.Response // room for one: the loop never blocks on it
}

// openControl binds the control socket, or adopts the one of the arbiter
// this one takes over from, and starts serving it.
func (a *Arbiter) openControl() error {
	c := &a.ctl
	opts := a.cfg.Control
	c.started = time.Now()
	c.listener = c.adopted
	if c.listener == nil {
		if opts.Path == "" && opts.Dir == "" {
			return nil
		}
		chosen := opts.Path != ""
		if !chosen {
			opts.Path = filepath.Join(opts.Dir, controlFileName(a.cfg.Name, a.listeners[0].Addr.String()))
		}
		l, err := bindControl(opts)
		switch {
		case err != nil && !chosen && !errors.Is(err, ErrControlInUse):
			// The default place may not exist (a FROM scratch image has no
			// /tmp): serve without the socket rather than not at all.
			a.log.Warn(fmt.Sprintf("No control socket: %s: %v (set --control-socket PATH, or none)", opts.Path, err))
			return nil
		case err != nil:
			return fmt.Errorf("--control-socket %s: %w", opts.Path, err)
		}
		c.listener = l
	}
	nl, err := c.listener.NetListener()
	if err != nil {
		c.listener.Close()
		c.listener = nil
		return fmt.Errorf("--control-socket: %w", err)
	}
	c.srv = newControlServer(nl.(*net.UnixListener), a.pipe.Wake, a.log)
	c.srv.start()
	a.log.Info(fmt.Sprintf("Control socket at: %s", c.listener.Addr))
	return nil
}

// controlFileName is the default control socket's file name: after name
// (--name) if set, else after addr, the first listener's address.
func controlFileName(name, addr string) string {
	if name == "" {
		name = addr
	}
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	return "corral-" + strings.Trim(string(b), "_") + ".ctl"
}

// maxSocketPath is the longest path a unix socket's address holds
// (sun_path, less its NUL).
const maxSocketPath = 107

// bindControl binds the socket file, mode 0600: a stale file (nothing
// answers) is replaced, a live one refused.
func bindControl(opts ControlOptions) (*socket.Listener, error) {
	if len(opts.Path) > maxSocketPath {
		return nil, fmt.Errorf("the path is %d bytes long; a unix socket's holds %d at most", len(opts.Path), maxSocketPath)
	}
	dir := filepath.Dir(opts.Path)
	if opts.PrivateDir {
		if err := privateDir(dir); err != nil {
			return nil, err
		}
	}
	if pid, live := probeControl(opts.Path); live {
		if pid > 0 {
			return nil, fmt.Errorf("%w: another arbiter answers on it (pid %d)", ErrControlInUse, pid)
		}
		return nil, fmt.Errorf("%w: a server answers on it", ErrControlInUse)
	}
	ls, err := socket.Bind([]string{"unix:" + opts.Path}, socket.Options{Backlog: maxControlConns, Umask: 0o177})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(opts.Path, 0o600); err != nil {
		ls[0].Close()
		return nil, err
	}
	return ls[0], nil
}

// privateDir makes dir, 0700, unless it exists; an existing one must be
// a folder of this user's that no one else may write.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%s is not a folder", dir)
	case st != nil && int(st.Uid) != os.Getuid():
		return fmt.Errorf("%s belongs to uid %d, not to this user (%d)", dir, st.Uid, os.Getuid())
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s may be written by others (mode %s)", dir, fi.Mode().Perm())
	}
	return nil
}

// probeControl reports whether something answers on path, and, if it is
// an arbiter that says so within a second, its pid.
func probeControl(path string) (pid int, live bool) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return 0, false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if control.WriteLine(c, control.Request{V: control.Version, Cmd: control.CmdPing}) == nil {
		if line, err := control.ReadLine(bufio.NewReader(c)); err == nil {
			var r control.Response
			if json.Unmarshal(line, &r) == nil {
				pid = r.Arbiter
			}
		}
	}
	return pid, true
}

// closeControl stops the control socket at exit: no more connections, the
// requests still queued and the waiting reloads and upgrades are answered,
// the answers written (for a bounded time).
func (a *Arbiter) closeControl() {
	c := &a.ctl
	if c.srv == nil {
		return
	}
	for _, cmd := range c.srv.close(a.exiting()) {
		cmd.reply <- a.exiting()
	}
	for _, w := range append(c.reloads, c.upgrades...) {
		w.cmd.reply <- a.exiting()
	}
	c.reloads, c.upgrades = nil, nil
	c.srv.wait(controlCloseWait)
	c.listener.Close()
}

// exiting is the answer to what this arbiter no longer acts on: after a
// handover, the new arbiter does, so the client asks again.
func (a *Arbiter) exiting() control.Response {
	r := a.refuse(fmt.Errorf("the arbiter (pid %d) is exiting", a.pid))
	if a.handedOver {
		r.Retry = true
		r.Error = fmt.Sprintf("this arbiter (pid %d) handed over to a new one: ask again", a.pid)
	}
	return r
}

// controlHandedOver runs at an upgrade's handover: the new arbiter, which
// accepts on the same socket, answers from now on, and owns the file.
func (a *Arbiter) controlHandedOver() {
	if a.ctl.srv != nil {
		a.ctl.srv.stopAccepting()
		a.ctl.listener.Disown()
	}
}

// controlTakenOver runs once the old arbiter exited: the socket file is
// this arbiter's to remove now. (Until then a failed upgrade must leave
// it to the old one.)
func (a *Arbiter) controlTakenOver() {
	if a.ctl.listener != nil && a.ctl.listener == a.ctl.adopted {
		a.ctl.listener.Own()
	}
}

// passControl adds the control socket, if any, to files, the fds of a new
// arbiter (files[i] is its fd i), and describes it for that arbiter.
func passControl(l *socket.Listener, files []uintptr) (*socket.Inherited, []uintptr) {
	if l == nil {
		return nil, files
	}
	in := socket.Describe([]*socket.Listener{l})[0]
	in.FD = len(files)
	return &in, append(files, socket.FDs([]*socket.Listener{l})...)
}

// adoptControl takes the control socket passed by the old arbiter.
func (a *Arbiter) adoptControl(in *socket.Inherited) error {
	l, err := socket.Adopt(in.FD, in.Bind)
	if err != nil {
		return err
	}
	a.ctl.adopted = l
	return nil
}

// controlDue is when the loop must wake for a waiting answer's deadline.
func (a *Arbiter) controlDue() time.Time {
	var due time.Time
	for _, w := range append(a.ctl.reloads, a.ctl.upgrades...) {
		if due.IsZero() || w.deadline.Before(due) {
			due = w.deadline
		}
	}
	return due
}

// handleCommands acts on the queued requests, and answers the waiting
// ones whose wait ran out.
func (a *Arbiter) handleCommands() {
	c := &a.ctl
	if c.srv == nil {
		return
	}
	var snap *control.Status
	var lis []control.Listener
	for _, cmd := range c.srv.take() {
		r := cmd.req
		var resp control.Response
		switch {
		case a.handedOver && r.Cmd != control.CmdStatus && r.Cmd != control.CmdListeners && r.Cmd != control.CmdConfig:
			resp = a.exiting()
		case r.Cmd == control.CmdStatus:
			if snap == nil {
				snap = a.status()
			}
			resp = a.answer("")
			resp.Status = snap
		case r.Cmd == control.CmdListeners:
			if lis == nil {
				lis = a.listenerQueues()
			}
			resp = a.answer("")
			resp.Listeners = lis
		default:
			var ok bool
			if resp, ok = a.command(cmd); !ok {
				continue // it waits for an outcome
			}
		}
		cmd.reply <- resp
	}
	now := time.Now()
	for _, list := range []*[]*waiter{&c.reloads, &c.upgrades} {
		kept := (*list)[:0]
		for _, w := range *list {
			switch {
			case a.stopping && !a.handedOver:
				w.cmd.reply <- a.refuse(errors.New("the arbiter is stopping; " + w.started))
			case now.After(w.deadline):
				r := a.refuse(fmt.Errorf("still under way after %s: %s", control.Duration(w.cmd.req.Wait).Round(time.Millisecond), w.started))
				r.Result = control.ResultPending
				w.cmd.reply <- r
			default:
				kept = append(kept, w)
			}
		}
		*list = kept
	}
}

// command acts on one request that changes something. ok is false when
// the answer waits (a reload or upgrade with a wait).
func (a *Arbiter) command(cmd *command) (resp control.Response, ok bool) {
	r := cmd.req
	switch r.Cmd {
	case control.CmdPing:
		return a.ping(), true
	case control.CmdConfig:
		resp = a.answer("")
		if a.cfg.Control.Settings != nil {
			resp.Config = a.cfg.Control.Settings()
		}
		return resp, true
	case control.CmdReopenLogs:
		a.log.Info("Reopening the logs (corral ctl)")
		a.reopenLogs()
		return a.answer("logs reopened"), true
	}
	if a.stopping {
		return a.refuse(errors.New("the arbiter is stopping")), true
	}
	switch r.Cmd {
	case control.CmdReload:
		a.log.Info("Reload asked by corral ctl")
		a.canaryAsked = r.Canary
		err := a.reload("corral ctl")
		a.canaryAsked = 0 // taken by the reload, or refused with it
		if err != nil {
			resp = a.refuse(err)
			resp.Result = control.ResultFailed
			return resp, true
		}
		return a.await(cmd, &a.ctl.reloads, fmt.Sprintf("reloading: generation %d, %d workers", a.generation, a.target))
	case control.CmdUpgrade:
		a.log.Info("Upgrade asked by corral ctl")
		if err := a.startUpgrade(); err != nil {
			resp = a.refuse(err)
			resp.Result = control.ResultFailed
			return resp, true
		}
		return a.await(cmd, &a.ctl.upgrades, fmt.Sprintf("upgrading: new arbiter (pid %d) started", a.upgrade.pid))
	case control.CmdWorkers:
		n := r.N
		if r.Delta {
			n += a.target
		}
		if n < 1 {
			return a.refuse(fmt.Errorf("workers %+d: %d workers would leave %d; one at least", r.N, a.target, n)), true
		}
		old, asked := a.target, n
		n = a.bounded(n) // -w MIN:MAX: within the bounds
		a.moveTarget(n, "ctl", "corral ctl workers")
		if n != asked {
			return a.answer(fmt.Sprintf("workers: %d -> %d (-w %d:%d bounds it)", old, n, a.cfg.Workers, a.cfg.MaxWorkers)), true
		}
		return a.answer(fmt.Sprintf("workers: %d -> %d", old, n)), true
	case control.CmdWorkerStop:
		return a.workerStop(r.Pid), true
	case control.CmdStop:
		how := "graceful"
		if r.Quick {
			how = "quick"
		}
		a.log.Info(fmt.Sprintf("Stop (%s) asked by corral ctl", how))
		a.stop(r.Quick)
		return a.answer(fmt.Sprintf("stopping (%s): %d workers to stop", how, len(a.workers))), true
	}
	return a.refuse(fmt.Errorf("unknown command %q", r.Cmd)), true
}

// await answers a started reload or upgrade now, or, with a wait, puts
// it on list until its outcome.
func (a *Arbiter) await(cmd *command, list *[]*waiter, started string) (control.Response, bool) {
	if cmd.req.Wait <= 0 {
		resp := a.answer(started)
		resp.Result = control.ResultStarted
		return resp, true
	}
	*list = append(*list, &waiter{cmd: cmd, deadline: time.Now().Add(control.Duration(cmd.req.Wait)), started: started})
	return control.Response{}, false
}

// reloadsDone answers the reloads waiting for an outcome: the first one
// since they started is theirs, since a later reload reads the
// configuration anew too.
func (a *Arbiter) reloadsDone(result, msg string) {
	a.ctl.reloads = outcome(a, a.ctl.reloads, result, msg)
}

// upgradesDone answers the upgrades waiting for an outcome.
func (a *Arbiter) upgradesDone(result, msg string) {
	a.ctl.upgrades = outcome(a, a.ctl.upgrades, result, msg)
}

func outcome(a *Arbiter, ws []*waiter, result, msg string) []*waiter {
	for _, w := range ws {
		resp := a.answer(result + ": " + msg)
		if result != control.ResultComplete {
			resp = a.refuse(errors.New(result + ": " + msg))
		}
		resp.Result = result
		w.cmd.reply <- resp
	}
	return nil
}

// workerStop replaces worker pid: its replacement spawns, and it stops
// once that one is ready, as a --max-requests recycle.
func (a *Arbiter) workerStop(pid int) control.Response {
	w := a.workers[pid]
	switch {
	case w == nil:
		return a.refuse(fmt.Errorf("no worker with pid %d", pid))
	case w.stopping:
		return a.refuse(fmt.Errorf("worker %d is stopping already", pid))
	case w.retiring:
		return a.refuse(fmt.Errorf("worker %d is being replaced already", pid))
	}
	a.apply([]decision{{verb: recycle, w: w, why: "asked to stop by corral ctl"}})
	return a.answer(fmt.Sprintf("worker %d stops once its replacement is ready", pid))
}

// ping answers whether the arbiter serves: not stopping, and a worker
// ready.
func (a *Arbiter) ping() control.Response {
	ready := 0
	for _, w := range a.workers {
		if w.Ready && !w.stopping {
			ready++
		}
	}
	switch {
	case a.stopping:
		return a.refuse(errors.New("not ready: stopping"))
	case ready == 0:
		return a.refuse(fmt.Errorf("not ready: %s, 0 of %d workers ready", a.state(), a.target))
	}
	return a.answer(fmt.Sprintf("ready: %d of %d workers ready", ready, a.target))
}

func (a *Arbiter) answer(msg string) control.Response {
	return control.Response{V: control.Version, OK: true, Message: msg, Arbiter: a.pid}
}

func (a *Arbiter) refuse(err error) control.Response {
	return control.Response{V: control.Version, Error: err.Error(), Arbiter: a.pid}
}

// state is the arbiter's state, as status tells it.
func (a *Arbiter) state() string {
	switch {
	case a.handedOver:
		return "handed over"
	case a.stopping:
		return "stopping"
	case a.parent != nil:
		return "taking over"
	case a.upgrade != nil:
		return "upgrading"
	case !a.calledReady:
		return "starting"
	case a.target == 0:
		return "workers stopped"
	case !a.reloadAt.IsZero():
		return "reloading"
	}
	return "running"
}

// status is the herd now, from the snapshot the metrics are made of.
func (a *Arbiter) status() *control.Status {
	now := time.Now()
	snap := a.snapshot(now)
	mono := heartbeat.Now()
	s := &control.Status{Pid: a.pid, Version: a.cfg.Control.Version, Name: a.cfg.Name,
		Uptime: control.Seconds(now.Sub(a.ctl.started)), Generation: a.generation, Target: a.target,
		State: a.state(), Workers: []control.Worker{}}
	for _, w := range snap.Workers {
		cw := control.Worker{Slot: w.Slot, Pid: w.Pid, Generation: w.Generation, Age: w.Age,
			State: w.State().String(), Current: w.Current, Uptime: control.Seconds(now.Sub(w.Started)),
			RSS: w.Proc.RSS, PSS: w.Proc.PSS, LastBeat: control.Seconds(w.LastBeat), Scoreboard: w.Board.Valid}
		if w.Board.Valid {
			cw.Requests, cw.InFlight = w.Board.RequestCount(), w.Board.InFlight
			if w.Board.Current != "" {
				cw.Request = w.Board.Current
				cw.RequestFor = control.Seconds(time.Duration(mono - w.Board.CurrentStart))
			}
		}
		s.Workers = append(s.Workers, cw)
	}
	return s
}

// listenerQueues is every listener with its accept queue.
func (a *Arbiter) listenerQueues() []control.Listener {
	out := []control.Listener{}
	for _, l := range a.listeners {
		addr := l.Addr.String()
		if l.Network() == "unix" {
			addr = "unix:" + addr
		}
		proto := l.Protocol
		if proto == "" {
			proto = a.cfg.Worker.Protocol
		}
		if proto == "" {
			proto = "http"
		}
		cl := control.Listener{Address: addr, Protocol: proto}
		q, err := l.Queue()
		if err != nil {
			cl.Error = err.Error()
		}
		cl.Depth, cl.Limit = q.Depth, q.Limit
		out = append(out, cl)
	}
	return out
}

// controlServer is the control socket's goroutines: one accepts, one per
// connection reads its requests, hands them to the loop and writes the
// answers. It reads and writes only its own fields.
type controlServer struct {
	nl   *net.UnixListener
	wake func()
	log  *slog.Logger
	uid  int
	sem  chan struct{} // a token per open connection
	wg   sync.WaitGroup

	mu        sync.Mutex
	queue     []*command
	closed    bool             // the loop takes no more requests
	exiting   control.Response // the answer once closed
	accepting bool
	conns     map[net.Conn]bool // true while the connection waits for its next request
	done      chan struct{}     // closed by stopAccepting
}

func newControlServer(nl *net.UnixListener, wake func(), log *slog.Logger) *controlServer {
	return &controlServer{nl: nl, wake: wake, log: log, uid: os.Getuid(), sem: make(chan struct{}, maxControlConns),
		accepting: true, conns: map[net.Conn]bool{}, done: make(chan struct{})}
}

// start accepts, on a goroutine of its own, until stopAccepting.
func (s *controlServer) start() {
	s.wg.Add(1)
	go s.serve()
}

// serve accepts at most maxControlConns connections at once: the rest
// wait in the listen backlog.
func (s *controlServer) serve() {
	defer s.wg.Done()
	for {
		select {
		case s.sem <- struct{}{}:
		case <-s.done:
			return
		}
		c, err := s.nl.AcceptUnix()
		if err != nil {
			<-s.sem
			select {
			case <-s.done:
				return
			default:
			}
			s.log.Warn(fmt.Sprintf("control socket: accept: %v", err))
			time.Sleep(100 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		s.mu.Lock()
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

// stopAccepting closes this arbiter's accepting copy of the socket; the
// socket itself stays open (the other arbiter of an upgrade accepts on it).
func (s *controlServer) stopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.accepting {
		s.accepting = false
		close(s.done)
		s.nl.Close()
	}
}

// handle serves one connection: the peer must be this user or root, then
// a request per line, each answered before the next is read.
func (s *controlServer) handle(c *net.UnixConn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
		<-s.sem
		s.wg.Done()
	}()
	if err := s.checkPeer(c); err != nil {
		s.write(c, control.Response{V: control.Version, Error: "refused: " + err.Error(), Arbiter: os.Getpid()})
		return
	}
	br := bufio.NewReaderSize(c, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(controlIdle))
		line, err := control.ReadLine(br)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				s.write(c, control.Response{V: control.Version, Error: "bad request: " + err.Error(), Arbiter: os.Getpid()})
			}
			return
		}
		if len(line) == 0 {
			continue
		}
		s.setIdle(c, false)
		var req control.Request
		var resp control.Response
		if err := json.Unmarshal(line, &req); err != nil {
			resp = control.Response{V: control.Version, Error: "bad request: " + err.Error(), Arbiter: os.Getpid()}
		} else if err := req.Check(); err != nil {
			resp = control.Response{V: control.Version, Error: err.Error(), Arbiter: os.Getpid()}
		} else {
			resp = s.submit(req)
		}
		if !s.write(c, resp) || !s.setIdle(c, true) {
			return
		}
	}
}

// checkPeer refuses a peer whose uid (SO_PEERCRED) is neither this
// process's nor root's.
func (s *controlServer) checkPeer(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("SO_PEERCRED: %v", cerr)
	}
	if int(cred.Uid) != s.uid && cred.Uid != 0 {
		return fmt.Errorf("uid %d is neither the arbiter's (%d) nor root", cred.Uid, s.uid)
	}
	return nil
}

// submit queues req for the loop, wakes it and waits for the answer.
func (s *controlServer) submit(req control.Request) control.Response {
	cmd := &command{req: req, reply: make(chan control.Response, 1)}
	s.mu.Lock()
	switch {
	case s.closed:
		r := s.exiting
		s.mu.Unlock()
		return r
	case len(s.queue) >= maxQueued:
		s.mu.Unlock()
		return control.Response{V: control.Version, Error: fmt.Sprintf("busy: %d requests queued", maxQueued), Arbiter: os.Getpid()}
	}
	s.queue = append(s.queue, cmd)
	s.mu.Unlock()
	s.wake()
	t := time.NewTimer(control.Duration(req.Wait) + loopAnswerWithin)
	defer t.Stop()
	select {
	case r := <-cmd.reply:
		return r
	case <-t.C:
		return control.Response{V: control.Version, Error: "the arbiter's loop did not answer within " + strconv.Itoa(int(loopAnswerWithin/time.Second)) + "s", Arbiter: os.Getpid()}
	}
}

func (s *controlServer) write(c net.Conn, r control.Response) bool {
	c.SetWriteDeadline(time.Now().Add(controlWrite))
	return control.WriteLine(c, r) == nil
}

// setIdle marks c as between requests (idle) or in one; a closing server
// ends an idle connection instead. It reports whether c goes on.
func (s *controlServer) setIdle(c net.Conn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if idle && s.closed {
		return false
	}
	s.conns[c] = idle
	return true
}

// take is the loop's: the requests queued since the last call.
func (s *controlServer) take() []*command {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}

// close stops accepting and queueing (a request read later gets
// exiting), ends the connections waiting for a request, and returns the
// requests still queued, for the loop to answer.
func (s *controlServer) close(exiting control.Response) []*command {
	s.stopAccepting()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed, s.exiting = true, exiting
	for c, idle := range s.conns {
		if idle {
			c.SetReadDeadline(time.Now()) // ends its read; a request half-read is not acted on
		}
	}
	q := s.queue
	s.queue = nil
	return q
}

// wait waits, at most d, for the connections' goroutines to end.
func (s *controlServer) wait(d time.Duration) {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	}
}
