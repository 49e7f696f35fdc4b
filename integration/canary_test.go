package integration

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// statusLoad sends requests for path, one per connection, from conns
// clients until ctx ends or total were sent, and counts the answers by
// status; a request that got no answer counts as -1.
func statusLoad(ctx context.Context, addr, path string, conns, total int) map[int]int {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var mu sync.Mutex
	counts := map[int]int{}
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && sent.Add(1) <= int64(total) {
				code := -1
				if res, err := client.Get("http://" + addr + path); err == nil {
					code = res.StatusCode
					res.Body.Close()
				}
				mu.Lock()
				counts[code]++
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return counts
}

// A canary reload whose new generation answers 500: one canary is tried,
// the 5xx share rolls it back by itself, and the old workers serve
// throughout; the only failed requests are the canary's own 500s. The
// metrics show the canary watched, then the rollback and its reason.
func TestCanaryRollsBackAFailingGeneration(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "3", "-k", "goroutine", "-b", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0",
		"--reload-canary", "1", "--canary-window", "20", "demo"}, func(c *exec.Cmd) {
		c.Env = append(os.Environ(), "CORRAL_DEMO_FAIL_GENERATION=2")
	})
	maddr := metricsAddr(t, s)
	s.waitLog(`Ready: 3 workers serving`, 10*time.Second)
	if m := scrape(t, maddr); m[`corral_canary_state{state="none"}`] != 1 || m[`corral_canary_state{state="watching"}`] != 0 ||
		m[`corral_canary_reloads_total{outcome="rolled_back",reason="5xx"}`] != 0 || !hasKey(m, `corral_canary_reloads_total{outcome="promoted",reason="window_passed"}`) {
		t.Fatalf("before the reload: %v", m)
	}
	if code, _, err := get(s.Addr, "/fail"); err != nil || code != 200 {
		t.Fatalf("generation 1's /fail: %d %v", code, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	done := make(chan map[int]int, 1)
	go func() { done <- statusLoad(ctx, s.Addr, "/fail", 4, 20000) }()
	time.Sleep(300 * time.Millisecond)
	s.signal(syscall.SIGHUP)
	s.waitLog(`Canary: generation 2 starts with 1 of 3 workers`, 5*time.Second)
	s.waitLog(`Canary: 1 workers of generation 2 ready; watching them for 20s`, 10*time.Second)
	m := s.waitLog(`Reload rolled back \(after HUP\): the canaries answered (\d+)% of (\d+) requests with 5xx, the old workers 0%`, 20*time.Second)
	if m[1] != "100" {
		t.Errorf("the canary's 5xx share: %s%%, want 100", m[1])
	}
	waitSample(t, maddr, `corral_canary_reloads_total{outcome="rolled_back",reason="5xx"}`, 1, 5*time.Second)
	mm := waitSample(t, maddr, `corral_canary_state{state="none"}`, 1, 5*time.Second)
	for series, want := range map[string]float64{
		`corral_canary_state{state="watching"}`:                                  0,
		`corral_canary_reloads_total{outcome="promoted",reason="window_passed"}`: 0,
		`corral_canary_reloads_total{outcome="rolled_back",reason="crash"}`:      0,
		`corral_reloads_total{result="failed"}`:                                  1,
		`corral_reloads_total{result="complete"}`:                                0,
	} {
		if mm[series] != want {
			t.Errorf("after the rollback: %s = %v, want %v", series, mm[series], want)
		}
	}
	// The canary is replaced by a worker of the old configuration: 3
	// workers, none of generation 2.
	deadline := time.Now().Add(15 * time.Second)
	for {
		gens := map[string]int{}
		for _, pid := range s.children() {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			title, _, _ := strings.Cut(string(b), "\x00")
			gens[title[strings.LastIndexByte(title, ' ')+1:]]++
		}
		if gens["2"] == 0 && len(s.children()) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers by generation after the rollback: %v", gens)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	counts := <-done
	if counts[200] < 50 || counts[-1] != 0 || len(counts) > 2 || (len(counts) == 2 && counts[500] == 0) {
		t.Fatalf("answers by status during the canary: %v; want 200s, the canary's 500s and nothing else", counts)
	}
	if counts[500] == 0 {
		t.Errorf("the canary answered no 500: %v", counts)
	}
	t.Logf("during the canary: %v", counts)
	// After the rollback every worker is of the old configuration: no 500.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if after := statusLoad(ctx2, s.Addr, "/fail", 4, 200); after[200] != 200 {
		t.Fatalf("after the rollback: %v, want 200 answers of 200", after)
	}
	if n := len(s.children()); n != 3 {
		t.Errorf("%d workers after the rollback, want 3", n)
	}
}

// A canary reload of a good generation: one canary for the window, then
// the rest, with every request answered 200, and counted as promoted.
func TestCanaryPromotesAGoodGeneration(t *testing.T) {
	s, maddr := startMetrics(t, "-w", "3", "-k", "sync", "-b", "127.0.0.1:0", "--reload-canary", "1", "--canary-window", "2", "demo")
	s.waitLog(`Ready: 3 workers serving`, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan map[int]int, 1)
	go func() { done <- statusLoad(ctx, s.Addr, "/fail", 4, 20000) }()
	time.Sleep(300 * time.Millisecond)
	s.signal(syscall.SIGHUP)
	s.waitLog(`Canary: 1 workers of generation 2 ready; watching them for 2s`, 10*time.Second)
	if m := waitSample(t, maddr, `corral_canary_state{state="watching"}`, 1, time.Second); m[`corral_canary_state{state="none"}`] != 0 {
		t.Errorf("while the canary is watched: %v", m)
	}
	if strings.Contains(s.log.String(), "Reload complete") {
		t.Fatal("the reload completed before the canary's window")
	}
	s.waitLog(`Canary: generation 2 passed 2s; replacing the rest`, 10*time.Second)
	s.waitLog(`Reload complete: generation 2, 3 workers serving`, 15*time.Second)
	m := waitSample(t, maddr, `corral_canary_reloads_total{outcome="promoted",reason="window_passed"}`, 1, 5*time.Second)
	if m[`corral_canary_state{state="none"}`] != 1 || m[`corral_canary_reloads_total{outcome="rolled_back",reason="5xx"}`] != 0 {
		t.Errorf("after the promotion: %v", m)
	}
	cancel()
	if counts := <-done; counts[200] < 50 || len(counts) != 1 {
		t.Fatalf("answers by status: %v; want 200 only", counts)
	}
}
