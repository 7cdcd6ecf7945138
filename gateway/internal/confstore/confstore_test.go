package confstore

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"scenepay/gateway/internal/registry"
	"scenepay/terminals"
)

var t0 = time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)

func TestPutVersionsAndHistory(t *testing.T) {
	s := New()
	if v := s.Version("transit"); v != 0 {
		t.Fatalf("fresh version = %d", v)
	}
	for i := 1; i <= HistoryMax+3; i++ {
		d, err := s.Put("transit", []byte(`{ "fare" : `+strings.Repeat("1", i)+` }`), t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if d.Version != uint64(i) {
			t.Fatalf("put %d got version %d", i, d.Version)
		}
	}
	cur, ok := s.Get("transit")
	if !ok || cur.Version != HistoryMax+3 || string(cur.Body) != `{"fare":`+strings.Repeat("1", HistoryMax+3)+`}` {
		t.Fatalf("current = %+v", cur)
	}
	h := s.History("transit")
	if len(h) != HistoryMax || h[0].Version != 4 || h[len(h)-1].Version != HistoryMax+3 {
		t.Fatalf("history: %d entries, %d..%d", len(h), h[0].Version, h[len(h)-1].Version)
	}
	if _, ok := s.Get("market"); ok {
		t.Fatal("market has a document nobody put")
	}
	// Apply refuses anything but the next version (a lost or repeated entry).
	if err := s.Apply(Doc{Name: "transit", Version: cur.Version, Body: []byte(`{}`)}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("repeated version: %v", err)
	}
	if err := s.Apply(Doc{Name: "transit", Version: cur.Version + 2, Body: []byte(`{}`)}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("skipped version: %v", err)
	}
}

func TestNormalizeRefusals(t *testing.T) {
	for _, c := range []struct {
		name, body string
		want       ErrCode
	}{
		{"fares", `{}`, ErrUnknownName},
		{"", `{}`, ErrUnknownName},
		{"transit", `{"a":`, ErrBadJSON},
		{"transit", ``, ErrBadJSON},
		{"transit", `[1,2]`, ErrBadJSON},
		{"transit", `"x"`, ErrBadJSON},
		{"transit", `{} {}`, ErrBadJSON},
		{"transit", `{"a":"` + strings.Repeat("x", DocBytesMax) + `"}`, ErrTooLarge},
		{"transit", strings.Repeat(" ", 4*DocBytesMax+1), ErrTooLarge},
	} {
		_, err := Normalize(c.name, []byte(c.body))
		var e *Error
		if !errors.As(err, &e) || e.Code != c.want {
			t.Errorf("Normalize(%q, %.20q) = %v, want %s", c.name, c.body, err, c.want)
		}
	}
	// The largest document accepted still fits one protocol frame.
	body := `{"a":"` + strings.Repeat("x", DocBytesMax-8) + `"}`
	b, err := Normalize("hospital", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	p := Seal(SigningKey([]byte("0123456789abcdef"), 1), Doc{Name: "hospital", Version: 1<<64 - 1, Body: b})
	if len(p) > terminals.MaxPayload {
		t.Fatalf("largest document makes a %d-byte payload, over %d", len(p), terminals.MaxPayload)
	}
}

func TestDocCodecAndSnapshot(t *testing.T) {
	s := New()
	for _, n := range []string{"transit", "limits", "transit", "market"} {
		if _, err := s.Put(n, []byte(`{"n":"`+n+`"}`), t0); err != nil {
			t.Fatal(err)
		}
	}
	d, _ := s.Get("transit")
	got, err := DecodeDoc(AppendDoc(nil, d))
	if err != nil || got.Name != d.Name || got.Version != d.Version || !got.At.Equal(d.At) || !bytes.Equal(got.Body, d.Body) {
		t.Fatalf("doc round trip: %+v %v, want %+v", got, err, d)
	}
	snap := s.AppendSnapshot(nil)
	r := New()
	rest, err := r.RestoreSnapshot(append(snap, 0xAA))
	if err != nil || len(rest) != 1 || rest[0] != 0xAA {
		t.Fatalf("restore: rest=%x err=%v", rest, err)
	}
	for _, n := range Names() {
		if r.Version(n) != s.Version(n) {
			t.Errorf("%s: restored version %d, want %d", n, r.Version(n), s.Version(n))
		}
	}
	if !bytes.Equal(r.AppendSnapshot(nil), snap) {
		t.Fatal("snapshot of the restored store differs")
	}
	// Every truncation is refused with ErrCorrupt, never a panic.
	for i := 0; i < len(snap); i++ {
		if _, err := New().RestoreSnapshot(snap[:i]); err == nil {
			t.Fatalf("truncated snapshot (%d of %d bytes) accepted", i, len(snap))
		}
	}
	enc := AppendDoc(nil, d)
	for i := 0; i < len(enc); i++ {
		if _, err := DecodeDoc(enc[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated doc (%d bytes): %v", i, err)
		}
	}
}

func TestEnvelopeSignAndVerify(t *testing.T) {
	master := []byte("0123456789abcdef0123456789abcdef")
	key := SigningKey(master, SigningKeyVersion)
	if bytes.Equal(key, terminals.DeriveKey(master, "cfg", 1)) || bytes.Equal(key, SigningKey(master, 2)) {
		t.Fatal("config key collides with a terminal key or another version")
	}
	d := Doc{Name: "transit", Version: 7, Body: []byte(`{"fare":200}`)}
	p := Seal(key, d)
	want := `{"v":1,"name":"transit","version":7,"doc":{"fare":200}}`
	if body, _, _ := terminals.Split(p); string(body) != want {
		t.Fatalf("envelope %s, want %s", body, want)
	}
	e, err := Open(key, p)
	if err != nil || e.Name != "transit" || e.Version != 7 || string(e.Doc) != `{"fare":200}` {
		t.Fatalf("open: %+v %v", e, err)
	}
	if !bytes.Equal(Seal(key, d), p) {
		t.Fatal("sealing is not deterministic; republishing would not be idempotent")
	}
	// A terminal key does not verify configuration, and a flipped byte fails.
	if _, err := Open(terminals.DeriveKey(master, "BUS-1", 1), p); err == nil {
		t.Fatal("terminal key verified a config message")
	}
	bad := append([]byte(nil), p...)
	bad[20] ^= 1
	if _, err := Open(key, bad); err == nil {
		t.Fatal("tampered config message verified")
	}
}

func TestReportsAndLagging(t *testing.T) {
	ts := []registry.Terminal{
		{TID: "BUS-1", Kind: "bus"}, {TID: "BUS-2", Kind: "bus"}, {TID: "BUS-3", Kind: "bus"}, {TID: "ST-1", Kind: "stall"},
	}
	r := NewReports(3)
	var v terminals.CfgVersions
	v.Add("transit", 2)
	v.Add("future-doc", 9) // unknown names are ignored
	if !r.Record("BUS-1", &v, t0) {
		t.Fatal("record refused")
	}
	var v1 terminals.CfgVersions
	v1.Add("transit", 1)
	r.Record("BUS-2", &v1, t0)
	list, total := r.Lagging("transit", 2, ts, 10)
	if total != 2 || len(list) != 2 || list[0].TID != "BUS-2" || list[0].Reported != 1 || list[1].TID != "BUS-3" || list[1].Reported != 0 || !list[1].ReportedAt.IsZero() {
		t.Fatalf("lagging = %d %+v", total, list)
	}
	if list, total = r.Lagging("transit", 2, ts, 1); total != 2 || len(list) != 1 {
		t.Fatalf("list bound: %d %d", total, len(list))
	}
	if _, total = r.Lagging("limits", 1, ts, 10); total != 4 {
		t.Fatalf("limits (all kinds) lagging = %d, want 4", total)
	}
	if _, total = r.Lagging("market", 0, ts, 10); total != 0 {
		t.Fatalf("a never-set document lags %d terminals", total)
	}
	// A later report merges: limits added, transit kept.
	var v2 terminals.CfgVersions
	v2.Add("limits", 1)
	r.Record("BUS-1", &v2, t0.Add(time.Minute))
	rep, _ := r.Get("BUS-1")
	if rep.Versions["transit"] != 2 || rep.Versions["limits"] != 1 || len(rep.Versions) != 2 {
		t.Fatalf("merged report = %+v", rep)
	}
	// Bounded: a fourth terminal is refused, known ones still update.
	r.Record("BUS-3", &v1, t0)
	if r.Record("ST-1", &v1, t0) {
		t.Fatal("report table grew past its bound")
	}
	if !r.Record("BUS-3", &v, t0) {
		t.Fatal("known terminal refused at the bound")
	}
}

func FuzzRestoreSnapshot(f *testing.F) {
	s := New()
	s.Put("transit", []byte(`{"a":1}`), t0)
	s.Put("limits", []byte(`{"b":[1,2]}`), t0)
	f.Add(s.AppendSnapshot(nil))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := New()
		if _, err := r.RestoreSnapshot(b); err != nil {
			return
		}
		// What restores re-encodes to a snapshot that restores the same.
		again := r.AppendSnapshot(nil)
		r2 := New()
		if _, err := r2.RestoreSnapshot(again); err != nil || !bytes.Equal(r2.AppendSnapshot(nil), again) {
			t.Fatalf("re-encoded snapshot does not round trip: %v", err)
		}
	})
}
