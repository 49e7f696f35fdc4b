// Package logging owns corral's error log: Gunicorn's line format
// ("[time] [pid] [LEVEL] message"), over log/slog, written to stderr or to
// a file that can be reopened after rotation (USR1). The arbiter and the
// workers both log through it, so their lines interleave in one format.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// File is a log destination that can be reopened: "-" is stderr (or the
// given default stream), anything else a path opened for append.
type File struct {
	mu   sync.Mutex
	path string
	w    io.Writer
	f    *os.File
}

// OpenFile opens path for appending; "-" or "" means std.
func OpenFile(path string, std *os.File) (*File, error) {
	lf := &File{path: path, w: std}
	if path == "" || path == "-" {
		return lf, nil
	}
	if err := lf.Reopen(); err != nil {
		return nil, err
	}
	return lf, nil
}

// Path is the file's path, or "-".
func (lf *File) Path() string {
	if lf.f == nil {
		return "-"
	}
	return lf.path
}

// Reopen opens the path again, so a log rotated by renaming starts anew.
func (lf *File) Reopen() error {
	if lf.path == "" || lf.path == "-" {
		return nil
	}
	f, err := os.OpenFile(lf.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	lf.mu.Lock()
	old := lf.f
	lf.f, lf.w = f, f
	lf.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Write writes p whole, under a lock so lines never interleave.
func (lf *File) Write(p []byte) (int, error) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	return lf.w.Write(p)
}

// ParseLevel accepts Gunicorn's level names: debug, info, warning, error, critical.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warning", "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	case "critical":
		return slog.LevelError + 4, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warning, error or critical)", s)
}

// Handler formats records as Gunicorn does:
//
//	[2026-11-23 19:17:04 +0000] [1234] [INFO] Booting worker with pid: 1235
//
// followed by any attributes as key=value.
type Handler struct {
	w     io.Writer
	level slog.Leveler
	pid   int
	attrs string
}

// NewHandler logs records at level or above to w.
func NewHandler(w io.Writer, level slog.Leveler) *Handler {
	return &Handler{w: w, level: level, pid: os.Getpid()}
}

// New returns a logger over NewHandler.
func New(w io.Writer, level slog.Leveler) *slog.Logger { return slog.New(NewHandler(w, level)) }

func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	fmt.Fprintf(&b, "[%s] [%d] [%s] %s", t.Format("2006-01-02 15:04:05 -0700"), h.pid, levelName(r.Level), r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, a)
		return true
	})
	b.WriteByte('\n')
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range as {
		writeAttr(&b, a)
	}
	h2 := *h
	h2.attrs += b.String()
	return &h2
}

// WithGroup is not used by corral; groups are flattened.
func (h *Handler) WithGroup(string) slog.Handler { return h }

func writeAttr(b *strings.Builder, a slog.Attr) {
	v := a.Value.Resolve().String()
	if strings.ContainsAny(v, " \"=") || v == "" {
		v = fmt.Sprintf("%q", v)
	}
	fmt.Fprintf(b, " %s=%s", a.Key, v)
}

func levelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError+4:
		return "CRITICAL"
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}
