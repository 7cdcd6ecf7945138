package mqttclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"scenepay/internal/mqttwire"
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

// The PUBACKs of the messages one read brought leave together, after the
// handler has seen every message, in order: one buffer append (one wake-up
// of the flusher) per read, not per message.
func TestReaderAcksOneReadTogether(t *testing.T) {
	var stream []byte
	const n = 50
	for i := range n {
		payload := fmt.Sprintf("m%d", i)
		stream = append(mqttwire.AppendPublishHeader(stream, "t/x/req", uint16(i+1), false, len(payload)), payload...)
	}
	var got []string
	c := &Conn{cfg: Config{Handler: func(topic string, payload []byte) { got = append(got, topic+" "+string(payload)) }}}
	bc := newBufConn(newFakeConn(stream), 1<<20, time.Second, false)
	bc.kick = make(chan struct{}, 1000) // counts appends; no flusher drains it
	rd := &reader{buf: make([]byte, readBufBytes)}
	if err := c.readLoop(bc, rd); !errors.Is(err, io.EOF) {
		t.Fatalf("readLoop: %v, want EOF at the end of the stream", err)
	}
	if len(got) != n || got[0] != "t/x/req m0" || got[n-1] != fmt.Sprintf("t/x/req m%d", n-1) {
		t.Fatalf("handler saw %d messages: %q", len(got), got)
	}
	if k := len(bc.kick); k != 1 {
		t.Fatalf("%d appends for the PUBACKs of one read, want 1", k)
	}
	var want []byte
	for i := range n {
		want = mqttwire.AppendPuback(want, uint16(i+1))
	}
	if !bytes.Equal(bc.buf, want) {
		t.Fatalf("buffered % x, want the %d PUBACKs in order", bc.buf, n)
	}
}
