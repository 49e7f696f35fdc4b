// Package cmd owns corral's command line: the flags (Gunicorn's names),
// their environment variables and TOML config file, validation with
// one-line errors, and the program's entry point, which runs a process as
// the arbiter or, when the arbiter started it, as a worker.
package cmd

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corral-server/corral/arbiter"
	"github.com/corral-server/corral/internal/logging"
	"github.com/corral-server/corral/socket"
	"github.com/corral-server/corral/worker"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// Exit codes.
const (
	ExitOK        = 0
	ExitError     = 1 // the server could not start or failed while running
	ExitUsage     = 2 // a bad flag, value or config file
	ExitBootError = worker.ExitBootError
)

// drainIdle is how long a draining worker leaves an idle keep-alive
// connection open: long enough for a client that is about to send its next
// request to do so (it gets "Connection: close"), short enough not to
// delay a reload.
const drainIdle = time.Second

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
}

// settings is the resolved command line.
type settings struct {
	app         string
	configPath  string
	checkConfig bool
	printConfig bool
	values      map[string]string // name -> value as TOML, for --print-config
	arbiter     *arbiter.Config
	chdir       string
	umask       int
	reload      *reloadSettings // --reload, or nil
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
	s, err := p.load(args, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", p.Name, err)
		return ExitUsage
	}
	if s == nil { // --help or --version was printed
		return ExitOK
	}
	switch {
	case s.printConfig:
		printConfig(os.Stdout, s)
		return ExitOK
	case s.checkConfig && s.arbiter.Command != nil:
		return ExitOK // exec mode: the command was found
	case s.checkConfig:
		if _, err := p.Apps(s.app); err != nil {
			fmt.Fprintf(os.Stderr, "%s: error: app %q: %v\n", p.Name, s.app, err)
			return ExitUsage
		}
		return ExitOK
	}
	if s.chdir != "" {
		if err := os.Chdir(s.chdir); err != nil {
			fmt.Fprintf(os.Stderr, "%s: error: --chdir: %v\n", p.Name, err)
			return ExitError
		}
	}
	if err := giveLogFiles(s); err != nil {
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", p.Name, err)
		return ExitError
	}
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
	err = a.Run()
	var boot *arbiter.BootError
	switch {
	case errors.As(err, &boot):
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", p.Name, err)
		return ExitBootError
	case err != nil:
		fmt.Fprintf(os.Stderr, "%s: error: %v\n", p.Name, err)
		return ExitError
	}
	return ExitOK
}

// load parses args, the environment and the config file into settings. It
// returns nil settings when it printed help or the version instead.
func (p *Program) load(args []string, out io.Writer) (*settings, error) {
	args, command := splitCommand(args) // exec mode: corral [flags] -- COMMAND [ARGS...]
	if p.executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
		p.executable = exe
	}
	files := fileFlags()
	kinds := flagKinds(files)
	var s *settings
	app := &cli.App{
		Name:            p.Name,
		Usage:           p.Usage,
		Version:         p.Version,
		ArgsUsage:       p.argsUsage(),
		Flags:           append(files, cliFlags()...),
		HideHelpCommand: true,
		Writer:          out,
		ErrWriter:       os.Stderr,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return err
		},
		Before: func(c *cli.Context) error {
			src, err := configSource(kinds)(c)
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
	if err := app.Run(args); err != nil {
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

func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
}

// seconds converts a flag's seconds to a duration, refusing negatives.
func seconds(c *cli.Context, name string) (time.Duration, error) {
	v := c.Float64(name)
	if v < 0 || math.IsNaN(v) || v > 1e7 {
		return 0, fmt.Errorf("--%s must be a number of seconds from 0 up, got %v", name, v)
	}
	return time.Duration(v * float64(time.Second)), nil
}

func (p *Program) settings(c *cli.Context, files []cli.Flag) (*settings, error) {
	s := &settings{configPath: c.String("config"), checkConfig: c.Bool("check-config"), printConfig: c.Bool("print-config")}
	switch c.NArg() {
	case 0:
		s.app = p.DefaultApp
		if s.app == "" && execArgs(c) == nil {
			return nil, errors.New("no app named; try: " + p.Name + " " + strings.Join(p.AppNames, "|"))
		}
	case 1:
		s.app = c.Args().First()
	default:
		return nil, fmt.Errorf("one app at most, got %q", c.Args().Slice())
	}
	if len(p.AppNames) > 0 && execArgs(c) == nil && !contains(p.AppNames, s.app) {
		return nil, fmt.Errorf("unknown app %q (known: %s)", s.app, strings.Join(p.AppNames, ", "))
	}
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	binds := c.StringSlice("bind")
	if len(binds) == 0 {
		binds = []string{defaultBind()}
	}
	for _, b := range binds {
		_, err := socket.ParseAddr(b)
		check(err)
	}
	workers := c.Int("workers")
	if workers < 1 {
		check(fmt.Errorf("--workers must be 1 or more, got %d", workers))
	}
	class := c.String("worker-class")
	if _, ok := worker.Lookup(class); !ok {
		check(fmt.Errorf("--worker-class: unknown worker type %q (known: %s)", class, strings.Join(worker.Classes(), ", ")))
	}
	timeout, err := seconds(c, "timeout")
	check(err)
	graceful, err := seconds(c, "graceful-timeout")
	check(err)
	boot, err := seconds(c, "boot-timeout")
	check(err)
	abortGrace, err := seconds(c, "abort-grace")
	check(err)
	keepAlive, err := seconds(c, "keep-alive")
	check(err)
	for _, name := range []string{"backlog", "worker-connections", "max-requests", "max-requests-jitter"} {
		if c.Int(name) < 0 {
			check(fmt.Errorf("--%s must be 0 or more, got %d", name, c.Int(name)))
		}
	}
	level, err := logging.ParseLevel(c.String("log-level"))
	check(err)
	_, err = worker.ParseAccessLogFormat(c.String("access-logformat"))
	check(err)
	umask, err := strconv.ParseInt(strings.ReplaceAll(c.String("umask"), "0o", "0"), 0, 32)
	if err != nil || umask < 0 || umask > 0o777 {
		check(fmt.Errorf("--umask must be an octal mask such as 0o022, got %q", c.String("umask")))
	}
	envs := c.StringSlice("env")
	for _, e := range envs {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			check(fmt.Errorf("--env wants KEY=VALUE, got %q", e))
		}
	}
	if len(errs) > 0 {
		return nil, errs[0]
	}
	s.chdir, s.umask = c.String("chdir"), int(umask)

	var errLog *logging.File
	if !s.checkConfig && !s.printConfig {
		if errLog, err = logging.OpenFile(c.String("error-logfile"), os.Stderr); err != nil {
			return nil, fmt.Errorf("--error-logfile: %v", err)
		}
	}
	var logOut io.Writer = os.Stderr
	if errLog != nil {
		logOut = errLog
	}
	s.arbiter = &arbiter.Config{
		Workers:         workers,
		Binds:           binds,
		Socket:          socket.Options{Backlog: c.Int("backlog"), ReusePort: c.Bool("reuse-port"), Umask: int(umask)},
		Executable:      p.executable,
		Args:            c.App.Metadata["args"].([]string),
		Env:             envs,
		BootTimeout:     boot,
		GracefulTimeout: graceful,
		AbortGrace:      abortGrace,
		PidFile:         c.String("pid"),
		UpgradeBinary:   c.String("upgrade-binary"),
		Name:            c.String("name"),
		ErrorLog:        errLog,
		Log:             logging.New(logOut, level),
		Worker: worker.Config{
			Class: class, App: s.app, Name: c.String("name"),
			Timeout: timeout, GracefulTimeout: graceful, KeepAlive: keepAlive, DrainIdle: drainIdle,
			WorkerConnections: c.Int("worker-connections"),
			MaxRequests:       c.Int("max-requests"), MaxRequestsJitter: c.Int("max-requests-jitter"),
			ErrorLog: c.String("error-logfile"), LogLevel: c.String("log-level"),
			AccessLog: c.String("access-logfile"), AccessLogFormat: c.String("access-logformat"),
		},
	}
	for _, g := range extensions {
		if g.apply == nil {
			continue
		}
		if err := g.apply(c, s); err != nil {
			return nil, err
		}
	}
	s.values = map[string]string{"app": strconv.Quote(s.app)}
	for _, f := range files {
		name := f.Names()[0]
		switch f.(type) {
		case *altsrc.StringSliceFlag:
			v := c.StringSlice(name)
			if name == "bind" {
				v = binds
			}
			q := make([]string, len(v))
			for i, e := range v {
				q[i] = strconv.Quote(e)
			}
			s.values[name] = "[" + strings.Join(q, ", ") + "]"
		case *altsrc.StringFlag:
			s.values[name] = strconv.Quote(c.String(name))
		case *altsrc.IntFlag:
			s.values[name] = strconv.Itoa(c.Int(name))
		case *altsrc.Float64Flag:
			s.values[name] = strconv.FormatFloat(c.Float64(name), 'f', -1, 64)
		case *altsrc.BoolFlag:
			s.values[name] = strconv.FormatBool(c.Bool(name))
		}
	}
	return s, nil
}

func printConfig(w io.Writer, s *settings) {
	names := make([]string, 0, len(s.values))
	for n := range s.values {
		if n != "app" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	fmt.Fprintf(w, "# app: %s\n", s.values["app"])
	for _, n := range names {
		fmt.Fprintf(w, "%s = %s\n", n, s.values[n])
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// Handler wraps a single handler as an AppFunc that ignores the app name.
func Handler(h http.Handler) worker.AppFunc {
	return func(string) (http.Handler, error) { return h, nil }
}
