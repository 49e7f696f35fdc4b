package cmd

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// readConfigFile reads a TOML config file into an input source for
// altsrc. Keys are long flag names; Gunicorn's underscores are accepted
// (worker_class). Unknown keys and values of the wrong type are errors
// that name the key, so a typo never passes silently.
func readConfigFile(path string, kinds map[string]string) (altsrc.InputSourceContext, error) {
	var raw map[string]any
	md, err := toml.DecodeFile(path, &raw)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("config file %s: line %d: %s", path, perr.Position.Line, perr.Message)
		}
		return nil, fmt.Errorf("config file %s: %v", path, unwrapPathError(err))
	}
	_ = md
	values := map[any]any{}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		name := strings.ReplaceAll(key, "_", "-")
		kind, ok := kinds[name]
		if !ok {
			return nil, fmt.Errorf("config file %s: unknown setting %q", path, key)
		}
		v, err := convert(raw[key], kind)
		if err != nil {
			return nil, fmt.Errorf("config file %s: %s: %v", path, key, err)
		}
		values[name] = v
	}
	return altsrc.NewMapInputSource(path, values), nil
}

// convert turns a decoded TOML value into the type altsrc expects for kind.
func convert(v any, kind string) (any, error) {
	switch kind {
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
		case int64: // umask = 0o022
			return "0o" + strconv.FormatInt(s, 8), nil
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
	return nil, fmt.Errorf("unsupported kind %s", kind)
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

// configSource is altsrc's hook: the config file named by --config, if any.
func configSource(kinds map[string]string) func(*cli.Context) (altsrc.InputSourceContext, error) {
	return func(c *cli.Context) (altsrc.InputSourceContext, error) {
		if path := c.String("config"); path != "" {
			return readConfigFile(path, kinds)
		}
		return altsrc.NewMapInputSource("", map[any]any{}), nil
	}
}
