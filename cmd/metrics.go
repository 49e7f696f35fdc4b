package cmd

import (
	"fmt"

	"github.com/corral-server/corral/internal/logging"
	"github.com/corral-server/corral/socket"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// The observability flags: the metrics and health endpoints
// (--metrics-bind, --ready-min; see internal/metrics) and the error log's
// format (--log-format), which openLogs and the workers apply.
func init() {
	extensions = append(extensions, flagGroup{flags: metricsFlags, apply: applyMetrics})
}

const catMetrics = "Metrics"

func metricsFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringFlag(&cli.StringFlag{Name: "metrics-bind", Category: catMetrics, EnvVars: env("metrics-bind"),
			Usage: "serve Prometheus metrics (/metrics) and health checks (/livez, /readyz) at HOST:PORT or unix:PATH; the workers then fill their scoreboards (default: off)"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "ready-min", Value: 1, Category: catMetrics, EnvVars: env("ready-min"),
			Usage: "/readyz answers 200 while at least this many workers are ready and the arbiter is not stopping"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "log-format", Value: logging.FormatText, Category: catLogging, EnvVars: env("log-format"),
			Usage: "the error log's format: text (Gunicorn's lines) or json (one object per line)"}),
	}
}

// applyMetrics checks the flags into the arbiter's and the workers'
// Config.
func applyMetrics(c *cli.Context, s *settings) error {
	var errs problems
	bind := c.String("metrics-bind")
	if bind != "" {
		a, err := socket.ParseAddr(bind)
		switch {
		case err != nil:
			errs.add(fmt.Errorf("--metrics-bind: %v", err))
		case a.Network == "fd" || (a.Protocol != "" && a.Protocol != "http"):
			errs.add(fmt.Errorf("--metrics-bind wants HOST:PORT or unix:PATH, got %q", bind))
		}
	}
	readyMin := c.Int("ready-min")
	if readyMin < 0 {
		errs.add(fmt.Errorf("--ready-min must be 0 or more, got %d", readyMin))
	}
	format, err := logging.ParseFormat(c.String("log-format"))
	if err != nil {
		errs.add(fmt.Errorf("--log-format: %v", err))
	}
	s.arbiter.MetricsBind, s.arbiter.ReadyMin = bind, readyMin
	s.arbiter.Worker.LogFormat = format
	return errs.err()
}
