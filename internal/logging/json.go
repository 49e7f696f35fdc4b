package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
)

// The error log's formats (--log-format).
const (
	FormatText = "text" // Gunicorn's lines, see Handler
	FormatJSON = "json" // one JSON object per line, see NewJSON
)

// ParseFormat checks a --log-format value; "" is text.
func ParseFormat(s string) (string, error) {
	switch s {
	case "", FormatText:
		return FormatText, nil
	case FormatJSON:
		return FormatJSON, nil
	}
	return "", fmt.Errorf("unknown log format %q (want text or json)", s)
}

// NewFormat returns a logger that writes records at level or above to w in
// format (FormatText or FormatJSON; anything else is text).
func NewFormat(w io.Writer, level slog.Leveler, format string) *slog.Logger {
	if format == FormatJSON {
		return NewJSON(w, level)
	}
	return New(w, level)
}

// NewJSON returns a logger that writes one JSON object per record and line,
// through log/slog's JSON handler, so every value is escaped:
//
//	{"time":"2026-11-23T19:17:04.5+00:00","level":"INFO","msg":"Booting worker with pid: 1235","pid":1234,"worker":1235}
//
// level carries Gunicorn's names (DEBUG, INFO, WARNING, ERROR, CRITICAL),
// pid is the process that logs, and the attributes the text format appends
// as key=value (worker, generation, signal, reason) are keys of their own.
// Each record is one Write, so lines from several goroutines never mix.
func NewJSON(w io.Writer, level slog.Leveler) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.LevelKey && len(groups) == 0 {
				if l, ok := a.Value.Any().(slog.Level); ok {
					a.Value = slog.StringValue(levelName(l))
				}
			}
			return a
		},
	})
	return slog.New(h).With("pid", os.Getpid())
}
