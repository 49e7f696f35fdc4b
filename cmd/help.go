package cmd

import (
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// --help groups the flags as Gunicorn's docs group its settings, within
// helpWidth columns, each flag's default said once; --version is the
// module's version and VCS revision.

const (
	helpWidth  = 100
	helpIndent = 30 // where a flag's description starts
)

// helpGroups is the order of the groups in --help; a group not named here
// (a new feature's) follows, in alphabetical order.
var helpGroups = []string{secConfig, secSocket, secWorkers, secSecurity, secLogging, secNaming, secMechanics, secDebugging, secSSL}

// helpTemplate is the whole --help text, as a template with no actions.
func helpTemplate(p *Program, flags []cli.Flag) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s - %s\n\nUsage: %s [flags] %s\n", p.Name, p.Usage, p.Name, p.argsUsage())
	fmt.Fprintf(&b, "       %s ctl [--socket PATH] [--json] COMMAND (steers a running arbiter: %s ctl --help)\n\n", p.Name, p.Name)
	b.WriteString(wrap("Flags may come before or after APP. Every flag is also an environment variable, "+
		"CORRAL_<NAME> (CORRAL_WORKERS=4), and a key of the -c file (TOML, or a gunicorn.conf.py), "+
		"where Gunicorn's names work too (docs/migrating-from-gunicorn.md). "+
		"The command line wins over the environment, which wins over the file.", 0))
	groups := map[string][]cli.Flag{}
	for _, f := range flags {
		c := ""
		if cf, ok := f.(cli.CategorizableFlag); ok {
			c = cf.GetCategory()
		}
		groups[c] = append(groups[c], f)
	}
	var others []string
	for c := range groups {
		if !slices.Contains(helpGroups, c) {
			others = append(others, c)
		}
	}
	sort.Strings(others)
	for _, c := range append(slices.Clone(helpGroups), others...) {
		if len(groups[c]) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s:\n", c)
		for _, f := range groups[c] {
			b.WriteString(helpLine(f))
		}
	}
	b.WriteString("\n" + helpEntry("-h, --help", "show this help") + helpEntry("-v, --version", "print the version"))
	return strings.ReplaceAll(b.String(), "{{", `{{"{{"}}`)
}

// helpLine is one flag's entry: its names, with a placeholder for its
// value, then its usage and its default, wrapped.
func helpLine(f cli.Flag) string {
	var names []string
	for _, n := range f.Names() {
		if len(n) == 1 {
			names = append(names, "-"+n)
		} else {
			names = append(names, "--"+n)
		}
	}
	sort.SliceStable(names, func(i, j int) bool { return len(names[i]) < len(names[j]) && len(names[i]) == 2 })
	label := strings.Join(names, ", ") + valueLabel(f)
	df, _ := f.(cli.DocGenerationFlag)
	usage := df.GetUsage()
	if d := helpDefault(f); d != "" && !strings.Contains(usage, "(default") {
		usage += " (default: " + d + ")"
	}
	return helpEntry(label, usage)
}

// placeholders are the value placeholders of the flags that take a
// number or a word.
var placeholders = map[string]string{"workers": "N|auto|MIN:MAX", "max-memory": "SIZE|auto"}

// valueLabel is the placeholder for f's value after its names: " N",
// " SECONDS", " VALUE"; "" for a switch.
func valueLabel(f cli.Flag) string {
	if p, ok := placeholders[f.Names()[0]]; ok {
		return " " + p
	}
	switch f.(type) {
	case *altsrc.IntFlag:
		return " N"
	case *altsrc.Float64Flag:
		return " SECONDS"
	case *altsrc.StringFlag, *altsrc.StringSliceFlag, *cli.StringFlag:
		return " VALUE"
	}
	return ""
}

// helpDefault is a flag's default as --help shows it: "" for none.
func helpDefault(f cli.Flag) string {
	var d string
	switch x := f.(type) {
	case *altsrc.StringSliceFlag:
		if x.Value != nil {
			d = strings.Join(x.Value.Value(), ",")
		}
	case *altsrc.BoolFlag:
		if x.Value {
			d = "true"
		}
	case *cli.BoolFlag:
		if x.Value {
			d = "true"
		}
	case *altsrc.StringFlag:
		d = x.Value
	case cli.DocGenerationFlag:
		d = x.GetDefaultText()
	}
	return d
}

// helpEntry lays out a label and its text in two columns.
func helpEntry(label, text string) string {
	label = "  " + label
	if len(label) > helpIndent-2 {
		return label + "\n" + wrap(text, helpIndent)
	}
	first := wrap(text, helpIndent)
	return label + first[len(label):]
}

// wrap breaks text into lines of helpWidth columns at most, each indented
// by indent spaces, and ends it with a newline.
func wrap(text string, indent int) string {
	var b strings.Builder
	line := strings.Repeat(" ", indent)
	empty := true
	for _, w := range strings.Fields(text) {
		if !empty && len(line)+1+len(w) > helpWidth {
			b.WriteString(line + "\n")
			line, empty = strings.Repeat(" ", indent), true
		}
		if !empty {
			line += " "
		}
		line += w
		empty = false
	}
	b.WriteString(line + "\n")
	return b.String()
}

// version is the program's version for --version (see versionOf).
func (p *Program) version() string {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(p.Version, bi)
}

// versionOf is v, the version the build set, else the main module's, with
// the VCS revision the build info holds (a worktree's build has none) and,
// for a program that imports corral, corral's module version.
func versionOf(v string, bi *debug.BuildInfo) string {
	if bi == nil {
		if v == "" {
			v = "dev"
		}
		return v
	}
	if v == "" || v == "dev" {
		v = bi.Main.Version
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	var extra []string
	if rev != "" {
		r := "revision " + rev
		if modified == "true" {
			r += " (modified)"
		}
		extra = append(extra, r)
	}
	const self = "github.com/corral-server/corral"
	if bi.Main.Path != self {
		for _, d := range bi.Deps {
			if d.Path == self {
				extra = append(extra, "corral "+d.Version)
			}
		}
	}
	if len(extra) > 0 {
		v += ", " + strings.Join(extra, ", ")
	}
	return v
}
