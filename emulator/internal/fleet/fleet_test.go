package fleet

import (
	"bytes"
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"scenepay/emulator/internal/device"
	"scenepay/emulator/internal/gwstub"
	"scenepay/terminals"
)

var master = []byte("fleet-test-master-key-0123456789")

func startStub(t *testing.T, k gwstub.Knobs) (*gwstub.Stub, terminals.Topics) {
	t.Helper()
	topics := terminals.Topics{Root: "t-fleet/scp/v1", Group: "g"}
	s, err := gwstub.Start(gwstub.Options{Master: master, Topics: topics, Token: "tok", Knobs: k})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, topics
}

func runDemo(t *testing.T, s *gwstub.Stub, topics terminals.Topics, rate float64) (*Report, string) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Run(ctx, Options{
		Broker: s.BrokerURL(), API: s.APIURL(), Token: "tok", Master: master, Topics: topics,
		Seed: 7, Terminals: 6, Rate: rate, Duration: 700 * time.Millisecond,
		TxnBase: 1000, RunID: 1, ReplyTimeout: time.Second, Retries: 1, Out: &out,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	return rep, out.String()
}

func TestDemoAgainstStubPassesAudit(t *testing.T) {
	s, topics := startStub(t, gwstub.Knobs{})
	rep, out := runDemo(t, s, topics, 40)
	t.Log("\n" + out)
	if !rep.OK() {
		t.Fatalf("run not OK: failed checks %v, audit %+v\n%s", rep.Failures, rep.Audit, out)
	}
	if rep.Checks < 12 || rep.Failed != 0 {
		t.Fatalf("checks %d failed %d\n%s", rep.Checks, rep.Failed, out)
	}
	if rep.ByCode[terminals.CodeApproved] < 10 {
		t.Fatalf("only %d approvals under load\n%s", rep.ByCode[terminals.CodeApproved], out)
	}
	for _, want := range []string{
		"BUS-0001 purchase txn=", " fen county:", "-> 00 APPROVED bal=",
		"-> 51 INSUFFICIENT_FUNDS", "-> 61 LIMIT_SINGLE", "-> 94 ID_CONFLICT", "-> A1 BAD_MAC",
		"duplicate gets the byte-identical reply: ok", "audit: ", "-> PASS",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q\n%s", want, out)
		}
	}
	if rep.Audit.Matched != rep.Audit.Accounts || rep.Audit.Accounts != 24 {
		t.Fatalf("audit %+v", rep.Audit)
	}
}

func TestAuditCatchesADoubleAppliedDuplicate(t *testing.T) {
	s, topics := startStub(t, gwstub.Knobs{ApplyDuplicates: true})
	rep, out := runDemo(t, s, topics, 0)
	if rep.OK() || rep.Audit.OK() {
		t.Fatalf("audit passed against a gateway that debits duplicates twice\n%s", out)
	}
	// The demo repeats a 600 fen sale and a 500 fen refund with the same
	// bytes: one account lost 600 fen too many, another got 500 too many.
	diffs := map[int64]int{}
	for _, m := range rep.Audit.Mismatches {
		diffs[m.Gateway-m.Expected]++
	}
	if len(rep.Audit.Mismatches) != 2 || diffs[-600] != 1 || diffs[500] != 1 {
		t.Fatalf("mismatches = %+v\n%s", rep.Audit.Mismatches, out)
	}
	if !strings.Contains(out, "-> FAIL") {
		t.Fatalf("output lacks the FAIL verdict\n%s", out)
	}
}

func TestRunRejectsUnknownScenario(t *testing.T) {
	_, err := Run(context.Background(), Options{Scenario: "chaos"})
	if !errors.Is(err, ErrUnknownScenario) {
		t.Fatalf("err = %v", err)
	}
}

func TestPopulationIsDeterministicAndValid(t *testing.T) {
	a, err := NewPopulation(42, 7, 30)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewPopulation(42, 7, 30)
	c, _ := NewPopulation(43, 7, 30)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different population")
	}
	if reflect.DeepEqual(a.Accounts, c.Accounts) {
		t.Fatal("different seeds, same accounts")
	}
	if len(a.Terminals) != 7 || a.Terminals[0].TID != "BUS-0001" || a.Terminals[1].TID != "STALL-0001" || a.Terminals[5].TID != "KIOSK-0002" {
		t.Fatalf("terminals = %+v", a.Terminals)
	}
	seen := map[string]bool{}
	for _, acct := range a.Accounts {
		k := acct.Inst.Key()
		if seen[k] {
			t.Fatalf("duplicate account %s", k)
		}
		seen[k] = true
		// Every instrument must pass the wire validation (no PAN, token form).
		r := terminals.Request{V: 1, Type: terminals.TypePurchase, TID: "BUS-0001", Txn: 1, TS: 1, Amt: 1, Inst: acct.Inst}
		if err := r.Validate(); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if acct.Class > 0 && acct.Opening > ECNYBalanceCap[acct.Class] {
			t.Fatalf("%s opens above its class cap", k)
		}
	}
	if a.Accounts[a.LowCounty].Opening >= BusFare {
		t.Fatal("the low county card can pay a fare")
	}
	c4 := a.Accounts[a.ClassFour]
	if c4.Class != 4 || ClassFourBreach <= ECNYSingleLimit[4] || c4.Opening < ClassFourBreach {
		t.Fatalf("class-4 demo wallet cannot show a single-limit breach: %+v", c4)
	}
}

func TestLedgerExpectedBalance(t *testing.T) {
	l := NewLedger()
	card := terminals.Instrument{Kind: terminals.InstCounty, ID: "8800000001"}
	k := card.Key()
	l.Open(k, 10_000)
	if err := l.TopUp(k, 500); err != nil {
		t.Fatal(err)
	}
	ok := func(txn uint64, amt int64) device.Outcome {
		rep := &terminals.Reply{Code: terminals.CodeApproved}
		return device.Outcome{TID: "BUS-0001", Type: terminals.TypePurchase, Txn: txn, Inst: card, Amt: amt, Code: rep.Code, Reply: rep}
	}
	l.Observe(ok(1, 200))
	dup := ok(1, 200)
	dup.Fault = device.FaultDuplicate
	l.Observe(dup) // the same approval told twice: one effect
	l.Observe(ok(2, 300))
	declined := ok(3, 99_999)
	declined.Code = terminals.CodeInsufficientFunds
	declined.Reply = &terminals.Reply{Code: declined.Code}
	l.Observe(declined)
	rv := device.Outcome{TID: "BUS-0001", Type: terminals.TypeReversal, Txn: 4, Orig: 2, Inst: card, Amt: 300,
		Code: terminals.CodeApproved, Reply: &terminals.Reply{Code: terminals.CodeApproved}}
	l.Observe(rv)
	l.Observe(rv) // a repeated reversal acknowledgement voids once
	l.Observe(device.Outcome{TID: "BUS-0001", Type: terminals.TypePurchase, Txn: 5, Inst: card, Amt: 200, Reversed: true})
	l.Observe(device.Outcome{TID: "BUS-0001", Type: terminals.TypePurchase, Txn: 6, Inst: card, Amt: 700, Unresolved: true})

	ps := l.Positions()
	if len(ps) != 1 {
		t.Fatalf("positions = %+v", ps)
	}
	got, err := ps[0].Expected()
	if err != nil || got != 10_000+500-200-300+300 || ps[0].Uncertain != 700 {
		t.Fatalf("expected %d (%v), position %+v", got, err, ps[0])
	}
	if _, n := l.Anomalies(); n != 0 {
		t.Fatalf("%d anomalies", n)
	}
	for bal, pass := range map[int64]bool{10_300: true, 9_600: true, 9_900: true, 10_301: false, 9_599: false} {
		res := l.Audit(context.Background(), fixed(bal))
		if res.OK() != pass {
			t.Errorf("gateway balance %d: audit OK=%v, want %v (%+v)", bal, res.OK(), pass, res)
		}
	}
	// A second approval under one id with other content is an anomaly.
	l.Observe(ok(1, 250))
	if _, n := l.Anomalies(); n != 1 {
		t.Fatalf("anomalies = %d, want 1", n)
	}
}

func TestPositionOverflowIsAnError(t *testing.T) {
	p := Position{Account: "x", Opening: math.MaxInt64, TopUps: 1}
	if _, err := p.Expected(); !errors.Is(err, ErrLedger) {
		t.Fatalf("err = %v", err)
	}
}

type fixed int64

func (f fixed) Balance(context.Context, string) (int64, error) { return int64(f), nil }
