package cmd

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// preflight checks what start-up would trip on once it has begun, so that
// it is a bad configuration (exit 2, a line naming the path) before any
// worker boots, and --check-config finds it too: the --chdir folder, and
// the folders of the pid file and the log files, there and writable. It
// resolves paths as start-up does: --chdir and the error log (the arbiter
// opens it first) from where corral started, the pid file and the access
// log (written after the chdir) from --chdir.
func (p *Program) preflight(s *settings) error {
	var errs problems
	dir := p.startDir
	if s.chdir != "" {
		dir = absIn(p.startDir, s.chdir)
		switch fi, err := os.Stat(dir); {
		case err != nil:
			errs.add(fmt.Errorf("--chdir %s: %v", s.chdir, pathProblem(err)))
		case !fi.IsDir():
			errs.add(fmt.Errorf("--chdir %s: not a folder", s.chdir))
		}
		if errs.err() != nil {
			dir = "" // the paths relative to it cannot be checked
		}
	}
	files := []struct{ flag, path, base string }{
		{"--error-logfile", s.arbiter.Worker.ErrorLog, p.startDir},
		{"--pid", s.arbiter.PidFile, dir},
		{"--access-logfile", s.arbiter.Worker.AccessLog, dir},
	}
	for _, f := range files {
		if f.path == "" || f.path == "-" || (f.base == "" && !filepath.IsAbs(f.path)) {
			continue
		}
		errs.add(writableFile(f.flag, f.path, absIn(f.base, f.path)))
	}
	return errs.err()
}

// writableFile checks that the file at abs (given as path) can be created
// or appended to, and its folder written: the pid file is written to a
// temporary file there, then renamed.
func writableFile(flag, path, abs string) error {
	folder := filepath.Dir(abs)
	fi, err := os.Stat(folder)
	switch {
	case err != nil:
		return fmt.Errorf("%s %s: folder %s: %v", flag, path, folder, pathProblem(err))
	case !fi.IsDir():
		return fmt.Errorf("%s %s: %s is not a folder", flag, path, folder)
	case unix.Access(folder, unix.W_OK|unix.X_OK) != nil:
		return fmt.Errorf("%s %s: folder %s is not writable", flag, path, folder)
	}
	if fi, err := os.Stat(abs); err == nil {
		switch {
		case fi.IsDir():
			return fmt.Errorf("%s %s: is a folder", flag, path)
		case unix.Access(abs, unix.W_OK) != nil:
			return fmt.Errorf("%s %s: not writable", flag, path)
		}
	}
	return nil
}

// pathProblem is an os error without the path, which the caller names.
func pathProblem(err error) string {
	switch {
	case os.IsNotExist(err):
		return "does not exist"
	case os.IsPermission(err):
		return "permission denied"
	}
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}
