package cmd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/corral-server/corral/arbiter"
	"github.com/corral-server/corral/internal/cgroup"
	"github.com/corral-server/corral/internal/logging"
	"github.com/corral-server/corral/socket"
	"github.com/corral-server/corral/worker"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// drainIdle is how long a draining worker leaves an idle keep-alive
// connection open: long enough for a client that is about to send its next
// request to do so (it gets "Connection: close"), short enough not to
// delay a reload.
const drainIdle = time.Second

// settings is the resolved command line.
type settings struct {
	app         string
	configPath  string
	checkConfig bool
	printConfig bool
	values      map[string]string // name -> value as TOML, for --print-config
	arbiter     *arbiter.Config   // its ErrorLog and Log are set by openLogs
	logLevel    slog.Level
	chdir       string
	umask       int
	reload      *reloadSettings // --reload, or nil
	warnings    []string        // what is set but not applied, a line each: printed, or logged at start
	notes       []string        // what auto settings came to, the stop's length: logged at start, comments in --print-config
	printNotes  []string        // more of them, for --print-config only: no budget, the stop's length without a delay
	limits      cgroup.Limits   // the cgroup's, for -w auto and --max-memory
	// reloadExtra are more paths for --reload to watch, as
	// --reload-extra-file takes them: a flag group's (-k wsgi: the app's
	// *.py files).
	reloadExtra []string
}

// settings checks the parsed command line and builds the configuration
// from it: the app, the core flags, then each flag group in extensions.
// Every problem found is in the error (see problems); the configuration is
// built even so, as each check needs only its own flags.
func (p *Program) settings(c *cli.Context, files []cli.Flag) (*settings, error) {
	var errs problems
	app, err := p.chooseApp(c)
	errs.add(err)
	limits := readLimits()
	core, err := parseCore(c, limits)
	errs.add(err)
	s := &settings{
		app: app, configPath: c.String("config"), checkConfig: c.Bool("check-config"), printConfig: c.Bool("print-config"),
		logLevel: core.level, chdir: c.String("chdir"), umask: core.umask, limits: limits,
	}
	if core.workersNote != "" {
		s.notes = append(s.notes, core.workersNote)
	}
	s.warnings, _ = c.App.Metadata["warnings"].([]string)
	s.arbiter = p.arbiterConfig(c, app, core)
	for _, g := range extensions {
		if g.apply != nil {
			errs.add(g.apply(c, s))
		}
	}
	errs.add(p.controlSettings(s)) // control.go
	errs.add(p.preflight(s))
	if err := errs.err(); err != nil {
		return nil, err
	}
	s.values = resolvedValues(c, files, s.app, core.binds)
	s.values["workers"] = strconv.Itoa(core.workers) // auto, resolved
	if s.arbiter.MaxWorkers > 0 {
		s.values["workers"] = fmt.Sprintf("%d:%d", s.arbiter.Workers, s.arbiter.MaxWorkers)
	}
	return s, nil
}

// chooseApp is the app named on the command line, or the default one.
// Exec mode (a command after --) needs none.
func (p *Program) chooseApp(c *cli.Context) (string, error) {
	app := c.Args().First()
	switch {
	case c.NArg() > 1:
		return "", fmt.Errorf("one app at most, got %q", c.Args().Slice())
	case c.NArg() == 0:
		app = p.DefaultApp
		if app == "" && execArgs(c) == nil {
			return "", errors.New("no app named; try: " + p.Name + " " + strings.Join(p.AppNames, "|"))
		}
	}
	// A type that loads its own app (-k wsgi) takes any name.
	if len(p.AppNames) > 0 && execArgs(c) == nil && !contains(p.AppNames, app) && !worker.LoadsApp(c.String("worker-class")) {
		return "", fmt.Errorf("unknown app %q (known: %s)", app, strings.Join(p.AppNames, ", "))
	}
	return app, nil
}

// coreValues are the core flags that need parsing, parsed. The others
// are read from the context as they are.
type coreValues struct {
	binds                                          []string // --bind, or the default address
	workers                                        int      // -w, auto resolved
	workersNote                                    string   // how -w auto came to its count; "" for a number
	timeout, graceful, boot, abortGrace, keepAlive time.Duration
	level                                          slog.Level
	umask                                          int
}

// parseCore checks the core flags (coreFlags) and parses those that need
// it; the error holds every problem found.
func parseCore(c *cli.Context, limits cgroup.Limits) (coreValues, error) {
	var errs problems
	v := coreValues{binds: c.StringSlice("bind")}
	if len(v.binds) == 0 {
		v.binds = []string{defaultBind()}
	}
	errs.add(checkBinds(v.binds))
	var err error
	v.workers, v.workersNote, err = workerCount(c, limits)
	errs.add(err)
	if class := c.String("worker-class"); !knownClass(class) && execArgs(c) == nil { // exec mode refuses -k (exec.go)
		errs.add(fmt.Errorf("--worker-class: unknown worker type %q (known: %s)%s", class, strings.Join(worker.Classes(), ", "), classHint(class)))
	}
	for _, d := range []struct {
		flag string
		to   *time.Duration
	}{{"timeout", &v.timeout}, {"graceful-timeout", &v.graceful}, {"boot-timeout", &v.boot}, {"abort-grace", &v.abortGrace}, {"keep-alive", &v.keepAlive}} {
		var err error
		*d.to, err = seconds(c, d.flag)
		errs.add(err)
	}
	for _, name := range []string{"backlog", "worker-connections", "max-requests", "max-requests-jitter"} {
		if c.Int(name) < 0 {
			errs.add(fmt.Errorf("--%s must be 0 or more, got %d", name, c.Int(name)))
		}
	}
	if a := c.String("cpu-affinity"); !slices.Contains(arbiter.CPUAffinityModes, a) {
		errs.add(fmt.Errorf("--cpu-affinity must be one of %s, got %q", strings.Join(arbiter.CPUAffinityModes, ", "), a))
	}
	v.level, err = logging.ParseLevel(c.String("log-level"))
	errs.add(err)
	_, err = worker.ParseAccessLogFormat(c.String("access-logformat"))
	errs.add(err)
	umask, err := strconv.ParseInt(strings.ReplaceAll(c.String("umask"), "0o", "0"), 0, 32)
	if err != nil || umask < 0 || umask > 0o777 {
		errs.add(fmt.Errorf("--umask must be an octal mask such as 0o022, got %q", c.String("umask")))
	}
	v.umask = int(umask)
	for _, e := range c.StringSlice("env") {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			errs.add(fmt.Errorf("--env wants KEY=VALUE, got %q", e))
		}
	}
	return v, errs.err()
}

// checkBinds parses each bind address and refuses one given twice, in
// whatever spelling: the second bind would fail with "address already in
// use", which blames another server for the user's typo. Port 0 asks for
// a port of the kernel's choosing each time, so it may repeat.
func checkBinds(binds []string) error {
	var errs problems
	seen := map[string]bool{}
	for _, b := range binds {
		a, err := socket.ParseAddr(b)
		errs.add(err)
		if err != nil {
			continue
		}
		a.Protocol = "" // one address serves one protocol
		if a.Network == "unix" {
			a.Address = filepath.Clean(a.Address)
		}
		if _, port, _ := net.SplitHostPort(a.Address); a.Network == "tcp" && port == "0" {
			continue
		}
		if seen[a.String()] {
			errs.add(fmt.Errorf("--bind %s given twice", a))
		}
		seen[a.String()] = true
	}
	return errs.err()
}

// knownClass reports whether a worker type of that name is registered.
func knownClass(class string) bool {
	_, ok := worker.Lookup(class)
	return ok
}

// seconds converts a flag's seconds to a duration, refusing negatives.
func seconds(c *cli.Context, name string) (time.Duration, error) {
	v := c.Float64(name)
	if v < 0 || math.IsNaN(v) || v > 1e7 {
		return 0, fmt.Errorf("--%s must be a number of seconds from 0 up, got %v", name, v)
	}
	return time.Duration(v * float64(time.Second)), nil
}

// arbiterConfig is the arbiter's configuration from the core flags; the
// flag groups in extensions add theirs, and openLogs its logs.
func (p *Program) arbiterConfig(c *cli.Context, app string, v coreValues) *arbiter.Config {
	return &arbiter.Config{
		Workers:         v.workers,
		Binds:           v.binds,
		Socket:          socket.Options{Backlog: c.Int("backlog"), ReusePort: c.Bool("reuse-port"), DeferAccept: c.Bool("defer-accept"), Umask: v.umask},
		Executable:      p.executable,
		Args:            c.App.Metadata["args"].([]string),
		Env:             c.StringSlice("env"),
		BootTimeout:     v.boot,
		GracefulTimeout: v.graceful,
		AbortGrace:      v.abortGrace,
		PidFile:         c.String("pid"),
		UpgradeBinary:   c.String("upgrade-binary"),
		Name:            c.String("name"),
		CPUAffinity:     c.String("cpu-affinity"),
		Worker:          workerConfig(c, app, v),
	}
}

// workerConfig is the configuration each worker gets from the core flags.
func workerConfig(c *cli.Context, app string, v coreValues) worker.Config {
	return worker.Config{
		Class: c.String("worker-class"), App: app, Name: c.String("name"),
		Timeout: v.timeout, GracefulTimeout: v.graceful, KeepAlive: v.keepAlive, DrainIdle: drainIdle, AbortGrace: v.abortGrace,
		WorkerConnections: c.Int("worker-connections"),
		MaxRequests:       c.Int("max-requests"), MaxRequestsJitter: c.Int("max-requests-jitter"),
		ErrorLog: c.String("error-logfile"), LogLevel: c.String("log-level"),
		AccessLog: c.String("access-logfile"), AccessLogFormat: c.String("access-logformat"),
	}
}

// resolvedValues is every file flag's value as TOML, for --print-config;
// bind is the binds as given, or the default one.
func resolvedValues(c *cli.Context, files []cli.Flag, app string, binds []string) map[string]string {
	values := map[string]string{"app": strconv.Quote(app)}
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
			values[name] = "[" + strings.Join(q, ", ") + "]"
		case *altsrc.StringFlag:
			values[name] = strconv.Quote(c.String(name))
		case *altsrc.IntFlag:
			values[name] = strconv.Itoa(c.Int(name))
		case *altsrc.Float64Flag:
			values[name] = strconv.FormatFloat(c.Float64(name), 'f', -1, 64)
		case *altsrc.BoolFlag:
			values[name] = strconv.FormatBool(c.Bool(name))
		}
	}
	return values
}

// openLogs opens the error log and makes the arbiter's logger. It runs
// once the command line is known to be good, so a bad one creates no log
// file; --check-config and --print-config open none and log to stderr.
func (s *settings) openLogs() error {
	var out io.Writer = os.Stderr
	if !s.checkConfig && !s.printConfig {
		f, err := logging.OpenFile(s.arbiter.Worker.ErrorLog, os.Stderr)
		if err != nil {
			return fmt.Errorf("--error-logfile: %v", err)
		}
		s.arbiter.ErrorLog, out = f, f
	}
	// Text or JSON: --log-format, see metrics.go.
	s.arbiter.Log = logging.NewFormat(out, s.logLevel, s.arbiter.Worker.LogFormat)
	latestLogger.Store(s.arbiter.Log) // the --reload watcher's warnings follow it
	return nil
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
	for _, n := range append(s.notes, s.printNotes...) {
		fmt.Fprintf(w, "# %s\n", n)
	}
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
