package cmd

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// A config file sets flags by name: a TOML file, or a Gunicorn
// gunicorn.conf.py (configpy.go). Its keys are the long flag names, with
// Gunicorn's underscores too (worker_class), and Gunicorn's setting names
// (keepalive, accesslog, raw_env: see gunicorn.go). A short flag name is no
// key, and a flag set under two spellings is an error. In a TOML file an
// unknown key is an error, so a typo never passes silently; a Python file,
// as Gunicorn reads it, may hold other names (imports, helpers), which
// are ignored.

// fileKey is what a config file's key sets: a flag, of a kind.
type fileKey struct {
	flag string // the flag's name
	kind string // "int", "float", "bool", "string", "strings", or "count" (a whole number or "auto")
}

// configFile is a config file read: the values for altsrc, by flag name,
// and the warnings for what it sets that corral does not apply.
type configFile struct {
	src      altsrc.InputSourceContext
	warnings []string
}

// readConfigFile reads a config file: TOML, or Python when it ends in .py.
func readConfigFile(path string, keys map[string]fileKey) (*configFile, error) {
	if strings.HasSuffix(path, ".py") {
		pc, err := readPyConfig(path)
		if err != nil {
			return nil, err
		}
		cf, err := resolveKeys(path, pc.Settings, keys, false)
		if err != nil {
			return nil, err
		}
		cf.warnings = append(cf.warnings, pyWarnings(path, pc, keys)...)
		return cf, nil
	}
	var raw map[string]any
	if _, err := toml.DecodeFile(path, &raw); err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("config file %s: line %d: %s", path, perr.Position.Line, perr.Message)
		}
		return nil, fmt.Errorf("config file %s: %v", path, unwrapPathError(err))
	}
	return resolveKeys(path, raw, keys, true)
}

// resolveKeys maps a file's keys to the flags they set and converts their
// values, reporting every problem, a line each. strict (TOML) makes an
// unknown key an error; else (Python) it is ignored, and so is corral's
// spelling of a Gunicorn setting (env for raw_env, name for proc_name):
// a module holds helpers of such names, and Gunicorn reads only its own.
// corral's own settings (boot_timeout) are read from both.
func resolveKeys(path string, raw map[string]any, keys map[string]fileKey, strict bool) (*configFile, error) {
	var errs problems
	bad := func(format string, a ...any) {
		errs.add(fmt.Errorf("config file %s: %s", path, fmt.Sprintf(format, a...)))
	}
	cf := &configFile{}
	values := map[any]any{}
	setBy := map[string]string{} // flag -> the key that set it
	for _, key := range sortedKeys(raw) {
		v := raw[key]
		if v == nil { // Python's None: Gunicorn's default
			continue
		}
		fk, ok := keys[strings.ReplaceAll(key, "_", "-")]
		g, isG := gunicornByName(key)
		convert := g.value // Gunicorn's value, as the flag takes it; nil for most
		if isG && !ok {
			switch {
			case g.flag != "":
				fk, ok = fileKey{flag: g.flag, kind: keys[g.flag].kind}, true
			case g.section == secHooks || g.isDefault(v):
				continue // a hook as a value is no hook; a default asks for nothing
			case g.refuse:
				bad("%s is not supported: %s", key, g.answer)
				continue
			default:
				cf.warnings = append(cf.warnings, "config file "+path+": "+g.notApplied())
				continue
			}
		}
		switch {
		case !ok && len(key) == 1 && strict:
			bad("unknown setting %q (a short flag is no key: use the long name%s)", key, longName(key))
			continue
		case !ok && strict:
			bad("unknown setting %q", key)
			continue
		case !ok:
			continue
		case !strict && !isG && hasGunicornName(fk.flag):
			continue // a Python name Gunicorn would not read, such as env = "prod": a helper
		case fk.kind == "": // a flag only the command line sets
			cf.warnings = append(cf.warnings, fmt.Sprintf("config file %s: %s is not applied: give --%s on the command line", path, key, fk.flag))
			continue
		}
		if first, dup := setBy[fk.flag]; dup {
			bad("%s and %s both set --%s; keep one", first, key, fk.flag)
			continue
		}
		setBy[fk.flag] = key
		if convert != nil {
			var err error
			if v, err = convert(v); err != nil {
				bad("%s: %v", key, err)
				continue
			}
		}
		v, err := convertValue(v, fk)
		if err != nil {
			bad("%s: %v", key, err)
			continue
		}
		values[fk.flag] = v
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	cf.src = altsrc.NewMapInputSource(path, values)
	return cf, nil
}

// hasGunicornName reports whether some Gunicorn setting is the flag.
func hasGunicornName(flag string) bool {
	for _, g := range gunicornSettings {
		if g.flag == flag {
			return true
		}
	}
	return false
}

// pyWarnings are the warnings for what a Python file defines that is no
// plain value: its server hooks, in one line, and settings whose value is
// an object.
func pyWarnings(path string, pc *pyConfig, keys map[string]fileKey) []string {
	var hooks, objects []string
	for _, name := range pc.Callables {
		if g, ok := gunicornByName(name); ok && g.section == secHooks {
			hooks = append(hooks, name)
		}
	}
	for _, name := range pc.Other {
		_, isG := gunicornByName(name)
		if _, ok := keys[strings.ReplaceAll(name, "_", "-")]; ok || isG {
			objects = append(objects, name)
		}
	}
	var ws []string
	if len(hooks) > 0 {
		sort.Strings(hooks)
		ws = append(ws, fmt.Sprintf("config file %s: server hooks are not applied: %s (corral's hooks are Go functions: corral.Server's Hooks; see docs/migrating-from-gunicorn.md)",
			path, strings.Join(hooks, ", ")))
	}
	if len(objects) > 0 {
		sort.Strings(objects)
		ws = append(ws, fmt.Sprintf("config file %s: not plain values, not applied: %s", path, strings.Join(objects, ", ")))
	}
	return ws
}

// longName is ` "workers"` for "w", if it is some flag's short name.
func longName(short string) string {
	for _, f := range fileFlags() {
		if slices.Contains(f.Names()[1:], short) {
			return ` "` + f.Names()[0] + `"`
		}
	}
	return ""
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// convertValue turns a decoded value into the type altsrc expects for the
// flag's kind.
func convertValue(v any, fk fileKey) (any, error) {
	switch fk.kind {
	case "count":
		switch n := v.(type) {
		case int64:
			return strconv.FormatInt(n, 10), nil
		case string:
			if n == "auto" {
				return n, nil
			}
		}
		return nil, fmt.Errorf("want a whole number or \"auto\", got %s", describe(v))
	case "int":
		if n, ok := v.(int64); ok {
			return int(n), nil
		}
		return nil, fmt.Errorf("want a whole number, got %s", describe(v))
	case "float":
		switch n := v.(type) {
		case int64:
			return float64(n), nil
		case float64:
			return n, nil
		}
		return nil, fmt.Errorf("want a number of seconds, got %s", describe(v))
	case "bool":
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, fmt.Errorf("want true or false, got %s", describe(v))
	case "string":
		switch s := v.(type) {
		case string:
			return s, nil
		case int64:
			if fk.flag == "umask" { // umask = 0o022 (TOML), 0o022 or 18 (Python)
				return "0o" + strconv.FormatInt(s, 8), nil
			}
			return strconv.FormatInt(s, 10), nil // user = 1000
		}
		return nil, fmt.Errorf("want a string, got %s", describe(v))
	case "strings":
		switch s := v.(type) {
		case string:
			return []any{s}, nil
		case []any:
			for i, e := range s {
				if _, ok := e.(string); !ok {
					return nil, fmt.Errorf("item %d: want a string, got %s", i+1, describe(e))
				}
			}
			return s, nil
		}
		return nil, fmt.Errorf("want a list of strings, got %s", describe(v))
	}
	return nil, fmt.Errorf("unsupported kind %s", fk.kind)
}

func describe(v any) string {
	switch v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the number %v", v)
	case float64:
		return fmt.Sprintf("the number %v", v)
	case bool:
		return fmt.Sprintf("%v", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

func unwrapPathError(err error) error {
	var pe interface{ Unwrap() error }
	if errors.As(err, &pe) {
		if inner := pe.Unwrap(); inner != nil && strings.Contains(err.Error(), "no such file") {
			return errors.New("no such file")
		}
	}
	return err
}

// configSource is altsrc's hook: the config file named by --config, if
// any. Its warnings go into the app's metadata, for settings.
func configSource(keys map[string]fileKey) func(*cli.Context) (altsrc.InputSourceContext, error) {
	return func(c *cli.Context) (altsrc.InputSourceContext, error) {
		path := c.String("config")
		if path == "" {
			return altsrc.NewMapInputSource("", map[any]any{}), nil
		}
		cf, err := readConfigFile(path, keys)
		if err != nil {
			return nil, err
		}
		c.App.Metadata["warnings"] = cf.warnings
		return cf.src, nil
	}
}
