package gateway_test

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

// TestFarePushAndSceneMetricsThroughMosquitto: an operator PUTs a new fare
// table on the operator API and the very next tap on a bus reader (over the
// machine's Mosquitto) pays it; an invalid table is refused 400 with the
// scene decoder's reason and changes nothing; the scrape shows the tap under
// scene="bus", instrument="county" and the reader online by kind from its
// status topic.
func TestFarePushAndSceneMetricsThroughMosquitto(t *testing.T) {
	g := startOps(t)
	const tid = "BUS-FARE-1"
	g.mustCall(t, "POST", "/v1/accounts", `{"inst":{"k":"county","id":"F1"},"balance":10000}`, 201)
	g.mustCall(t, "POST", "/v1/accounts", `{"inst":{"k":"county","id":"F2"},"balance":10000}`, 201)
	g.mustCall(t, "POST", "/v1/terminals", `{"tid":"`+tid+`","kind":"bus","merchant":"BUSCO"}`, 201)
	bus := testkit.Connect(t, testkit.MQTTURL(), g.topics, tid, terminals.DeriveKey(g.master, tid, 1))
	t.Cleanup(func() { clearRetained(t, g.topics.GroupConfig("bus")) })
	if tok := bus.Client.Publish(g.topics.Status(tid), 1, false, "online"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("status publish: %v", tok.Error())
	}

	_, rep := bus.Do(t, bus.Request(tap(terminals.TypeTapIn, 1, county("F1"), "B1", "")))
	wantTap(t, rep, 200, 9_800)
	g.mustCall(t, "PUT", "/v1/config/transit", e2eTransitDoc(t, 350), 200)
	_, rep = bus.Do(t, bus.Request(tap(terminals.TypeTapIn, 2, county("F2"), "B1", "")))
	wantTap(t, rep, 350, 9_650)

	st, m := g.call(t, "PUT", "/v1/config/transit", strings.Replace(e2eTransitDoc(t, 500), `"daily_cap_fen":1000`, `"daily_cap_fen":-1`, 1))
	if msg, _ := m["error"].(string); st != 400 || !strings.Contains(msg, "invalid") || !strings.Contains(msg, "daily_cap") {
		t.Fatalf("invalid fare table: %d %v", st, m)
	}
	if m := g.mustCall(t, "GET", "/v1/config/transit", "", 200); m["version"] != 1.0 {
		t.Fatalf("a refused table changed the version: %v", m)
	}

	// The status message crosses the broker on its own, and a request is
	// counted just after its reply is published: poll.
	tapsCounted := regexp.MustCompile(`(?m)^scenepay_gateway_requests_total\{code="00",instrument="county",scene="bus",type="tap_in"\} 2$`)
	var scrape string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(g.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		scrape = string(b)
		if strings.Contains(scrape, `scenepay_gateway_terminals_online{kind="bus"} 1`) && tapsCounted.MatchString(scrape) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{
		`scenepay_gateway_terminals_online{kind="bus"} 1`,
		`scenepay_gateway_terminals_registered{kind="bus"} 1`,
		`scenepay_gateway_terminals_online{kind="stall"} 0`,
	} {
		if !strings.Contains(scrape, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if !tapsCounted.MatchString(scrape) {
		t.Error("the two approved taps are not counted under scene bus, instrument county")
	}
	if !regexp.MustCompile(`(?m)^scenepay_gateway_request_duration_seconds_count\{instrument="county",scene="bus",type="tap_in"\} 2$`).MatchString(scrape) {
		t.Error("the two taps are not in the latency histogram under scene bus, instrument county")
	}
}
