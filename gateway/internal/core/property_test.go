package core

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"scenepay/gateway/internal/scene/market"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/terminals"
)

type txnRef struct {
	tid  string
	txn  uint64
	acct string
	amt  int64
}

// gen produces random but mostly meaningful inputs: valid purchases,
// reversals of real purchases, captures of real holds, and a share of
// wrong amounts, unknown accounts, blocked accounts and reused ids.
type gen struct {
	rng       *rand.Rand
	accounts  []string
	tids      []string
	next      map[string]uint64
	purchases []txnRef
	holds     []txnRef
	refs      int
	// market: the step's time (codes are issued at it), codes issued, and
	// approved-or-not QR payments a refund may name.
	now   time.Time
	codes []string
	qrs   []txnRef
	paid  string // the last code that paid (set by the test loop)
}

func (g *gen) pick(xs []string) string { return xs[g.rng.IntN(len(xs))] }

func (g *gen) amount() int64 {
	switch g.rng.IntN(40) {
	case 0:
		return 0
	case 1:
		return -g.rng.Int64N(100)
	case 2:
		return math.MaxInt64 - g.rng.Int64N(3)
	}
	return 1 + g.rng.Int64N(3000)
}

func (g *gen) txn(tid string) uint64 { g.next[tid]++; return g.next[tid] }

func (g *gen) input() Input {
	tid := g.pick(g.tids)
	acct := g.pick(g.accounts)
	if g.rng.IntN(7) == 0 {
		return g.marketInput(tid, acct)
	}
	if g.rng.IntN(6) == 0 {
		// Bus taps on the default demo routes, with a share of unknown
		// routes and stops; boarding and alighting need not pair up.
		op := OpTapIn
		if g.rng.IntN(2) == 0 {
			op = OpTapOut
		}
		return Input{Op: op, Account: acct, Route: g.pick([]string{"B1", "D1", "D1", "D1", "X9"}),
			Stop: g.pick([]string{"S1", "S2", "S3", "S4", "S9"}), TID: tid, Txn: g.txn(tid), Merchant: "m-" + tid}
	}
	switch op := g.rng.IntN(20); {
	case op < 2:
		class := uint8(0)
		if acct[0] == 'e' {
			class = uint8(1 + g.rng.IntN(4))
		}
		var floor int64
		if acct[0] == 'b' {
			floor = -g.rng.Int64N(2000)
		}
		return Input{Op: OpOpenAccount, Account: acct, Amount: g.rng.Int64N(5000), Class: class, Floor: floor, Ref: "o"}
	case op < 4:
		g.refs++
		ref := fmt.Sprint("ref", g.refs)
		if g.rng.IntN(5) == 0 && g.refs > 3 {
			ref = fmt.Sprint("ref", g.refs-1-g.rng.IntN(3)) // a retry, maybe a conflicting one
		}
		return Input{Op: OpTopUp, Account: acct, Amount: g.amount(), Ref: ref}
	case op < 5:
		if g.rng.IntN(3) == 0 {
			// Profile 4 is out of range: a refusal, like one on a bank card.
			return Input{Op: OpSetProfile, Account: acct, Profile: transit.Profile(g.rng.IntN(5))}
		}
		return Input{Op: OpBlock, Account: acct, Blocked: g.rng.IntN(3) == 0}
	case op < 10:
		in := Input{Op: OpPurchase, Account: acct, Amount: g.amount(), TID: tid, Txn: g.txn(tid), Merchant: "m-" + tid, Hash: g.rng.Uint64()}
		g.purchases = append(g.purchases, txnRef{tid, in.Txn, acct, in.Amount})
		return in
	case op < 12 && len(g.purchases) > 0:
		p := g.purchases[len(g.purchases)-1-g.rng.IntN(min(len(g.purchases), 50))]
		amt := p.amt
		if g.rng.IntN(8) == 0 {
			amt++
		}
		return Input{Op: OpReversal, Account: p.acct, Amount: amt, TID: p.tid, Txn: g.txn(p.tid), Orig: p.txn, Merchant: "m-" + p.tid}
	case op < 15:
		in := Input{Op: OpHold, Account: acct, Amount: g.amount(), TID: tid, Txn: g.txn(tid), Merchant: "m-" + tid}
		g.holds = append(g.holds, txnRef{tid, in.Txn, acct, in.Amount})
		return in
	case op < 18 && len(g.holds) > 0:
		h := g.holds[len(g.holds)-1-g.rng.IntN(min(len(g.holds), 20))]
		amt := 1 + g.rng.Int64N(max(1, h.amt/2+1))
		return Input{Op: OpCapture, Account: h.acct, Amount: amt, TID: h.tid, Txn: g.txn(h.tid), Orig: h.txn}
	case op < 19 && len(g.holds) > 0:
		h := g.holds[len(g.holds)-1-g.rng.IntN(min(len(g.holds), 20))]
		return Input{Op: OpRelease, Account: h.acct, TID: h.tid, Txn: g.txn(h.tid), Orig: h.txn}
	}
	if g.rng.IntN(4) == 0 {
		return Input{Op: OpPurchase, Account: acct, Amount: 5, TID: tid, Txn: g.next[tid]} // reused id
	}
	return Input{Op: OpBalance, Account: acct}
}

// marketInput makes QR payments (fresh, reused, old or static codes, some
// bound to another account) and refunds of earlier QR payments, partial,
// full or too large.
func (g *gen) marketInput(tid, acct string) Input {
	if g.rng.IntN(3) == 0 && len(g.qrs) > 0 {
		p := g.qrs[len(g.qrs)-1-g.rng.IntN(min(len(g.qrs), 30))]
		amt := 1 + g.rng.Int64N(max(1, p.amt))
		if g.rng.IntN(6) == 0 {
			amt = p.amt + 1
		}
		return Input{Op: OpRefund, Account: p.acct, Amount: amt, TID: p.tid, Txn: g.txn(p.tid), Orig: p.txn, Merchant: "m-" + p.tid}
	}
	in := Input{Op: OpQRPay, Account: acct, Amount: g.amount(), TID: tid, Txn: g.txn(tid), Merchant: "m-" + tid, Hash: g.rng.Uint64()}
	switch k := g.rng.IntN(10); {
	case k == 0:
		in.QRStatic = true
	case k <= 5 && len(g.codes) > 0:
		// The last code again: reused if it paid, else maybe expired; or
		// presented for another account (invalid while it is fresh).
		in.Code = g.codes[len(g.codes)-1]
		if k < 2 && g.paid != "" {
			in.Code = g.paid
		}
		if k > 2 {
			in.Account, _ = market.CodeAccount(in.Code)
		}
	default:
		at := g.now
		if k == 6 {
			at = at.Add(-time.Duration(g.rng.Int64N(int64(30 * time.Minute))))
		}
		c, err := market.Issue(issuerKey, 1, acct, market.Class(1+g.rng.IntN(3)), at, g.rng.Uint64())
		if err != nil {
			panic(err)
		}
		in.Code = c
		g.codes = append(g.codes, c)
	}
	if in.Amount > 0 && in.Amount < 1<<40 {
		g.qrs = append(g.qrs, txnRef{tid, in.Txn, acct, in.Amount})
	}
	return in
}

// TestRandomReplay runs thousands of random Steps, then rebuilds the shard
// from the journal alone and from snapshots taken at random points plus
// the journal tail, and requires the identical state each time. It also
// checks that money is conserved: the sum of balances equals the sum of
// approved credits minus approved debits read back from the records.
func TestRandomReplay(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			mc := market.DefaultConfig()
			mc.LimitBFen, mc.LimitCFen, mc.LimitDFen = 6000, 3000, 1500
			mc.UsedCodesMax, mc.PaymentsMax, mc.RefundsPerPaymentMax = 40, 30, 3
			mc.CodeLifetimeSeconds = 600
			mr, err := market.NewRules(mc)
			if err != nil {
				t.Fatal(err)
			}
			cfg := &Config{
				Market: mr, PayCodeKeys: map[uint8][]byte{1: issuerKey},
				ReversibleMax: 40, RefsMax: 8, HoldsMax: 6,
				ECNY: [5]ClassLimits{
					1: {Balance: 20000, Single: 2500, Daily: 6000},
					2: {Balance: 8000, Single: 1500, Daily: 3000, Annual: 20000},
					3: {Balance: 5000, Single: 1000, Daily: 2000, Annual: 9000},
					4: {Balance: 3000, Single: 500, Daily: 1000, Annual: 4000},
				},
			}
			g := &gen{
				rng:      rand.New(rand.NewPCG(seed, 99)),
				accounts: []string{"county:1", "county:2", "county:3", "county:4", "bank:tok_1", "bank:tok_2", "bank:tok_3", "ecny:1", "ecny:2", "ecny:3", "ecny:4", "ecny:5", "ecny:6"},
				tids:     []string{"bus-1", "stall-7", "kiosk-2"},
				next:     map[string]uint64{},
			}
			live := NewShard(7, cfg)
			now := time.Date(2026, 12, 25, 0, 0, 0, 0, time.UTC)
			var recs [][]byte
			type snap struct {
				at   int // records before the snapshot
				data []byte
			}
			var snaps []snap
			var out Output
			codes := map[terminals.Code]int{}
			profiles := 0 // journaled profile changes
			swept := 0    // journeys closed by sweep passes
			closed := 0   // journeys closed before a tap (ExpireBeforeTap)
			for i := 0; i < 6000; i++ {
				switch g.rng.IntN(100) {
				case 0:
					now = now.Add(24 * time.Hour)
				case 1, 2, 3:
					now = now.Add(time.Duration(g.rng.Int64N(int64(6 * time.Hour))))
				default:
					now = now.Add(time.Duration(g.rng.Int64N(int64(time.Minute))))
				}
				g.now = now
				in := g.input()
				// Every other tap closes an expired journey with its own
				// record first, as the gateway does; the others leave it
				// to the tap's record (the lazy path).
				if i%2 == 0 && live.ExpireBeforeTap(now, &in, &out) {
					recs = append(recs, bytes.Clone(out.Record))
					closed++
					if err := live.CheckInvariants(); err != nil {
						t.Fatalf("step %d expiry before %+v: %v", i, in, err)
					}
				}
				live.Step(now, &in, &out)
				codes[out.Code]++
				if i%2 == 0 && (in.Op == OpTapIn || in.Op == OpTapOut) && out.Code == terminals.CodeApproved {
					// The journey such a tap ends was closed first: its
					// record moves only the tap's own money.
					var rec Record
					if err := DecodeRecord(out.Record, &rec); err != nil {
						t.Fatal(err)
					}
					if rec.Tap.PrevCapture != 0 || rec.Tap.Reason == uint8(transit.ReasonIncomplete) {
						t.Fatalf("step %d: %s record closes a journey itself: %+v", i, in.Op, rec.Tap)
					}
				}
				if in.Op == OpQRPay && in.Code != "" && out.Code == terminals.CodeApproved {
					g.paid = in.Code
				}
				if len(out.Record) > 0 {
					recs = append(recs, bytes.Clone(out.Record))
					if in.Op == OpSetProfile {
						profiles++
					}
				}
				if err := live.CheckInvariants(); err != nil {
					t.Fatalf("step %d %+v: %v", i, in, err)
				}
				if g.rng.IntN(50) == 0 { // a sweep pass, bounded as the gateway runs it
					for _, k := range live.DueJourneys(now, 8, 4, nil) {
						ex := Input{Op: OpJourneyExpire, Account: k}
						live.Step(now, &ex, &out)
						if len(out.Record) > 0 {
							recs = append(recs, bytes.Clone(out.Record))
							swept++
						}
						if err := live.CheckInvariants(); err != nil {
							t.Fatalf("step %d sweep of %s: %v", i, k, err)
						}
					}
				}
				if g.rng.IntN(400) == 0 {
					var b bytes.Buffer
					if err := live.Snapshot(&b); err != nil {
						t.Fatal(err)
					}
					snaps = append(snaps, snap{len(recs), b.Bytes()})
				}
			}
			t.Logf("%d records, %d snapshots, codes %v", len(recs), len(snaps), codes)
			for _, c := range []terminals.Code{terminals.CodeApproved, terminals.CodeInsufficientFunds, terminals.CodeLimitDaily, terminals.CodeOriginalNotFound, terminals.CodeInstrumentBlocked, terminals.CodeBusy,
				terminals.CodePayCodeReused, terminals.CodePayCodeExpired, terminals.CodePayCodeInvalid, terminals.CodeRefundExceeds} {
				if codes[c] == 0 {
					t.Errorf("the generator never produced %s %s: the test lost coverage", c, c.Name())
				}
			}

			if profiles == 0 {
				t.Error("the generator never journaled a profile change: the test lost coverage")
			}
			replay(t, live, cfg, recs)
			for _, sn := range snaps {
				r := NewShard(7, cfg)
				if err := r.Restore(bytes.NewReader(sn.data)); err != nil {
					t.Fatalf("restore of snapshot at record %d: %v", sn.at, err)
				}
				for j, b := range recs[sn.at:] {
					var rec Record
					if err := DecodeRecord(b, &rec); err != nil {
						t.Fatal(err)
					}
					if err := r.Apply(&rec); err != nil {
						t.Fatalf("snapshot at %d, record %d: %v", sn.at, sn.at+j, err)
					}
				}
				assertSame(t, fmt.Sprintf("snapshot at record %d + tail", sn.at), live, r)
			}

			// Conservation of money, from the journal alone.
			var sum, want int64
			taps, qr, refunds := 0, 0, 0
			live.Accounts(func(v AccountView) bool { sum += v.Balance; return true })
			for _, b := range recs {
				var r Record
				if err := DecodeRecord(b, &r); err != nil {
					t.Fatal(err)
				}
				if r.Code != terminals.CodeApproved {
					continue
				}
				switch r.Op {
				case OpOpenAccount, OpTopUp, OpReversal:
					want += r.Amount
				case OpPurchase, OpCapture:
					want -= r.Amount
				case OpTapIn, OpTapOut, OpJourneyExpire:
					want -= r.Tap.PrevCapture + r.Tap.Capture + r.Tap.Charge
					taps++
				case OpQRPay:
					want -= r.Amount
					qr++
				case OpRefund:
					want += r.Amount
					refunds++
				}
				if r.Op.market() && r.Market.Stall+r.Market.Operator != r.Amount {
					t.Fatalf("record %d: legs %d + %d != %d", r.Seq, r.Market.Stall, r.Market.Operator, r.Amount)
				}
			}
			if sum != want {
				t.Fatalf("sum of balances %d, journal says %d", sum, want)
			}
			if qr == 0 || refunds == 0 {
				t.Errorf("%d QR payments and %d refunds journaled: the test lost coverage", qr, refunds)
			}
			if taps == 0 {
				t.Error("no tap was journaled: the test lost coverage")
			}
			if swept == 0 {
				t.Error("no journey was swept: the test lost coverage")
			}
			if closed == 0 {
				t.Error("no journey was closed before a tap: the test lost coverage")
			}
		})
	}
}
