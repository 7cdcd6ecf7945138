package merchant

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

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
		recs := readCSV(t, e.get("/m/v1/settlement-file/2026-03-01", e.keyA))
		if len(recs) != 2 || recs[1][0] != "D" || recs[1][2] != mA {
			t.Errorf("A's settlement file: %q", recs)
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
