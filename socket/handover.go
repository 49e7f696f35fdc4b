package socket

// Own makes Close remove the listener's unix socket file, as if this
// process had bound it: for a listener taken over from a process that is
// handing over.
func (l *Listener) Own() {
	if l.Network() == "unix" {
		l.unlink = l.Addr.String()
	}
}

// Disown makes Close leave the unix socket file in place, for the process
// this one hands the listener over to.
func (l *Listener) Disown() { l.unlink = "" }
