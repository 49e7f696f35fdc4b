// Package control owns the control socket's protocol, shared by the
// arbiter's side (arbiter/control.go) and the `corral ctl` client
// (cmd/ctl.go): one JSON object per line each way, a Request then its
// Response, any number of them on one connection, one at a time. The
// protocol is versioned (Version); docs/control.md describes it for
// socat and scripts.
package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Version is the protocol's version. A request names the version it
// speaks ("v"; none means 1); an arbiter refuses a newer one.
const Version = 1

// MaxLine is the longest request line an arbiter reads, and the longest
// answer a client reads (a status of hundreds of workers fits).
const MaxLine = 1 << 20

// The commands.
const (
	CmdStatus     = "status"
	CmdListeners  = "listeners"
	CmdReload     = "reload"
	CmdUpgrade    = "upgrade"
	CmdWorkers    = "workers"
	CmdWorkerStop = "worker-stop"
	CmdReopenLogs = "reopen-logs"
	CmdStop       = "stop"
	CmdConfig     = "config"
	CmdPing       = "ping"
)

// Request is one command to the arbiter.
type Request struct {
	V   int    `json:"v"`
	Cmd string `json:"cmd"`
	// N is workers' count; with Delta it is added to the target
	// (negative: removed).
	N     int  `json:"n,omitempty"`
	Delta bool `json:"delta,omitempty"`
	// Pid is the worker worker-stop replaces.
	Pid int `json:"pid,omitempty"`
	// Wait, for reload and upgrade, is how many seconds the answer may
	// wait for the outcome; 0 answers once it has started.
	Wait float64 `json:"wait,omitempty"`
	// Quick is stop's quick stop (QUIT) rather than the graceful one.
	Quick bool `json:"quick,omitempty"`
	// Canary, for reload, is how many workers it replaces first and
	// watches (--reload-canary for this reload); 0: the configuration's.
	Canary int `json:"canary,omitempty"`
}

// The results of a reload or an upgrade.
const (
	ResultStarted  = "started"  // under way; the answer did not wait
	ResultComplete = "complete" // the new generation (or arbiter) serves
	ResultFailed   = "failed"   // it did not; Error says why, the old workers serve on
	ResultPending  = "pending"  // still under way when the wait ran out
)

// Response is the arbiter's answer to one Request.
type Response struct {
	V  int  `json:"v"`
	OK bool `json:"ok"`
	// Error is why the command was refused or failed, one line.
	Error string `json:"error,omitempty"`
	// Message says what was done, one line.
	Message string `json:"message,omitempty"`
	// Result is a reload's or upgrade's outcome (ResultStarted ...).
	Result string `json:"result,omitempty"`
	// Retry is set when this arbiter handed over to a new one (USR2)
	// before it could act: the same request, sent again, reaches that one.
	Retry bool `json:"retry,omitempty"`
	// Arbiter is the pid of the arbiter that answered.
	Arbiter   int        `json:"arbiter"`
	Status    *Status    `json:"status,omitempty"`
	Listeners []Listener `json:"listeners,omitempty"`
	// Config is the effective settings, as --print-config prints them.
	Config string `json:"config,omitempty"`
}

// Status is the herd: the arbiter and every live worker.
type Status struct {
	Pid        int     `json:"pid"`
	Version    string  `json:"version"`
	Name       string  `json:"name,omitempty"`
	Uptime     float64 `json:"uptime"` // seconds
	Generation int     `json:"generation"`
	Target     int     `json:"target"`
	// State is the arbiter's: starting, running, reloading, upgrading,
	// taking over, workers stopped (WINCH), stopping, handed over.
	State   string   `json:"state"`
	Workers []Worker `json:"workers"`
}

// Worker is one live worker process, from the scoreboard it shares with
// the arbiter and what the arbiter knows of it. Durations are seconds.
type Worker struct {
	Slot       int    `json:"slot"`
	Pid        int    `json:"pid"`
	Generation int    `json:"generation"`
	Age        int    `json:"age"` // spawn sequence number, as Gunicorn's
	State      string `json:"state"`
	// Current is false for a worker on its way out (stopping, being
	// replaced, of an older generation): its slot's new worker is shown too.
	Current  bool    `json:"current"`
	Uptime   float64 `json:"uptime"`
	Requests uint64  `json:"requests"` // answered
	InFlight int64   `json:"in_flight"`
	// Request is the request the worker is in ("GET /path"), and
	// RequestFor for how long; "" when idle or unknown (exec workers).
	Request    string  `json:"request,omitempty"`
	RequestFor float64 `json:"request_for,omitempty"`
	RSS        uint64  `json:"rss"` // bytes
	PSS        uint64  `json:"pss"`
	LastBeat   float64 `json:"last_beat"`  // seconds since its last heartbeat
	Scoreboard bool    `json:"scoreboard"` // Requests, InFlight and Request are known
}

// Listener is one listening socket and its accept queue.
type Listener struct {
	Address  string `json:"address"`
	Protocol string `json:"protocol"`
	Depth    int    `json:"depth"` // connections waiting to be accepted
	Limit    int    `json:"limit"` // the most the kernel queues (the backlog)
	Error    string `json:"error,omitempty"`
}

// Seconds is d as the protocol's seconds.
func Seconds(d time.Duration) float64 { return d.Seconds() }

// Duration is seconds as a duration.
func Duration(seconds float64) time.Duration { return time.Duration(seconds * float64(time.Second)) }

// DefaultWait is how long a bare --wait waits for a reload or upgrade.
const DefaultWait = 5 * time.Minute

// Usage is the commands, for `corral ctl --help` and a bad command's error.
const Usage = `commands:
  status                  the arbiter and a table of its workers
  listeners               the listening sockets and their accept queues
  top                     the status table, refreshed every second, until q or Ctrl-C
  reload [--wait[=D]] [--canary N]
                          a new generation of workers (HUP); --wait: answer once it completed or failed;
                          --canary: replace N workers first and watch them (--reload-canary)
  upgrade [--wait[=D]]    a new arbiter from the binary on disk (USR2); --wait: once it serves or failed
  workers N | +N | -N     set the number of workers, or add or remove some
  worker stop PID         replace that worker: its replacement starts first, as a recycle
  reopen-logs             reopen the log files (USR1)
  stop [--quick]          stop gracefully (TERM), or at once (QUIT)
  config                  the effective settings, as --print-config prints them
  ping                    exit 0 when the arbiter serves (a container's HEALTHCHECK)`

// Parse turns a command line (the words after `corral ctl` and its
// options) into a request. "top" is the client's: it is a status request
// sent every second.
func Parse(args []string) (Request, error) {
	r := Request{V: Version}
	if len(args) == 0 {
		return r, errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	r.Cmd = cmd
	switch cmd {
	case CmdStatus, CmdListeners, CmdReopenLogs, CmdConfig, CmdPing, "top":
		if cmd == "top" {
			r.Cmd = CmdStatus
		}
		return r, noMore(cmd, rest)
	case CmdReload, CmdUpgrade:
		for i := 0; i < len(rest); i++ {
			a := rest[i]
			if name, v, has := strings.Cut(a, "="); cmd == CmdReload && (name == "--canary" || name == "-canary") {
				if !has && i+1 < len(rest) {
					i++
					v = rest[i]
				}
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 {
					return r, fmt.Errorf("reload: --canary wants a count of workers, 1 or more, got %q", v)
				}
				r.Canary = n
				continue
			}
			d, err := parseWait(a)
			if err != nil {
				return r, fmt.Errorf("%s: %v", cmd, err)
			}
			r.Wait = d.Seconds()
		}
		return r, nil
	case CmdStop:
		for _, a := range rest {
			if a != "--quick" && a != "-quick" {
				return r, fmt.Errorf("stop: unknown option %q (known: --quick)", a)
			}
			r.Quick = true
		}
		return r, nil
	case CmdWorkers:
		if len(rest) != 1 {
			return r, errors.New("workers wants one count: N, +N or -N")
		}
		s := rest[0]
		r.Delta = strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-")
		n, err := strconv.Atoi(s)
		switch {
		case err != nil:
			return r, fmt.Errorf("workers: %q is no count (N, +N or -N)", s)
		case !r.Delta && n < 1:
			return r, fmt.Errorf("workers: the count must be 1 or more, got %d", n)
		case r.Delta && n == 0:
			return r, fmt.Errorf("workers: %s changes nothing", s)
		}
		r.N = n
		return r, nil
	case "worker":
		if len(rest) != 2 || rest[0] != "stop" {
			return r, errors.New("worker wants: worker stop PID")
		}
		pid, err := strconv.Atoi(rest[1])
		if err != nil || pid < 1 {
			return r, fmt.Errorf("worker stop: %q is no pid", rest[1])
		}
		r.Cmd, r.Pid = CmdWorkerStop, pid
		return r, nil
	}
	return r, fmt.Errorf("unknown command %q", cmd)
}

// parseWait reads --wait, --wait=30s or --wait=30 (seconds).
func parseWait(a string) (time.Duration, error) {
	name, v, has := strings.Cut(a, "=")
	if name != "--wait" && name != "-wait" {
		return 0, fmt.Errorf("unknown option %q (known: --wait[=DURATION])", a)
	}
	if !has {
		return DefaultWait, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		var s float64
		s, err = strconv.ParseFloat(v, 64)
		d = Duration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--wait wants a duration such as 30s, got %q", v)
	}
	return d, nil
}

func noMore(cmd string, rest []string) error {
	if len(rest) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", cmd, rest)
	}
	return nil
}

// Check refuses a request this arbiter cannot act on: another version,
// an unknown command, a bad count. Its error is the Response's Error.
func (r *Request) Check() error {
	if r.V == 0 {
		r.V = 1 // a hand-written request may leave it out
	}
	if r.V > Version {
		return fmt.Errorf("protocol version %d is newer than this arbiter's (%d)", r.V, Version)
	}
	switch r.Cmd {
	case CmdStatus, CmdListeners, CmdReopenLogs, CmdConfig, CmdPing, CmdReload, CmdUpgrade, CmdStop:
	case CmdWorkers:
		if !r.Delta && r.N < 1 {
			return fmt.Errorf("workers: the count must be 1 or more, got %d", r.N)
		}
	case CmdWorkerStop:
		if r.Pid < 1 {
			return errors.New("worker-stop wants a pid")
		}
	case "":
		return errors.New(`no "cmd" in the request`)
	default:
		return fmt.Errorf("unknown command %q", r.Cmd)
	}
	if r.Wait < 0 {
		return fmt.Errorf("wait must be 0 or more seconds, got %v", r.Wait)
	}
	if r.Canary < 0 || (r.Canary > 0 && r.Cmd != CmdReload) {
		return fmt.Errorf("canary is a reload's count of workers, 0 or more; got %d for %s", r.Canary, r.Cmd)
	}
	return nil
}

// ReadLine reads one line of at most MaxLine bytes, without its newline.
func ReadLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxLine {
			return nil, fmt.Errorf("a line longer than %d bytes", MaxLine)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
}

// WriteLine writes v as one JSON line, in one write, "<" and ">" as they
// are (a person reads the answers too).
func WriteLine(w io.Writer, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // Encode ends the line
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}
