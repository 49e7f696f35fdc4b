package arbiter

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-server/corral/worker"
)

// A worker's argv[0] is what ps shows, as Gunicorn's process titles.
func TestWorkerTitle(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		wc   worker.Config
		want string
	}{
		{Config{Args: []string{"/usr/bin/corral", "demo"}, Name: "shop"}, worker.Config{App: "demo", Generation: 3}, "corral: worker [shop] gen 3"},
		{Config{Args: []string{"bin/corral"}}, worker.Config{App: "demo", Generation: 1}, "corral: worker [demo] gen 1"},
		{Config{Args: []string{"./server"}, Command: []string{"/usr/bin/python3", "app.py"}}, worker.Config{Generation: 2}, "server: worker [python3] gen 2"},
		{Config{}, worker.Config{Generation: 1}, "corral: worker gen 1"},
	} {
		if got := workerTitle(&c.cfg, c.wc); got != c.want {
			t.Errorf("%+v: %q, want %q", c.cfg, got, c.want)
		}
	}
}

// The tail keeps the last lines, cut, and waits for the output's end.
func TestOutputTail(t *testing.T) {
	tail := newOutputTail()
	for _, l := range []string{"a", "", "b", "c", "d", "e", strings.Repeat("x", 400)} {
		tail.add(l)
	}
	start := time.Now()
	got := tail.last(50 * time.Millisecond)
	if time.Since(start) < 50*time.Millisecond {
		t.Errorf("last returned before the wait, with the output still open")
	}
	if want := []string{"c", "d", "e", strings.Repeat("x", 300) + "..."}; !slices.Equal(got, want) {
		t.Errorf("tail %q, want %q", got, want)
	}
	close(tail.done)
	start = time.Now()
	tail.last(time.Minute)
	if time.Since(start) > time.Second {
		t.Errorf("last waited though the output had ended")
	}
}
