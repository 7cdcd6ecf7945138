package registry

import (
	"testing"
	"time"

	"scenepay/terminals"
)

var master = []byte("0123456789abcdef0123456789abcdef")

func TestPutGetAndKeys(t *testing.T) {
	r := New(master, 2)
	if err := r.Put(Terminal{TID: "BUS-1", Kind: KindBus, Merchant: "M", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	e, ok := r.Get("BUS-1")
	if !ok {
		t.Fatal("not found")
	}
	body := []byte(`{"v":1}`)
	sealed := terminals.Seal(terminals.DeriveKey(master, "BUS-1", 1), body)
	if got, err := e.Open(sealed); err != nil || string(got) != string(body) {
		t.Fatalf("open with the derived key: %v", err)
	}
	// Rotating the key version changes the key.
	if err := r.Put(Terminal{TID: "BUS-1", Kind: KindBus, Merchant: "M", KeyVersion: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Open(sealed); err == nil {
		t.Fatal("old key still accepted after rotation")
	}
	if _, err := e.Open(terminals.Seal(terminals.DeriveKey(master, "BUS-1", 2), body)); err != nil {
		t.Fatalf("new key refused: %v", err)
	}
	if err := r.Put(Terminal{TID: "BUS-2", Kind: KindBus, Merchant: "M", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(Terminal{TID: "BUS-3", Kind: KindBus, Merchant: "M", KeyVersion: 1}); err != ErrFull {
		t.Fatalf("third terminal: %v, want ErrFull", err)
	}
}

func TestValidateAndCodec(t *testing.T) {
	for _, bad := range []Terminal{
		{TID: "", Kind: KindBus, Merchant: "M", KeyVersion: 1},
		{TID: "a/b", Kind: KindBus, Merchant: "M", KeyVersion: 1},
		{TID: "T", Kind: "tram", Merchant: "M", KeyVersion: 1},
		{TID: "T", Kind: KindBus, Merchant: "", KeyVersion: 1},
		{TID: "T", Kind: KindBus, Merchant: "M", KeyVersion: 0},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
		if _, err := Decode(Encode(bad)); err == nil {
			t.Errorf("%+v decoded", bad)
		}
	}
	good := Terminal{TID: "K-1", Kind: KindKiosk, Merchant: "HOSP", KeyVersion: 3, Blocked: true}
	if got, err := Decode(Encode(good)); err != nil || got != good {
		t.Fatalf("round trip: %+v %v", got, err)
	}
}

func TestRotationOverlap(t *testing.T) {
	r := New(master, 4)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := r.Put(Terminal{TID: "S-1", Kind: KindStall, Merchant: "M", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"v":1}`)
	k1, k2 := terminals.DeriveKey(master, "S-1", 1), terminals.DeriveKey(master, "S-1", 2)
	commit := func(n Terminal) error { return r.Put(n) }
	n, err := r.Change("S-1", func(cur Terminal) (Terminal, error) { return Rotated(cur, t0, 10*time.Minute) }, commit)
	if err != nil || n.KeyVersion != 2 || n.PrevKeyVersion != 1 || n.OverlapUntilMS != t0.Add(10*time.Minute).UnixMilli() {
		t.Fatalf("rotated %+v %v", n, err)
	}
	e, _ := r.Get("S-1")
	for _, tc := range []struct {
		name     string
		key      []byte
		at       time.Time
		wantErr  bool
		wantPrev bool
	}{
		{"new key in overlap", k2, t0, false, false},
		{"old key in overlap", k1, t0.Add(9 * time.Minute), false, true},
		{"old key after overlap", k1, t0.Add(10 * time.Minute), true, false},
		{"new key after overlap", k2, t0.Add(time.Hour), false, false},
	} {
		got, used, err := e.OpenAt(tc.at, terminals.Seal(tc.key, body))
		if (err != nil) != tc.wantErr {
			t.Fatalf("%s: err %v", tc.name, err)
		}
		if err != nil {
			continue
		}
		if string(got) != string(body) || (used != e) != tc.wantPrev {
			t.Fatalf("%s: body %q, used prev %v", tc.name, got, used != e)
		}
		// The reply is sealed with the key the request used.
		if _, err := terminals.Open(tc.key, used.Seal(nil, body)); err != nil {
			t.Fatalf("%s: reply not under the request's key: %v", tc.name, err)
		}
		if used.Terminal() != e.Terminal() {
			t.Fatalf("%s: sibling record differs", tc.name)
		}
	}
	// A framing error is not retried under the old key.
	if _, _, err := e.OpenAt(t0, []byte("short")); err == nil {
		t.Fatal("garbage opened")
	}
	// Rotating without overlap drops the old key at once.
	if _, err := r.Change("S-1", func(cur Terminal) (Terminal, error) { return Rotated(cur, t0, 0) }, commit); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.OpenAt(t0, terminals.Seal(k2, body)); err == nil {
		t.Fatal("version 2 accepted after a rotation without overlap")
	}
	if _, err := r.Change("NOPE", func(cur Terminal) (Terminal, error) { return cur, nil }, commit); err != ErrNotFound {
		t.Fatalf("change of unknown terminal: %v", err)
	}
	if _, err := Rotated(Terminal{KeyVersion: 1}, t0, OverlapMax+time.Second); err == nil {
		t.Fatal("overlap beyond the bound accepted")
	}
}

func TestOldRecordsDecodeAndOverlapValidation(t *testing.T) {
	old := []byte(`{"tid":"B-1","kind":"bus","merchant":"M","key_version":3,"blocked":false}`)
	got, err := Decode(old)
	if err != nil || got.KeyVersion != 3 || got.PrevKeyVersion != 0 {
		t.Fatalf("old record: %+v %v", got, err)
	}
	rot := Terminal{TID: "B-1", Kind: KindBus, Merchant: "M", KeyVersion: 4, PrevKeyVersion: 3, OverlapUntilMS: 1}
	if back, err := Decode(Encode(rot)); err != nil || back != rot {
		t.Fatalf("rotation round trip: %+v %v", back, err)
	}
	for _, bad := range []Terminal{
		{TID: "B-1", Kind: KindBus, Merchant: "M", KeyVersion: 4, PrevKeyVersion: 3},
		{TID: "B-1", Kind: KindBus, Merchant: "M", KeyVersion: 4, PrevKeyVersion: 4, OverlapUntilMS: 1},
		{TID: "B-1", Kind: KindBus, Merchant: "M", KeyVersion: 4, OverlapUntilMS: 1},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

func TestStatusAndLastSeen(t *testing.T) {
	r := New(master, 1)
	if err := r.Put(Terminal{TID: "K-1", Kind: KindKiosk, Merchant: "H", KeyVersion: 1, PrevKeyVersion: 0}); err != nil {
		t.Fatal(err)
	}
	e, _ := r.Get("K-1")
	if st, _, seen := e.Status(); st != StatusUnknown || seen != 0 {
		t.Fatalf("fresh status %d seen %d", st, seen)
	}
	t0 := time.UnixMilli(1_700_000_000_000)
	e.Touch(t0)
	e.Touch(t0.Add(-time.Second)) // out of order: last seen never goes back
	e.SetStatus(false, t0)
	if st, at, seen := e.Status(); st != StatusOffline || at != t0.UnixMilli() || seen != t0.UnixMilli() {
		t.Fatalf("status %d at %d seen %d", st, at, seen)
	}
}

// BenchmarkOpenAt measures MAC verification on the request path: under the
// current key, and under the previous key during an overlap (two MACs).
func BenchmarkOpenAt(b *testing.B) {
	r := New(master, 1)
	t0 := time.Unix(1_700_000_000, 0)
	if err := r.Put(Terminal{TID: "S-1", Kind: KindStall, Merchant: "M", KeyVersion: 2, PrevKeyVersion: 1, OverlapUntilMS: t0.Add(time.Hour).UnixMilli()}); err != nil {
		b.Fatal(err)
	}
	e, _ := r.Get("S-1")
	body := []byte(`{"v":1,"type":"purchase","tid":"S-1","txn":1,"ts":1700000000000,"amt":100,"inst":{"k":"county","id":"C1"}}`)
	for _, bc := range []struct {
		name string
		ver  uint32
	}{{"current", 2}, {"previous", 1}} {
		payload := terminals.Seal(terminals.DeriveKey(master, "S-1", bc.ver), body)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, _, err := e.OpenAt(t0, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
