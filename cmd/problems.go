package cmd

import (
	"errors"
	"strings"
)

// problems are what validation found wrong with a command line, in the
// order it checked. All of them are reported, each on a line of its own,
// so that a config with three mistakes takes one run to fix, not three.
type problems []error

// add records err, if it is one; the problems in a problems error are
// added one by one.
func (ps *problems) add(err error) {
	var more problems
	switch {
	case err == nil:
	case errors.As(err, &more):
		*ps = append(*ps, more...)
	default:
		*ps = append(*ps, err)
	}
}

// err is nil when nothing was found, else the problems.
func (ps problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Error is the problems on one line, "; " between them: a failed reload
// logs them so.
func (ps problems) Error() string {
	return strings.Join(errorLines(ps), "; ")
}

// errorLines is what a user reads for err: a line for each problem.
func errorLines(err error) []string {
	var ps problems
	if !errors.As(err, &ps) {
		return []string{err.Error()}
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = oneLine(p)
	}
	return lines
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
}
