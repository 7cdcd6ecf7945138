package device

import (
	"context"
	"testing"
	"time"

	"scenepay/terminals"
)

// BenchmarkDoRoundTrip measures one purchase round trip (seal, QoS 1
// publish, responder verify and answer, reply verify and match) through an
// in-process mochi broker on loopback. The responder is the test stand-in,
// so this measures the device and broker path, not a gateway.
func BenchmarkDoRoundTrip(b *testing.B) {
	br := startBroker(b, freeAddr(b))
	topics := uniqueRoot("b-")
	startResponder(b, br.url(), topics, approveAll)
	d, err := New(Config{TID: "BUS-0001", Key: testKey("BUS-0001"), Broker: br.url(), Topics: topics, ReplyTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := d.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	req := Purchase(terminals.Instrument{Kind: terminals.InstCounty, ID: "8800000001"}, 200)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := d.Do(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
