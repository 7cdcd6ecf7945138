package ingress

import (
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Every message to one terminal goes out on one connection, so a reply and
// the notice after it cannot overtake each other; different terminals spread.
func TestTopicConnIsStablePerTopicAndSpreads(t *testing.T) {
	used := map[int]bool{}
	for i := 0; i < 64; i++ {
		topic := "scp/v1/t/K-" + string(rune('A'+i%26)) + string(rune('a'+i/26)) + "/resp"
		c := topicConn(topic, 4)
		if c < 0 || c >= 4 || topicConn(topic, 4) != c {
			t.Fatalf("%s: connection %d not stable or out of range", topic, c)
		}
		used[c] = true
	}
	if len(used) < 3 {
		t.Fatalf("64 terminals used only %d of 4 connections", len(used))
	}
	if topicConn("x", 1) != 0 {
		t.Fatal("one connection")
	}
}

// A retained publication is never kept for paho to resend after a
// reconnect (a stale version resent after the current one would stay
// retained); replies and everything inbound are kept as paho keeps them.
func TestRetainedStoreKeepsNoRetainedPublication(t *testing.T) {
	s := retainedStore{paho.NewMemoryStore()}
	s.Open()
	defer s.Close()
	pub := func(id uint16, retain bool) *packets.PublishPacket {
		p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		p.TopicName, p.Qos, p.Retain, p.MessageID, p.Payload = "t", 1, retain, id, []byte("x")
		return p
	}
	s.Put("o.1", pub(1, true))
	s.Put("o.2", pub(2, false))
	s.Put("i.3", pub(3, true))
	if s.Get("o.1") != nil {
		t.Fatal("an outbound retained publication was kept for resending")
	}
	if s.Get("o.2") == nil || s.Get("i.3") == nil {
		t.Fatalf("a reply or an inbound message was dropped: %v", s.All())
	}
}
