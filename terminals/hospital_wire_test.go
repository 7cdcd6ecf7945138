package terminals

import "testing"

// Hospital kiosk messages decode, validate and re-encode to the same bytes.
func TestHospitalMessagesRoundTrip(t *testing.T) {
	for _, b := range []string{
		`{"v":1,"type":"hold","tid":"KIOSK-1","txn":7,"ts":1767225600000,"amt":500000,"inst":{"k":"county","id":"C-1"}}`,
		`{"v":1,"type":"hold","tid":"KIOSK-1","txn":8,"ts":1767225600000,"amt":100000,"inst":{"k":"county","id":"C-1"},"orig":7}`,
		`{"v":1,"type":"capture","tid":"KIOSK-1","txn":9,"ts":1767225600000,"amt":2500,"inst":{"k":"county","id":"C-1"},"orig":7}`,
		`{"v":1,"type":"release","tid":"KIOSK-1","txn":10,"ts":1767225600000,"amt":0,"inst":{"k":"county","id":"C-1"},"orig":7}`,
		`{"v":1,"type":"purchase","tid":"KIOSK-1","txn":11,"ts":1767225600000,"amt":10000,"inst":{"k":"county","id":"C-1"},"item":"LAB","ins":{"pool":6000,"personal":1000,"self":3000}}`,
	} {
		var r Request
		if err := DecodeRequestInto([]byte(b), &r); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if got := string(r.AppendJSON(nil)); got != b {
			t.Errorf("round trip:\n got %s\nwant %s", got, b)
		}
	}
	var r Request
	_ = DecodeRequestInto([]byte(`{"v":1,"type":"purchase","tid":"KIOSK-1","txn":11,"ts":1767225600000,"amt":10000,"inst":{"k":"county","id":"C-1"},"ins":{"pool":6000,"personal":1000,"self":3000}}`), &r)
	if !r.Ins.Set || r.Ins.Pool != 6000 || r.Ins.Personal != 1000 || r.Ins.Self != 3000 {
		t.Fatalf("ins = %+v", r.Ins)
	}
}
