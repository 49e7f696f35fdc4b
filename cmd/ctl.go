package cmd

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/corral-server/corral/internal/control"
)

// `corral ctl [--socket P] [--json] COMMAND`: the control socket's client
// (the server is arbiter/control.go, the protocol internal/control).

// ctl's exit codes: 0 done, 1 refused or failed, 2 cannot connect (and a
// bad command line).
const (
	ctlDone      = 0
	ctlFailed    = 1
	ctlNoConnect = 2
)

// ctlRetryFor bounds how long the client asks again when the arbiter it
// reached was handing over to a new one (USR2), or closed the connection
// before it read the request.
const ctlRetryFor = 30 * time.Second

// ctlOptions are ctl's own options, before the command.
type ctlOptions struct {
	socket string
	json   bool
}

const ctlUsage = `usage: %[1]s ctl [--socket PATH] [--json] COMMAND

Steers a running arbiter through its control socket (--control-socket).
--socket  the socket (default: $CORRAL_CONTROL_SOCKET, else the one socket
          corral-*.ctl in $XDG_RUNTIME_DIR or /tmp/corral-UID/)
--json    print the arbiter's answer as it sent it, one JSON object

%[2]s

exit codes: 0 done, 1 refused or failed (the reason on stderr), 2 cannot connect
`

// ctl runs `corral ctl` with args (the words after "ctl") and returns
// its exit code.
func (p *Program) ctl(args []string, stdout, stderr io.Writer) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "%s ctl: %s\n", p.Name, fmt.Sprintf(format, a...))
		return code
	}
	opts, rest, err := parseCtlOptions(args)
	if errors.Is(err, errHelp) {
		fmt.Fprintf(stdout, ctlUsage, p.Name, control.Usage)
		return ctlDone
	}
	if err != nil {
		return fail(ctlNoConnect, "%v (try: %s ctl --help)", err, p.Name)
	}
	req, err := control.Parse(rest)
	if err != nil {
		return fail(ctlNoConnect, "%v (try: %s ctl --help)", err, p.Name)
	}
	path, err := findControlSocket(opts.socket)
	if err != nil {
		return fail(ctlNoConnect, "%v", err)
	}
	cl := &ctlClient{path: path}
	defer cl.close()
	if rest[0] == "top" {
		return p.top(cl, stdout, stderr)
	}
	resp, raw, err := cl.do(req)
	if err != nil {
		var ce *connectError
		if errors.As(err, &ce) {
			return fail(ctlNoConnect, "%v", err)
		}
		return fail(ctlFailed, "%v", err)
	}
	if opts.json {
		fmt.Fprintln(stdout, string(raw))
	} else {
		printAnswer(stdout, req, resp)
	}
	if !resp.OK {
		return fail(ctlFailed, "%s", resp.Error)
	}
	return ctlDone
}

var errHelp = errors.New("help")

// parseCtlOptions reads ctl's options, which come before the command.
func parseCtlOptions(args []string) (ctlOptions, []string, error) {
	var o ctlOptions
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		a := args[0]
		name, v, hasV := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "h", "help":
			return o, nil, errHelp
		case "json":
			o.json = true
		case "socket", "s":
			if !hasV {
				if len(args) < 2 {
					return o, nil, errors.New("--socket wants a path")
				}
				v, args = args[1], args[1:]
			}
			o.socket = v
		default:
			return o, nil, fmt.Errorf("unknown option %q", a)
		}
		args = args[1:]
	}
	if len(args) == 0 {
		return o, nil, errors.New("no command given")
	}
	return o, args, nil
}

// findControlSocket is the socket to use: the one given, else
// $CORRAL_CONTROL_SOCKET, else the one control socket in the default
// folder of an arbiter without a pid file.
func findControlSocket(given string) (string, error) {
	if given != "" {
		return given, nil
	}
	if v := os.Getenv(envName("control-socket")); v != "" && v != controlOff {
		return v, nil
	}
	dir, _ := defaultControlDir("", false)
	found, _ := filepath.Glob(filepath.Join(dir, "corral-*.ctl"))
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("no control socket in %s; name one with --socket", dir)
	}
	return "", fmt.Errorf("%d control sockets in %s (%s); name one with --socket", len(found), dir, strings.Join(found, ", "))
}

// connectError is a failure to reach the arbiter at all: exit code 2.
type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// ctlClient is a connection to the control socket, made again when lost.
type ctlClient struct {
	path string
	c    net.Conn
	br   *bufio.Reader
}

func (cl *ctlClient) close() {
	if cl.c != nil {
		cl.c.Close()
		cl.c = nil
	}
}

func (cl *ctlClient) connect() error {
	c, err := net.DialTimeout("unix", cl.path, 5*time.Second)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			err = oe.Err
		}
		return &connectError{fmt.Errorf("cannot connect to %s: %v", cl.path, err)}
	}
	cl.c, cl.br = c, bufio.NewReader(c)
	return nil
}

// do sends req and returns the answer, and the answer's line as the
// arbiter sent it. It asks again, for up to ctlRetryFor, when the arbiter
// handed over to a new one (an upgrade) before acting, or closed the
// connection without answering (it read no request: an arbiter answers
// every request it reads).
func (cl *ctlClient) do(req control.Request) (control.Response, []byte, error) {
	give := time.Now().Add(ctlRetryFor)
	for {
		resp, raw, err := cl.once(req)
		var ce *connectError
		retry := err != nil && !errors.As(err, &ce) && unanswered(err) || err == nil && resp.Retry
		if !retry || time.Now().After(give) {
			return resp, raw, err
		}
		cl.close()
		time.Sleep(100 * time.Millisecond)
	}
}

// unanswered reports whether err means the connection ended before an
// answer began.
func unanswered(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

func (cl *ctlClient) once(req control.Request) (control.Response, []byte, error) {
	var resp control.Response
	if cl.c == nil {
		if err := cl.connect(); err != nil {
			return resp, nil, err
		}
	}
	cl.c.SetDeadline(time.Now().Add(control.Duration(req.Wait) + 45*time.Second))
	if err := control.WriteLine(cl.c, req); err != nil {
		cl.close()
		return resp, nil, fmt.Errorf("send to %s: %w", cl.path, err)
	}
	line, err := control.ReadLine(cl.br)
	if err != nil {
		cl.close()
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return resp, nil, fmt.Errorf("no answer from %s: %w", cl.path, err)
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		cl.close()
		return resp, nil, fmt.Errorf("answer from %s: %v", cl.path, err)
	}
	return resp, line, nil
}

// printAnswer prints resp for a person: a table for status and listeners,
// the settings for config, else the message.
func printAnswer(w io.Writer, req control.Request, resp control.Response) {
	switch {
	case !resp.OK:
		return // the error goes to stderr
	case resp.Status != nil:
		printStatus(w, resp.Status, nil)
	case req.Cmd == control.CmdListeners:
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tPROTOCOL\tQUEUE\tLIMIT")
		for _, l := range resp.Listeners {
			depth := fmt.Sprint(l.Depth)
			if l.Error != "" {
				depth = "? (" + l.Error + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", l.Address, l.Protocol, depth, l.Limit)
		}
		tw.Flush()
	case req.Cmd == control.CmdConfig:
		fmt.Fprint(w, resp.Config)
	case resp.Message != "":
		fmt.Fprintln(w, resp.Message)
	}
}

// printStatus prints the arbiter's line and the workers' table; rates,
// when given (top), adds each worker's requests per second.
func printStatus(w io.Writer, s *control.Status, rates map[int]float64) {
	name := ""
	if s.Name != "" {
		name = " [" + s.Name + "]"
	}
	fmt.Fprintf(w, "arbiter%s pid %d, version %s, up %s, generation %d, target %d workers, %s\n",
		name, s.Pid, s.Version, fmtAge(s.Uptime), s.Generation, s.Target, s.State)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "SLOT\tPID\tGEN\tSTATE\tAGE\tUPTIME\tREQUESTS\t"
	if rates != nil {
		head += "REQ/S\t"
	}
	fmt.Fprintln(tw, head+"IN FLIGHT\tREQUEST\tFOR\tRSS\tPSS\tHEARTBEAT")
	for _, wk := range s.Workers {
		slot := fmt.Sprint(wk.Slot)
		if !wk.Current {
			slot += "*" // on its way out: its slot's new worker is listed too
		}
		reqs, inflight, req, reqFor := "-", "-", "-", "-"
		if wk.Scoreboard {
			reqs, inflight = fmt.Sprint(wk.Requests), fmt.Sprint(wk.InFlight)
			if wk.Request != "" {
				req, reqFor = wk.Request, fmtSeconds(wk.RequestFor)
			}
		}
		row := fmt.Sprintf("%s\t%d\t%d\t%s\t%d\t%s\t%s\t", slot, wk.Pid, wk.Generation, wk.State, wk.Age, fmtAge(wk.Uptime), reqs)
		if rates != nil {
			rate := "-"
			if r, ok := rates[wk.Pid]; ok && wk.Scoreboard {
				rate = fmt.Sprintf("%.1f", r)
			}
			row += rate + "\t"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s ago\n", row, inflight, req, reqFor, fmtBytes(wk.RSS), fmtBytes(wk.PSS), fmtSeconds(wk.LastBeat))
	}
	tw.Flush()
}

// fmtAge is an uptime: 45s, 3m12s, 5h02m, 2d03h.
func fmtAge(seconds float64) string {
	d := time.Duration(seconds) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// fmtSeconds is a short span: 0.25s, 12.0s, then as fmtAge.
func fmtSeconds(seconds float64) string {
	switch {
	case seconds < 0:
		return "0s"
	case seconds < 10:
		return fmt.Sprintf("%.2fs", seconds)
	case seconds < 60:
		return fmt.Sprintf("%.1fs", seconds)
	}
	return fmtAge(seconds)
}

// fmtBytes is a size in binary units: 812K, 12.3M, 1.2G.
func fmtBytes(n uint64) string {
	switch {
	case n == 0:
		return "-"
	case n < 1<<20:
		return fmt.Sprintf("%dK", n>>10)
	case n < 1<<30:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
}
