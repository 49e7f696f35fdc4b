package worker

import (
	"slices"
	"testing"
)

func TestExecEnv(t *testing.T) {
	inherited := []string{"PATH=/bin", "LISTEN_FDS=7", "LISTEN_PID=1", "LISTEN_PIDFDID=9", "NOTIFY_SOCKET=/run/systemd/notify",
		"WATCHDOG_USEC=1", EnvConfig + "={}", "HOME=/root"}
	set := []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=a:b", "NOTIFY_SOCKET=@corral/1/2/x", "WATCHDOG_USEC=30000000"}
	got := execEnv(inherited, set, 42, &Config{Age: 5, Generation: 2, ArbiterPid: 7})
	want := []string{"PATH=/bin", "HOME=/root", "LISTEN_FDS=2", "LISTEN_FDNAMES=a:b", "NOTIFY_SOCKET=@corral/1/2/x",
		"WATCHDOG_USEC=30000000", "LISTEN_PID=42", "WATCHDOG_PID=42", "CORRAL_WORKER_AGE=5", "CORRAL_WORKER_GENERATION=2", "CORRAL_ARBITER_PID=7"}
	if !slices.Equal(got, want) {
		t.Errorf("env:\n got %q\nwant %q", got, want)
	}
	// Without --timeout there is no watchdog at all.
	got = execEnv(inherited, set[:3], 42, &Config{})
	for _, kv := range got {
		if kv == "WATCHDOG_PID=42" || kv == "WATCHDOG_USEC=1" {
			t.Errorf("watchdog variable %q without WATCHDOG_USEC", kv)
		}
	}
}
