package cmd

import (
	"io"
	"slices"
	"testing"
)

func TestMetricsFlags(t *testing.T) {
	p := testProgram()
	s, err := p.load([]string{"corral", "--metrics-bind", "unix:/run/corral/metrics.sock", "--ready-min", "2",
		"--log-format", "json", "--access-logformat", "json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a := s.arbiter
	if a.MetricsBind != "unix:/run/corral/metrics.sock" || a.ReadyMin != 2 || a.Worker.LogFormat != "json" || a.Worker.AccessLogFormat != "json" {
		t.Fatalf("bind %q, ready-min %d, log format %q, access log format %q", a.MetricsBind, a.ReadyMin, a.Worker.LogFormat, a.Worker.AccessLogFormat)
	}
	if s, err = p.load([]string{"corral"}, io.Discard); err != nil || s.arbiter.MetricsBind != "" || s.arbiter.ReadyMin != 1 || s.arbiter.Worker.LogFormat != "text" {
		t.Fatalf("defaults: %v, %+v", err, s.arbiter)
	}
	_, err = p.load([]string{"corral", "--metrics-bind", "fd://3", "--ready-min", "-1", "--log-format", "xml"}, io.Discard)
	want := []string{
		`--metrics-bind wants HOST:PORT or unix:PATH, got "fd://3"`,
		"--ready-min must be 0 or more, got -1",
		`--log-format: unknown log format "xml" (want text or json)`,
	}
	if got := errorLines(err); !slices.Equal(got, want) {
		t.Errorf("problems:\n%q\nwant\n%q", got, want)
	}
}
