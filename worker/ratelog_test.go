package worker

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRateLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := rateLog{now: func() time.Time { return now }}
	for range 1000 { // a second of a fault that recurs every millisecond
		r.print(log, slog.LevelError, "accept: too many open files")
		now = now.Add(time.Millisecond)
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("%d lines in the first second, want 1:\n%s", n, buf.String())
	}
	now = now.Add(rateLogEvery)
	r.print(log, slog.LevelError, "accept: too many open files")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "and 999 more in the last 1m1s") {
		t.Errorf("after a minute, want a second line with the count of those left out:\n%s", buf.String())
	}
}

func TestAccessLogWriteErrors(t *testing.T) {
	a, err := OpenAccessLog("/dev/full", "")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	a.ErrorLog = slog.New(slog.NewTextHandler(&buf, nil))
	r := httptest.NewRequest("GET", "/", nil)
	for range 100 {
		a.Log(r, 200, 5, nil, time.Now(), time.Millisecond)
	}
	if n := a.WriteErrors(); n != 100 {
		t.Errorf("WriteErrors = %d, want 100", n)
	}
	if n := strings.Count(buf.String(), "no space left on device"); n != 1 {
		t.Errorf("%d error lines for 100 lost lines, want 1:\n%s", n, buf.String())
	}
	var none *AccessLog
	if none.WriteErrors() != 0 {
		t.Error("a nil AccessLog has write errors")
	}
}

// net/http starts most of its error lines with "http: " already.
func TestLogWriterPrefix(t *testing.T) {
	var buf bytes.Buffer
	p := &Process{Log: slog.New(slog.NewTextHandler(&buf, nil))}
	logWriter{p}.Write([]byte("http: Accept error: x; retrying in 5ms\n"))
	logWriter{p}.Write([]byte("superfluous\n"))
	if s := buf.String(); strings.Contains(s, "http: http:") || !strings.Contains(s, `"http: Accept error: x; retrying in 5ms"`) || !strings.Contains(s, `"http: superfluous"`) {
		t.Errorf("log:\n%s", s)
	}
}
