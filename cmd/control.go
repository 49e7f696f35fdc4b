package cmd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// The control socket's flag (--control-socket; see arbiter/control.go), and
// what the arbiter needs from the command line to answer `config` and
// `status`. The client, `corral ctl`, is ctl.go.
func init() {
	extensions = append(extensions, flagGroup{flags: controlFlags, apply: applyControl})
}

// controlOff is --control-socket's value for no control socket.
const controlOff = "none"

func controlFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringFlag(&cli.StringFlag{Name: "control-socket", Category: catProcess, EnvVars: env("control-socket"),
			Usage: "the unix socket `corral ctl` steers the arbiter through (mode 0600, this user and root only); none turns it off (default: corral-NAME.ctl, NAME being --name or the first bind, next to the pid file, else in $XDG_RUNTIME_DIR, else in /tmp/corral-UID/)"}),
	}
}

// applyControl checks --control-socket and passes it on as given;
// controlSettings resolves it once the paths it depends on are known.
func applyControl(c *cli.Context, s *settings) error {
	v := c.String("control-socket")
	switch {
	case v != "" && strings.TrimSpace(v) == "":
		return fmt.Errorf("--control-socket: empty path (%s turns it off)", controlOff)
	case strings.HasSuffix(v, "/"):
		return fmt.Errorf("--control-socket %s: a folder; name the socket file", v)
	}
	s.arbiter.Control.Path = v
	return nil
}

// controlSettings finishes the control socket's options: none turned off,
// the default's folder chosen (the arbiter names the file once it has
// bound its listeners), a path made absolute (from --chdir, where the
// arbiter binds it, as the pid file), and what the arbiter answers
// `config` and `status` with.
func (p *Program) controlSettings(s *settings) error {
	o := &s.arbiter.Control
	dir := p.startDir
	if s.chdir != "" {
		dir = absIn(p.startDir, s.chdir)
	}
	switch o.Path {
	case controlOff:
		o.Path = ""
		return nil
	case "":
		o.Dir, o.PrivateDir = defaultControlDir(absIn(dir, s.arbiter.PidFile), s.arbiter.PidFile != "")
	default:
		o.Path = absIn(dir, o.Path)
		if len(o.Path) > 107 {
			return fmt.Errorf("--control-socket %s: %d bytes long; a unix socket's path holds 107 at most", o.Path, len(o.Path))
		}
		if err := writableFile("--control-socket", o.Path, o.Path); err != nil {
			return err
		}
	}
	o.Version = p.version()
	o.Settings = func() string {
		var b strings.Builder
		printConfig(&b, s)
		return b.String()
	}
	return nil
}

// defaultControlDir is where the default control socket goes: next to the
// pid file when there is one, else $XDG_RUNTIME_DIR, else /tmp/corral-UID
// (corral's own: private reports that).
func defaultControlDir(pidFile string, hasPid bool) (dir string, private bool) {
	switch {
	case hasPid:
		return filepath.Dir(pidFile), false
	case os.Getenv("XDG_RUNTIME_DIR") != "":
		return os.Getenv("XDG_RUNTIME_DIR"), false
	}
	return fmt.Sprintf("/tmp/corral-%d", os.Getuid()), true
}
