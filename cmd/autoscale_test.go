package cmd

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWorkersRange(t *testing.T) {
	p := testProgram()
	s, err := p.parse([]string{"corral", "-w", "2:8", "--scale-down-delay", "5", "--print-config"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a := s.arbiter
	if a.Workers != 2 || a.MaxWorkers != 8 || a.ScaleDownDelay != 5*time.Second || s.values["workers"] != "2:8" {
		t.Fatalf("-w 2:8: workers %d, max %d, delay %v, printed %q", a.Workers, a.MaxWorkers, a.ScaleDownDelay, s.values["workers"])
	}
	s, err = p.parse([]string{"corral", "-w", "3:3"}, io.Discard)
	if err != nil || s.arbiter.Workers != 3 || s.arbiter.MaxWorkers != 0 || s.arbiter.ScaleDownDelay != time.Minute {
		t.Fatalf("-w 3:3 (a fixed count): %+v, %v", s.arbiter, err)
	}
	for bad, want := range map[string]string{"0:4": "want 1 <= MIN <= MAX", "4:2": "want 1 <= MIN <= MAX", "2:": "MIN:MAX", "a:b": "MIN:MAX"} {
		_, err := p.parse([]string{"corral", "-w", bad}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("-w %s: %v, want an error with %q", bad, err, want)
		}
	}
	if _, err := p.parse([]string{"corral", "-w", "1:2", "--scale-down-delay", "-1"}, io.Discard); err == nil {
		t.Error("--scale-down-delay -1: no error")
	}
	// The config file: workers = "2:8".
	path := filepath.Join(t.TempDir(), "corral.toml")
	os.WriteFile(path, []byte("workers = \"2:8\"\n"), 0o644)
	s, err = p.parse([]string{"corral", "-c", path}, io.Discard)
	if err != nil || s.arbiter.Workers != 2 || s.arbiter.MaxWorkers != 8 {
		t.Fatalf("workers = \"2:8\" in the file: %+v, %v", s.arbiter, err)
	}
}

func TestMaxWorkerMemory(t *testing.T) {
	p := testProgram()
	s, err := p.parse([]string{"corral", "--max-worker-memory", "200M", "--memory-grace", "2.5"}, io.Discard)
	if err != nil || s.arbiter.MaxWorkerMemory != 200<<20 || s.arbiter.MemoryGrace != 2500*time.Millisecond {
		t.Fatalf("--max-worker-memory 200M --memory-grace 2.5: %d, %v, %v", s.arbiter.MaxWorkerMemory, s.arbiter.MemoryGrace, err)
	}
	s, err = p.parse([]string{"corral"}, io.Discard)
	if err != nil || s.arbiter.MaxWorkerMemory != 0 || s.arbiter.MemoryGrace != 10*time.Second {
		t.Fatalf("defaults: %d, %v, %v", s.arbiter.MaxWorkerMemory, s.arbiter.MemoryGrace, err)
	}
	s, err = p.parse([]string{"corral", "--reload-canary", "1", "--canary-window", "5"}, io.Discard)
	if err != nil || s.arbiter.ReloadCanary != 1 || s.arbiter.CanaryWindow != 5*time.Second {
		t.Fatalf("--reload-canary 1 --canary-window 5: %d, %v, %v", s.arbiter.ReloadCanary, s.arbiter.CanaryWindow, err)
	}
	for _, bad := range [][]string{{"--reload-canary", "-1"}, {"--canary-window", "-2"}, {"--max-worker-memory", "lots"}, {"--max-worker-memory", "-1G"}, {"--memory-grace", "-1"}} {
		if _, err := p.parse(append([]string{"corral"}, bad...), io.Discard); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
