package arbiter

import (
	"fmt"
	"time"

	"github.com/corral-server/corral/internal/tickets"
)

// DefaultTicketRotation is how often the arbiter makes a new TLS
// session-ticket key when Config.TicketRotation is 0.
const DefaultTicketRotation = time.Hour

// ticketKeys are the TLS session-ticket keys the arbiter shares with its
// workers, as nginx's workers share ssl_session_ticket_key: one memfd,
// passed to every worker at spawn (docs/architecture.md, "What a worker
// gets"), so a session a client resumes may land on any worker. Every
// rotation writes a new key in front of the current one, which stays for
// decryption: a ticket is good for two rotation periods at most. Each
// worker reads the memory again when its sequence number moved, at its
// next handshake.
type ticketKeys struct {
	shared  *tickets.Shared
	keys    []tickets.Key // the newest first
	rotated time.Time     // when keys[0] was made
}

// ticketsFD is the memfd a new worker inherits its session-ticket keys
// from, made with the first key when the first worker that serves TLS
// spawns; -1 when the configuration has no TLS.
func (a *Arbiter) ticketsFD() (int, error) {
	if a.cfg.Worker.TLS == nil {
		return -1, nil
	}
	if a.tickets == nil {
		shared, err := tickets.Create()
		if err != nil {
			return -1, err
		}
		a.tickets = &ticketKeys{shared: shared}
		if err := a.rotateTickets(); err != nil {
			a.closeTickets()
			return -1, err
		}
	}
	return a.tickets.shared.FD(), nil
}

// ticketRotation is the configured rotation period.
func (a *Arbiter) ticketRotation() time.Duration {
	if a.cfg.TicketRotation > 0 {
		return a.cfg.TicketRotation
	}
	return DefaultTicketRotation
}

// checkTickets rotates the session-ticket keys once the current one is
// older than the rotation period.
func (a *Arbiter) checkTickets() {
	if a.tickets == nil || a.sys.now().Sub(a.tickets.rotated) < a.ticketRotation() {
		return
	}
	if err := a.rotateTickets(); err != nil {
		a.log.Error(fmt.Sprintf("Session ticket key rotation failed, keeping the current key: %v", err))
		return
	}
	a.log.Debug("Rotated the TLS session ticket keys")
}

// rotateTickets makes a new key and publishes it with the one before it.
func (a *Arbiter) rotateTickets() error {
	k, err := tickets.NewKey()
	if err != nil {
		return err
	}
	t := a.tickets
	t.keys = append([]tickets.Key{k}, t.keys...)[:min(len(t.keys)+1, tickets.MaxKeys)]
	t.rotated = a.sys.now()
	t.shared.Publish(t.keys)
	return nil
}

func (a *Arbiter) closeTickets() {
	if a.tickets != nil {
		a.tickets.shared.Close()
		a.tickets = nil
	}
}
