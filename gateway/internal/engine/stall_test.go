package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/scene/market"
	"scenepay/gateway/internal/vfs"
	"scenepay/gateway/opwire"
	"scenepay/terminals"
)

// stallClock is a clock tests move by hand.
type stallClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stallClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *stallClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const stallTID = "STALL-1"

var stallSigner = terminals.NewSigner(terminals.DeriveKey(master, stallTID, 1))

func openStallEngine(t *testing.T, dir string, clk *stallClock) (*Engine, *fakePub) {
	t.Helper()
	return openStallEngineFS(t, dir, clk, vfs.Default)
}

func openStallEngineFS(t *testing.T, dir string, clk *stallClock, fs vfs.FS) (*Engine, *fakePub) {
	t.Helper()
	cfg := DefaultConfig(dir)
	cfg.FS = fs
	cfg.Shards = 4
	cfg.SnapshotEvery = 0
	cfg.Clock = clk.now
	e, err := Open(cfg, master)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	p := newFakePub()
	e.SetPublisher(p)
	return e, p
}

// stallFixture registers the stall terminal and opens payer accounts of
// 10,000 CNY each.
func stallFixture(t *testing.T, e *Engine, payers ...string) {
	t.Helper()
	if err := e.RegisterTerminal(registry.Terminal{TID: stallTID, Kind: registry.KindStall, Merchant: "M-STALL", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	if err := e.RegisterTerminal(registry.Terminal{TID: "BUS-1", Kind: registry.KindBus, Merchant: "M-BUS", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	for _, p := range payers {
		r, err := e.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: p, Amount: 1_000_000, Ref: "o-" + p})
		if err != nil || r.Code != terminals.CodeApproved {
			t.Fatalf("open %s: %v %v", p, r.Code, err)
		}
	}
}

func registerCode(t *testing.T, e *Engine, spec StallCodeSpec) StallCodeView {
	t.Helper()
	v, err := e.RegisterStallCode(spec)
	if err != nil {
		t.Fatalf("register %+v: %v", spec, err)
	}
	return v
}

type payCase struct {
	name     string
	pay      StallPay
	code     terminals.Code
	class    string // approved: the PBoC class
	stored   bool   // the answer is a stored one (Body set)
	dup      bool
	advance  time.Duration // clock step before the payment
	noticeTo bool          // a paid notice follows
}

func runPays(t *testing.T, e *Engine, p *fakePub, clk *stallClock, cases []payCase) map[string][]byte {
	t.Helper()
	bodies := map[string][]byte{}
	for _, c := range cases {
		clk.add(c.advance)
		r, err := e.PayStallCode(context.Background(), c.pay)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if r.Code != c.code || (r.Body != nil) != c.stored || r.Duplicate != c.dup {
			t.Errorf("%s: code %s stored %v dup %v (%s), want %s stored %v dup %v", c.name, r.Code, r.Body != nil, r.Duplicate, r.Reason, c.code, c.stored, c.dup)
			continue
		}
		if r.Body != nil {
			var ans opwire.StallDecision
			if err := json.Unmarshal(r.Body, &ans); err != nil {
				t.Fatalf("%s: answer %s: %v", c.name, r.Body, err)
			}
			if ans.Code != c.code || ans.Class != c.class || ans.ID != c.pay.ID || ans.TID != stallTID || ans.Merchant != "M-STALL" ||
				ans.Txn != StallTxn(c.pay.ID) || (c.code == terminals.CodeApproved) != (ans.Auth != "") {
				t.Errorf("%s: answer %s", c.name, r.Body)
			}
			if prev, ok := bodies[c.pay.ID]; ok && string(prev) != string(r.Body) {
				t.Errorf("%s: a repeat got another answer:\n%s\n%s", c.name, prev, r.Body)
			}
			bodies[c.pay.ID] = r.Body
		}
		if c.noticeTo {
			raw := p.next(t, 5*time.Second)
			body, err := stallSigner.Open(raw)
			if err != nil {
				t.Fatalf("%s: notice does not open under the stall's key: %v", c.name, err)
			}
			n, err := terminals.DecodePaid(body)
			if err != nil {
				t.Fatalf("%s: notice %s: %v", c.name, body, err)
			}
			if n.TID != stallTID || n.SC != c.pay.Code || n.Txn != StallTxn(c.pay.ID) || n.Amt <= 0 {
				t.Errorf("%s: notice %+v", c.name, n)
			}
		}
	}
	select {
	case m := <-p.ch:
		t.Errorf("unexpected message published: %s", m)
	default:
	}
	return bodies
}

func accountBalance(t *testing.T, e *Engine, key string) int64 {
	t.Helper()
	r, err := e.Operate(context.Background(), core.Input{Account: key})
	if err != nil || !r.Found {
		t.Fatalf("read %s: %v", key, err)
	}
	return r.Account.Balance
}

// A static personal code: class D (500 CNY a day per customer) reached by
// the sum of small payments, no remote collection, idempotent retries.
func TestStallStaticPersonal(t *testing.T) {
	clk := &stallClock{t: time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)}
	e, p := openStallEngine(t, t.TempDir(), clk)
	defer e.Close()
	stallFixture(t, e, "county:P1")
	sc := registerCode(t, e, StallCodeSpec{TID: stallTID})
	if sc.Merchant != "M-STALL" || sc.Dynamic || sc.Business || len(sc.ID) != 22 {
		t.Fatalf("registered %+v", sc)
	}
	pay := func(id string, amt int64) StallPay {
		return StallPay{Code: sc.ID, Account: "county:P1", Amount: amt, ID: id, Verified: market.ClassA}
	}
	remote := pay("w5", 100)
	remote.Remote = true
	bodies := runPays(t, e, p, clk, []payCase{
		{name: "200 CNY", pay: pay("w1", 20_000), code: terminals.CodeApproved, class: "D", stored: true, noticeTo: true},
		{name: "200 CNY", pay: pay("w2", 20_000), code: terminals.CodeApproved, class: "D", stored: true, noticeTo: true},
		{name: "150 CNY passes 500", pay: pay("w3", 15_000), code: terminals.CodeLimitDaily, stored: true},
		{name: "100 CNY reaches 500", pay: pay("w4", 10_000), code: terminals.CodeApproved, class: "D", stored: true, noticeTo: true},
		{name: "1 fen more", pay: pay("w6", 1), code: terminals.CodeLimitDaily, stored: true},
		{name: "remote", pay: remote, code: terminals.CodeRemoteStatic},
		{name: "remote id not burnt: face to face now, over the limit", pay: pay("w5", 100), code: terminals.CodeLimitDaily, stored: true},
		{name: "retry w1", pay: pay("w1", 20_000), code: terminals.CodeApproved, class: "D", stored: true, dup: true},
		{name: "retry the decline w3", pay: pay("w3", 15_000), code: terminals.CodeLimitDaily, stored: true, dup: true},
		{name: "w1 with another amount", pay: pay("w1", 20_001), code: terminals.CodeIDConflict},
		{name: "no amount", pay: pay("w7", 0), code: terminals.CodeInvalidAmount},
		{name: "unknown code", pay: StallPay{Code: "SCNOPE", Account: "county:P1", Amount: 1, ID: "w8", Verified: market.ClassB}, code: terminals.CodeUnknownInstrument},
		{name: "unknown account", pay: StallPay{Code: sc.ID, Account: "county:NOBODY", Amount: 1, ID: "w9", Verified: market.ClassB}, code: terminals.CodeUnknownInstrument, stored: true},
		{name: "next day", advance: 24 * time.Hour, pay: pay("w10", 50_000), code: terminals.CodeApproved, class: "D", stored: true, noticeTo: true},
	})
	if len(bodies) != 8 {
		t.Errorf("%d stored answers, want 8", len(bodies))
	}
	for code, want := range map[string]float64{"00": 5, "65": 4, "C4": 1, "94": 1, "13": 1, "14": 2} {
		if got := testutilCount(e.m.stallPays.WithLabelValues(code)); got != want {
			t.Errorf("stall payments counted with code %s: %v, want %v", code, got, want)
		}
	}
	if got := accountBalance(t, e, "county:P1"); got != 1_000_000-100_000 {
		t.Errorf("balance %d, want %d", got, 1_000_000-100_000)
	}
}

// A static business code also collects remotely (still class D), and the
// class D total is the customer's across codes; a business stall refuses
// personal codes; registration refusals.
func TestStallStaticBusiness(t *testing.T) {
	clk := &stallClock{t: time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)}
	e, p := openStallEngine(t, t.TempDir(), clk)
	defer e.Close()
	stallFixture(t, e, "county:P2")
	sc := registerCode(t, e, StallCodeSpec{TID: stallTID, Business: true, StallBusiness: true})
	if !sc.StallBusiness {
		t.Fatal("stall not marked business")
	}
	for _, c := range []struct {
		name string
		spec StallCodeSpec
		want error
	}{
		{"personal code of a business stall", StallCodeSpec{TID: stallTID}, market.ErrPersonalForBusiness},
		{"a bus reader", StallCodeSpec{TID: "BUS-1", Business: true}, ErrStallTerminal},
		{"unknown terminal", StallCodeSpec{TID: "NOPE", Business: true}, ErrStallTerminal},
		{"another merchant", StallCodeSpec{TID: stallTID, Merchant: "M-X", Business: true}, ErrStallMerchant},
		{"dynamic without amount", StallCodeSpec{TID: stallTID, Business: true, Dynamic: true, TTL: time.Minute}, market.ErrStallCodeShape},
		{"dynamic for two hours", StallCodeSpec{TID: stallTID, Business: true, Dynamic: true, Amount: 5, TTL: 2 * time.Hour}, market.ErrStallCodeShape},
	} {
		if _, err := e.RegisterStallCode(c.spec); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// The stall stays business: a later registration without the flag
	// still refuses a personal code.
	if _, err := e.RegisterStallCode(StallCodeSpec{TID: stallTID}); !errors.Is(err, market.ErrPersonalForBusiness) {
		t.Errorf("business flag not sticky: %v", err)
	}
	other := registerCode(t, e, StallCodeSpec{TID: stallTID, Business: true})
	pay := func(code, id string, amt int64, remote bool) StallPay {
		return StallPay{Code: code, Account: "county:P2", Amount: amt, ID: id, Verified: market.ClassB, Remote: remote}
	}
	runPays(t, e, p, clk, []payCase{
		{name: "remote on a business code", pay: pay(sc.ID, "b1", 30_000, true), code: terminals.CodeApproved, class: "D", stored: true, noticeTo: true},
		{name: "another static code, same customer day", pay: pay(other.ID, "b2", 20_001, false), code: terminals.CodeLimitDaily, stored: true},
		{name: "up to 500", pay: pay(other.ID, "b3", 20_000, false), code: terminals.CodeApproved, class: "D", stored: true, noticeTo: true},
	})
	if l, more := e.StallCodes("M-STALL", "", 10); len(l) != 2 || more {
		t.Errorf("listing: %d codes, more %v", len(l), more)
	}
	if l, more := e.StallCodes("M-STALL", "", 1); len(l) != 1 || !more {
		t.Errorf("paged listing: %d codes, more %v", len(l), more)
	}
	if l, _ := e.StallCodes("M-BUS", "", 10); len(l) != 0 {
		t.Errorf("another merchant sees %d codes", len(l))
	}
}

// A dynamic code: the payer's class while fresh, class D as a screenshot,
// its own amount only, single use (also against concurrent payers on
// other shards), expiry; a revoked code.
func TestStallDynamicAndRevoked(t *testing.T) {
	clk := &stallClock{t: time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)}
	e, p := openStallEngine(t, t.TempDir(), clk)
	defer e.Close()
	payers := []string{"county:D1", "county:D2", "county:D3", "county:D4", "county:D5", "county:D6", "county:D7", "county:D8"}
	stallFixture(t, e, payers...)
	dyn := registerCode(t, e, StallCodeSpec{TID: stallTID, Dynamic: true, Amount: 1550, TTL: 5 * time.Minute})
	short := registerCode(t, e, StallCodeSpec{TID: stallTID, Dynamic: true, Amount: 700, TTL: 30 * time.Second})
	shot := registerCode(t, e, StallCodeSpec{TID: stallTID, Dynamic: true, Amount: 900, TTL: 10 * time.Minute})
	static := registerCode(t, e, StallCodeSpec{TID: stallTID})
	pay := func(code, acct, id string, amt int64) StallPay {
		return StallPay{Code: code, Account: acct, Amount: amt, ID: id, Verified: market.ClassB}
	}
	runPays(t, e, p, clk, []payCase{
		{name: "another amount", pay: pay(dyn.ID, "county:D1", "d0", 1549), code: terminals.CodeInvalidAmount},
		{name: "fresh: payer's class B", pay: pay(dyn.ID, "county:D1", "d1", 0), code: terminals.CodeApproved, class: "B", stored: true, noticeTo: true},
		{name: "used", pay: pay(dyn.ID, "county:D2", "d2", 1550), code: terminals.CodePayCodeReused},
		{name: "retry of the payment that used it", pay: pay(dyn.ID, "county:D1", "d1", 0), code: terminals.CodeApproved, class: "B", stored: true, dup: true},
		{name: "expired", advance: 31 * time.Second, pay: pay(short.ID, "county:D1", "d3", 0), code: terminals.CodePayCodeExpired},
		{name: "screenshot: class D", advance: 30 * time.Second, pay: pay(shot.ID, "county:D1", "d4", 900), code: terminals.CodeApproved, class: "D", stored: true, noticeTo: true},
	})
	if v, _ := e.StallCode(dyn.ID); v.PaidBy != "d1" {
		t.Errorf("dynamic code paid by %q", v.PaidBy)
	}
	if v, err := e.RevokeStallCode(static.ID); err != nil || v.Revoked == 0 {
		t.Fatalf("revoke: %+v %v", v, err)
	}
	if v, err := e.RevokeStallCode(static.ID); err != nil || v.Revoked == 0 {
		t.Fatalf("second revoke: %+v %v", v, err)
	}
	if _, err := e.RevokeStallCode("SCNOPE"); !errors.Is(err, market.ErrUnknownStallCode) {
		t.Errorf("revoke unknown: %v", err)
	}
	runPays(t, e, p, clk, []payCase{
		{name: "revoked", pay: pay(static.ID, "county:D1", "d5", 100), code: terminals.CodeStallCodeRevoked},
	})
	// A blocked stall terminal's codes collect nothing until it is unblocked.
	live := registerCode(t, e, StallCodeSpec{TID: stallTID})
	block := func(b bool) {
		if err := e.RegisterTerminal(registry.Terminal{TID: stallTID, Kind: registry.KindStall, Merchant: "M-STALL", KeyVersion: 1, Blocked: b}); err != nil {
			t.Fatal(err)
		}
	}
	block(true)
	runPays(t, e, p, clk, []payCase{
		{name: "blocked terminal", pay: pay(live.ID, "county:D1", "d6", 100), code: terminals.CodeTerminalBlocked},
	})
	block(false)
	runPays(t, e, p, clk, []payCase{
		{name: "unblocked: the id was not burnt", pay: pay(live.ID, "county:D1", "d6", 100), code: terminals.CodeApproved, class: "D", stored: true, noticeTo: true},
	})
	// Eight payers on four shards race for one dynamic code: one pays.
	race := registerCode(t, e, StallCodeSpec{TID: stallTID, Dynamic: true, Amount: 300, TTL: time.Minute})
	var wg sync.WaitGroup
	codes := make([]terminals.Code, len(payers))
	for i, acct := range payers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := e.PayStallCode(context.Background(), pay(race.ID, acct, "r"+strconv.Itoa(i), 0))
			if err != nil {
				t.Error(err)
			}
			codes[i] = r.Code
		}()
	}
	wg.Wait()
	approved := 0
	for _, c := range codes {
		switch c {
		case terminals.CodeApproved:
			approved++
		case terminals.CodePayCodeReused:
		default:
			t.Errorf("racing payer got %s", c)
		}
	}
	if approved != 1 {
		t.Errorf("%d payers paid one dynamic code", approved)
	}
	p.next(t, 5*time.Second) // the winner's notice
}

// The registry and the wallets' ids survive a restart, from the journal
// alone (a crash) and from a snapshot plus the journal after it; the
// settlement handoff reads each payment's record from its entry.
func TestStallRestartKeepsRegistry(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		t.Run("snapshot="+strconv.FormatBool(snapshot), func(t *testing.T) {
			dir := t.TempDir()
			clk := &stallClock{t: time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)}
			e, p := openStallEngine(t, dir, clk)
			stallFixture(t, e, "county:R1")
			static := registerCode(t, e, StallCodeSpec{TID: stallTID})
			dyn := registerCode(t, e, StallCodeSpec{TID: stallTID, Dynamic: true, Amount: 1550, TTL: 5 * time.Minute})
			revoked := registerCode(t, e, StallCodeSpec{TID: stallTID})
			if snapshot {
				if err := e.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := e.RevokeStallCode(revoked.ID); err != nil {
				t.Fatal(err)
			}
			pay := func(code, id string, amt int64) StallPay {
				return StallPay{Code: code, Account: "county:R1", Amount: amt, ID: id, Verified: market.ClassB}
			}
			bodies := runPays(t, e, p, clk, []payCase{
				{name: "static", pay: pay(static.ID, "s1", 40_000), code: terminals.CodeApproved, class: "D", stored: true, noticeTo: true},
				{name: "over D", pay: pay(static.ID, "s2", 20_000), code: terminals.CodeLimitDaily, stored: true},
				{name: "dynamic", pay: pay(dyn.ID, "s3", 0), code: terminals.CodeApproved, class: "B", stored: true, noticeTo: true},
			})
			// The handoff sees each payment's core record for the stall.
			var got []string
			_, err := e.j.ReadDurable(0, 1000, func(_ uint64, payload []byte) error {
				return EntryRecords(payload, func(tid string, rec []byte) error {
					var r core.Record
					if err := core.DecodeRecord(rec, &r); err != nil {
						return err
					}
					if r.Op == core.OpQRPay {
						if tid != stallTID || r.TID != stallTID || r.Merchant != "M-STALL" {
							t.Errorf("record of tid %q/%q merchant %q", tid, r.TID, r.Merchant)
						}
						got = append(got, string(r.Code))
					}
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 || got[0] != "00" || got[1] != "65" || got[2] != "00" {
				t.Errorf("QR records %v", got)
			}
			want := accountBalance(t, e, "county:R1")
			// Crash: no closing snapshot.
			crash(e)

			e2, p2 := openStallEngine(t, dir, clk)
			defer e2.Close()
			if got := accountBalance(t, e2, "county:R1"); got != want || got != 1_000_000-41_550 {
				t.Fatalf("balance after restart %d, want %d", got, want)
			}
			if v, ok := e2.StallCode(dyn.ID); !ok || v.PaidBy != "s3" {
				t.Errorf("dynamic code after restart: %+v %v", v, ok)
			}
			if v, ok := e2.StallCode(revoked.ID); !ok || v.Revoked == 0 {
				t.Errorf("revoked code after restart: %+v %v", v, ok)
			}
			if l, _ := e2.StallCodes("M-STALL", "", 10); len(l) != 3 {
				t.Errorf("%d codes after restart, want 3", len(l))
			}
			again := runPays(t, e2, p2, clk, []payCase{
				{name: "retry static", pay: pay(static.ID, "s1", 40_000), code: terminals.CodeApproved, class: "D", stored: true, dup: true},
				{name: "retry decline", pay: pay(static.ID, "s2", 20_000), code: terminals.CodeLimitDaily, stored: true, dup: true},
				{name: "retry dynamic", pay: pay(dyn.ID, "s3", 0), code: terminals.CodeApproved, class: "B", stored: true, dup: true},
				{name: "conflict", pay: pay(static.ID, "s1", 1), code: terminals.CodeIDConflict},
				{name: "dynamic used", pay: pay(dyn.ID, "s4", 0), code: terminals.CodePayCodeReused},
				{name: "revoked", pay: pay(revoked.ID, "s5", 1), code: terminals.CodeStallCodeRevoked},
				{name: "D counter kept", pay: pay(static.ID, "s6", 10_001), code: terminals.CodeLimitDaily, stored: true},
			})
			for id, b := range again {
				if string(bodies[id]) != string(b) && id != "s6" {
					t.Errorf("%s: answer after restart differs:\n%s\n%s", id, bodies[id], b)
				}
			}
			// A snapshot holding payments and codes loads again (SPSNAP5).
			if err := e2.Close(); err != nil {
				t.Fatal(err)
			}
			e3, p3 := openStallEngine(t, dir, clk)
			defer e3.Close()
			runPays(t, e3, p3, clk, []payCase{
				{name: "retry static from the snapshot", pay: pay(static.ID, "s1", 40_000), code: terminals.CodeApproved, class: "D", stored: true, dup: true},
				{name: "dynamic used, from the snapshot", pay: pay(dyn.ID, "s7", 0), code: terminals.CodePayCodeReused},
				{name: "revoked, from the snapshot", pay: pay(revoked.ID, "s8", 1), code: terminals.CodeStallCodeRevoked},
			})
		})
	}
}

func FuzzDecodeStallPay(f *testing.F) {
	f.Add(appendStallPay(nil, "w1", 7, terminals.CodeApproved, "SCAAAA", stallFlagUsed, stallTID, []byte{1, 2, 3}, []byte(`{"id":"w1"}`)))
	f.Add(appendStallPay(nil, "w2", 0, terminals.CodeLimitDaily, "SCB", 0, stallTID, []byte{1}, nil))
	f.Add([]byte{entryStall, stallOpPay})
	f.Fuzz(func(t *testing.T, b []byte) {
		pe, err := decodeStallPay(b)
		if err != nil {
			if !errors.Is(err, errEntry) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again := appendStallPay(nil, pe.id, pe.hash, pe.code, pe.sc, pe.flags, pe.tid, pe.record, pe.body)
		if string(again) != string(b) {
			t.Fatalf("re-encode differs:\n%x\n%x", b, again)
		}
	})
}

// Gateway-assigned txn ids stay in 2^62 .. 2^63-1: above any terminal's
// counter, within settlement's signed 64-bit column.
func TestStallTxnRange(t *testing.T) {
	for i := 0; i < 1000; i++ {
		x := StallTxn("w-" + strconv.Itoa(i))
		if x < 1<<62 || x > 1<<63-1 {
			t.Fatalf("StallTxn = %d out of range", x)
		}
	}
	if StallTxn("a") == StallTxn("b") {
		t.Fatal("StallTxn ignores the id")
	}
}

// Promise 1 for stall payments: neither the wallet's answer nor the stall's
// paid notice leaves before the fsync that covers the payment's entry, and
// a repeat of the id waits for it too.
func TestStallPayWaitsForFsync(t *testing.T) {
	g := &gateFS{FS: vfs.Default}
	clk := &stallClock{t: time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)}
	e, p := openStallEngineFS(t, t.TempDir(), clk, g)
	defer e.Close()
	stallFixture(t, e, "county:F1")
	sc := registerCode(t, e, StallCodeSpec{TID: stallTID})
	gate := make(chan struct{})
	g.mu.Lock()
	g.gate = gate
	g.mu.Unlock()
	pay := StallPay{Code: sc.ID, Account: "county:F1", Amount: 500, ID: "f1", Verified: market.ClassB}
	answers := make(chan StallPayResult, 2)
	for i := 0; i < 2; i++ {
		go func() {
			r, err := e.PayStallCode(context.Background(), pay)
			if err != nil {
				t.Error(err)
			}
			answers <- r
		}()
	}
	select {
	case r := <-answers:
		t.Fatalf("answer %s before the fsync returned", r.Code)
	case b := <-p.ch:
		t.Fatalf("notice %q before the fsync returned", b)
	case <-time.After(300 * time.Millisecond):
	}
	g.mu.Lock()
	g.gate = nil
	g.mu.Unlock()
	close(gate)
	a, b := <-answers, <-answers
	if a.Code != terminals.CodeApproved || b.Code != terminals.CodeApproved || string(a.Body) != string(b.Body) || a.Duplicate == b.Duplicate {
		t.Fatalf("answers %+v and %+v", a, b)
	}
	p.next(t, 5*time.Second)
}

// Refunds of a wallet's stall payment: partial, up to what remains, once
// per refund id, back to the paying account with the day's class D
// allowance; only through the code it was paid with; kept over a restart.
func TestStallRefunds(t *testing.T) {
	dir := t.TempDir()
	clk := &stallClock{t: time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)}
	e, p := openStallEngine(t, dir, clk)
	stallFixture(t, e, "county:F1")
	sc := registerCode(t, e, StallCodeSpec{TID: stallTID})
	other := registerCode(t, e, StallCodeSpec{TID: stallTID})
	pay := func(id string, amt int64) StallPay {
		return StallPay{Code: sc.ID, Account: "county:F1", Amount: amt, ID: id, Verified: market.ClassB}
	}
	runPays(t, e, p, clk, []payCase{
		{name: "pay 500", pay: pay("p1", 50_000), code: terminals.CodeApproved, class: "D", stored: true, noticeTo: true},
		{name: "D used up", pay: pay("p2", 1), code: terminals.CodeLimitDaily, stored: true},
	})
	refund := func(code, payment, id string, amt int64, want terminals.Code, stored, dup bool) StallPayResult {
		t.Helper()
		r, err := e.RefundStallPayment(context.Background(), StallRefund{Code: code, Payment: payment, ID: id, Amount: amt})
		if err != nil || r.Code != want || (r.Body != nil) != stored || r.Duplicate != dup {
			t.Fatalf("refund %s %s %d: %+v %v, want %s stored %v dup %v", payment, id, amt, r, err, want, stored, dup)
		}
		return r
	}
	first := refund(sc.ID, "p1", "r1", 20_000, terminals.CodeApproved, true, false)
	again := refund(sc.ID, "p1", "r1", 20_000, terminals.CodeApproved, true, true)
	if string(first.Body) != string(again.Body) {
		t.Fatalf("a repeated refund got another answer")
	}
	refund(sc.ID, "p1", "r1", 20_001, terminals.CodeIDConflict, false, false)
	refund(sc.ID, "p1", "r2", 30_001, terminals.CodeRefundExceeds, true, false)
	refund(sc.ID, "p2", "r3", 1, terminals.CodeOriginalNotFound, false, false)    // declined payment
	refund(other.ID, "p1", "r4", 1, terminals.CodeOriginalNotFound, false, false) // another code
	refund(sc.ID, "p9", "r5", 1, terminals.CodeOriginalNotFound, false, false)    // unknown
	if got := accountBalance(t, e, "county:F1"); got != 1_000_000-50_000+20_000 {
		t.Errorf("balance after refund %d", got)
	}
	// The refund gave 200 CNY of the day's class D allowance back.
	runPays(t, e, p, clk, []payCase{
		{name: "pay 200 again", pay: pay("p3", 20_000), code: terminals.CodeApproved, class: "D", stored: true, noticeTo: true},
	})
	crash(e)
	e2, _ := openStallEngine(t, dir, clk)
	defer e2.Close()
	r, err := e2.RefundStallPayment(context.Background(), StallRefund{Code: sc.ID, Payment: "p1", ID: "r1", Amount: 20_000})
	if err != nil || !r.Duplicate || string(r.Body) != string(first.Body) {
		t.Fatalf("refund after restart: %+v %v", r, err)
	}
	r, err = e2.RefundStallPayment(context.Background(), StallRefund{Code: sc.ID, Payment: "p1", ID: "r6", Amount: 30_000})
	if err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("the rest after restart: %+v %v", r, err)
	}
	r, _ = e2.RefundStallPayment(context.Background(), StallRefund{Code: sc.ID, Payment: "p1", ID: "r7", Amount: 1})
	if r.Code != terminals.CodeRefundExceeds {
		t.Fatalf("past the payment: %s", r.Code)
	}
	if got := accountBalance(t, e2, "county:F1"); got != 1_000_000-20_000 {
		t.Errorf("balance %d", got)
	}
}
