package terminals

import "testing"

// TerminalFromTopic runs for every request on the gateway's hot path.
func TestTerminalFromTopicDoesNotAllocate(t *testing.T) {
	topic := DefaultTopics.Request("BUS-0001")
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := DefaultTopics.TerminalFromTopic(topic); !ok {
			t.Fatal("not parsed")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
}
