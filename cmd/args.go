package cmd

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsFirst moves the positional arguments (the app's name) after the
// flags, so flags may follow the app as Gunicorn takes them (corral demo
// -w 2): Go's flag package stops at the first positional one. A flag that
// takes a value keeps the argument after it (-w 2, -t -1); args[0] is the
// program. The exec command was split off before (splitCommand).
func flagsFirst(args []string, flags []cli.Flag) []string {
	if len(args) == 0 {
		return args
	}
	takes := map[string]bool{}
	for _, f := range flags {
		df, ok := f.(cli.DocGenerationFlag)
		for _, n := range f.Names() {
			takes[n] = ok && df.TakesValue()
		}
	}
	out := []string{args[0]}
	var positional []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		out = append(out, a)
		name := strings.TrimLeft(a, "-")
		if !strings.Contains(name, "=") && takes[name] && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return append(out, positional...)
}
