package merchant

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"scenepay/settlement/clearing"
	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

// settleFixture writes clearing records: window 2026-02-27 settled with B
// only, window 2026-03-01 settled with A and B, window 2026-02-28 open.
func settleFixture(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	cs := st.(store.Clearing)
	win := func(id string) store.Window {
		d, _ := time.ParseInLocation("2006-01-02", id, Shanghai)
		return store.Window{ID: id, Start: d.Add(-time.Hour).UTC(), CutOff: d.Add(23 * time.Hour).UTC(), State: store.WindowOpen}
	}
	at := clock()
	settle := func(id string, ss ...store.Settlement) {
		if _, _, err := cs.OpenWindow(ctx, win(id)); err != nil {
			t.Fatal(err)
		}
		if ss == nil {
			return
		}
		if _, err := cs.CloseWindow(ctx, id, at); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.SettleWindow(ctx, id, at, ss); err != nil {
			t.Fatal(err)
		}
	}
	s := func(w, m string, count, gross, fee int64) store.Settlement {
		return store.Settlement{Window: w, Merchant: m, Totals: store.Totals{Count: count, Payments: count, Gross: gross, Net: gross},
			Fee: fee, Payable: gross - fee}
	}
	settle("2026-02-27", s("2026-02-27", mB, 1, 500, 3))
	settle("2026-02-28")
	settle("2026-03-01", s("2026-03-01", mA, 28, 2800, 17), s("2026-03-01", mB, 4, 2800, 17))
}

func TestClearingStatements(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		settleFixture(t, e.st)
		h, err := New(Config{Store: e.st, Keys: e.keys, Clock: clock}) // default: clearing's records
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := h.cfg.Statements.(*ClearingStatements); !ok {
			t.Fatalf("default statements are %T", h.cfg.Statements)
		}
		e.h = h
		var st Statement
		e.getJSON("/m/v1/statements/2026-03-01", e.keyA, &st)
		if st.Merchant != mA || st.Gross != 2800 || st.Fees != 17 || st.Payable != 2783 || st.Status != "SETTLED" {
			t.Errorf("A's statement: %+v", st)
		}
		var list struct{ Statements []Statement }
		e.getJSON("/m/v1/statements", e.keyB, &list)
		if len(list.Statements) != 2 || list.Statements[0].Window != "2026-03-01" || list.Statements[1].Window != "2026-02-27" {
			t.Errorf("B's list: %+v", list.Statements)
		}
		e.getJSON("/m/v1/statements", e.keyA, &list)
		if len(list.Statements) != 1 {
			t.Errorf("A's list: %+v", list.Statements)
		}
		fx := e.get("/m/v1/settlement-file/2026-03-01", e.keyA)
		if lines := strings.Split(strings.TrimSuffix(string(fx.body), "\n"), "\n"); fx.status != 200 || len(lines) != 4 ||
			!strings.HasPrefix(lines[0], "C,") || !strings.HasPrefix(lines[3], "D,2026-03-01,"+mA+",") {
			t.Errorf("A's settlement file: %d %q", fx.status, fx.body)
		}
		for _, p := range []string{"/m/v1/statements/%s", "/m/v1/statements/%s.csv", "/m/v1/settlement-file/%s"} {
			theirs := e.get(strings.Replace(p, "%s", "2026-02-27", 1), e.keyA) // settled, B only
			if theirs.status != 404 {
				t.Errorf("%s: another merchant's window: %d %s", p, theirs.status, theirs.body)
			}
			for _, w := range []string{"2026-02-26", "2026-02-28", "2026-03-05", "x"} { // none, open, future, junk
				if r := e.get(strings.Replace(p, "%s", w, 1), e.keyA); !reflect.DeepEqual(theirs, r) {
					t.Errorf("%s: window %s answers differently from another merchant's:\n%d %q\n%d %q",
						p, w, theirs.status, theirs.body, r.status, r.body)
				}
			}
		}
	})
}

// heldFixture settles windows with e-CNY double-offline receipts: B's
// receipt of 2026-02-27 (300 fen) is held by that window and, its wallet
// having synced on March 1, released by 2026-03-01; A's receipt of
// 2026-03-01 (150 fen, paid before midnight, so not today's) is held by
// it. 2026-02-28 stays open.
func heldFixture(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	cs := st.(store.Clearing)
	offline := func(lsn uint64, at time.Time, merchant, wallet string, amount int64) handoff.Txn {
		r := row(lsn, at, merchant, handoff.SceneStall, "STALL-E", handoff.OpPurchase, amount)
		r.Source, r.InstKind, r.Account, r.Unsynced = "gw2", "ecny", wallet, true
		return r
	}
	synced := day.Add(2 * time.Hour)
	batches := []*handoff.Batch{
		{ID: handoff.BatchID("gw2", 1, 2), Source: "gw2", FirstLSN: 1, LastLSN: 2, Watermark: day.UTC(), Rows: []handoff.Txn{
			offline(1, day.AddDate(0, 0, -2).Add(time.Hour), mB, "ecny:W-1", 300),
			offline(2, day.Add(-8*time.Hour-30*time.Minute), mA, "ecny:W-2", 150)}},
		{ID: handoff.BatchID("gw2", 3, 3), Source: "gw2", FirstLSN: 3, LastLSN: 3, Watermark: synced.UTC(),
			Syncs: []handoff.Sync{{Account: "ecny:W-1", At: synced.UTC(), LSN: 3}}},
	}
	win := func(id string) store.Window {
		d, _ := time.ParseInLocation("2006-01-02", id, Shanghai)
		return store.Window{ID: id, Start: d.Add(-time.Hour).UTC(), CutOff: d.Add(23 * time.Hour).UTC(), State: store.WindowOpen}
	}
	settle := func(id string, ss ...store.Settlement) {
		t.Helper()
		if _, _, err := cs.OpenWindow(ctx, win(id)); err != nil {
			t.Fatal(err)
		}
		if ss == nil {
			return
		}
		if _, err := cs.CloseWindow(ctx, id, clock()); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.SettleWindow(ctx, id, clock(), ss); err != nil {
			t.Fatal(err)
		}
	}
	s := func(w, m string, count, gross, fee, held, released int64) store.Settlement {
		return store.Settlement{Window: w, Merchant: m, Totals: store.Totals{Count: count, Payments: count, Gross: gross, Net: gross},
			Fee: fee, Held: held, Released: released, Payable: gross - fee - held + released}
	}
	if _, err := st.Ingest(ctx, batches[0]); err != nil {
		t.Fatal(err)
	}
	settle("2026-02-27", s("2026-02-27", mB, 2, 800, 3, 300, 0))
	settle("2026-02-28")
	if _, err := st.Ingest(ctx, batches[1]); err != nil {
		t.Fatal(err)
	}
	settle("2026-03-01", s("2026-03-01", mA, 29, 2950, 17, 150, 0), s("2026-03-01", mB, 4, 2800, 17, 0, 300))
}

// TestClearingStatementsHeld: statements (JSON, CSV, the page) show the
// held and released e-CNY receipts next to payable.
func TestClearingStatementsHeld(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		heldFixture(t, e.st)
		h, err := New(Config{Store: e.st, Keys: e.keys, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		e.h = h
		for _, c := range []struct {
			key, window                    string
			held, released, payable, gross int64
		}{
			{e.keyA, "2026-03-01", 150, 0, 2783, 2950},
			{e.keyB, "2026-03-01", 0, 300, 3083, 2800},
			{e.keyB, "2026-02-27", 300, 0, 497, 800},
		} {
			var st Statement
			e.getJSON("/m/v1/statements/"+c.window, c.key, &st)
			if st.Held != c.held || st.Released != c.released || st.Payable != c.payable || st.Gross != c.gross {
				t.Errorf("%s of %s: %+v, want held %d released %d payable %d", c.window, st.Merchant, st, c.held, c.released, c.payable)
			}
			// The JSON names them, beside payable_fen.
			var raw map[string]any
			e.getJSON("/m/v1/statements/"+c.window, c.key, &raw)
			if raw["held_fen"] != float64(c.held) || raw["released_fen"] != float64(c.released) || raw["payable_fen"] != float64(c.payable) {
				t.Errorf("%s JSON: %v", c.window, raw)
			}
			recs := readCSV(t, e.get("/m/v1/statements/"+c.window+".csv", c.key))
			if len(recs) != 2 || !reflect.DeepEqual(recs[0], StatementCSVHeader) {
				t.Fatalf("statement csv: %q", recs)
			}
			got := map[string]string{}
			for i, k := range recs[0] {
				got[k] = recs[1][i]
			}
			for k, v := range map[string]string{"held_fen": fmt.Sprint(c.held), "released_fen": fmt.Sprint(c.released),
				"payable_fen": fmt.Sprint(c.payable), "payable_yuan": yuan(c.payable), "status": "SETTLED"} {
				if got[k] != v {
					t.Errorf("%s csv %s = %q, want %q", c.window, k, got[k], v)
				}
			}
		}
		var list struct{ Statements []Statement }
		e.getJSON("/m/v1/statements", e.keyB, &list)
		if len(list.Statements) != 2 || list.Statements[0].Released != 300 || list.Statements[1].Held != 300 {
			t.Errorf("B's list: %+v", list.Statements)
		}
		sid, _ := e.login(e.keyB)
		page := string(e.do("GET", "/m/", "", nil, sid).body)
		for _, want := range []string{`id="held-2026-02-27">3.00<`, `id="payable-2026-02-27">4.97<`, `id="released-2026-03-01">3.00<`,
			`id="held-2026-03-01">0.00<`, `id="payable-2026-03-01">30.83<`, `id="held-note"`} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %s:\n%s", want, page)
			}
		}
	})
}

// TestClearingSettlementFileExtract: a merchant's settlement-file extract
// is the bank file's own lines for it (column lines, its D line, its U
// line, its L lines), nothing of another merchant and no window-wide H or
// T line; negative amounts come out as the file has them.
func TestClearingSettlementFileExtract(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		cs := e.st.(store.Clearing)
		// A's e-CNY double-offline receipt of the window, its wallet never
		// synced: held.
		r := row(1, day.Add(-2*time.Hour), mA, handoff.SceneStall, "STALL-E", handoff.OpPurchase, 150)
		r.Source, r.InstKind, r.Account, r.Unsynced = "gw3", "ecny", "ecny:W-9", true
		if _, err := e.st.Ingest(ctx, &handoff.Batch{ID: handoff.BatchID("gw3", 1, 1), Source: "gw3", FirstLSN: 1, LastLSN: 1,
			Watermark: day.UTC(), Rows: []handoff.Txn{r}}); err != nil {
			t.Fatal(err)
		}
		if err := cs.PutMerchant(ctx, store.Merchant{ID: mA, Name: "Stall A", PayeeAccount: "6217-0001", MarketFeeRate: "0"}); err != nil {
			t.Fatal(err)
		}
		d, _ := time.ParseInLocation("2006-01-02", "2026-03-01", Shanghai)
		w := store.Window{ID: "2026-03-01", Start: d.Add(-time.Hour).UTC(), CutOff: d.Add(23 * time.Hour).UTC(), State: store.WindowOpen}
		if _, _, err := cs.OpenWindow(ctx, w); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CloseWindow(ctx, w.ID, clock()); err != nil {
			t.Fatal(err)
		}
		ss := []store.Settlement{
			{Window: w.ID, Merchant: mA, Totals: store.Totals{Count: 5, Payments: 4, Gross: 2000, Refunds: -100, RefundCount: 1, Net: 1900},
				Fee: 7, Held: 150, Divisions: []store.Division{
					{Kind: store.DivisionMarketFee, Payee: "MKT-1", Amount: 30}, {Kind: store.DivisionMarketFee, Payee: "MKT-2", Amount: -5},
					{Kind: store.DivisionInsurancePooled, Payee: "INS-1", Amount: 400}},
				Payable: 1900 - 7 - 25 - 150},
			{Window: w.ID, Merchant: mB, Totals: store.Totals{Count: 1, Payments: 1, Gross: 500, Net: 500}, Fee: 2,
				Divisions: []store.Division{{Kind: store.DivisionMarketFee, Payee: "MKT-1", Amount: 10}}, Payable: 488},
		}
		if _, err := cs.SettleWindow(ctx, w.ID, clock(), ss); err != nil {
			t.Fatal(err)
		}
		h, err := New(Config{Store: e.st, Keys: e.keys, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		e.h = h
		// The bank's file of the window, from the store's settlements.
		stored, err := cs.Settlements(ctx, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		settled, err := cs.Windows(ctx, w.ID, w.ID)
		if err != nil || len(settled) != 1 {
			t.Fatalf("window: %v, %v", settled, err)
		}
		ms, err := cs.Merchants(ctx)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]store.Merchant{}
		for _, m := range ms {
			byID[m.ID] = m
		}
		var file strings.Builder
		if err := clearing.WriteFile(&file, settled[0], stored, byID); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			key, merchant string
			want          []string // D, U and L lines
		}{
			{e.keyA, mA, []string{"D,2026-03-01,M-A,6217-0001,5,2000,0,-100,1900,7,25,*,400,1718", "U,2026-03-01,M-A,150,0",
				"L,2026-03-01,M-A,insurance_pooled,INS-1,400", "L,2026-03-01,M-A,market_fee,MKT-1,30", "L,2026-03-01,M-A,market_fee,MKT-2,-5"}},
			{e.keyB, mB, []string{"D,2026-03-01,M-B,,1,500,0,0,500,2,10,MKT-1,0,488", "L,2026-03-01,M-B,market_fee,MKT-1,10"}},
		} {
			resp := e.get("/m/v1/settlement-file/2026-03-01", c.key)
			if resp.status != 200 {
				t.Fatalf("%s: %d %s", c.merchant, resp.status, resp.body)
			}
			got := strings.Split(strings.TrimSuffix(string(resp.body), "\n"), "\n")
			var fromFile []string
			for _, line := range strings.Split(strings.TrimSuffix(file.String(), "\n"), "\n") {
				f := strings.Split(line, ",")
				if f[0] == "C" || f[0] == "CL" || f[0] == "CU" || (f[0] == "D" || f[0] == "U" || f[0] == "L") && f[2] == c.merchant {
					fromFile = append(fromFile, line)
				}
			}
			if !reflect.DeepEqual(got, fromFile) {
				t.Errorf("%s's extract is not the bank file's lines for it:\n%s\nfile:\n%s", c.merchant, strings.Join(got, "\n"), file.String())
			}
			if len(got) != 3+len(c.want) || !reflect.DeepEqual(got[3:], c.want) || !strings.HasPrefix(got[0], "C,window,merchant,payee_account,") {
				t.Errorf("%s's extract:\n%s\nwant column lines and\n%s", c.merchant, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		}
	})
}
