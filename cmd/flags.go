package cmd

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// envName is the environment variable that sets a flag: CORRAL_<NAME>.
func envName(flag string) string {
	return "CORRAL_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func env(flag string, more ...string) []string { return append([]string{envName(flag)}, more...) }

// defaultBind is Gunicorn's: 0.0.0.0:$PORT when PORT is set, else 127.0.0.1:8000.
func defaultBind() string {
	if p := os.Getenv("PORT"); p != "" {
		return "0.0.0.0:" + p
	}
	return "127.0.0.1:8000"
}

// The --help groups: Gunicorn's docs' sections (gunicorn.go), in the
// order of helpGroups, then corral's own.
const (
	catServer   = secSocket
	catWorkers  = secWorkers
	catSecurity = secSecurity
	catLogging  = secLogging
	catNaming   = secNaming
	catProcess  = secMechanics
	catConfig   = secConfig
)

// flagGroup is a set of flags that a config file may set too, and how
// their values go into the settings. Features add their group from their
// own file (see extensions).
type flagGroup struct {
	flags func() []cli.Flag
	// apply checks the group's flags and copies their values into s; it
	// runs after the core flags were applied, even if they had problems.
	// Its error is a line the user sees, or problems for several.
	apply func(c *cli.Context, s *settings) error
}

// extensions are the flag groups beyond the core ones, registered by init
// functions in this package.
var extensions []flagGroup

// fileFlags are the flags a config file may set too (TOML keys are the
// flag names). Their values come from, in order of precedence, the command
// line, CORRAL_<NAME> in the environment, the config file, the default.
func fileFlags() []cli.Flag {
	fs := coreFlags()
	for _, g := range extensions {
		fs = append(fs, g.flags()...)
	}
	return fs
}

func coreFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "bind", Aliases: []string{"b"}, Category: catServer, EnvVars: env("bind"),
			Usage: "address to listen on: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N; repeat for several (default: 0.0.0.0:$PORT if PORT is set, else 127.0.0.1:8000)"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "backlog", Value: 2048, Category: catServer, EnvVars: env("backlog"),
			Usage: "the most pending connections the kernel queues per listener"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "reuse-port", Category: catServer, EnvVars: env("reuse-port"),
			Usage: "set SO_REUSEPORT on the listeners, so other processes may bind the same address"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "defer-accept", Category: catServer, EnvVars: env("defer-accept"),
			Usage: "set TCP_DEFER_ACCEPT on the TCP listeners corral binds: a connection is accepted once its first bytes came, as uWSGI does by default (cheaper with a connection per request; a graceful stop resets a connection whose bytes had not come)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "workers", Aliases: []string{"w"}, Value: "1", Category: catWorkers, EnvVars: env("workers", "WEB_CONCURRENCY"),
			Usage: "number of worker processes, or auto: the cgroup's CPUs (its quota, as Go's GOMAXPROCS reads it) × 2 + 1 for sync, wsgi and a COMMAND, × 1 for goroutine and event; or MIN:MAX, from the load (see --scale-down-delay) (default: $WEB_CONCURRENCY, else 1)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "worker-class", Aliases: []string{"k"}, Value: "goroutine", Category: catWorkers, EnvVars: env("worker-class"),
			Usage: "the type of worker: goroutine (net/http, a goroutine per connection), sync (one request at a time, --timeout limits each request), event (epoll loops, --threads, --event-inline), wsgi (a Python WSGI app, APP as in Gunicorn: module:callable; --threads requests at once)"}),
		altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "timeout", Aliases: []string{"t"}, Value: 30, Category: catWorkers, EnvVars: env("timeout"),
			Usage: "seconds a worker may go silent before it is killed; for the goroutine worker this catches a wedged process, not a slow request; 0 turns the check off"}),
		altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "graceful-timeout", Value: 30, Category: catWorkers, EnvVars: env("graceful-timeout"),
			Usage: "seconds a stopping worker gets to finish its requests before it is killed"}),
		altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "abort-grace", Value: 2, Category: catWorkers, EnvVars: env("abort-grace"),
			Usage: "seconds a timed-out worker gets after SIGABRT to log what it was stuck in, before SIGKILL"}),
		altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "boot-timeout", Value: 30, Category: catWorkers, EnvVars: env("boot-timeout"),
			Usage: "seconds a new worker gets to become ready; a reload whose workers miss it keeps the old ones"}),
		altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "keep-alive", Value: 5, Category: catWorkers, EnvVars: env("keep-alive"),
			Usage: "seconds an idle keep-alive connection stays open; 0 closes every connection after its response"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "worker-connections", Value: 1000, Category: catWorkers, EnvVars: env("worker-connections"),
			Usage: "the most connections one worker holds open at once"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "cpu-affinity", Value: "auto", Category: catWorkers, EnvVars: env("cpu-affinity"),
			Usage: "on: run each worker on one CPU of those corral may use, worker N on the Nth (round robin), with what it starts, so a wsgi worker's Python process shares its Go process's CPU (uWSGI's --cpu-affinity 1, nginx's worker_cpu_affinity auto); auto: so for -k wsgi when the herd has a worker for every such CPU; off: never (default: auto)"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "max-requests", Category: catWorkers, EnvVars: env("max-requests"),
			Usage: "replace a worker after it served this many requests (its replacement starts first); 0 never"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "max-requests-jitter", Category: catWorkers, EnvVars: env("max-requests-jitter"),
			Usage: "each worker's limit is max-requests plus a random number up to this"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "access-logfile", Category: catLogging, EnvVars: env("access-logfile"),
			Usage: "access log file; - for stdout (default: no access log)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "access-logformat", Value: `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`, Category: catLogging, EnvVars: env("access-logformat"),
			Usage: "access log format, in Gunicorn's %(atom)s notation"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "error-logfile", Aliases: []string{"log-file"}, Value: "-", Category: catLogging, EnvVars: env("error-logfile"),
			Usage: "error log file; - for stderr"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "log-level", Value: "info", Category: catLogging, EnvVars: env("log-level"),
			Usage: "debug, info, warning, error or critical"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "pid", Aliases: []string{"p"}, Category: catProcess, EnvVars: env("pid"),
			Usage: "write the arbiter's pid to this file (PIDFILE.2 while a USR2 upgrade hands over)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "upgrade-binary", Category: catProcess, EnvVars: env("upgrade-binary"),
			Usage: "the binary USR2 starts as the new arbiter (default: this program's path)"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Category: catProcess, EnvVars: env("env"),
			Usage: "set KEY=VALUE in the workers' environment; repeatable"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "chdir", Category: catProcess, EnvVars: env("chdir"),
			Usage: "change to this directory before starting"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "umask", Aliases: []string{"m"}, Value: "0", Category: catProcess, EnvVars: env("umask"),
			Usage: "umask for the unix socket files corral creates, e.g. 0o077"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "name", Aliases: []string{"n"}, Category: catNaming, EnvVars: env("name"),
			Usage: "a name for ps: workers show as \"corral: worker [NAME] gen N\", the arbiter's comm is NAME (default: the app's)"}),
	}
}

// cliFlags are the flags that only the command line or the environment set.
func cliFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Category: catConfig, EnvVars: env("config"),
			Usage: "config file: TOML, keys the long flag names (workers = 4), or a gunicorn.conf.py (read with python3)"},
		&cli.BoolFlag{Name: "check-config", Category: catConfig, EnvVars: env("check-config"),
			Usage: "check the configuration, the app, and the folders start-up writes to, then exit"},
		&cli.BoolFlag{Name: "print-config", Category: catConfig, EnvVars: env("print-config"),
			Usage: "print the resolved configuration as TOML, then exit"},
	}
}

// fileKeys are the keys a config file may hold: every long name and long
// alias of flags, each with the flag it sets and its kind. Flags only the
// command line sets (cliFlags) have no kind: a file naming one is warned.
func fileKeys(flags, cliOnly []cli.Flag) map[string]fileKey {
	keys := map[string]fileKey{}
	for _, f := range cliOnly {
		for _, n := range f.Names() {
			keys[n] = fileKey{flag: f.Names()[0]}
		}
	}
	for _, f := range flags {
		var kind string
		switch f.(type) {
		case *altsrc.StringSliceFlag:
			kind = "strings"
		case *altsrc.IntFlag:
			kind = "int"
		case *altsrc.Float64Flag:
			kind = "float"
		case *altsrc.BoolFlag:
			kind = "bool"
		case *altsrc.StringFlag:
			kind = "string"
		default:
			panic(fmt.Sprintf("cmd: no config file kind for %T", f))
		}
		if f.Names()[0] == "workers" {
			kind = "count" // -w auto
		}
		for _, n := range f.Names() {
			if len(n) > 1 { // a short name is no key: "w = 7" is a typo's look-alike
				keys[strings.ReplaceAll(n, "_", "-")] = fileKey{flag: f.Names()[0], kind: kind}
			}
		}
	}
	return keys
}
