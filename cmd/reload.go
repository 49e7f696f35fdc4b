package cmd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/corral-server/corral/arbiter"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// --reload: watch the worker binary, the config file and more, and roll
// the workers when they change (arbiter.FileWatcher).

const catReload = secDebugging

func init() {
	extensions = append(extensions, flagGroup{flags: reloadFlags, apply: applyReload})
}

func reloadFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "reload", Category: catReload, EnvVars: env("reload"),
			Usage: "roll the workers, as HUP does, when the worker binary, the config file or a --reload-extra-file changes (for development, and deploys that drop files in place)"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "reload-extra-file", Category: catReload, EnvVars: env("reload-extra-file"),
			Usage: "with --reload, also watch this file, folder (recursively) or glob (** for any folders); repeatable"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "reload-ignore", Category: catReload, EnvVars: env("reload-ignore"),
			Usage: "with --reload, ignore what matches this glob in watched folders: a name (*.tmp, node_modules), a folder (build/) or a path; repeatable (always ignored: " + strings.Join(arbiter.DefaultIgnore, " ") + ", corral's own logs)"}),
		altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "reload-delay", Value: 0.3, Category: catReload, EnvVars: env("reload-delay"),
			Usage: "with --reload, seconds without a further change before reloading: a burst of writes gives one reload"}),
	}
}

// reloadSettings is what --reload asks for. What the arbiter opens before
// --chdir applies (the config file, the error log) is resolved at load
// time; the rest when Run builds the watcher, after --chdir.
type reloadSettings struct {
	loadDir     string   // the working directory when the command line was read
	extra       []string // --reload-extra-file, as given
	ignore      []string // --reload-ignore, as given
	ignoreFiles []string // absolute: the error log
	accessLog   string   // as given
	pidFile     string   // as given
	opts        arbiter.WatchOptions
}

// latestLogger is the latest load's logger: the arbiter switches to it
// on a reload, and so do the watcher's warnings.
var latestLogger atomic.Pointer[slog.Logger]

// latestLog is a slog.Handler that writes through the latest load's logger.
type latestLog struct{}

func (latestLog) current() slog.Handler { return latestLogger.Load().Handler() }
func (h latestLog) Enabled(ctx context.Context, l slog.Level) bool {
	return h.current().Enabled(ctx, l)
}
func (h latestLog) Handle(ctx context.Context, r slog.Record) error {
	return h.current().Handle(ctx, r)
}
func (h latestLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h latestLog) WithGroup(string) slog.Handler      { return h }

func applyReload(c *cli.Context, s *settings) error {
	var errs problems
	delay, err := seconds(c, "reload-delay")
	errs.add(err)
	if delay > 60e9 {
		errs.add(fmt.Errorf("--reload-delay must be 60 seconds at most, got %v", c.Float64("reload-delay")))
	}
	extra, ignore := c.StringSlice("reload-extra-file"), c.StringSlice("reload-ignore")
	for _, l := range []struct {
		flag string
		v    []string
	}{{"reload-extra-file", extra}, {"reload-ignore", ignore}} {
		for _, p := range l.v {
			if strings.TrimSpace(p) == "" {
				errs.add(fmt.Errorf("--%s: empty path", l.flag))
			} else if err := arbiter.ValidGlob(p); err != nil {
				errs.add(fmt.Errorf("--%s: %v", l.flag, err))
			}
		}
	}
	if err := errs.err(); err != nil || !c.Bool("reload") {
		return err
	}
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("--reload: %v", err)
	}
	r := &reloadSettings{loadDir: wd, extra: extra, ignore: ignore,
		accessLog: c.String("access-logfile"), pidFile: c.String("pid")}
	r.opts.Delay = delay
	r.opts.Log = slog.New(latestLog{})
	// The config file and the error log are opened before --chdir applies.
	if s.configPath != "" {
		r.opts.Paths = append(r.opts.Paths, absIn(wd, s.configPath))
	}
	if e := c.String("error-logfile"); e != "" && e != "-" {
		r.ignoreFiles = append(r.ignoreFiles, absIn(wd, e))
	}
	s.reload = r
	return nil
}

// reloadWatcher returns the watcher for --reload, or nil without it: no
// goroutine, no inotify descriptor. Run calls it after --chdir applied:
// relative paths in --reload-extra-file, --reload-ignore and the access log
// are taken from there, as the workers see them.
func reloadWatcher(s *settings) arbiter.Watcher {
	r := s.reload
	if r == nil {
		return nil
	}
	wd, err := os.Getwd()
	if err != nil {
		wd = r.loadDir
	}
	opts := r.opts
	opts.Paths = slices.Clone(opts.Paths)
	for _, p := range append(slices.Clone(r.extra), s.reloadExtra...) {
		opts.Paths = append(opts.Paths, absIn(wd, p))
	}
	cfg := s.arbiter
	exes := []string{cfg.Executable}
	if len(cfg.Command) > 0 {
		if p, err := exec.LookPath(cfg.Command[0]); err == nil {
			exes = append(exes, absIn(wd, p))
		}
	}
	// A symlink's target may be rebuilt in place: watch both.
	for _, e := range exes {
		if t, err := filepath.EvalSymlinks(e); err == nil && t != e && !slices.Contains(exes, t) {
			exes = append(exes, t)
		}
	}
	opts.Executables = exes
	opts.Ignore = append(slices.Clone(arbiter.DefaultIgnore), r.ignore...)
	for i, p := range opts.Ignore {
		if strings.Contains(strings.TrimSuffix(p, "/"), "/") {
			opts.Ignore[i] = absIn(wd, p)
		}
	}
	opts.IgnoreFiles = slices.Clone(r.ignoreFiles)
	for _, f := range []string{r.accessLog, r.pidFile} {
		if f != "" && f != "-" {
			opts.IgnoreFiles = append(opts.IgnoreFiles, absIn(wd, f))
		}
	}
	return arbiter.NewFileWatcher(opts)
}

// absIn makes p absolute, relative to dir.
func absIn(dir, p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p)
}
