package engine

import (
	"testing"
	"time"

	"scenepay/terminals"
)

// TestHandoffBusyRefusesNewPayments: while the handoff reports its backlog
// past the bound, a purchase is refused with BUSY and has no effect; once
// cleared, the same request is approved.
func TestHandoffBusyRefusesNewPayments(t *testing.T) {
	e, p := openEngine(t, t.TempDir(), nil)
	defer e.Close()
	setup(t, e, 1000)
	e.SetHandoffBusy(true)
	e.HandleMessage(topic, buy(1, 100))
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeBusy {
		t.Fatalf("purchase while the handoff is busy: %s, want BUSY", rep.Code)
	}
	if b := balance(t, e); b != 1000 {
		t.Fatalf("balance %d after a refused purchase, want 1000", b)
	}
	e.SetHandoffBusy(false)
	e.HandleMessage(topic, buy(1, 100))
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved {
		t.Fatalf("purchase after the backlog cleared: %s, want approved", rep.Code)
	}
}
