package cmd

import (
	"fmt"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// The request limits (Gunicorn's names and defaults) and the settings of
// the worker types that parse HTTP themselves (sync, event).
func init() {
	extensions = append(extensions, flagGroup{flags: limitFlags, apply: applyLimits})
}

// defaultMaxBody is --max-body's default: nginx's client_max_body_size.
// The sync and event workers read a whole body into memory before the
// handler runs, so this bounds a worker's memory per connection.
const defaultMaxBody = 1 << 20

// defaultBodyTimeout is --body-timeout's default: nginx's client_body_timeout.
const defaultBodyTimeout = 60

func limitFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewIntFlag(&cli.IntFlag{Name: "limit-request-line", Value: 4094, Category: catSecurity, EnvVars: env("limit-request-line"),
			Usage: "the longest request line in bytes (answered with 414); 0 for no limit, above 8190 means 8190"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "limit-request-fields", Value: 100, Category: catSecurity, EnvVars: env("limit-request-fields"),
			Usage: "the most header fields in a request (answered with 431), up to 32768"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "limit-request-field_size", Aliases: []string{"limit-request-field-size"}, Value: 8190, Category: catSecurity,
			EnvVars: env("limit-request-field-size"),
			Usage:   "the longest header field line in bytes (answered with 431); 0 means 8190"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "max-body", Value: defaultMaxBody, Category: catSecurity, EnvVars: env("max-body"),
			Usage: "the largest request body in bytes (answered with 413); sync and event workers read it whole before the handler runs; 0 for no limit"}),
		altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "body-timeout", Value: defaultBodyTimeout, Category: catSecurity, EnvVars: env("body-timeout"),
			Usage: "seconds a request body may pause between two reads; past the first such period it must also average 500 bytes a second (answered with 408); 0 for no limit"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "threads", Value: 1, Category: catWorkers, EnvVars: env("threads"),
			Usage: "event worker: epoll loops per worker process; wsgi worker: requests the Python app runs at once (Gunicorn's gthread)"}),
		altsrc.NewBoolFlag(&cli.BoolFlag{Name: "event-inline", Category: catWorkers, EnvVars: env("event-inline"),
			Usage: "event worker: run handlers on the event loop, for an app that never blocks (default: on a bounded goroutine pool)"}),
	}
}

func applyLimits(c *cli.Context, s *settings) error {
	line, fields, size := c.Int("limit-request-line"), c.Int("limit-request-fields"), c.Int("limit-request-field_size")
	var errs problems
	if line < 0 {
		errs.add(fmt.Errorf("--limit-request-line must be 0 or more, got %d", line))
	}
	if fields < 1 || fields > 32768 {
		errs.add(fmt.Errorf("--limit-request-fields must be from 1 to 32768, got %d", fields))
	}
	if size < 0 {
		errs.add(fmt.Errorf("--limit-request-field_size must be 0 or more, got %d", size))
	}
	if c.Int("max-body") < 0 {
		errs.add(fmt.Errorf("--max-body must be 0 or more, got %d", c.Int("max-body")))
	}
	bodyTimeout, err := seconds(c, "body-timeout")
	errs.add(err)
	if c.Int("threads") < 1 || c.Int("threads") > 256 {
		errs.add(fmt.Errorf("--threads must be from 1 to 256, got %d", c.Int("threads")))
	}
	if err := errs.err(); err != nil {
		return err
	}
	w := &s.arbiter.Worker
	w.LimitRequestLine, w.LimitRequestFields, w.LimitRequestFieldSize = line, fields, size
	w.MaxBody = int64(c.Int("max-body"))
	w.BodyTimeout = bodyTimeout
	w.Threads = c.Int("threads")
	w.EventInline = c.Bool("event-inline")
	return nil
}
