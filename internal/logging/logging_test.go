package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestGunicornLineFormat(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, slog.LevelInfo)
	l.Debug("hidden")
	l.Info("Listening at: http://127.0.0.1:8000 (42)")
	l.With("pid", 7).Warn("Worker timeout", "reason", "two words")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines: %q", len(lines), buf.String())
	}
	re := regexp.MustCompile(`^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[INFO\] Listening at: http://127\.0\.0\.1:8000 \(42\)$`)
	if !re.MatchString(lines[0]) {
		t.Errorf("line 1: %q", lines[0])
	}
	if !strings.HasSuffix(lines[1], `[WARNING] Worker timeout pid=7 reason="two words"`) {
		t.Errorf("line 2: %q", lines[1])
	}
}

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"debug", "INFO", "warning", "error", "critical"} {
		if _, err := ParseLevel(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel(loud) succeeded")
	}
}

func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "error.log")
	f, err := OpenFile(path, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("one\n"))
	os.Rename(path, path+".1")
	f.Write([]byte("two\n"))
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("three\n"))
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if string(old) != "one\ntwo\n" || string(cur) != "three\n" {
		t.Errorf("rotated %q, current %q", old, cur)
	}
}

// TestJSONLines: every record is one line that parses as JSON, with
// Gunicorn's level names, the pid, and the attributes as keys; a message
// with quotes, backslashes and a newline stays one valid line.
func TestJSONLines(t *testing.T) {
	var buf bytes.Buffer
	l := NewFormat(&buf, slog.LevelInfo, FormatJSON)
	l.Debug("hidden")
	l.Info("Booting worker with pid: 1235", "worker", 1235, "generation", 2)
	l.Warn("a \"quoted\" \\ path\nand a second line", "reason", "two words")
	l.Log(context.Background(), slog.LevelError+4, "the end", "signal", "TERM")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines: %q", len(lines), buf.String())
	}
	want := []map[string]any{
		{"level": "INFO", "msg": "Booting worker with pid: 1235", "worker": 1235.0, "generation": 2.0},
		{"level": "WARNING", "msg": "a \"quoted\" \\ path\nand a second line", "reason": "two words"},
		{"level": "CRITICAL", "msg": "the end", "signal": "TERM"},
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d does not parse: %v: %q", i+1, err, line)
		}
		if m["pid"] != float64(os.Getpid()) || m["time"] == nil {
			t.Errorf("line %d: pid %v, time %v; want %d and a time", i+1, m["pid"], m["time"], os.Getpid())
		}
		for k, v := range want[i] {
			if m[k] != v {
				t.Errorf("line %d: %s = %#v, want %#v", i+1, k, m[k], v)
			}
		}
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]string{"": "text", "text": "text", "json": "json"} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseFormat("xml"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("ParseFormat(xml): %v, want an error naming it", err)
	}
}
