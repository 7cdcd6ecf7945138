package core

import (
	"bytes"
	"testing"
	"time"

	. "scenepay/terminals"
)

// TestTopUpRepeatReportsDebtPaid: the account view carries the card's
// debt; a repeated top-up ref reports the debt the first call paid, on
// the live shard, after replay and after a snapshot restore, and journals
// nothing.
func TestTopUpRepeatReportsDebtPaid(t *testing.T) {
	const c = "county:C1"
	now := t0.Add(2 * time.Hour)
	cfg := &Config{}
	s := NewShard(1, cfg)
	var recs [][]byte
	var out Output
	step := func(in Input) {
		t.Helper()
		s.Step(now, &in, &out)
		if out.Code != CodeApproved || len(out.Record) == 0 {
			t.Fatalf("%v: %s, record %t", in.Op, out.Code, len(out.Record) > 0)
		}
		recs = append(recs, bytes.Clone(out.Record))
	}
	step(open(c, 100))
	// 100 fen cover neither flat fare of 200: 400 fen of debt.
	step(upload(c, 1, offTap("B1", 1, t0), offTap("B1", 2, t0.Add(30*time.Minute))))
	if v, _ := s.Account(c); v.Debt != 400 || v.Balance != 100 {
		t.Fatalf("view in debt: debt %d balance %d, want 400 100", v.Debt, v.Balance)
	}
	step(topup(c, 250, "R1"))
	step(topup(c, 500, "R2"))
	step(topup(c, 100, "R3"))
	if v, _ := s.Account(c); v.Debt != 0 || v.Balance != 100+350+100 {
		t.Fatalf("view after: debt %d balance %d, want 0 550", v.Debt, v.Balance)
	}
	check := func(what string, sh *Shard) {
		t.Helper()
		for _, r := range []struct {
			ref  string
			amt  int64
			paid int64
		}{{"R1", 250, 250}, {"R2", 500, 150}, {"R3", 100, 0}} {
			in := topup(c, r.amt, r.ref)
			sh.Step(now, &in, &out)
			if out.Code != CodeApproved || len(out.Record) != 0 || out.DebtPaid != r.paid || out.Flags != 0 {
				t.Errorf("%s: repeat of %s: %s, record %t, paid %d, flags %d; want approved, none, %d, 0",
					what, r.ref, out.Code, len(out.Record) > 0, out.DebtPaid, out.Flags, r.paid)
			}
		}
		// The same ref with another amount is a conflict and pays nothing.
		in := topup(c, 251, "R1")
		sh.Step(now, &in, &out)
		if out.Code != CodeIDConflict || out.DebtPaid != 0 {
			t.Errorf("%s: conflicting ref: %s paid %d", what, out.Code, out.DebtPaid)
		}
		if v, _ := sh.Account(c); v.Debt != 0 || v.Balance != 550 {
			t.Errorf("%s: after repeats: debt %d balance %d, want 0 550", what, v.Debt, v.Balance)
		}
	}
	check("live", s)
	check("replay", replay(t, s, cfg, recs))
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	back := NewShard(1, cfg)
	if err := back.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	assertSame(t, "restore", s, back)
	check("restore", back)

	// A snapshot whose ref claims to have paid more debt than its amount
	// is refused. The last ref (R3, 100 fen) is the last i64 before the CRC.
	b := bytes.Clone(snap.Bytes())
	off := len(b) - 4 - 8
	if b[off] != 0 {
		t.Fatalf("last ref's debt byte %d, want 0", b[off])
	}
	b[off] = 101
	if err := NewShard(1, cfg).Restore(bytes.NewReader(resealSnapshot(b))); err == nil {
		t.Fatal("a ref debt above its amount was restored")
	}
}
