package ingress

import "testing"

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
