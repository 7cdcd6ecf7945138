package core

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"scenepay/gateway/internal/scene/transit"
	"scenepay/terminals"
)

// twoDistanceRoutes is the default fare table plus D2, a copy of D1 under
// another id, so that a tap-out can come on another distance route.
func twoDistanceRoutes(t testing.TB) *transit.Engine {
	t.Helper()
	cfg := DefaultTransit().Config()
	routes := slices.Clone(cfg.Routes)
	i := slices.IndexFunc(routes, func(r transit.Route) bool { return r.ID == "D1" })
	d2 := routes[i]
	d2.ID = "D2"
	cfg.Routes = append(routes, d2)
	e, err := transit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// paidBy sums the transit money each merchant is paid for recs as the
// settlement handoff maps it (Charge + PrevCapture + Capture of an
// approved tap or journey expiry record, to the merchant it names).
func paidBy(t testing.TB, recs [][]byte) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	for _, b := range recs {
		var r Record
		if err := DecodeRecord(b, &r); err != nil {
			t.Fatal(err)
		}
		if r.Code == terminals.CodeApproved && r.Op.tap() {
			if amt := r.Tap.Charge + r.Tap.PrevCapture + r.Tap.Capture; amt != 0 {
				m[r.Merchant] += amt
			}
		}
	}
	return m
}

// TestCloseBeforeTap: a tap-in while the card's journey is open and not
// due, and a tap-out on another distance route, are preceded by a journey
// expiry record for the boarding reader and merchant, and the tap's
// record then closes nothing; a tap that would be declined steps nothing
// and leaves the shard as it was.
func TestCloseBeforeTap(t *testing.T) {
	s := NewShard(1, &Config{Transit: twoDistanceRoutes(t)})
	var out Output
	var recs [][]byte
	step := func(at time.Time, in Input) Output {
		t.Helper()
		s.Step(at, &in, &out)
		if len(out.Record) > 0 {
			recs = append(recs, bytes.Clone(out.Record))
		}
		return out
	}
	for _, in := range []Input{open("county:C1", 5000), open("county:C2", 700), tapIn("county:C1", "D1", "S1", 1), tapIn("county:C2", "D1", "S1", 2)} {
		if o := step(t0, in); o.Code != terminals.CodeApproved {
			t.Fatalf("%s %s: %s", in.Op, in.Account, o.Code)
		}
	}
	closeFirst := func(at time.Time, in Input, boardTID, boardMerchant string, wantHeld int64) Record {
		t.Helper()
		seq := s.Seq()
		if !s.ExpireBeforeTap(at, &in, &out) {
			t.Fatalf("%s on %s: no journey closed first", in.Op, in.Route)
		}
		recs = append(recs, bytes.Clone(out.Record))
		var ex Record
		if err := DecodeRecord(out.Record, &ex); err != nil {
			t.Fatal(err)
		}
		if ex.Op != OpJourneyExpire || ex.Seq != seq+1 || out.Seq != ex.Seq || ex.Txn != ex.Seq || ex.Time != at.UnixNano() || ex.TID != boardTID || ex.Merchant != boardMerchant ||
			ex.Tap.Capture != wantHeld || ex.Amount != wantHeld || ex.Tap.Reason != uint8(transit.ReasonIncomplete) {
			t.Fatalf("close record %+v", ex)
		}
		o := step(at, in)
		var r Record
		if err := DecodeRecord(o.Record, &r); err != nil {
			t.Fatal(err)
		}
		if o.Code != terminals.CodeApproved || r.Seq != seq+2 || r.Tap.PrevCapture != 0 || r.Tap.Reason == uint8(transit.ReasonIncomplete) || r.Merchant != in.Merchant {
			t.Fatalf("tap after the close: %s %+v", o.Code, r)
		}
		return r
	}

	// C2 (700, 600 held) cannot pay a new hold of 4 CNY: declined, so its
	// journey is not closed and nothing in the shard changes.
	d := digest(t, s)
	in := tapIn("county:C2", "D1", "S2", 3)
	if s.ExpireBeforeTap(t0.Add(10*time.Minute), &in, &out) || digest(t, s) != d {
		t.Fatal("a declined tap-in closed the journey or changed the shard")
	}
	if o := step(t0.Add(10*time.Minute), in); o.Code != terminals.CodeInsufficientFunds {
		t.Fatalf("C2's second tap-in: %s", o.Code)
	}

	// a) C1 boards again, on company B's bus on the same route: B holds
	// what the daily cap leaves (4 CNY).
	in = tapIn("county:C1", "D1", "S2", 4)
	in.TID, in.Merchant = "BUSB", "companyB"
	if r := closeFirst(t0.Add(30*time.Minute), in, "BUS1", "busco", 600); r.Tap.Hold != 400 || r.Amount != 400 {
		t.Fatalf("B's tap-in: %+v", r.Tap)
	}
	// b) and taps out on another distance route, on company C's bus: the
	// journey B's bus started is closed for B, and the tap-out finds none.
	in = tapOut("county:C1", "D2", "S3", 5)
	in.TID, in.Merchant = "BUSC", "companyC"
	if r := closeFirst(t0.Add(40*time.Minute), in, "BUSB", "companyB", 400); r.Amount != 0 || r.Tap != (TapAmounts{Reason: uint8(transit.ReasonNoJourney)}) {
		t.Fatalf("C's tap-out: amount %d %+v", r.Amount, r.Tap)
	}
	if v, _ := s.Account("county:C1"); v.Balance != 4000 || v.Held != 0 {
		t.Fatalf("C1 balance %d held %d, want 4000 0", v.Balance, v.Held)
	}
	if got := paidBy(t, recs); !maps.Equal(got, map[string]int64{"busco": 600, "companyB": 400}) {
		t.Fatalf("paid %v", got)
	}
	replay(t, s, &Config{Transit: twoDistanceRoutes(t)}, recs)
}

// TestCloseBeforeTapMovesTheSameMoney runs random taps, top-ups, blocks
// and purchases on two shards: one as the gateway runs them (every online
// tap after ExpireBeforeTap), the other closing only journeys already due
// first (the gateway before cases a and b were closed with their own
// record), so that the taps' own records close the rest. Codes, balances,
// holds, counters and card states stay equal after every step; only the
// merchant paid for each journey closed first changes, from the tap's to
// the boarding reader's; and no tap record of the first shard closes a
// journey. Both journals replay to their shards.
func TestCloseBeforeTapMovesTheSameMoney(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			cfg := &Config{Transit: twoDistanceRoutes(t), ECNY: [5]ClassLimits{
				2: {Balance: 8000, Single: 1500, Daily: 3000, Annual: 20000},
				3: {Balance: 5000, Single: 1000, Daily: 2000, Annual: 9000},
				4: {Balance: 3000, Single: 500, Daily: 1000, Annual: 4000},
			}}
			g, l := NewShard(2, cfg), NewShard(2, cfg)
			rng := rand.New(rand.NewPCG(seed, 12))
			var gRecs, lRecs [][]byte
			var gOut, lOut Output
			keep := func(recs *[][]byte, out *Output) {
				if len(out.Record) > 0 {
					*recs = append(*recs, bytes.Clone(out.Record))
				}
			}
			now := t0
			both := func(in Input) {
				t.Helper()
				g.Step(now, &in, &gOut)
				l.Step(now, &in, &lOut)
				keep(&gRecs, &gOut)
				keep(&lRecs, &lOut)
				if gOut.Code != lOut.Code {
					t.Fatalf("%+v: %s vs %s", in, gOut.Code, lOut.Code)
				}
			}
			accts := []string{"county:1", "county:2", "county:3", "ecny:1", "ecny:2", "ecny:3"}
			for i, k := range accts {
				in := open(k, 300+rng.Int64N(2500))
				if k[0] == 'e' {
					in = openECNY(k, uint8(2+i%3), 300+rng.Int64N(2500))
				}
				both(in)
			}
			moved := map[string]int64{} // what each merchant gains on g over l
			closedIn, closedOut, keptOpen := 0, 0, 0
			txn := uint64(0)
			for i := 0; i < 4000; i++ {
				switch n := rng.IntN(100); {
				case n < 3:
					now = now.Add(time.Duration(1+rng.IntN(6)) * time.Hour)
				case n < 4:
					now = now.Add(24 * time.Hour)
				default:
					now = now.Add(time.Duration(rng.Int64N(int64(15 * time.Minute))))
				}
				acct := accts[rng.IntN(len(accts))]
				txn++
				switch n := rng.IntN(100); {
				case n < 8:
					both(topup(acct, 100+rng.Int64N(2000), fmt.Sprintf("t%d", txn)))
					continue
				case n < 10:
					both(block(acct, rng.IntN(3) == 0))
					continue
				case n < 16:
					both(buy(acct, 1+rng.Int64N(800), txn))
					continue
				}
				tid := []string{"A1", "A2", "B1"}[rng.IntN(3)]
				in := Input{Op: OpTapIn, Account: acct, TID: tid, Txn: txn, Merchant: "company" + tid[:1],
					Route: []string{"D1", "D1", "D2", "B1", "X9"}[rng.IntN(5)], Stop: []string{"S1", "S2", "S3", "S4"}[rng.IntN(4)]}
				if rng.IntN(2) == 0 {
					in.Op = OpTapOut
				}
				before, _ := g.Card(acct)
				due := false
				if before.Open {
					at, ok := cfg.Transit.ExpiresAt(&before)
					due = ok && !now.Before(at)
				}
				var closed *Record
				if g.ExpireBeforeTap(now, &in, &gOut) {
					keep(&gRecs, &gOut)
					closed = new(Record)
					if err := DecodeRecord(gOut.Record, closed); err != nil {
						t.Fatal(err)
					}
				}
				if due && l.ExpireBeforeTap(now, &in, &lOut) {
					keep(&lRecs, &lOut)
				}
				both(in)
				var gr, lr Record
				if len(gOut.Record) > 0 {
					if err := DecodeRecord(gOut.Record, &gr); err != nil {
						t.Fatal(err)
					}
					if err := DecodeRecord(lOut.Record, &lr); err != nil {
						t.Fatal(err)
					}
				}
				if gr.Tap.PrevCapture != 0 || gr.Tap.Reason == uint8(transit.ReasonIncomplete) {
					t.Fatalf("step %d: %s record closes a journey itself: %+v", i, in.Op, gr)
				}
				amtDiff := int64(0)
				switch {
				case closed != nil && !due:
					// Case a or b: the tap is approved and l's record
					// closes the journey at the same amount, for the tap's
					// merchant; g's close names the boarding reader.
					lClosed := lr.Tap.PrevCapture
					if in.Op == OpTapOut {
						lClosed, amtDiff = lr.Tap.Capture, lr.Tap.Capture
						closedOut++
					} else {
						closedIn++
					}
					if gOut.Code != terminals.CodeApproved || closed.Tap.Capture != lClosed || closed.Tap.Capture != before.Journey.Held ||
						closed.TID != before.Journey.Reader || closed.Merchant != before.Journey.Merchant {
						t.Fatalf("step %d: %s %s closed %+v; the journey %+v, l's tap record %+v", i, in.Op, gOut.Code, closed.Tap, before.Journey, lr.Tap)
					}
					moved[closed.Merchant] += lClosed
					moved[in.Merchant] -= lClosed
				case before.Open && !due:
					if gOut.Code != terminals.CodeApproved {
						keptOpen++
					}
					if after, _ := g.Card(acct); gOut.Code != terminals.CodeApproved && after != before {
						t.Fatalf("step %d: declined %s changed the card", i, in.Op)
					}
				}
				if gOut.Amount != lOut.Amount-amtDiff || gOut.Available != lOut.Available {
					t.Fatalf("step %d: %s amount %d available %d, l's %d %d", i, in.Op, gOut.Amount, gOut.Available, lOut.Amount, lOut.Available)
				}
				if gv, lv := views(g), views(l); !maps.Equal(gv, lv) {
					t.Fatalf("step %d: accounts differ:\n %v\n %v", i, gv, lv)
				}
				gc, _ := g.Card(acct)
				if lc, _ := l.Card(acct); gc != lc {
					t.Fatalf("step %d: %s card differs:\n %+v\n %+v", i, acct, gc, lc)
				}
			}
			t.Logf("closed first: %d by a tap-in, %d by a tap-out; %d declined taps kept a journey open", closedIn, closedOut, keptOpen)
			if closedIn == 0 || closedOut == 0 || keptOpen == 0 {
				t.Fatal("the generator lost coverage")
			}
			want := paidBy(t, lRecs)
			for m, v := range moved {
				want[m] += v
				if want[m] == 0 {
					delete(want, m)
				}
			}
			if got := paidBy(t, gRecs); !maps.Equal(got, want) {
				t.Fatalf("paid %v, want %v", got, want)
			}
			replay(t, g, cfg, gRecs)
			replay(t, l, cfg, lRecs)
		})
	}
}
