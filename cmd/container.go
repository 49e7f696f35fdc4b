package cmd

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/corral-server/corral/internal/cgroup"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// Running in a container: -w auto and the herd's memory budget
// (--max-memory) from the limits of the process's cgroup, and
// --shutdown-delay, the pause behind a load balancer between TERM and the
// drain. docs/containers.md has the why.
func init() {
	extensions = append(extensions, flagGroup{flags: containerFlags, apply: applyContainer})
}

// Workers per CPU for -w auto, by worker type. A sync worker, and a wsgi
// one's Python process, serve one request at a time (a thread at a time)
// and wait on I/O in it: Gunicorn's advice, 2 × CPUs + 1. The goroutine and event workers serve many requests at once in one
// process, which uses every CPU given to it: one per CPU. A COMMAND (exec
// mode) is most often a sync Python or Ruby server: Gunicorn's rule.
var autoWorkers = map[string]struct {
	perCPU, plus int
	why          string
}{
	"sync":      {2, 1, "2 × CPUs + 1 for the sync worker, as Gunicorn advises"},
	"wsgi":      {2, 1, "2 × CPUs + 1 for the wsgi worker, as Gunicorn advises for its Python workers"},
	"goroutine": {1, 0, "1 per CPU for the goroutine worker"},
	"event":     {1, 0, "1 per CPU for the event worker"},
	"":          {2, 1, "2 × CPUs + 1 for a COMMAND, as Gunicorn advises"},
}

// memoryShare is --max-memory auto's share of the cgroup's memory limit:
// the rest is the arbiter's, the kernel's page cache and headroom before
// the OOM killer.
const memoryShare = 0.9

func containerFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "shutdown-delay", Category: catWorkers, EnvVars: env("shutdown-delay"),
			Usage: "seconds to keep serving after TERM, with /readyz answering 503, before the graceful stop, so a load balancer drops this endpoint first; a second TERM skips it"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "max-memory", Value: "auto", Category: catWorkers, EnvVars: env("max-memory"),
			Usage: "the herd's memory budget: bytes (512MiB, 1G), a percentage of the cgroup's memory limit (80%), auto for 90% of it, 0 for none"}),
	}
}

// applyContainer checks --shutdown-delay and --max-memory into the
// arbiter's Config; -w is parsed with the core flags (workerCount).
func applyContainer(c *cli.Context, s *settings) error {
	var errs problems
	delay, err := seconds(c, "shutdown-delay")
	errs.add(err)
	s.arbiter.ShutdownDelay = delay
	budget, note, err := memoryBudget(c.String("max-memory"), s.limits)
	errs.add(err)
	s.arbiter.MaxMemory = budget
	switch {
	case budget > 0:
		s.notes = append(s.notes, note)
	case note != "":
		s.printNotes = append(s.printNotes, note)
	}
	if err := errs.err(); err != nil {
		return err
	}
	stop := delay + s.arbiter.GracefulTimeout
	stopNote := fmt.Sprintf("Stop: at most %s (shutdown-delay %s + graceful-timeout %s); the container's stop timeout (terminationGracePeriodSeconds, docker stop -t) should be %d or more",
		stop, delay, s.arbiter.GracefulTimeout, int(math.Ceil((stop + stopMargin).Seconds())))
	// Logged at start where a container's stop timeout is likely in play;
	// --print-config prints it always.
	if delay > 0 || os.Getpid() == 1 {
		s.notes = append(s.notes, stopNote)
	} else {
		s.printNotes = append(s.printNotes, stopNote)
	}
	return nil
}

// stopMargin is what the stop-time note adds to shutdown-delay +
// graceful-timeout for the container's grace period: the arbiter's own
// exit after its last worker, and the orchestrator's signal delivery.
const stopMargin = 5 * time.Second

// readLimits reads the cgroup's limits once per load of the command line.
func readLimits() cgroup.Limits {
	l, err := cgroup.Read()
	if err != nil {
		l = cgroup.Limits{Affinity: l.Affinity} // no cgroups: the affinity alone
	}
	return l
}

// workerCount parses -w: a number, or auto for the CPUs of the cgroup
// times the worker type's factor (autoWorkers). note says how auto came
// to its count.
func workerCount(c *cli.Context, l cgroup.Limits) (n int, note string, err error) {
	v := strings.TrimSpace(c.String("workers"))
	if v == "" { // WEB_CONCURRENCY= set empty: the default
		v = "1"
	}
	if strings.Contains(v, ":") {
		lo, _, err := workerRange(v) // -w MIN:MAX (autoscale.go): start at MIN
		return lo, "", err
	}
	if v != "auto" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			return 0, "", fmt.Errorf("--workers must be a number or auto, got %q", v)
		case n < 1:
			return 0, "", fmt.Errorf("--workers must be 1 or more, got %d", n)
		}
		return n, "", nil
	}
	class := c.String("worker-class")
	if execArgs(c) != nil {
		class = ""
	}
	f, ok := autoWorkers[class]
	if !ok {
		return 1, "", nil // an unknown -k is reported on its own
	}
	cpus := l.CPUs()
	from := fmt.Sprintf("%d CPUs", l.Affinity)
	if l.Quota > 0 {
		from = fmt.Sprintf("%d CPUs (the cgroup's CPU quota, %g, rounded up)", cpus, l.Quota)
	}
	n = cpus*f.perCPU + f.plus
	return n, fmt.Sprintf("Workers: auto = %d: %s, %s", n, from, f.why), nil
}

// memoryBudget parses --max-memory against the cgroup's limit.
func memoryBudget(v string, l cgroup.Limits) (int64, string, error) {
	v = strings.TrimSpace(v)
	share := 0.0
	switch {
	case v == "auto":
		share = memoryShare
	case strings.HasSuffix(v, "%"):
		p, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
		if err != nil || p <= 0 || p > 100 {
			return 0, "", fmt.Errorf("--max-memory: a percentage is from 0 to 100%%, got %q", v)
		}
		share = p / 100
	default:
		n, err := parseSize(v)
		if err != nil {
			return 0, "", fmt.Errorf("--max-memory: %v", err)
		}
		if n == 0 {
			return 0, "", nil
		}
		return n, "Memory budget: " + formatSize(n) + " for the herd (--max-memory)", nil
	}
	if l.Memory == 0 {
		return 0, fmt.Sprintf("Memory budget: none (--max-memory %s, and the cgroup sets no memory limit)", v), nil
	}
	n := int64(float64(l.Memory) * share)
	return n, fmt.Sprintf("Memory budget: %s for the herd, %g%% of the cgroup's memory limit of %s", formatSize(n), share*100, formatSize(l.Memory)), nil
}

// parseSize reads bytes: a whole number with an optional unit, K, M, G or
// KiB, MiB, GiB (powers of 1024), KB, MB, GB (of 1000).
func parseSize(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	mult := int64(1)
	num := v
	for _, u := range units {
		if s, ok := strings.CutSuffix(v, u.suffix); ok {
			num, mult = strings.TrimSpace(s), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("want bytes such as 512MiB, 1G or 0, a percentage such as 80%%, or auto; got %q", v)
	}
	return n * mult, nil
}

// formatSize writes bytes in MiB, or GiB from 10 GiB up.
func formatSize(n int64) string {
	if n >= 10<<30 {
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
}
