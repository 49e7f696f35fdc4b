package logging

import (
	"bytes"
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
