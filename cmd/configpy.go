package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// A Gunicorn config file (gunicorn.conf.py) is a Python module: corral runs
// python3 to execute it, as Gunicorn does, and reads the module's public
// plain values (numbers, strings, booleans, None, lists, dicts) as settings,
// and the names of its functions, to say which server hooks it does not
// apply. Like Gunicorn, it ignores the module's other names (imports,
// helper variables).

// pythonEnv names the python3 to use, for machines where the default is not
// the one wanted (and for tests): default /usr/bin/python3 (Debian's), else
// python3 in PATH.
const pythonEnv = "CORRAL_PYTHON"

// pyTimeout bounds a config file's run: a file that waits on something
// must not hang the start-up, or a reload.
const pyTimeout = 30 * time.Second

// debianPython is tried before PATH: a virtualenv's or pyenv's python3
// first in PATH may lack what the file imports from Debian's packages.
var debianPython = "/usr/bin/python3"

// readPyScript executes the file named by argv[1] and prints, on the stdout
// it started with, a JSON object: settings (the plain values), callables
// (the functions and classes), other (the names of values that are
// neither), or error and line. What the file prints goes to stderr.
const readPyScript = `
import json, sys, traceback, types
path = sys.argv[1]
out, sys.stdout = sys.stdout, sys.stderr
def plain(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(plain(e) for e in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and plain(e) for k, e in v.items())
    return False
ns = {"__file__": path, "__name__": "__config__"}
try:
    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec")
    exec(code, ns)
except BaseException as e:
    line = getattr(e, "lineno", None) if isinstance(e, SyntaxError) else None
    for fr in traceback.extract_tb(e.__traceback__):
        if fr.filename == path:
            line = fr.lineno
    msg = "".join(traceback.format_exception_only(type(e), e)).strip().splitlines()[-1]
    json.dump({"error": msg, "line": line}, out)
    sys.exit(0)
res = {"settings": {}, "callables": [], "other": []}
for k, v in ns.items():
    if k.startswith("_") or isinstance(v, types.ModuleType):
        continue
    if callable(v):
        res["callables"].append(k)
    elif plain(v):
        res["settings"][k] = v
    else:
        res["other"].append(k)
json.dump(res, out)
`

// pyConfig is what readPyScript found in a file.
type pyConfig struct {
	Settings  map[string]any `json:"settings"`
	Callables []string       `json:"callables"`
	Other     []string       `json:"other"`
	Error     string         `json:"error"`
	Line      int            `json:"line"`
}

// findPython is the python3 that reads .py config files.
func findPython() (string, error) {
	if p := os.Getenv(pythonEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %v", pythonEnv, p, unwrapPathError(err))
		}
		return p, nil
	}
	if _, err := os.Stat(debianPython); err == nil {
		return debianPython, nil
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		return "", errors.New("no python3 (not /usr/bin/python3, none in PATH); install it, or write the settings as TOML")
	}
	return p, nil
}

// readPyConfig runs python3 on path and returns the module's values, with
// numbers as int64 or float64 as TOML decodes them.
func readPyConfig(path string) (*pyConfig, error) {
	python, err := findPython()
	if err != nil {
		return nil, fmt.Errorf("config file %s: a .py file needs Python: %v", path, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", readPyScript, path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("config file %s: %s did not finish within %s", path, python, pyTimeout)
		}
		last := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(last, '\n'); i >= 0 {
			last = last[i+1:]
		}
		return nil, fmt.Errorf("config file %s: %s: %v %s", path, python, err, last)
	}
	var pc pyConfig
	dec := json.NewDecoder(&stdout)
	dec.UseNumber()
	if err := dec.Decode(&pc); err != nil {
		return nil, fmt.Errorf("config file %s: %s printed no settings: %v", path, python, err)
	}
	if pc.Error != "" {
		if pc.Line > 0 {
			return nil, fmt.Errorf("config file %s: line %d: %s", path, pc.Line, pc.Error)
		}
		return nil, fmt.Errorf("config file %s: %s", path, pc.Error)
	}
	for k, v := range pc.Settings {
		pc.Settings[k] = fromJSON(v)
	}
	return &pc, nil
}

// fromJSON turns JSON numbers into int64 or float64, as TOML's decoder
// gives them, in lists and tables too.
func fromJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i, e := range x {
			x[i] = fromJSON(e)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = fromJSON(e)
		}
	}
	return v
}
