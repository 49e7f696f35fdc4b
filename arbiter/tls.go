package arbiter

import "github.com/corral-server/corral/socket"

// listenerURL names l in the log as the workers serve it: https:// when
// it serves TLS under the current configuration (an https:// bind, or
// any TCP HTTP listener with --certfile).
func (a *Arbiter) listenerURL(l *socket.Listener) string {
	if a.cfg.Worker.ServesTLS(l.Protocol, l.Network()) {
		return socket.HTTPS(l.URL())
	}
	return l.URL()
}
