package arbiter

import (
	"testing"
	"time"

	"github.com/corral-server/corral/worker"
)

// TestTicketKeysRotateKeepingThePrevious spawns TLS workers on the fake
// system: they all get the one memfd, and each rotation puts a new key in
// front of the one before, which stays to decrypt.
func TestTicketKeysRotateKeepingThePrevious(t *testing.T) {
	cfg := testConfig(2)
	cfg.Worker.TLS = &worker.TLSConfig{CertFile: "c.pem"}
	cfg.TicketRotation = time.Minute
	h := newDecisionTest(t, cfg)
	defer h.a.closeTickets()
	h.boot()
	if len(h.sys.specs) != 2 || h.sys.specs[0].tickets < 0 || h.sys.specs[0].tickets != h.sys.specs[1].tickets {
		t.Fatalf("workers got tickets fds %d and %d", h.sys.specs[0].tickets, h.sys.specs[1].tickets)
	}
	keys, seq0, err := h.a.tickets.shared.Read()
	if err != nil || len(keys) != 1 {
		t.Fatalf("at boot: %d keys, %v", len(keys), err)
	}
	first := keys[0]
	h.advance(59 * time.Second)
	h.a.checkTickets()
	if h.a.tickets.shared.Seq() != seq0 {
		t.Fatal("rotated before the period")
	}
	h.advance(time.Second)
	h.a.checkTickets()
	keys, _, _ = h.a.tickets.shared.Read()
	if len(keys) != 2 || keys[1] != first || keys[0] == first {
		t.Fatalf("after one rotation: %x, want a new key then %x", keys, first)
	}
	second := keys[0]
	h.advance(time.Minute)
	h.a.checkTickets()
	keys, _, _ = h.a.tickets.shared.Read()
	if len(keys) != 2 || keys[1] != second || keys[0] == first {
		t.Fatalf("after two rotations: %x, want a new key then %x, and %x gone", keys, second, first)
	}
}

// TestNoTicketKeysWithoutTLS: a plain configuration makes no memfd.
func TestNoTicketKeysWithoutTLS(t *testing.T) {
	h := newDecisionTest(t, testConfig(1))
	h.boot()
	h.advance(2 * time.Hour)
	h.a.checkTickets()
	if h.a.tickets != nil || h.sys.specs[0].tickets != -1 {
		t.Fatalf("tickets %v, fd %d", h.a.tickets, h.sys.specs[0].tickets)
	}
}
