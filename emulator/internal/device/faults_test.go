package device

import (
	"bytes"
	"errors"
	"testing"

	"scenepay/terminals"
)

func offlineDevice(t *testing.T, tid string) *Device {
	t.Helper()
	d, err := New(Config{TID: tid, Key: testKey(tid), Broker: "tcp://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func codeOf(err error) terminals.Code {
	var te *terminals.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return ""
}

func TestFaultBuildersProduceWhatTheyClaim(t *testing.T) {
	d := offlineDevice(t, "BUS-0100")
	key := testKey("BUS-0100")
	s, err := d.Prepare(Purchase(county, 200))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := terminals.Open(key, s.Payload); err != nil {
		t.Fatalf("genuine payload does not open: %v", err)
	}

	tf := d.Tampered(s)
	if _, err := terminals.Open(key, tf.Payload); codeOf(err) != terminals.CodeBadMAC {
		t.Fatalf("tampered: err = %v, want BAD_MAC", err)
	}
	if len(tf.Payload) != len(s.Payload) {
		t.Fatal("tampered payload changed length")
	}
	diff := 0
	for i := range tf.Payload {
		if tf.Payload[i] != s.Payload[i] {
			diff++
		}
	}
	if diff != 1 {
		t.Fatalf("tampered payload differs in %d bytes, want 1", diff)
	}
	// The flip keeps the body well-formed: only the MAC tells.
	body, _, _ := terminals.Split(tf.Payload)
	if r, err := terminals.DecodeRequest(body); err != nil || r.Amt == 200 {
		t.Fatalf("tampered body: %+v %v", r, err)
	}

	if dup := d.Duplicate(s); !bytes.Equal(dup.Payload, s.Payload) {
		t.Fatal("duplicate is not byte-identical")
	}

	ca, err := d.ChangedAmount(s, 900)
	if err != nil {
		t.Fatal(err)
	}
	body, err = terminals.Open(key, ca.Payload)
	if err != nil {
		t.Fatalf("changed-amount must carry a valid MAC: %v", err)
	}
	r, err := terminals.DecodeRequest(body)
	if err != nil || r.Txn != s.Req.Txn || r.Amt != 900 || r.ContentHash() == s.Req.ContentHash() {
		t.Fatalf("changed-amount = %+v %v", r, err)
	}

	old, err := d.OldTxn(Purchase(county, 200), 1)
	if err != nil {
		t.Fatal(err)
	}
	if body, err = terminals.Open(key, old.Payload); err != nil {
		t.Fatal(err)
	}
	if r, err = terminals.DecodeRequest(body); err != nil || r.Txn != 1 {
		t.Fatalf("old txn = %+v %v", r, err)
	}

	ov, err := d.Oversize(Purchase(county, 200))
	if err != nil {
		t.Fatal(err)
	}
	if len(ov.Payload) <= terminals.MaxPayload {
		t.Fatalf("oversize payload is %d bytes", len(ov.Payload))
	}
	if _, err := terminals.Open(key, ov.Payload); codeOf(err) != terminals.CodeOversize {
		t.Fatalf("oversize: err = %v", err)
	}
	// Under the size limit check, its MAC is genuine.
	sep := len(ov.Payload) - terminals.MACHexLen - 1
	if !terminals.NewSigner(key).Verify(ov.Payload[:sep], ov.Payload[sep+1:]) {
		t.Fatal("oversize MAC does not verify")
	}

	mf, err := d.Malformed()
	if err != nil {
		t.Fatal(err)
	}
	body, err = terminals.Open(key, mf.Payload)
	if err != nil {
		t.Fatalf("malformed must carry a valid MAC: %v", err)
	}
	if _, err := terminals.DecodeRequest(body); codeOf(err) != terminals.CodeMalformed {
		t.Fatalf("malformed decodes: %v", err)
	}
	if last, _ := d.cfg.Store.Last(); mf.Req.Txn != last {
		t.Fatalf("malformed txn %d, counter %d", mf.Req.Txn, last)
	}
}

func TestPrepareRejectsInvalidRequests(t *testing.T) {
	d := offlineDevice(t, "BUS-0101")
	for _, req := range []terminals.Request{
		Purchase(county, 0),
		Purchase(county, terminals.MaxAmount+1),
		Purchase(terminals.Instrument{Kind: terminals.InstBank, ID: "4111111111111111", Last4: "1111"}, 100),
		{Type: "refund", Inst: county, Amt: 1},
	} {
		if _, err := d.Prepare(req); err == nil {
			t.Errorf("Prepare(%+v) succeeded", req)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []Config{
		{TID: "", Key: []byte("k"), Broker: "tcp://x:1"},
		{TID: "A/B", Key: []byte("k"), Broker: "tcp://x:1"},
		{TID: "A", Broker: "tcp://x:1"},
		{TID: "A", Key: []byte("k")},
	} {
		if _, err := New(c); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) err = %v", c, err)
		}
	}
}

func BenchmarkPrepare(b *testing.B) {
	d, err := New(Config{TID: "BUS-0001", Key: testKey("BUS-0001"), Broker: "tcp://127.0.0.1:1"})
	if err != nil {
		b.Fatal(err)
	}
	req := Purchase(county, 200)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Prepare(req); err != nil {
			b.Fatal(err)
		}
	}
}
