package terminals

import "testing"

// benchPurchase is a typical bank-card purchase body of about 200 bytes
// (the longest ordinary v1 request).
var benchPurchase = []byte(`{"v":1,"type":"purchase","tid":"MARKET-STALL-0017","txn":1844674407370,"ts":1767225600000,"amt":123456,"inst":{"k":"bank","id":"tok_9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c","last4":"4242"}}`)

func BenchmarkSeal(b *testing.B) {
	s := NewSigner(testKey)
	buf := make([]byte, 0, MaxPayload)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPurchase)))
	for b.Loop() {
		buf = s.Seal(buf[:0], benchPurchase)
	}
}

func BenchmarkOpen(b *testing.B) {
	s := NewSigner(testKey)
	payload := s.Seal(nil, benchPurchase)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := s.Open(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRequestInto(b *testing.B) {
	var r Request
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPurchase)))
	for b.Loop() {
		if err := DecodeRequestInto(benchPurchase, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// The gateway's whole per-message wire work: open the frame, decode, hash.
func BenchmarkOpenDecodeHash(b *testing.B) {
	s := NewSigner(testKey)
	payload := s.Seal(nil, benchPurchase)
	var r Request
	b.ReportAllocs()
	for b.Loop() {
		body, err := s.Open(payload)
		if err != nil {
			b.Fatal(err)
		}
		if err := DecodeRequestInto(body, &r); err != nil {
			b.Fatal(err)
		}
		_ = r.ContentHash()
	}
}

func BenchmarkReplyAppendJSON(b *testing.B) {
	bal := int64(98_00)
	p := Reply{V: 1, Type: TypePurchase, TID: "STALL-0017", Txn: 18446744073, Code: CodeApproved, Auth: "J-0000000000000417", Bal: &bal, GTS: 1767225600120}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = p.AppendJSON(buf[:0])
	}
}

// A reused Request decodes the same terminal's messages without allocating
// for the strings it already holds; this pins that.
func TestDecodeRequestIntoAllocs(t *testing.T) {
	var r Request
	if err := DecodeRequestInto(benchPurchase, &r); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(100, func() {
		if err := DecodeRequestInto(benchPurchase, &r); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("DecodeRequestInto allocates %.0f times per reused decode, want 0", n)
	}
}
