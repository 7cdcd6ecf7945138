package mqttclient

import (
	"errors"
	"testing"
	"time"
)

// Packet ids: never 0, never one that awaits its ack, freed by the ack;
// with every id busy a publication is refused, not blocked.
func TestPacketIDs(t *testing.T) {
	c := &Conn{}
	seen := map[uint16]bool{}
	for range 1<<16 - 1 {
		id, ok := c.takeIDLocked()
		if !ok || id == 0 || seen[id] {
			t.Fatalf("id %d ok %v (seen %v)", id, ok, seen[id])
		}
		seen[id] = true
	}
	if _, ok := c.takeIDLocked(); ok {
		t.Fatal("an id was handed out while all 65,535 await acks")
	}
	c.acked(4242, nil)
	if id, ok := c.takeIDLocked(); !ok || id != 4242 {
		t.Fatalf("after ack of 4242: id %d ok %v", id, ok)
	}
	c.acked(9, errors.New("x")) // an ack nobody waits for is harmless
	c.bc = newBufConn(newFakeConn(nil), 1<<20, time.Second, false)
	c.acked(9, nil)
	if err := c.Publish("t", []byte("x"), false, nil); err != nil {
		t.Fatalf("publish with one id free: %v", err)
	}
	if err := c.Publish("t", []byte("x"), false, nil); !errors.Is(err, ErrIDsExhausted) {
		t.Fatalf("publish with no id free: %v", err)
	}
}
