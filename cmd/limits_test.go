package cmd

import (
	"os"
	"path/filepath"
	"testing"
)

// Gunicorn's spellings of the limits work in a config file.
func TestLimitsConfigFile(t *testing.T) {
	keys := fileKeys(fileFlags(), cliFlags())
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte("limit_request_field_size = 100\nlimit_request_line = 200\nmax_body = 5\nthreads = 2\nevent_inline = true\n"), 0o644)
	cf, err := readConfigFile(path, keys)
	if err != nil {
		t.Fatal(err)
	}
	src := cf.src
	if n, _ := src.Int("limit-request-field_size"); n != 100 {
		t.Errorf("limit_request_field_size %d", n)
	}
	if n, _ := src.Int("limit-request-line"); n != 200 {
		t.Errorf("limit_request_line %d", n)
	}
	if b, _ := src.Bool("event-inline"); !b {
		t.Errorf("event_inline %v", b)
	}
}

func TestLimitsReachWorkerConfig(t *testing.T) {
	p := testProgram()
	dir := t.TempDir()
	path := filepath.Join(dir, "c.toml")
	os.WriteFile(path, []byte("limit_request_field_size = 300\n"), 0o644)
	s, err := p.load([]string{"corral", "-c", path, "--limit-request-fields", "7", "--threads", "3", "--max-body", "9", "--print-config"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := s.arbiter.Worker
	if w.LimitRequestFieldSize != 300 || w.LimitRequestFields != 7 || w.LimitRequestLine != 4094 || w.Threads != 3 || w.MaxBody != 9 {
		t.Errorf("worker config %+v", w)
	}
	if _, err := p.load([]string{"corral", "--limit-request-fields", "0", "--print-config"}, nil); err == nil {
		t.Error("--limit-request-fields 0 accepted")
	}
}
