// Package cmd owns corral's command line: the flags (Gunicorn's names),
// their environment variables and TOML config file, validation that
// reports every problem it finds (a line each), and the program's entry
// point, which runs a process as the arbiter or, when the arbiter started
// it, as a worker.
package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/corral-server/corral/arbiter"
	"github.com/corral-server/corral/worker"
	_ "github.com/corral-server/corral/worker/event" // -k event registers itself, as -k wsgi does (wsgi.go)
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// Exit codes: how the arbiter stopped, so that a container's or a unit's
// exit code tells a clean drain from the rest (docs/containers.md).
const (
	ExitOK        = 0 // a graceful stop (TERM) in which every worker finished, or a handover (USR2)
	ExitError     = 1 // the server could not start or failed while running
	ExitUsage     = 2 // a bad flag, value or config file
	ExitBootError = worker.ExitBootError
	ExitCutShort  = 4 // a graceful stop that SIGKILLed a worker at --graceful-timeout: its requests were lost
	// A quick stop exits 128 + the signal, as a shell reports a process
	// the signal ended: 130 for INT, 131 for QUIT.
	exitSignalBase = 128
)

// Program is one corral binary: its name, its apps, and its hooks. The
// same binary runs as the arbiter and as each worker.
type Program struct {
	Name    string // the command's name in help and errors, e.g. "corral"
	Usage   string // one line for --help
	Version string
	// Apps resolves the positional app name to a handler. It runs in
	// each worker at boot; an error there fails the boot.
	Apps worker.AppFunc
	// AppNames lists the names Apps knows, for --help and to refuse an
	// unknown name before any worker starts. Empty: any name is passed on.
	AppNames []string
	// DefaultApp is used when no app is named; "" makes the name required.
	DefaultApp  string
	Hooks       arbiter.Hooks
	WorkerHooks worker.Hooks

	executable string // resolved once: a reload must exec the path, not /proc/self/exe
	startDir   string // the working directory at the first load, before --chdir applied
}

// Main runs the program with os.Args and exits with its code.
func (p *Program) Main() {
	os.Exit(p.Run(os.Args))
}

// Run runs the program with args (args[0] is the program) and returns the
// exit code.
func (p *Program) Run(args []string) int {
	if worker.IsWorker() {
		return worker.Run(p.Apps, p.WorkerHooks)
	}
	if len(args) > 1 && args[1] == "ctl" { // corral ctl: the control socket's client (ctl.go)
		return p.ctl(args[2:], os.Stdout, os.Stderr)
	}
	if len(args) > 1 && args[1] == "probe" { // corral probe: a health check for images without curl (probe.go)
		return p.probe(args[2:])
	}
	s, err := p.load(args, os.Stdout)
	switch {
	case err != nil:
		return p.fail(ExitUsage, err)
	case s == nil: // --help or --version was printed
		return ExitOK
	case s.printConfig || s.checkConfig:
		p.warn(s.warnings)
		return p.check(s)
	}
	for _, w := range s.warnings {
		s.arbiter.Log.Warn(w)
	}
	for _, n := range s.notes {
		s.arbiter.Log.Info(n)
	}
	if s.chdir != "" {
		if err := os.Chdir(s.chdir); err != nil {
			return p.fail(ExitUsage, fmt.Errorf("--chdir %s: %v", s.chdir, unwrapPathError(err)))
		}
	}
	if err := giveLogFiles(s); err != nil {
		return p.fail(ExitError, err)
	}
	a := p.newArbiter(args, s)
	err = a.Run()
	var boot *arbiter.BootError
	switch {
	case errors.As(err, &boot):
		return p.fail(ExitBootError, err)
	case errors.Is(err, arbiter.ErrControlInUse): // as a bad flag: another arbiter owns that path
		return p.fail(ExitUsage, err)
	case err != nil:
		return p.fail(ExitError, err)
	}
	return stopCode(a.Stopped())
}

// stopCode is the exit code for how the arbiter stopped.
func stopCode(st arbiter.Stopped) int {
	switch {
	case st.Signal == syscall.SIGINT || st.Signal == syscall.SIGQUIT:
		return exitSignalBase + int(st.Signal)
	case st.CutShort > 0:
		return ExitCutShort
	}
	return ExitOK
}

// check answers --print-config and --check-config; the latter builds the
// app once, so a broken app is found before any worker starts.
func (p *Program) check(s *settings) int {
	switch {
	case s.printConfig:
		printConfig(os.Stdout, s)
	case s.arbiter.Command == nil: // exec mode: finding the command was the check
		if s.chdir != "" && worker.LoadsApp(s.arbiter.Worker.Class) {
			// The type imports the app from the working directory the
			// workers will have (a process that only checks).
			if err := os.Chdir(s.chdir); err != nil {
				return p.fail(ExitUsage, fmt.Errorf("--chdir: %v", err))
			}
		}
		if err := worker.CheckApp(&s.arbiter.Worker, p.Apps); err != nil {
			return p.fail(ExitUsage, fmt.Errorf("app %q: %v", s.app, err))
		}
	}
	return ExitOK
}

// newArbiter is the arbiter for s; on a reload it loads args anew.
func (p *Program) newArbiter(args []string, s *settings) *arbiter.Arbiter {
	a := arbiter.New(s.arbiter)
	a.Hooks = p.Hooks
	a.Watcher = reloadWatcher(s) // nil without --reload
	a.Reload = func() (*arbiter.Config, error) {
		s2, err := p.load(args, io.Discard)
		if err != nil {
			return nil, err
		}
		if s2 == nil {
			return nil, errors.New("the command line no longer loads")
		}
		return s2.arbiter, nil
	}
	return a
}

// warn prints each warning on a line of its own.
func (p *Program) warn(warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(os.Stderr, "%s: warning: %s\n", p.Name, w)
	}
}

// fail prints err, a line for each problem in it, and returns code.
func (p *Program) fail(code int, err error) int {
	for _, line := range errorLines(err) {
		fmt.Fprintf(os.Stderr, "%s: error: %s\n", p.Name, line)
	}
	return code
}

// load reads args, the environment and the config file into settings,
// then opens the logs they name. It returns nil settings when it printed
// help or the version instead.
func (p *Program) load(args []string, out io.Writer) (*settings, error) {
	s, err := p.parse(args, out)
	if err != nil || s == nil {
		return nil, err
	}
	if err := s.openLogs(); err != nil {
		return nil, err
	}
	return s, nil
}

// parse parses and checks args, the environment and the config file into
// settings; it opens nothing.
func (p *Program) parse(args []string, out io.Writer) (*settings, error) {
	args, command := splitCommand(args) // exec mode: corral [flags] -- COMMAND [ARGS...]
	if p.executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
		p.executable = exe
	}
	if p.startDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("find the working directory: %w", err)
		}
		p.startDir = wd
	}
	files, cliOnly := fileFlags(), cliFlags()
	flags := append(append([]cli.Flag{}, files...), cliOnly...)
	keys := fileKeys(files, cliOnly)
	var s *settings
	app := &cli.App{
		Name:      p.Name,
		Usage:     p.Usage,
		Version:   p.version(),
		ArgsUsage: p.argsUsage(),
		Flags:     flags,
		// One value per flag, commas are data (-e 'HOSTS=a.com,b.com');
		// the allow lists split their own (splitList).
		DisableSliceFlagSeparator: true,
		CustomAppHelpTemplate:     helpTemplate(p, flags),
		HideHelpCommand:           true,
		Writer:                    out,
		ErrWriter:                 os.Stderr,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return unknownFlagAnswer(err)
		},
		Before: func(c *cli.Context) error {
			src, err := configSource(keys)(c)
			if err != nil {
				return err
			}
			if err := altsrc.ApplyInputSourceValues(c, src, files); err != nil {
				return fmt.Errorf("config file %s: %v", c.String("config"), oneLine(err))
			}
			return nil
		},
		Action: func(c *cli.Context) error {
			var err error
			s, err = p.settings(c, files)
			return err
		},
		ExitErrHandler: func(*cli.Context, error) {},
		Metadata:       map[string]any{"args": args, "command": command},
	}
	var ps problems
	switch err := app.Run(flagsFirst(args, flags)); {
	case errors.As(err, &ps):
		return nil, ps
	case err != nil:
		return nil, errors.New(oneLine(err))
	}
	return s, nil
}

func (p *Program) argsUsage() string {
	if len(p.AppNames) == 0 {
		return "[APP] | -- COMMAND [ARGS...]"
	}
	return "APP (one of: " + strings.Join(p.AppNames, ", ") + ") | -- COMMAND [ARGS...]"
}
