package clearing

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"scenepay/settlement/store"
)

// TestHoldUnsynced: a window holds its e-CNY offline receipts whose
// wallets have not synced, releases earlier held receipts whose wallets
// synced since, never holds a receipt that synced before the window is
// settled, and gives the same answer when cleared again after settling.
func TestHoldUnsynced(t *testing.T) {
	start := time.Date(2026, 3, 1, 15, 0, 0, 0, time.UTC)
	w := store.Window{ID: "2026-03-02", Start: start, CutOff: start.Add(24 * time.Hour)}
	in, before := start.Add(time.Hour), start.Add(-time.Hour)
	synced := start.Add(2 * time.Hour)
	r := func(lsn uint64, merchant string, at time.Time, amt int64, syncedAt time.Time, released string) store.UnsyncedReceipt {
		return store.UnsyncedReceipt{Source: "gw-1", LSN: lsn, Merchant: merchant, Account: "w-1", At: at, Amount: amt,
			SyncedAt: syncedAt, ReleasedWindow: released}
	}
	receipts := []store.UnsyncedReceipt{
		r(1, "STALL-M", in, 1500, time.Time{}, ""),                      // held: not synced
		r(2, "STALL-M", in, 700, synced, ""),                            // synced before settling: paid with the takings
		r(3, "STALL-M", before, 300, synced, ""),                        // released: synced since its window held it
		r(4, "STALL-M", before, 900, synced, "2026-03-01"),              // paid by its own window: nothing here
		r(5, "STALL-M", before, 11, time.Time{}, ""),                    // still held by its window
		r(6, "OTHER", before, 250, synced, ""),                          // released to a merchant without takings
		r(7, "STALL-M", in, 40, synced, "2026-03-02"),                   // cleared again after settling: paid here
		r(8, "STALL-M", in, 60, synced.Add(48*time.Hour), "2026-03-04"), // cleared again: released later, held here
		r(9, "STALL-M", before, 5, synced, "2026-03-02"),                // cleared again: released here
		r(10, "STALL-M", before, 8, synced, "2026-03-03"),               // released by another window
	}
	ss := []store.Settlement{{Window: w.ID, Merchant: "STALL-M", Totals: store.Totals{Count: 4, Gross: 2300, Payments: 4, Net: 2300},
		Fee: 10, Payable: 2290}}
	got, err := HoldUnsynced(w, ss, receipts)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Settlement{
		{Window: w.ID, Merchant: "OTHER", Released: 250, Payable: 250},
		{Window: w.ID, Merchant: "STALL-M", Totals: ss[0].Totals, Fee: 10, Held: 1500 + 60, Released: 300 + 5,
			Payable: 2290 - 1560 + 305},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("HoldUnsynced =\n%+v\nwant\n%+v", got, want)
	}
	// The same receipt synced before the window is settled is never held.
	one := []store.Settlement{{Window: w.ID, Merchant: "STALL-M", Totals: store.Totals{Count: 1, Gross: 1500, Payments: 1, Net: 1500}, Payable: 1500}}
	got, err = HoldUnsynced(w, one, []store.UnsyncedReceipt{r(1, "STALL-M", in, 1500, w.CutOff.Add(time.Hour), "")})
	if err != nil || got[0].Held != 0 || got[0].Payable != 1500 {
		t.Fatalf("synced before settling: %+v, %v", got, err)
	}
	// No receipts: the settlements unchanged.
	if got, err := HoldUnsynced(w, one, nil); err != nil || !reflect.DeepEqual(got, one) {
		t.Fatalf("no receipts: %+v, %v", got, err)
	}
	for name, bad := range map[string]store.UnsyncedReceipt{
		"after the cut-off": r(1, "M", w.CutOff, 100, time.Time{}, ""),
		"zero amount":       r(1, "M", in, 0, time.Time{}, ""),
	} {
		if _, err := HoldUnsynced(w, nil, []store.UnsyncedReceipt{bad}); err == nil || !strings.Contains(err.Error(), "gw-1/1") {
			t.Errorf("%s: %v, want an error naming the receipt", name, err)
		}
	}
}

// The settlement file carries a U line after the D line of a merchant
// that holds or releases receipts; statements show both amounts.
func TestFileAndStatementUnsynced(t *testing.T) {
	ss := []store.Settlement{
		{Window: "2026-03-01", Merchant: "A", Totals: store.Totals{Count: 1, Gross: 100, Payments: 1, Net: 100}, Payable: 100},
		{Window: "2026-03-01", Merchant: "B", Totals: store.Totals{Count: 1, Gross: 1500, Payments: 1, Net: 1500},
			Held: 1500, Released: 300, Payable: 300},
	}
	var b strings.Builder
	if err := WriteFile(&b, computeWindow, ss, nil); err != nil {
		t.Fatal(err)
	}
	want := "CU,window,merchant,held_fen,released_fen\nD,2026-03-01,A,,1,100,0,0,100,0,0,,0,100\n" +
		"D,2026-03-01,B,,1,1500,0,0,1500,0,0,,0,300\nU,2026-03-01,B,1500,300\nT,2026-03-01,2,2,1600,1600,0,0,0,400\n"
	if !strings.HasPrefix(b.String(), "H,scenepay-settlement,3,") || !strings.Contains(b.String(), want) {
		t.Fatalf("settlement file:\n%s\nwant to contain:\n%s", b.String(), want)
	}
	st := NewStatement(computeWindow, &ss[1])
	var js, cs strings.Builder
	if err := WriteStatementJSON(&js, st); err != nil {
		t.Fatal(err)
	}
	if err := WriteStatementCSV(&cs, st); err != nil {
		t.Fatal(err)
	}
	for _, frag := range []string{`"held_fen": 1500`, `"released_fen": 300`, `"payable_fen": 300`} {
		if !strings.Contains(js.String(), frag) {
			t.Errorf("statement JSON lacks %s:\n%s", frag, js.String())
		}
	}
	if !strings.HasSuffix(cs.String(), ",0,0,300,1500,300\n") {
		t.Errorf("statement CSV:\n%s", cs.String())
	}
}
