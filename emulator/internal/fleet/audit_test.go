package fleet

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"scenepay/emulator/internal/device"
	"scenepay/emulator/internal/wallet"
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

func sceneOutcome(tid string, txn uint64, req terminals.Request, replyAmt *int64, out string) device.Outcome {
	req.Txn, req.TID, req.V = txn, tid, terminals.Version
	return device.Outcome{TID: tid, Type: req.Type, Txn: txn, Orig: req.Orig, Inst: req.Inst, Amt: req.Amt, Req: req,
		Code: terminals.CodeApproved, Reply: &terminals.Reply{Code: terminals.CodeApproved, Txn: txn, Amt: replyAmt, Out: out}}
}

// TestBalanceAuditCatchesPlantedRefundAndCaptureLossAndDuplicate: the
// terminals were told of a QR payment (drawn on the account its code
// names), a partial refund of it, a deposit (a hold: no balance change), a
// capture and a discharge with last charges, an insured bill (only the
// self-pay), an offline upload and an e-CNY offline payment. A gateway that
// lost the refund or the capture, or applied either twice, fails the audit
// on that account; the truthful one passes; merchants net the refund.
func TestBalanceAuditCatchesPlantedRefundAndCaptureLossAndDuplicate(t *testing.T) {
	card := terminals.Instrument{Kind: terminals.InstCounty, ID: "8800000002"}
	master := []byte("0123456789abcdef0123456789abcdef")
	code, err := wallet.Issue(wallet.IssuerKey(master, 1), 1, card.Key(), wallet.ClassB, time.Now(), 1)
	if err != nil {
		t.Fatal(err)
	}
	l := NewLedger()
	for _, r := range DefaultRoutes {
		l.AddRoute(r)
	}
	l.SetMerchant("STALL-0001", "M-STALL-0001")
	l.SetMerchant("KIOSK-0001", "M-HOSP")
	l.SetMerchant("BUS-0001", "M-BUS")
	l.Open(card.Key(), 100_000)
	pay := sceneOutcome("STALL-0001", 10, device.QRPay(code, 1_550), fen(1_550), "")
	refund := sceneOutcome("STALL-0001", 11, device.Refund(card, 10, 500), fen(500), "")
	capture := sceneOutcome("KIOSK-0001", 21, device.DepositCapture(card, 20, 2_500), fen(47_500), "")
	up, err := device.OfflineUpload(card, []terminals.UploadTap{{Seq: 1, Route: "B1", TS: 1}, {Seq: 2, Out: true, Route: "B1", TS: 2}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []device.Outcome{
		pay, pay, // told twice: one effect
		refund, refund,
		sceneOutcome("KIOSK-0001", 20, device.DepositOpen(card, 50_000), fen(50_000), ""),
		capture, capture,
		sceneOutcome("KIOSK-0001", 22, device.DepositRelease(card, 20, 700), fen(0), ""),
		sceneOutcome("KIOSK-0001", 23, device.InsuredPurchase(card, ItemLab, terminals.Insurance{Pool: 6_000, Personal: 1_000, Self: 3_000}), fen(3_000), ""),
		sceneOutcome("BUS-0001", 30, up, fen(200), "cn"),
		sceneOutcome("STALL-0001", 12, device.ECNYOffline(card, 1_000), fen(1_000), ""),
	} {
		l.Observe(o)
	}
	want := int64(100_000 - 1_550 + 500 - 2_500 - 700 - 3_000 - 200 - 1_000)
	for _, c := range []struct {
		name string
		bal  int64
		ok   bool
	}{{"truthful", want, true},
		{"planted refund loss", want - 500, false}, {"planted refund duplicate", want + 500, false},
		{"planted capture loss", want + 2_500, false}, {"planted capture duplicate", want - 2_500, false}} {
		res := l.Audit(context.Background(), fixedBalances{card.Key(): c.bal})
		if res.OK() != c.ok {
			t.Errorf("%s: audit OK=%v, want %v: %+v", c.name, res.OK(), c.ok, res)
		}
		if !c.ok && (len(res.Mismatches) != 1 || res.Mismatches[0].Account != card.Key() || res.Mismatches[0].Expected != want) {
			t.Errorf("%s: mismatches %+v", c.name, res.Mismatches)
		}
	}
	ms := l.Merchants()
	nets := map[string]int64{}
	for _, m := range ms {
		nets[m.Merchant] = m.Net
	}
	if nets["M-STALL-0001"] != 1_550-500+1_000 || nets["M-HOSP"] != 2_500+700+3_000 || nets["M-BUS"] != 200 {
		t.Fatalf("merchant nets %v", nets)
	}
	if u := l.Uploads(); u.Messages != 1 || u.Taps['c'] != 1 || u.Taps['n'] != 1 {
		t.Fatalf("upload counts %+v", u)
	}
}

// TestUnansweredSceneMessagesWidenTheRangeUntilAnswered: a capture and a
// refund that got no reply may or may not have been applied: the audit
// accepts either balance (and nothing outside) until a repeat under the
// same id is answered, which settles them exactly.
func TestUnansweredSceneMessagesWidenTheRangeUntilAnswered(t *testing.T) {
	card := terminals.Instrument{Kind: terminals.InstBank, ID: "tok_abcdef", Last4: "4242"}
	l := NewLedger()
	l.SetMerchant("KIOSK-0001", "M-HOSP")
	l.SetMerchant("STALL-0001", "M-STALL-0001")
	l.Open(card.Key(), 10_000)
	capture := sceneOutcome("KIOSK-0001", 5, device.DepositCapture(card, 4, 2_000), fen(1_000), "")
	refund := sceneOutcome("STALL-0001", 9, device.Refund(card, 8, 300), fen(300), "")
	lost := func(o device.Outcome) device.Outcome { o.Reply, o.Code, o.Err = nil, "", device.ErrTimeout; return o }
	l.Observe(lost(capture))
	l.Observe(lost(refund))
	for _, c := range []struct {
		bal int64
		ok  bool
	}{{10_000, true}, {8_000, true}, {10_300, true}, {8_300, true}, {7_999, false}, {10_301, false}} {
		if res := l.Audit(context.Background(), fixedBalances{card.Key(): c.bal}); res.OK() != c.ok {
			t.Errorf("pending: balance %d OK=%v, want %v", c.bal, res.OK(), c.ok)
		}
	}
	ms := l.Merchants()
	if ms[0].Uncertain != 2_000 || ms[1].UncertainCredit != 300 {
		t.Fatalf("merchant ranges %+v", ms)
	}
	l.Observe(capture) // the repeat got the stored approval
	declined := refund
	declined.Code, declined.Reply.Code = terminals.CodeRefundExceeds, terminals.CodeRefundExceeds
	l.Observe(declined) // and the refund's repeat a final decline: not applied
	for _, c := range []struct {
		bal int64
		ok  bool
	}{{8_000, true}, {10_000, false}, {8_300, false}} {
		if res := l.Audit(context.Background(), fixedBalances{card.Key(): c.bal}); res.OK() != c.ok {
			t.Errorf("answered: balance %d OK=%v, want %v", c.bal, res.OK(), c.ok)
		}
	}
}

// TestSettlementAuditNamesLostRefundAndTwiceAppliedCapture: in a real
// SQLite store, a capture spanning two holds (two rows under one txn id,
// each naming its hold) is one approval, not "applied twice"; a capture row
// stored twice for the same hold is; a refund the terminal was told of but
// missing from the store is lost.
func TestSettlementAuditNamesLostRefundAndTwiceAppliedCapture(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	row := func(lsn, txn uint64, merchant, tid, op string, orig uint64, amt int64) handoff.Txn {
		r := storetest.Row("gw1", lsn, merchant, amt)
		r.Terminal, r.Txn, r.Op, r.Orig = tid, txn, op, orig
		r.Scene = handoff.SceneKiosk
		if op == handoff.OpRefund || tid[:5] == "STALL" {
			r.Scene = handoff.SceneStall
		}
		return r
	}
	b := storetest.MakeBatch("gw1", 1, 6,
		row(1, 30, "M-HOSP", "KIOSK-0001", handoff.OpCapture, 10, 1_500), // a capture over two holds
		row(2, 30, "M-HOSP", "KIOSK-0001", handoff.OpCapture, 12, 1_000),
		row(3, 31, "M-HOSP", "KIOSK-0001", handoff.OpCapture, 10, 800), // applied twice
		row(4, 31, "M-HOSP", "KIOSK-0001", handoff.OpCapture, 10, 800),
		row(5, 40, "M-STALL-0001", "STALL-0001", handoff.OpPurchase, 0, 1_550),
		row(6, 42, "M-STALL-0002", "STALL-0002", handoff.OpRefund, 41, -200)) // a truthful refund
	if _, err := st.Ingest(ctx, b); err != nil {
		t.Fatal(err)
	}
	told := []MerchantPosition{
		{Merchant: "M-HOSP", Net: 2_500 + 800, Txns: map[string]int64{"KIOSK-0001/30": 2_500, "KIOSK-0001/31": 800}},
		{Merchant: "M-STALL-0001", Net: 1_550 - 500, Txns: map[string]int64{"STALL-0001/40": 1_550, "STALL-0001/41": -500}},
		{Merchant: "M-STALL-0002", Net: -200, Txns: map[string]int64{"STALL-0002/42": -200}},
	}
	got, err := CompareSettlement(ctx, st, told, storetest.Day.Add(-1))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].OK() || got[1].OK() || !got[2].OK() {
		t.Fatalf("comparison %+v", got)
	}
	h, s := got[0], got[1]
	if h.Store-h.Told != 800 || len(h.Twice) != 1 || !strings.HasPrefix(h.Twice[0], "KIOSK-0001/31 ") || len(h.Lost) != 0 {
		t.Errorf("M-HOSP: difference %d, twice %v, lost %v", h.Store-h.Told, h.Twice, h.Lost)
	}
	if s.Store-s.Told != 500 || len(s.Lost) != 1 || !strings.HasPrefix(s.Lost[0], "STALL-0001/41 ") || len(s.Twice) != 0 {
		t.Errorf("M-STALL-0001: difference %d, lost %v, twice %v", s.Store-s.Told, s.Lost, s.Twice)
	}
	// Had the refund gone unanswered, the store's net may lie anywhere
	// from what was told less the refund up to what was told, not above.
	pend := []MerchantPosition{{Merchant: "M-STALL-0001", Net: 1_550 - 1_050, UncertainCredit: 1_050,
		Txns: map[string]int64{"STALL-0001/40": 1_550}}}
	if got, _ := CompareSettlement(ctx, st, pend, storetest.Day.Add(-1)); got[0].OK() {
		t.Errorf("a store above what was told is within the refund's range: %+v", got[0])
	}
	pend[0].Net = 1_550
	if got, _ := CompareSettlement(ctx, st, pend, storetest.Day.Add(-1)); !got[0].OK() {
		t.Errorf("a store without an unanswered refund is out of range: %+v", got[0])
	}
	pend[0].Net = 1_550 + 1_050
	if got, _ := CompareSettlement(ctx, st, pend, storetest.Day.Add(-1)); !got[0].OK() {
		t.Errorf("a store with an unanswered refund applied is out of range: %+v", got[0])
	}
}

// TestAuditsAccountWalletPaymentsAndDebtRepayment: a wallet payment through
// a stall code (its stored answer told twice: one effect), a partial wallet
// refund, and a top-up that paid transit debt first. The balance audit
// expects opening + top-up - debt paid - payment + refund; a gateway that
// lost the payment, applied it twice, or credited the whole top-up fails,
// naming the account. Merchant positions carry the stall's net and the debt
// payee's recovered debt.
func TestAuditsAccountWalletPaymentsAndDebtRepayment(t *testing.T) {
	payer := terminals.Instrument{Kind: terminals.InstBank, ID: "tok_0a0b0c0d"}
	rider := terminals.Instrument{Kind: terminals.InstCounty, ID: "8800000009"}
	l := NewLedger()
	for _, r := range DefaultRoutes {
		l.AddRoute(r)
	}
	l.SetMerchant("STALL-0001", "M-STALL-0001")
	l.SetMerchant("BUS-0001", "M-BUS")
	l.Open(payer.Key(), 10_000)
	l.Open(rider.Key(), 100)
	pay := uint64(1<<62 | 77)
	l.WalletPaid(payer.Key(), "STALL-0001", pay, 2_500)
	l.WalletPaid(payer.Key(), "STALL-0001", pay, 2_500) // the stored answer of a retry
	l.WalletRefunded(payer.Key(), "STALL-0001", 1<<62|78, 400)
	// An offline upload: one tap charged nothing and became debt.
	up := terminals.Request{Type: terminals.TypeOfflineUpload, Inst: rider}
	up.Taps = upTaps(t, rider, "B1", 2)
	l.Observe(sceneOutcome("BUS-0001", 300, up, fen(0), "dn"))
	if d := l.Debtors(); len(d) != 1 || d[0].Account != rider.Key() || d[0].Bound != 200 {
		t.Fatalf("debtors %+v, want the rider with at most one B1 fare", d)
	}
	if err := l.DebtRepaid(rider.Key(), 5_000, 200, DefaultDebtPayee); err != nil {
		t.Fatal(err)
	}
	if err := l.DebtRepaid(rider.Key(), 5_000, 5_001, DefaultDebtPayee); err == nil {
		t.Fatal("a debt paid above the top-up was booked")
	}
	wantPayer, wantRider := int64(10_000-2_500+400), int64(100+5_000-200)
	for _, c := range []struct {
		name           string
		payer, rider   int64
		ok             bool
		mismatchedAcct string
	}{
		{"truthful", wantPayer, wantRider, true, ""},
		{"wallet payment lost", wantPayer + 2_500, wantRider, false, payer.Key()},
		{"wallet payment applied twice", wantPayer - 2_500, wantRider, false, payer.Key()},
		{"top-up credited whole, debt not paid", wantPayer, wantRider + 200, false, rider.Key()},
		{"debt paid twice", wantPayer, wantRider - 200, false, rider.Key()},
	} {
		res := l.Audit(context.Background(), fixedBalances{payer.Key(): c.payer, rider.Key(): c.rider})
		if res.OK() != c.ok {
			t.Errorf("%s: audit OK=%v, want %v: %+v", c.name, res.OK(), c.ok, res)
		}
		if !c.ok && (len(res.Mismatches) != 1 || res.Mismatches[0].Account != c.mismatchedAcct) {
			t.Errorf("%s: mismatches %+v, want %s", c.name, res.Mismatches, c.mismatchedAcct)
		}
	}
	nets := map[string]int64{}
	for _, m := range l.Merchants() {
		nets[m.Merchant] = m.Net
	}
	if nets["M-STALL-0001"] != 2_100 || nets[DefaultDebtPayee] != 200 || nets["M-BUS"] != 0 {
		t.Fatalf("merchant nets %v", nets)
	}
	// An unanswered wallet payment widens the payer's range until answered.
	l.WalletPending("w-lost", payer.Key(), "STALL-0001", 900, 0)
	if res := l.Audit(context.Background(), fixedBalances{payer.Key(): wantPayer - 900, rider.Key(): wantRider}); !res.OK() || res.Uncertain != 1 {
		t.Errorf("an unanswered wallet payment applied is out of range: %+v", res)
	}
}

// upTaps builds n taps alternately in and out on route.
func upTaps(t *testing.T, inst terminals.Instrument, route string, n int) terminals.UploadTaps {
	t.Helper()
	var taps []terminals.UploadTap
	for i := range n {
		taps = append(taps, terminals.UploadTap{Seq: uint64(i + 1), Out: i%2 == 1, Route: route, TS: time.Now().UnixMilli() + int64(i)})
	}
	req, err := device.OfflineUpload(inst, taps)
	if err != nil {
		t.Fatal(err)
	}
	return req.Taps
}

// TestSettlementAuditCoversWalletPaymentsAndRecoveredDebt plants, in a real
// SQLite settlement store, a wallet payment through a stall code stored
// twice and a lost wallet refund, next to a truthful debt_recovery row for
// the transit debt payee: the stall's comparison fails naming both ids,
// the payee's passes, and a payee row the run never repaid fails it.
func TestSettlementAuditCoversWalletPaymentsAndRecoveredDebt(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pay, ref := uint64(1<<62|5), uint64(1<<62|6)
	row := func(lsn, txn uint64, merchant, tid, op, scene string, amt int64) handoff.Txn {
		r := storetest.Row("gw1", lsn, merchant, amt)
		r.Terminal, r.Txn, r.Op, r.Scene = tid, txn, op, scene
		return r
	}
	b := storetest.MakeBatch("gw1", 1, 3,
		row(1, pay, "M-STALL-0001", "STALL-0001", handoff.OpPurchase, handoff.SceneStall, 2_500),
		row(2, pay, "M-STALL-0001", "STALL-0001", handoff.OpPurchase, handoff.SceneStall, 2_500), // applied twice
		row(3, 3, DefaultDebtPayee, "operator", handoff.OpDebtRecovery, handoff.SceneBus, 200))
	if _, err := st.Ingest(ctx, b); err != nil {
		t.Fatal(err)
	}
	l := NewLedger()
	l.SetMerchant("STALL-0001", "M-STALL-0001")
	l.Open("bank:tok_1", 10_000)
	l.Open("county:8800000009", 100)
	l.WalletPaid("bank:tok_1", "STALL-0001", pay, 2_500)
	l.WalletRefunded("bank:tok_1", "STALL-0001", ref, 400) // the store lost its row
	if err := l.DebtRepaid("county:8800000009", 5_000, 200, DefaultDebtPayee); err != nil {
		t.Fatal(err)
	}
	got, err := CompareSettlement(ctx, st, l.Merchants(), storetest.Day.Add(-1))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Merchant != "M-STALL-0001" || got[0].OK() || got[1].Merchant != DefaultDebtPayee || !got[1].OK() {
		t.Fatalf("comparison %+v", got)
	}
	s := got[0]
	payID, refID := fmt.Sprintf("STALL-0001/%d", pay), fmt.Sprintf("STALL-0001/%d", ref)
	if s.Store-s.Told != 2_500+400 || len(s.Twice) != 1 || !strings.HasPrefix(s.Twice[0], payID+" ") ||
		len(s.Lost) != 1 || !strings.HasPrefix(s.Lost[0], refID+" ") {
		t.Errorf("stall: difference %d, twice %v, lost %v", s.Store-s.Told, s.Twice, s.Lost)
	}
	// A run that repaid no debt: the payee's row is not what it was told.
	none := []MerchantPosition{{Merchant: DefaultDebtPayee}}
	if got, _ := CompareSettlement(ctx, st, none, storetest.Day.Add(-1)); got[0].OK() || got[0].Store != 200 {
		t.Errorf("a debt_recovery row no top-up was told of passes: %+v", got[0])
	}
}
