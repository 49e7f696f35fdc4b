package integration

import (
	"strconv"
	"syscall"
	"testing"
	"time"
)

// A worker that stops beating (here: stopped by SIGSTOP, so it cannot
// even handle SIGABRT) is aborted after --timeout and killed after
// --abort-grace, and a new worker takes its place.
func TestSilentWorkerIsKilledAfterAbortGrace(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "--timeout", "1", "--abort-grace", "1", "demo"})
	s.waitLog(`Ready: 2 workers`, 10*time.Second)
	victim := s.waitWorkers(2, 5*time.Second)[0]
	begin := time.Now()
	syscall.Kill(victim, syscall.SIGSTOP)
	defer syscall.Kill(victim, syscall.SIGKILL)
	s.waitLog(`WORKER TIMEOUT \(pid:`+strconv.Itoa(victim)+`\)`, 5*time.Second)
	s.waitLog(`Worker \(pid:`+strconv.Itoa(victim)+`\) still alive 1s after SIGABRT; killing it`, 5*time.Second)
	s.waitLog(`Worker \(pid:`+strconv.Itoa(victim)+`\) killed by signal KILL after its timeout`, 5*time.Second)
	replaced := time.Since(begin)
	t.Logf("silent worker replaced %s after it stopped (timeout 1 s + abort grace 1 s)", replaced.Round(time.Millisecond))
	if replaced > 1*time.Second+1*time.Second+2*time.Second {
		t.Errorf("replacement took %s, more than timeout + abort-grace + 2 s", replaced)
	}
	now := s.waitWorkers(2, 5*time.Second)
	for _, p := range now {
		if p == victim {
			t.Fatalf("victim %d still counted among workers %v", victim, now)
		}
	}
	mustGet(t, s.Addr, "/")
}

// A worker that gets SIGABRT logs the request it was stuck in, then exits.
func TestAbortedWorkerLogsItsRequest(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "1", "-b", "127.0.0.1:0", "--timeout", "1", "--abort-grace", "5", "demo"})
	s.waitLog(`Ready: 1 workers`, 10*time.Second)
	victim := s.waitWorkers(1, 5*time.Second)[0]
	go get(s.Addr, "/sleep?seconds=30")
	time.Sleep(200 * time.Millisecond)
	syscall.Kill(victim, syscall.SIGSTOP)
	defer syscall.Kill(victim, syscall.SIGKILL)
	s.waitLog(`WORKER TIMEOUT \(pid:`+strconv.Itoa(victim)+`\)`, 5*time.Second)
	syscall.Kill(victim, syscall.SIGCONT) // now it handles the pending SIGABRT
	s.waitLog(`\[`+strconv.Itoa(victim)+`\] \[ERROR\] Worker \(pid:\d+\) aborted in request GET /sleep\?seconds=30 \(running for`, 5*time.Second)
	s.waitLog(`Worker \(pid:`+strconv.Itoa(victim)+`\) exited with code 1 after its timeout`, 5*time.Second)
	s.waitWorkers(1, 5*time.Second)
	mustGet(t, s.Addr, "/")
}

// --timeout 0 turns the check off: a stopped worker is left alone.
func TestTimeoutZeroDisablesTheCheck(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "1", "-b", "127.0.0.1:0", "--timeout", "0", "demo"})
	s.waitLog(`Ready: 1 workers`, 10*time.Second)
	victim := s.waitWorkers(1, 5*time.Second)[0]
	syscall.Kill(victim, syscall.SIGSTOP)
	defer syscall.Kill(victim, syscall.SIGKILL)
	time.Sleep(2500 * time.Millisecond)
	syscall.Kill(victim, syscall.SIGCONT)
	if w := s.waitWorkers(1, time.Second); w[0] != victim {
		t.Fatalf("worker replaced with --timeout 0: %v", w)
	}
	mustGet(t, s.Addr, "/")
}

// A worker killed from outside is replaced.
func TestCrashedWorkerIsReplaced(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "demo"})
	s.waitLog(`Ready: 2 workers`, 10*time.Second)
	victim := s.waitWorkers(2, 5*time.Second)[0]
	syscall.Kill(victim, syscall.SIGKILL)
	s.waitLog(`Worker \(pid:`+strconv.Itoa(victim)+`\) was sent SIGKILL! Perhaps out of memory\?`, 5*time.Second)
	s.waitLogN(`Booting worker with pid`, 3, 5*time.Second)
	now := s.waitWorkers(2, 5*time.Second)
	if now[0] == victim || now[1] == victim {
		t.Fatalf("victim still there: %v", now)
	}
	mustGet(t, s.Addr, "/")
}

// Workers that keep dying before they are ready are respawned with a
// growing delay, never in a tight loop, and the arbiter stays up.
func TestBootFailuresBackOff(t *testing.T) {
	dir := t.TempDir()
	bin := dir + "/corral"
	copyFile(t, corralBin, bin)
	s := start(t, bin, []string{"-w", "2", "-b", "127.0.0.1:0", "demo"})
	s.waitLog(`Ready: 2 workers`, 10*time.Second)
	workers := s.waitWorkers(2, 5*time.Second)
	broken := dir + "/broken"
	writeScript(t, broken, "#!/bin/sh\nexit 1\n")
	renameOver(t, broken, bin)
	syscall.Kill(workers[0], syscall.SIGKILL)
	m := s.waitLogN(`Next worker spawn in (\S+) \((\d+) boot failures in a row\)`, 4, 10*time.Second)
	var delays []time.Duration
	for _, x := range m {
		d, _ := time.ParseDuration(x[1])
		delays = append(delays, d)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] != 2*delays[i-1] {
			t.Errorf("backoff delays %v do not double", delays)
		}
	}
	if delays[0] != 100*time.Millisecond {
		t.Errorf("first backoff %s, want 100ms", delays[0])
	}
	if syscall.Kill(s.Pid, 0) != nil {
		t.Fatal("arbiter exited")
	}
	mustGet(t, s.Addr, "/") // the surviving worker still serves
	// A good binary again: the next spawn boots and the count recovers.
	copyFile(t, corralBin, bin+".new")
	renameOver(t, bin+".new", bin)
	s.waitWorkers(2, 15*time.Second)
}
