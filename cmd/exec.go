package cmd

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corral-server/corral/arbiter"
	"github.com/corral-server/corral/signals"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// Exec mode: corral [flags] -- COMMAND [ARGS...] runs COMMAND as each
// worker, handing it the listeners as systemd does (see worker/exec.go
// and arbiter/exec.go).

const catExec = "Any program as the worker (-- COMMAND)"

func init() {
	extensions = append(extensions, flagGroup{flags: execFlags, apply: applyExec})
}

func execFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringFlag(&cli.StringFlag{Name: "ready", Value: "notify", Category: catExec, EnvVars: env("ready"),
			Usage: "when a COMMAND worker counts as ready: notify (it sends READY=1 to $NOTIFY_SOCKET, as sd_notify does) or delay:DURATION (it has run that long, e.g. delay:500ms). " +
				"notify is the default because a reload stops an old worker only once its replacement is ready, and only the program itself knows when it serves; " +
				"a program that cannot notify needs delay: and a duration longer than its start-up"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "stop-signal", Value: "TERM", Category: catExec, EnvVars: env("stop-signal"),
			Usage: "the signal a COMMAND worker gets for a graceful stop (a quick stop sends QUIT, and SIGKILL follows --graceful-timeout)"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "capture-output", Value: true, Category: catExec, EnvVars: env("capture-output"),
			Usage: "send a COMMAND worker's stdout and stderr to the error log, each line prefixed with [worker PID]; false: the workers inherit corral's"}),
	}
}

// execFlagRules are the flags that do not reach a COMMAND worker, as it
// serves its connections itself: set, each is refused when a user relies
// on what it promises (a limit, a log, a recycle), else warned about.
var execFlagRules = []struct {
	flag   string
	refuse bool
	why    string
}{
	{"worker-class", true, "the program is the worker; drop -k"},
	{"max-requests", true, "corral does not see the program's requests; have it exit after N (an exited worker is replaced)"},
	{"max-requests-jitter", true, "corral does not see the program's requests"},
	{"access-logfile", true, "the program writes its own access log (its output goes to the error log: --capture-output)"},
	{"limit-request-line", true, "the program parses its own requests"},
	{"limit-request-fields", true, "the program parses its own requests"},
	{"limit-request-field_size", true, "the program parses its own requests"},
	{"max-body", true, "the program reads its own request bodies"},
	{"proxy-protocol", true, "the program reads its own PROXY headers"},
	{"access-logformat", false, "the program formats its own access log"},
	{"keep-alive", false, "the program keeps its own connections"},
	{"worker-connections", false, "the program limits its own connections"},
	{"threads", false, "an event worker setting"},
	{"event-inline", false, "an event worker setting"},
	{"uwsgi-allow-from", false, "the program decides which peers it serves"},
	{"proxy-allow-from", false, "the program decides which peers it trusts"},
	{"forwarded-allow-ips", false, "the program decides which peers it trusts"},
}

// splitCommand splits args at the first "--": corral's own arguments
// before it, the command after it (nil when there is no "--").
func splitCommand(args []string) (own, command []string) {
	for i, a := range args {
		if a == "--" {
			return args[:i:i], append([]string{}, args[i+1:]...)
		}
	}
	return args, nil
}

// execArgs is the command given after "--", or nil.
func execArgs(c *cli.Context) []string {
	cmd, _ := c.App.Metadata["command"].([]string)
	return cmd
}

func applyExec(c *cli.Context, s *settings) error {
	var errs problems
	delay, err := parseReady(c.String("ready"))
	errs.add(err)
	stop, err := signals.Parse(c.String("stop-signal"))
	if err != nil || stop == syscall.SIGCHLD {
		errs.add(fmt.Errorf("--stop-signal: unknown signal %q (e.g. TERM, INT, QUIT, USR2)", c.String("stop-signal")))
	}
	if err := errs.err(); err != nil {
		return err
	}
	command := execArgs(c)
	if command == nil {
		return nil
	}
	switch {
	case len(command) == 0:
		return errors.New("no command after --; try: " + c.App.Name + " [flags] -- COMMAND [ARGS...]")
	case c.NArg() > 0:
		return fmt.Errorf("an app (%q) and a command after -- exclude each other", c.Args().First())
	}
	path, err := lookCommand(command[0], s.chdir)
	errs.add(err)
	for _, r := range execFlagRules {
		switch {
		case !c.IsSet(r.flag):
		case r.refuse:
			errs.add(fmt.Errorf("--%s does not apply to a COMMAND worker: %s", r.flag, r.why))
		default:
			s.warnings = append(s.warnings, fmt.Sprintf("--%s does not apply to a COMMAND worker, ignored: %s", r.flag, r.why))
		}
	}
	if err := errs.err(); err != nil {
		return err
	}
	s.arbiter.Command = append([]string{path}, command[1:]...)
	s.arbiter.Exec = arbiter.ExecOptions{ReadyDelay: delay, StopSignal: stop, CaptureOutput: c.Bool("capture-output")}
	// For the log's "Using worker:" line; the shim ignores the class.
	s.arbiter.Worker.Class = "exec " + strings.Join(command, " ")
	s.arbiter.Worker.App = ""
	s.app = ""
	return nil
}

// parseReady reads --ready: "notify" is 0, "delay:D" is D (a Go duration
// such as 500ms or 2s, or a number of seconds).
func parseReady(v string) (time.Duration, error) {
	if v == "notify" {
		return 0, nil
	}
	if d, ok := strings.CutPrefix(v, "delay:"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil {
			if f, ferr := strconv.ParseFloat(d, 64); ferr == nil && f < 1e7 {
				dur, err = time.Duration(f*float64(time.Second)), nil
			}
		}
		if err == nil && dur > 0 {
			return dur, nil
		}
	}
	return 0, fmt.Errorf("--ready wants notify or delay:DURATION (e.g. delay:500ms), got %q", v)
}

// lookCommand resolves the command as the workers will exec it: by PATH
// when it has no slash, else as a path, relative to --chdir if given. The
// result is absolute, so --chdir and later reloads find the same program.
func lookCommand(name, chdir string) (string, error) {
	if strings.Contains(name, "/") && !filepath.IsAbs(name) && chdir != "" {
		name = filepath.Join(chdir, name)
	}
	path, err := exec.LookPath(name)
	if err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			err = ee.Err
		}
		return "", fmt.Errorf("command %q: %v", name, err)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return path, nil
}
