package arbiter

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/corral-server/corral/internal/heartbeat"
)

// notifySystemd sends one sd_notify message (several lines at most) when
// systemd asked for them by setting NOTIFY_SOCKET; otherwise it does
// nothing. With Type=notify, systemd waits for READY=1 before it counts
// the service as started, and for it again after RELOADING=1.
func notifySystemd(msg string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(msg))
}

// notifyStatus tells systemd the arbiter serves, with how many workers.
func (a *Arbiter) notifyStatus() {
	notifySystemd(fmt.Sprintf("READY=1\nSTATUS=%d workers serving, generation %d", a.target, a.generation))
}

// notifyReloading tells systemd a reload began; READY=1 follows when the
// new generation serves (or the reload is abandoned).
func notifyReloading() {
	notifySystemd(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", heartbeat.Now()/1000))
}

// workerEnv is the environment a worker starts with: the arbiter's, less
// NOTIFY_SOCKET, which is systemd's channel to the arbiter alone.
func workerEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
