package fleet

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"scenepay/emulator/internal/device"
	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
	"scenepay/settlement/store/storetest"
	"scenepay/terminals"
)

type fixedBalances map[string]int64

func (f fixedBalances) Balance(_ context.Context, acct string) (int64, error) { return f[acct], nil }

func approvedOutcome(tid string, txn uint64, typ string, inst terminals.Instrument, amt int64, route string, replyAmt *int64) device.Outcome {
	return device.Outcome{TID: tid, Type: typ, Txn: txn, Inst: inst, Amt: amt, Route: route,
		Code: terminals.CodeApproved, Reply: &terminals.Reply{Code: terminals.CodeApproved, Txn: txn, Amt: replyAmt}}
}

func fen(v int64) *int64 { return &v }

// TestBalanceAuditCatchesPlantedLossAndDuplicate: the terminals were told of
// a purchase and a distance journey; one gateway lost the purchase, another
// applied it twice. Both fail, naming the account; the truthful one passes.
func TestBalanceAuditCatchesPlantedLossAndDuplicate(t *testing.T) {
	card := terminals.Instrument{Kind: terminals.InstCounty, ID: "8800000001"}
	l := NewLedger()
	for _, r := range DefaultRoutes {
		l.AddRoute(r)
	}
	l.SetMerchant("STALL-0001", "M-STALL-0001")
	l.SetMerchant("BUS-0001", "M-BUS")
	l.Open(card.Key(), 10_000)
	buy := approvedOutcome("STALL-0001", 100, terminals.TypePurchase, card, 700, "", nil)
	l.Observe(buy)
	l.Observe(buy)                                                                             // a duplicate told the same approval: one effect
	l.Observe(approvedOutcome("BUS-0001", 200, terminals.TypeTapIn, card, 0, "D1", fen(600)))  // hold only
	l.Observe(approvedOutcome("BUS-0001", 201, terminals.TypeTapOut, card, 0, "D1", fen(300))) // captured
	l.Observe(approvedOutcome("BUS-0001", 202, terminals.TypeTapIn, card, 0, "B1", fen(200)))  // flat charge
	want := int64(10_000 - 700 - 300 - 200)
	for _, c := range []struct {
		name string
		bal  int64
		ok   bool
	}{{"truthful", want, true}, {"planted loss", want + 700, false}, {"planted duplicate", want - 700, false}} {
		res := l.Audit(context.Background(), fixedBalances{card.Key(): c.bal})
		if res.OK() != c.ok {
			t.Errorf("%s: audit OK=%v, want %v: %+v", c.name, res.OK(), c.ok, res)
		}
		if !c.ok && (len(res.Mismatches) != 1 || res.Mismatches[0].Account != card.Key() || res.Mismatches[0].Expected != want) {
			t.Errorf("%s: mismatches %+v", c.name, res.Mismatches)
		}
	}
	ms := l.Merchants()
	if len(ms) != 2 || ms[0].Merchant != "M-BUS" || ms[0].Net != 500 || ms[1].Net != 700 {
		t.Fatalf("merchant positions %+v", ms)
	}
}

// TestSettlementAuditNamesLostAndTwiceAppliedIDs plants, in a real SQLite
// settlement store, a purchase stored twice (two journal LSNs for one
// terminal txn) and leaves out an approval a terminal was told of; the
// comparison must fail for that merchant and name both ids.
func TestSettlementAuditNamesLostAndTwiceAppliedIDs(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	row := func(lsn, txn uint64, merchant, tid string, amt int64) handoff.Txn {
		r := storetest.Row("gw1", lsn, merchant, amt)
		r.Terminal, r.Txn, r.Scene = tid, txn, handoff.SceneStall
		return r
	}
	b := storetest.MakeBatch("gw1", 1, 3,
		row(1, 100, "M-A", "STALL-0001", 700),
		row(2, 100, "M-A", "STALL-0001", 700), // applied twice
		row(3, 500, "M-B", "STALL-0002", 250))
	if _, err := st.Ingest(ctx, b); err != nil {
		t.Fatal(err)
	}
	told := []MerchantPosition{
		{Merchant: "M-A", Net: 700 + 300, Txns: map[string]int64{"STALL-0001/100": 700, "STALL-0001/101": 300}},
		{Merchant: "M-B", Net: 250, Txns: map[string]int64{"STALL-0002/500": 250}},
	}
	got, err := CompareSettlement(ctx, st, told, storetest.Day.Add(-1))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].OK() || !got[1].OK() {
		t.Fatalf("comparison %+v", got)
	}
	a := got[0]
	if a.Store != 1400 || a.Told != 1000 {
		t.Errorf("M-A store %d told %d", a.Store, a.Told)
	}
	if len(a.Lost) != 1 || !strings.HasPrefix(a.Lost[0], "STALL-0001/101 ") {
		t.Errorf("lost %v, want STALL-0001/101", a.Lost)
	}
	if len(a.Twice) != 1 || !strings.HasPrefix(a.Twice[0], "STALL-0001/100 ") {
		t.Errorf("twice %v, want STALL-0001/100", a.Twice)
	}
	res := SettleResult{Ran: true, Merchants: got}
	if res.OK() {
		t.Error("settlement result OK with a differing merchant")
	}
}

func TestScenarioLevelAndFaultParsing(t *testing.T) {
	s, err := LookupScenario("morning-rush")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at   int
		want float64
	}{{5 * 60, 0}, {6 * 60, 0.2}, {7*60 + 45, 1}, {9*60 + 30, 0.3}, {10 * 60, 0}} {
		if got := s.Level(hm(0, c.at)); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("level at %d min = %v, want %v", c.at, got, c.want)
		}
	}
	if _, err := LookupScenario("nope"); err == nil {
		t.Error("unknown scenario accepted")
	}
	f, err := ParseFaults("dup, reboot,gateway-kill", 0.2)
	if err != nil || !f.Duplicate || !f.Reboot || f.GatewayKills != 1 || f.Tamper {
		t.Errorf("ParseFaults = %+v, %v", f, err)
	}
	if _, err := ParseFaults("meteor", 0.1); err == nil {
		t.Error("unknown fault accepted")
	}
	if _, err := ParseFaults("dup", 2); err == nil {
		t.Error("fault rate 2 accepted")
	}
}
