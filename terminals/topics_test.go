package terminals

import "testing"

func TestTopicScheme(t *testing.T) {
	tp := DefaultTopics
	want := map[string]string{
		tp.Request("BUS-0001"):   "scp/v1/t/BUS-0001/req",
		tp.Reply("BUS-0001"):     "scp/v1/t/BUS-0001/resp",
		tp.Status("BUS-0001"):    "scp/v1/t/BUS-0001/status",
		tp.Config("BUS-0001"):    "scp/v1/t/BUS-0001/cfg",
		tp.GroupConfig("bus"):    "scp/v1/g/bus/cfg",
		tp.RequestFilter():       "scp/v1/t/+/req",
		tp.SharedRequestFilter(): "$share/scp-gateway/scp/v1/t/+/req",
		tp.StatusFilter():        "scp/v1/t/+/status",
	}
	for got, w := range want {
		if got != w {
			t.Errorf("topic = %q, want %q", got, w)
		}
	}
}

func TestTerminalFromTopic(t *testing.T) {
	tp := Topics{Root: "scp/v1", Group: "g"}
	good := []struct{ topic, tid string }{
		{"scp/v1/t/BUS-0001/req", "BUS-0001"},
		{"scp/v1/t/BUS-0001/resp", "BUS-0001"},
		{"scp/v1/t/stall_7.a/status", "stall_7.a"},
		{"scp/v1/t/K1/cfg", "K1"},
		{"scp/v1/t/" + "abcdefghijklmnopqrstuvwxyz012345" + "/req", "abcdefghijklmnopqrstuvwxyz012345"},
	}
	for _, g := range good {
		tid, ok := tp.TerminalFromTopic(g.topic)
		if !ok || tid != g.tid {
			t.Errorf("TerminalFromTopic(%q) = %q, %v; want %q, true", g.topic, tid, ok, g.tid)
		}
		// Every builder's output parses back.
	}
	for _, build := range []func(string) string{tp.Request, tp.Reply, tp.Status, tp.Config} {
		if tid, ok := tp.TerminalFromTopic(build("KIOSK-9")); !ok || tid != "KIOSK-9" {
			t.Errorf("builder output %q does not parse back", build("KIOSK-9"))
		}
	}
	bad := []string{
		"",
		"scp/v1/t/",
		"scp/v1/t//req",
		"scp/v1/t/BUS-0001",
		"scp/v1/t/BUS-0001/",
		"scp/v1/t/BUS-0001/req/extra",
		"scp/v1/t/BUS-0001/other",
		"scp/v1/t/+/req",
		"scp/v1/t/#",
		"scp/v1/t/BUS-0001/#",
		"scp/v1/t/BUS-0001/+",
		"scp/v1/t/BUS 0001/req",
		"scp/v1/t/BUS/0001/req",
		"scp/v1/t/" + "abcdefghijklmnopqrstuvwxyz0123456" + "/req", // 33 chars
		"scp/v1/t/BÜS/req",
		"scp/v1/g/bus/cfg",
		"scp/v2/t/BUS-0001/req",
		"xscp/v1/t/BUS-0001/req",
		"/scp/v1/t/BUS-0001/req",
		"$share/g/scp/v1/t/BUS-0001/req",
		"scp/v1/t/BUS-0001/REQ",
	}
	for _, topic := range bad {
		if tid, ok := tp.TerminalFromTopic(topic); ok {
			t.Errorf("TerminalFromTopic(%q) accepted, tid %q", topic, tid)
		}
	}
	if _, ok := (Topics{}).TerminalFromTopic("/t/BUS-0001/req"); ok {
		t.Error("an empty root accepted a topic")
	}
}
