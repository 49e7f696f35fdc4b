package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadConfigFile(t *testing.T) {
	keys := fileKeys(fileFlags(), cliFlags())
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte("workers = 3\ntimeout = 2\ngraceful_timeout = 1.5\nbind = \"127.0.0.1:1\"\nreuse-port = true\numask = 0o027\n"), 0o644)
	cf, err := readConfigFile(path, keys)
	if err != nil {
		t.Fatal(err)
	}
	src := cf.src
	if n, _ := src.String("workers"); n != "3" {
		t.Errorf("workers %q", n)
	}
	if f, _ := src.Float64("timeout"); f != 2 {
		t.Errorf("timeout %v: an integer must read as seconds", f)
	}
	if f, _ := src.Float64("graceful-timeout"); f != 1.5 {
		t.Errorf("graceful_timeout (underscore spelling) %v", f)
	}
	if b, _ := src.StringSlice("bind"); len(b) != 1 || b[0] != "127.0.0.1:1" {
		t.Errorf("a single bind string must read as a list: %v", b)
	}
	if u, _ := src.String("umask"); u != "0o27" {
		t.Errorf("umask %q", u)
	}
	for content, want := range map[string]string{
		"workers = 1.5\n":      `want a whole number or "auto", got the number 1.5`,
		"reuse-port = \"y\"\n": "want true or false",
		"[section]\nx = 1\n":   `unknown setting "section"`,
		"timeout = \"1s\"\n":   "want a number of seconds",
	} {
		os.WriteFile(path, []byte(content), 0o644)
		if _, err := readConfigFile(path, keys); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", content, err, want)
		}
	}
}
