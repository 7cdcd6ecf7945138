package clearing

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"scenepay/settlement/store/pgtest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

type opener func(ctx context.Context) (store.Store, error)

func sqliteOpener(t *testing.T) opener {
	path := filepath.Join(t.TempDir(), "settlement.db")
	return func(ctx context.Context) (store.Store, error) { return store.OpenSQLite(ctx, path) }
}

// pgOpener opens a store in a schema private to this test, dropped at
// the end.
func pgOpener(t *testing.T) opener {
	url := pgtest.Schema(t, "clearing")
	return func(ctx context.Context) (store.Store, error) { return store.OpenPostgres(ctx, url) }
}

func forEachStore(t *testing.T, fn func(t *testing.T, open opener)) {
	t.Run("SQLite", func(t *testing.T) { fn(t, sqliteOpener(t)) })
	t.Run("PostgreSQL", func(t *testing.T) { fn(t, pgOpener(t)) })
}

type batcher struct {
	last map[string]uint64
}

// send ingests rows of source as the next batch, with watermark wm.
func (b *batcher) send(t *testing.T, s store.Store, source string, wm time.Time, rows ...handoff.Txn) {
	t.Helper()
	first := b.last[source] + 1
	for i := range rows {
		rows[i].Source, rows[i].LSN = source, first+uint64(i)
		if rows[i].Txn == 0 {
			rows[i].Txn = rows[i].LSN
		}
	}
	last := first + uint64(len(rows)) - 1
	batch := &handoff.Batch{ID: handoff.BatchID(source, first, last), Source: source, FirstLSN: first, LastLSN: last,
		Watermark: wm.UTC(), Rows: rows}
	if len(rows) == 0 {
		batch.FirstLSN, batch.LastLSN, batch.ID = 0, 0, handoff.BatchID(source, 0, 0)
	} else {
		b.last[source] = last
	}
	if _, err := s.Ingest(context.Background(), batch); err != nil {
		t.Fatalf("ingest %s: %v", batch.ID, err)
	}
}

func txn(at time.Time, merchant, scene, op string, amount int64) handoff.Txn {
	x := handoff.Txn{At: at.UTC(), Merchant: merchant, Terminal: "T-1", Scene: scene, Op: op, InstKind: "county",
		Account: "county:C-1", Amount: amount, Auth: "A"}
	if amount < 0 {
		x.Orig = 1
	}
	return x
}

type fakeJournal struct{ totals map[string]store.Totals }

func (f *fakeJournal) JournalTotals(ctx context.Context, w store.Window) (map[string]store.Totals, error) {
	return f.totals, nil
}

func TestWindowDrainSettleReconcile(t *testing.T) {
	forEachStore(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		s, err := open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, r := range []store.FeeRate{{Merchant: "*", Scene: "stall", Rate: "0.006"}, {Merchant: "*", Scene: "bus", Rate: "0.002"}} {
			if err := s.PutFeeRate(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.PutMerchant(ctx, store.Merchant{ID: "STALL-1", Name: "Stall 1", PayeeAccount: "ACC-STALL-1",
			MarketOperator: "MARKET", MarketFeeRate: "0.01"}); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		journal := &fakeJournal{}
		var files []string
		cl, err := New(Config{Store: s, Grace: 10 * time.Minute, Journal: journal, Registerer: reg,
			OnSettled: func(w store.Window, ss []store.Settlement) {
				ms, _ := s.Merchants(ctx)
				by := map[string]store.Merchant{}
				for _, m := range ms {
					by[m.ID] = m
				}
				var buf bytes.Buffer
				if err := WriteFile(&buf, w, ss, by); err != nil {
					t.Errorf("WriteFile: %v", err)
				}
				files = append(files, buf.String())
			}})
		if err != nil {
			t.Fatal(err)
		}
		b := &batcher{last: map[string]uint64{}}
		// Window 2026-03-01 runs [02-28 23:00, 03-01 23:00) Shanghai.
		b.send(t, s, "gw-1", sh(2026, 3, 1, 23, 30, 0, 0),
			txn(sh(2026, 3, 1, 10, 0, 0, 0), "STALL-1", "stall", "purchase", 250),
			txn(sh(2026, 3, 1, 11, 0, 0, 0), "STALL-1", "stall", "purchase", 250),
			txn(sh(2026, 3, 1, 12, 0, 0, 0), "STALL-1", "stall", "refund", -100),
			txn(sh(2026, 3, 1, 13, 0, 0, 0), "BUS-CO", "bus", "purchase", 200),
			txn(sh(2026, 3, 1, 13, 0, 1, 0), "BUS-CO", "bus", "reversal", -200),
			txn(sh(2026, 3, 1, 23, 0, 0, 0), "BUS-CO", "bus", "purchase", 200)) // at the cut-off: next window
		// gw-2 has handed off only up to 22:40: its batches before the
		// cut-off may still be on the way.
		b.send(t, s, "gw-2", sh(2026, 3, 1, 22, 40, 0, 0),
			txn(sh(2026, 3, 1, 22, 30, 0, 0), "BUS-CO", "bus", "purchase", 150))

		res, err := cl.Tick(ctx, sh(2026, 3, 1, 23, 40, 0, 0))
		if err != nil {
			t.Fatal(err)
		}
		if res.Waiting != "2026-03-01" || len(res.Closed) != 0 || len(res.Settled) != 0 {
			t.Fatalf("tick before drain: %+v", res)
		}
		if !reflect.DeepEqual(res.Opened, []string{"2026-02-28", "2026-03-01", "2026-03-02"}) {
			// 02-28 exists because no row is older than 03-01's window;
			// the first window is the earliest transaction's.
			if !reflect.DeepEqual(res.Opened, []string{"2026-03-01", "2026-03-02"}) {
				t.Fatalf("opened %v", res.Opened)
			}
		}
		if w, _ := s.Window(ctx, "2026-03-01"); w.State != store.WindowOpen {
			t.Fatalf("window closed before drain: %+v", w)
		}
		// The late batch: a 22:59:59.999999 payment from gw-2, and a
		// watermark past the cut-off plus grace.
		b.send(t, s, "gw-2", sh(2026, 3, 1, 23, 15, 0, 0),
			txn(sh(2026, 3, 1, 22, 59, 59, 999999), "BUS-CO", "bus", "purchase", 100))
		journal.totals = map[string]store.Totals{
			"STALL-1": {Count: 3, Gross: 500, Payments: 2, Refunds: -100, RefundCount: 1, Net: 400},
			// Planted: the journal has one fen more gross for BUS-CO.
			"BUS-CO": {Count: 4, Gross: 451, Payments: 3, Reversals: -200, ReversalCount: 1, Net: 251},
		}
		res, err = cl.Tick(ctx, sh(2026, 3, 1, 23, 41, 0, 0))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(res.Closed, []string{"2026-03-01"}) || !reflect.DeepEqual(res.Settled, []string{"2026-03-01"}) ||
			res.Waiting != "2026-03-02" {
			t.Fatalf("tick after drain: %+v", res)
		}
		got, err := s.Settlements(ctx, "2026-03-01")
		if err != nil {
			t.Fatal(err)
		}
		want := []store.Settlement{
			// The fee is on net takings: 250 × 0.002 = 0.5 -> 0 (half to even).
			{Window: "2026-03-01", Merchant: "BUS-CO", Totals: store.Totals{Count: 4, Gross: 450, Payments: 3,
				Reversals: -200, ReversalCount: 1, Net: 250}, Fee: 0, Payable: 250},
			// 400 × 0.006 = 2.4 -> 2; market 400 × 0.01 = 4.
			{Window: "2026-03-01", Merchant: "STALL-1", Totals: store.Totals{Count: 3, Gross: 500, Payments: 2,
				Refunds: -100, RefundCount: 1, Net: 400}, Fee: 2, Payable: 394,
				Divisions: []store.Division{{Kind: store.DivisionMarketFee, Payee: "MARKET", Amount: 4}}},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("settlements =\n%+v\nwant\n%+v", got, want)
		}
		// The settlement file.
		if len(files) != 1 {
			t.Fatalf("%d files written", len(files))
		}
		wantFile := "H,scenepay-settlement,3,2026-03-01,2026-02-28T15:00:00Z,2026-03-01T15:00:00Z,2026-03-01T15:41:00Z\n" +
			"C,window,merchant,payee_account,count,gross_fen,reversals_fen,refunds_fen,net_fen,fee_fen,market_fee_fen,market_operator,insurance_fen,payable_fen\n" +
			"CL,window,merchant,kind,payee,amount_fen\n" +
			"CU,window,merchant,held_fen,released_fen\n" +
			"D,2026-03-01,BUS-CO,,4,450,-200,0,250,0,0,,0,250\n" +
			"D,2026-03-01,STALL-1,ACC-STALL-1,3,500,0,-100,400,2,4,MARKET,0,394\n" +
			"L,2026-03-01,STALL-1,market_fee,MARKET,4\n" +
			"T,2026-03-01,2,7,950,650,2,4,0,644\n"
		// SettledAt in the header is the tick's time; OnSettled gets the
		// window as listed before settlement, so rebuild from the store.
		w, _ := s.Window(ctx, "2026-03-01")
		var buf bytes.Buffer
		if err := WriteFile(&buf, w, got, map[string]store.Merchant{"STALL-1": {PayeeAccount: "ACC-STALL-1"}}); err != nil {
			t.Fatal(err)
		}
		if buf.String() != wantFile {
			t.Fatalf("settlement file:\n%s\nwant:\n%s", buf.String(), wantFile)
		}
		if !strings.HasSuffix(files[0], "T,2026-03-01,2,7,950,650,2,4,0,644\n") {
			t.Fatalf("file from OnSettled:\n%s", files[0])
		}
		// The statement of STALL-1, JSON and CSV.
		st := NewStatement(w, &got[1])
		var js, cs bytes.Buffer
		if err := WriteStatementJSON(&js, st); err != nil {
			t.Fatal(err)
		}
		if err := WriteStatementCSV(&cs, st); err != nil {
			t.Fatal(err)
		}
		for _, frag := range []string{`"merchant": "STALL-1"`, `"state": "SETTLED"`, `"net_fen": 400`, `"fee_fen": 2`,
			`"payable_fen": 394`, `"kind": "market_fee"`, `"amount_fen": 4`} {
			if !strings.Contains(js.String(), frag) {
				t.Errorf("statement JSON lacks %s:\n%s", frag, js.String())
			}
		}
		wantCSV := strings.Join(StatementColumns, ",") + "\n" +
			"STALL-1,2026-03-01,2026-02-28T15:00:00Z,2026-03-01T15:00:00Z,SETTLED,3,2,500,0,0,-100,1,400,2,4,0,394,0,0\n"
		if cs.String() != wantCSV {
			t.Fatalf("statement CSV:\n%s\nwant:\n%s", cs.String(), wantCSV)
		}
		// Reconciliation ran after settlement and found the planted
		// difference: gross and net of BUS-CO, one fen each.
		diffs, err := s.Differences(ctx, "2026-03-01")
		if err != nil {
			t.Fatal(err)
		}
		if len(diffs) != 2 || diffs[0].Merchant != "BUS-CO" || diffs[0].Field != "gross" || diffs[0].Journal != 451 ||
			diffs[0].Store != 450 || diffs[1].Field != "net" {
			t.Fatalf("differences = %+v", diffs)
		}
		if v := testutil.ToFloat64(cl.m.differenceFen); v != 2 {
			t.Fatalf("difference gauge = %v, want 2", v)
		}
		if v := testutil.ToFloat64(cl.m.differences); v != 2 {
			t.Fatalf("differences counter = %v, want 2", v)
		}
		// Nothing was corrected: the settlement still says 450.
		if x, _ := s.Settlement(ctx, "2026-03-01", "BUS-CO"); x.Gross != 450 {
			t.Fatalf("settlement changed by reconciliation: %+v", x)
		}

		// Restart: a new clearer on the reopened store; ticking again
		// changes nothing, and reconciling again adds no new record.
		s2, err := open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		cl2, err := New(Config{Store: s2, Grace: 10 * time.Minute, Journal: journal})
		if err != nil {
			t.Fatal(err)
		}
		before, _ := s2.Window(ctx, "2026-03-01")
		res, err = cl2.Tick(ctx, sh(2026, 3, 1, 23, 50, 0, 0))
		if err != nil || len(res.Closed)+len(res.Settled)+len(res.Opened) != 0 {
			t.Fatalf("tick after restart: %+v, %v", res, err)
		}
		if ok, err := s2.CloseWindow(ctx, "2026-03-01", sh(2026, 3, 2, 1, 0, 0, 0)); ok || err != nil {
			t.Fatalf("second close: %v, %v", ok, err)
		}
		after, _ := s2.Window(ctx, "2026-03-01")
		if before != after {
			t.Fatalf("window changed by a repeated tick: %+v -> %+v", before, after)
		}
		if again, _ := s2.Settlements(ctx, "2026-03-01"); !reflect.DeepEqual(again, want) {
			t.Fatalf("settlements changed: %+v", again)
		}
		r, err := cl2.Reconcile(ctx, "2026-03-01", sh(2026, 3, 2, 1, 0, 0, 0))
		if err != nil || r.New != 0 || len(r.Differences) != 2 {
			t.Fatalf("second reconcile: %+v, %v", r, err)
		}
		// The 23:00 payment is in 2026-03-02, still draining.
		t2, _ := s2.SceneTotals(ctx, mustWindow(t, "2026-03-02").Start, mustWindow(t, "2026-03-02").CutOff)
		if len(t2) != 1 || t2[0].Gross != 200 {
			t.Fatalf("next window totals = %+v", t2)
		}
		// A row for a settled window arriving after settlement is
		// reported, not absorbed.
		b.send(t, s2, "gw-3", sh(2026, 3, 2, 2, 0, 0, 0), txn(sh(2026, 3, 1, 20, 0, 0, 0), "STALL-1", "stall", "purchase", 70))
		r, err = cl2.Reconcile(ctx, "2026-03-01", sh(2026, 3, 2, 2, 0, 0, 0))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, d := range r.Differences {
			if d.Merchant == "STALL-1" && d.Field == "settled_net" && d.Journal == 400 && d.Store == 470 {
				found = true
			}
		}
		if !found {
			t.Fatalf("late row not reported: %+v", r.Differences)
		}
		// Window state gauge.
		if v := testutil.ToFloat64(cl.m.state.WithLabelValues("SETTLED")); v != 1 {
			t.Fatalf("SETTLED gauge = %v", v)
		}
	})
}

func mustWindow(t *testing.T, id string) store.Window {
	w, ok := Calendar{}.ByID(id)
	if !ok {
		t.Fatalf("window %s", id)
	}
	return w
}
