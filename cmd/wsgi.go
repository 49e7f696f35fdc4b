package cmd

import (
	"fmt"
	"os/exec"
	"path/filepath"

	"github.com/corral-server/corral/worker/wsgi"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// -k wsgi: a Python WSGI app, the positional APP in Gunicorn's syntax
// (corral -k wsgi myproject.wsgi:application), run in a Python process per
// worker (worker/wsgi).

const catWSGI = "Python WSGI apps (-k wsgi APP)"

func init() {
	extensions = append(extensions, flagGroup{flags: wsgiFlags, apply: applyWSGI})
}

func wsgiFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringFlag(&cli.StringFlag{Name: "python", Value: "python3", Category: catWSGI, EnvVars: env("python"),
			Usage: "the Python interpreter each wsgi worker runs the app in: a path, or a name looked up in PATH (3.11 or newer)"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "pythonpath", Category: catWSGI, EnvVars: env("pythonpath"),
			Usage: "folders put first on sys.path, before the working directory (--chdir); comma-separated or repeated, as in Gunicorn"}),
	}
}

// applyWSGI checks the interpreter at start, so that a wrong --python is
// a usage error (exit 2) rather than every worker's boot error, and with
// --reload watches the app's .py files: the working directory's and the
// --pythonpath folders', recursively.
func applyWSGI(c *cli.Context, s *settings) error {
	w := &s.arbiter.Worker
	if w.Class != wsgi.Class {
		return nil
	}
	python := c.String("python")
	if _, err := exec.LookPath(python); err != nil {
		return fmt.Errorf("--python %s: %v", python, err)
	}
	w.Python, w.PythonPath = python, splitList(c.StringSlice("pythonpath"))
	for _, dir := range append([]string{"."}, w.PythonPath...) {
		s.reloadExtra = append(s.reloadExtra, filepath.Join(dir, "**", "*.py"))
	}
	return nil
}
