package integration

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// growOne has one worker keep mb MiB more (/grow), and returns its pid:
// /pid on the same keep-alive connection reaches the same worker.
func growOne(t *testing.T, addr string, mb int) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /grow?mb="+strconv.Itoa(mb)+" HTTP/1.1\r\nHost: t\r\n\r\nGET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
	br := bufio.NewReader(c)
	var bodies []string
	for range 2 {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("status %d: %s", res.StatusCode, b)
		}
		bodies = append(bodies, string(b))
	}
	pid, err := strconv.Atoi(bodies[1])
	if err != nil || !strings.HasPrefix(bodies[0], "keeping ") {
		t.Fatalf("answers %q", bodies)
	}
	return pid
}

// /grow pushes one worker over --max-worker-memory: after --memory-grace
// it alone is replaced, its replacement first, with no request failed.
func TestMemoryRecyclesTheWorkerOverItsLimit(t *testing.T) {
	s, maddr := startMetrics(t, "-w", "2", "-k", "goroutine", "--max-worker-memory", "60M", "--memory-grace", "1", "-b", "127.0.0.1:0", "demo")
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	before := s.waitWorkers(2, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan *loadResult, 1)
	go func() { done <- keepAliveLoad(ctx, s.Addr, 4, 200000, "/") }()

	big := growOne(t, s.Addr, 100)
	m := s.waitLog(`Worker \(pid:(\d+)\) is over its memory: PSS [0-9.]+ MiB above --max-worker-memory 60.0 MiB for \d+s; replacing it`, 15*time.Second)
	if m[1] != strconv.Itoa(big) {
		t.Fatalf("replaced %s, want %d, the one that grew", m[1], big)
	}
	waitSample(t, maddr, `corral_worker_exits_total{cause="memory"}`, 1, 15*time.Second)
	time.Sleep(2 * time.Second) // past another grace and the recycle interval: nothing more
	cancel()
	r := <-done
	if r.failed() != 0 || r.ok < 50 {
		t.Fatalf("load: %s", r)
	}
	after := s.waitWorkers(2, 5*time.Second)
	for _, p := range before {
		kept := false
		for _, q := range after {
			kept = kept || p == q
		}
		if kept == (p == big) {
			t.Errorf("workers %v -> %v: %d should be gone and the other kept (grew %d)", before, after, p, big)
		}
	}
	if n := len(regexp.MustCompile(`is over its memory`).FindAllString(s.log.String(), -1)); n != 1 {
		t.Errorf("%d memory recycles, want 1:\n%s", n, s.log)
	}
	if m := scrape(t, maddr); m[`corral_worker_exits_total{cause="memory"}`] != 1 || m[`corral_worker_exits_total{cause="recycle"}`] != 0 {
		t.Errorf("exits: memory %v, recycle %v; want 1, 0", m[`corral_worker_exits_total{cause="memory"}`], m[`corral_worker_exits_total{cause="recycle"}`])
	}
}
