// Package wsgi runs a Python WSGI app (PEP 3333) behind a corral worker:
// each worker process starts one Python process, the runner embedded here
// (runner.py, the standard library only), joined to it by a socketpair.
// Go parses and buffers HTTP (every front end, keep-alive, pipelining, slow
// clients); Python sees a request only once it is whole, and its response
// is read as fast as it writes it. An App is one such Python process and
// the http.Handler that serves through it.
package wsgi

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker/event"
)

//go:embed runner.py
var runnerSource []byte

// boot is the program python3 -c runs: it reads the runner from stdin
// (so that tracebacks name it), puts /dev/null in its place, and runs it.
const boot = `import sys,os
src=sys.stdin.buffer.read()
fd=os.open(os.devnull,os.O_RDONLY);os.dup2(fd,0);os.close(fd)
if sys.version_info<(3,11):sys.exit("corral: the wsgi worker needs Python 3.11 or newer, this is "+sys.version.split()[0])
g={"__name__":"__main__","__file__":"corral-wsgi-runner.py","__builtins__":__builtins__}
exec(compile(src,"corral-wsgi-runner.py","exec"),g)`

// Options are what Start needs to know.
type Options struct {
	App        string   // Gunicorn's syntax: module, module:name, module:factory(...)
	Python     string   // the interpreter; "" is python3 from PATH
	PythonPath []string // put first on sys.path, before the working directory
	Dir        string   // the working directory; "" keeps the current one
	Env        []string // the environment; nil is os.Environ()
	// Threads is how many requests the app runs at once (Gunicorn's
	// gthread); 1 or less is one at a time, on Python's main thread.
	Threads int
	// Processes is the number of worker processes, for wsgi.multiprocess.
	Processes int
	// ScriptName is SCRIPT_NAME, the prefix the app is mounted at; it is
	// taken off PATH_INFO.
	ScriptName string
	// MaxBody is the largest request body sent to Python (--max-body);
	// larger ones get 413. 0 is 1 GiB, the framing's limit.
	MaxBody int64
	// Timeout aborts the process when a request has run in Python for
	// longer: SIGABRT, whose faulthandler writes every thread's traceback
	// to the output, then SIGKILL after AbortGrace (default 2 s). 0 is no
	// limit.
	Timeout    time.Duration
	AbortGrace time.Duration
	// Output gets each line Python writes to stdout or stderr (wsgi.errors,
	// tracebacks), with its pid; nil writes them to os.Stderr.
	Output func(pid int, line string)
	// Log gets the App's own events (timeouts, an early exit); nil is
	// slog.Default().
	Log *slog.Logger
	// Loop leaves the socket to an event loop (AttachLoop), which reads
	// and writes it on its own goroutine, instead of the App's goroutines:
	// what -k wsgi does, so that a request costs no hand-off between
	// goroutines. Requests wait until a loop is attached.
	Loop bool
}

// An App is one Python process serving a WSGI app. Its ServeHTTP sends a
// request to it and writes the response; any number of goroutines may call
// it. When Python dies, Done is closed and requests are answered 503.
type App struct {
	opts    Options
	cmd     *exec.Cmd
	conn    *net.UnixConn // the socket, without Options.Loop
	fd      int           // the socket, with Options.Loop; else -1
	closed  sync.Once     // the socket
	threads int
	version string // Python's, from its ready frame
	log     *slog.Logger

	wmu     sync.Mutex // the write side: group commit
	wbuf    []byte
	wspare  []byte
	writing bool          // the write loop has been kicked and not finished
	wkick   chan struct{} // kicks the write loop; one slot
	wclosed bool          // Close was called: no more requests
	wbroken bool          // a write failed: Python is gone
	// With Options.Loop: wbuf[woff:] is unsent; the socket takes writes
	// until one meets EAGAIN, and again once epoll says so; its write side
	// is shut once Close was called and wbuf is out.
	woff     int
	canWrite bool
	shut     bool

	loop       *event.Loop // with Options.Loop, once attached
	turnQueued bool        // the loop's: a write is queued for the end of its turn
	held       bool        // the loop's: it takes no new connection (holdIfTiedUp)
	rbuf       *frameBuf   // the loop's

	mu       sync.Mutex
	calls    map[uint32]*call
	nextID   uint32
	waiting  []*call // sent, not yet begun by Python, in order, from waitHead
	waitHead int
	running  []*call // begun by Python (at most threads of them)
	err      error   // set once Python is gone
	timedOut error   // set by watch before it aborts Python

	fds     []int // received fds, not yet claimed by their F frame
	done    chan struct{}
	exited  chan struct{} // closed once the process is reaped
	state   *os.ProcessState
	outTail tail // Python's last lines, for an early death's error
	killed  sync.Once
}

// Start starts Python with the app and returns once it has imported it.
// An import error is returned with the traceback's last lines in one
// line; the whole traceback went to Output.
func Start(opts Options) (*App, error) {
	python := opts.Python
	if python == "" {
		python = "python3"
	}
	path, err := exec.LookPath(python)
	if err != nil {
		return nil, fmt.Errorf("wsgi: --python %s: %w", python, err)
	}
	if opts.App == "" {
		return nil, errors.New("wsgi: no app named (module:callable)")
	}
	a := &App{opts: opts, threads: max(opts.Threads, 1), calls: map[uint32]*call{}, fd: -1, canWrite: true,
		done: make(chan struct{}), exited: make(chan struct{}), log: opts.Log, wkick: make(chan struct{}, 1)}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.opts.AbortGrace <= 0 {
		a.opts.AbortGrace = 2 * time.Second
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("wsgi: socketpair: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "wsgi-python")
	if opts.Loop {
		a.fd = fds[0] // blocking until AttachLoop: the handshake reads it
	} else {
		ours := os.NewFile(uintptr(fds[0]), "wsgi")
		fc, err := net.FileConn(ours)
		ours.Close()
		if err != nil {
			theirs.Close()
			return nil, fmt.Errorf("wsgi: socketpair: %w", err)
		}
		a.conn = fc.(*net.UnixConn)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		a.closeSocket()
		theirs.Close()
		return nil, fmt.Errorf("wsgi: pipe: %w", err)
	}
	args := []string{"-u", "-c", boot, opts.App, strconv.Itoa(a.threads), strconv.Itoa(max(opts.Processes, 1))}
	args = append(args, opts.PythonPath...)
	cmd := exec.Command(path, args...)
	cmd.Dir = opts.Dir
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(env[:len(env):len(env)], "CORRAL_WSGI_FD=3")
	cmd.Stdin = bytes.NewReader(runnerSource)
	cmd.Stdout, cmd.Stderr = outW, outW
	cmd.ExtraFiles = []*os.File{theirs}
	// Python dies with its worker, even by SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	outW.Close()
	theirs.Close() // Python's now: its exit is our end of file
	if err != nil {
		outR.Close()
		a.closeSocket()
		return nil, fmt.Errorf("wsgi: start %s: %w", path, err)
	}
	a.cmd = cmd
	outDone := make(chan struct{})
	go a.copyOutput(outR, outDone)
	go func() {
		cmd.Wait() // also waits for the stdin copy
		<-outDone
		a.state = cmd.ProcessState
		close(a.exited)
	}()
	if err := a.handshake(); err != nil {
		a.kill()
		<-a.exited
		a.closeSocket()
		return nil, err
	}
	if !opts.Loop {
		go a.readLoop()
		go a.writeLoop()
	}
	if opts.Timeout > 0 {
		go a.watch()
	}
	return a, nil
}

// handshake waits for the runner's first frame: ready, or why not.
func (a *App) handshake() error {
	var hdr [responseHeaderSize]byte
	var conn io.Reader = a.conn
	if a.conn == nil {
		conn = fdReader(a.fd)
	}
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		<-a.exited // the process is gone: say why, from its last words
		return fmt.Errorf("wsgi: python exited before the app %q loaded (%s)%s", a.opts.App, a.state, a.outTail.suffix())
	}
	size := binary.LittleEndian.Uint32(hdr[0:])
	if size < responseHeaderSize || size > 64<<10 {
		return fmt.Errorf("wsgi: the runner's first frame is malformed (size %d)", size)
	}
	payload := make([]byte, size-responseHeaderSize)
	if _, err := io.ReadFull(conn, payload); err != nil {
		return fmt.Errorf("wsgi: the runner's first frame: %w", err)
	}
	switch hdr[8] {
	case frameReady:
		a.version = string(payload)
		return nil
	case frameBoot:
		return &BootError{App: a.opts.App, Reason: string(payload)}
	}
	return fmt.Errorf("wsgi: the runner's first frame is of kind %q, not ready", hdr[8])
}

// BootError is an app that did not load: an import error, a missing
// attribute, a factory that raised.
type BootError struct {
	App    string
	Reason string // the traceback's last lines, in one line
}

func (e *BootError) Error() string { return fmt.Sprintf("wsgi app %q: %s", e.App, e.Reason) }

// Pid is the Python process's.
func (a *App) Pid() int { return a.cmd.Process.Pid }

// Version is Python's version, e.g. "3.11.2".
func (a *App) Version() string { return a.version }

// Done is closed once Python is gone or going: an exit, a crash, an
// abort, or Close.
func (a *App) Done() <-chan struct{} { return a.done }

// Exited is closed once the Python process has been reaped.
func (a *App) Exited() <-chan struct{} { return a.exited }

// Err says why Done was closed; nil before.
func (a *App) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// ErrClosed is Err after Close.
var ErrClosed = errors.New("wsgi: closed")

// Close stops Python gracefully: the requests it has finish, then it
// reads the end of its input and exits. Close waits for that up to grace,
// then kills it. Requests sent after Close are answered 503.
func (a *App) Close(grace time.Duration) error {
	a.wmu.Lock()
	kick := !a.wclosed && !a.writing && a.fd < 0
	a.wclosed, a.writing = true, true
	if a.fd >= 0 {
		a.writeOut() // shuts the write side once the buffer is out
	}
	a.wmu.Unlock()
	if kick { // else the write loop is kicked already; it shuts the socket once its buffer is out
		a.wkick <- struct{}{}
	}
	select {
	case <-a.exited:
	case <-time.After(grace):
		a.log.Warn(fmt.Sprintf("wsgi: python (pid:%d) did not exit within %s of the end of its input; killing it", a.Pid(), grace))
		a.kill()
		<-a.exited
	}
	a.fail(ErrClosed)
	if a.fd >= 0 {
		a.closeSocket() // the loops are done with it: none reads it to its end
	}
	return nil
}

// Abort makes Python write every thread's traceback to its output
// (faulthandler, on SIGABRT) and die; SIGKILL follows after AbortGrace.
func (a *App) Abort() {
	a.cmd.Process.Signal(syscall.SIGABRT)
	go func() {
		select {
		case <-a.exited:
		case <-time.After(a.opts.AbortGrace):
			a.kill()
		}
	}()
}

func (a *App) kill() { a.killed.Do(func() { a.cmd.Process.Kill() }) }

// fail records why Python is gone, once, and fails every call waiting
// for it.
func (a *App) fail(err error) {
	a.mu.Lock()
	if a.err != nil {
		a.mu.Unlock()
		return
	}
	a.err = err
	calls := a.calls
	a.calls = map[uint32]*call{}
	a.waiting, a.running = nil, nil
	fds := a.fds
	a.fds = nil
	a.mu.Unlock()
	var answered []*call
	for _, c := range calls {
		if c.ans != nil {
			answered = append(answered, c)
		} else {
			c.fail(err)
		}
	}
	if len(answered) > 0 {
		a.loop.Post(func() { a.failAnswers(answered, err) })
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	close(a.done)
}

// watch aborts Python when a request ran past Timeout in it.
func (a *App) watch() {
	t := time.NewTicker(max(a.opts.Timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-a.done:
			return
		case <-t.C:
		}
		now := time.Now()
		a.mu.Lock()
		var stuck *call
		for _, c := range a.running {
			if now.Sub(c.began) > a.opts.Timeout && (stuck == nil || c.began.Before(stuck.began)) {
				stuck = c
			}
		}
		if stuck == nil || a.err != nil {
			a.mu.Unlock()
			continue
		}
		after := now.Sub(stuck.began).Round(time.Millisecond)
		a.timedOut = &TimeoutError{Method: stuck.method, URI: stuck.uri, After: after}
		a.mu.Unlock()
		a.log.Error(fmt.Sprintf("WSGI request timed out (pid:%d): %s %s running for %s (--timeout %s); the tracebacks of Python's threads follow",
			a.Pid(), stuck.method, stuck.uri, after, a.opts.Timeout))
		a.Abort() // the read loop fails the calls once Python is gone
		return
	}
}

// TimeoutError is Err after a request ran past Options.Timeout.
type TimeoutError struct {
	Method, URI string
	After       time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("wsgi: request %s %s timed out after %s", e.Method, e.URI, e.After)
}

// copyOutput hands each line of Python's stdout and stderr to Output, and
// keeps the last few for the error of an early exit.
func (a *App) copyOutput(r *os.File, done chan<- struct{}) {
	defer close(done)
	defer r.Close()
	out := a.opts.Output
	if out == nil {
		out = func(_ int, line string) { fmt.Fprintln(os.Stderr, line) }
	}
	pid := a.Pid()
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			s := string(bytes.TrimRight(line, "\r\n"))
			a.outTail.add(s)
			out(pid, s)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// tail keeps the last lines of a process's output.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if strings.TrimSpace(s) == "" {
		return
	}
	if len(t.lines) == 3 {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, strings.TrimSpace(s))
}

// suffix is ": line | line | line", or "" when there was no output.
func (t *tail) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return ""
	}
	return ": " + strings.Join(t.lines, " | ")
}
