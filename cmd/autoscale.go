package cmd

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// The herd that steers itself: -w MIN:MAX's worker count from the load
// (--scale-down-delay) and the recycling of a worker over its memory
// (--max-worker-memory, --memory-grace), and the reload that tries its
// canaries first (--reload-canary, --canary-window). The rules are the
// arbiter's (arbiter/autoscale.go, arbiter/memory.go, arbiter/canary.go).
func init() {
	extensions = append(extensions, flagGroup{flags: autoscaleFlags, apply: applyAutoscale})
}

func autoscaleFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "scale-down-delay", Value: 60, Category: catWorkers, EnvVars: env("scale-down-delay"),
			Usage: "-w MIN:MAX: seconds the herd stays under the low mark (30% busy, no queue) before one worker less"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "max-worker-memory", Value: "0", Category: catWorkers, EnvVars: env("max-worker-memory"),
			Usage: "replace a worker (replacement first, as --max-requests) whose PSS stays above this many bytes (200M, 1G) for --memory-grace; 0 for no limit"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "reload-canary", Category: catWorkers, EnvVars: env("reload-canary"),
			Usage: "a reload (HUP) replaces this many workers first, watches them for --canary-window (crashes, timeouts, a 5xx share 10 points over the old workers'), then rolls the rest or rolls back; 0 for none"}),
		altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "canary-window", Value: 30, Category: catWorkers, EnvVars: env("canary-window"),
			Usage: "seconds --reload-canary watches the canaries once they are ready"}),
		altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "memory-grace", Value: 10, Category: catWorkers, EnvVars: env("memory-grace"),
			Usage: "seconds a worker may stay above --max-worker-memory (a brief peak is not a leak)"}),
	}
}

// workerRange parses -w MIN:MAX.
func workerRange(v string) (lo, hi int, err error) {
	l, h, ok := strings.Cut(strings.TrimSpace(v), ":")
	lo, err1 := strconv.Atoi(l)
	hi, err2 := strconv.Atoi(h)
	switch {
	case !ok || err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("--workers must be a number, auto or MIN:MAX, got %q", v)
	case lo < 1 || hi < lo:
		return 0, 0, fmt.Errorf("--workers %s: want 1 <= MIN <= MAX", v)
	}
	return lo, hi, nil
}

func applyAutoscale(c *cli.Context, s *settings) error {
	var errs problems
	if v := c.String("workers"); strings.Contains(v, ":") {
		if _, hi, err := workerRange(v); err == nil && hi > s.arbiter.Workers {
			s.arbiter.MaxWorkers = hi
		}
	}
	delay, err := seconds(c, "scale-down-delay")
	errs.add(err)
	s.arbiter.ScaleDownDelay = delay
	mem, err := parseSize(strings.TrimSpace(c.String("max-worker-memory")))
	if err != nil {
		errs.add(fmt.Errorf("--max-worker-memory: want bytes such as 200M or 1G, or 0; got %q", c.String("max-worker-memory")))
	}
	grace, err := seconds(c, "memory-grace")
	errs.add(err)
	s.arbiter.MaxWorkerMemory, s.arbiter.MemoryGrace = mem, grace
	canary := c.Int("reload-canary")
	if canary < 0 {
		errs.add(fmt.Errorf("--reload-canary must be 0 or more, got %d", canary))
	}
	window, err := seconds(c, "canary-window")
	errs.add(err)
	s.arbiter.ReloadCanary, s.arbiter.CanaryWindow = canary, window
	return errs.err()
}
