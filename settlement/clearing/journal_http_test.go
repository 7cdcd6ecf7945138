package clearing

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"scenepay/settlement/store"
)

const goodTotals = `{"source":"gw-1","from":"2026-03-01T15:00:00Z","to":"2026-03-02T15:00:00Z","merchants":{"M1":{"count":3,"gross_fen":500,"payments":2,"reversals_fen":-100,"reversal_count":1,"refunds_fen":0,"refund_count":0,"net_fen":400}}}`

func TestDecodeJournalTotals(t *testing.T) {
	b, err := DecodeJournalTotals([]byte(goodTotals))
	if err != nil || b.Source != "gw-1" || b.Merchants["M1"].Net != 400 {
		t.Fatalf("good: %+v %v", b, err)
	}
	for name, in := range map[string]string{
		"unknown field":        strings.Replace(goodTotals, `"count":3`, `"count":3,"extra":1`, 1),
		"net wrong":            strings.Replace(goodTotals, `"net_fen":400`, `"net_fen":401`, 1),
		"positive refunds":     strings.Replace(goodTotals, `"refunds_fen":0`, `"refunds_fen":5`, 1),
		"negative count":       strings.Replace(goodTotals, `"count":3`, `"count":-3`, 1),
		"count below payments": strings.Replace(goodTotals, `"count":3`, `"count":1`, 1),
		"no source":            strings.Replace(goodTotals, `"gw-1"`, `""`, 1),
		"no merchants":         `{"source":"gw-1","from":"2026-03-01T15:00:00Z","to":"2026-03-02T15:00:00Z"}`,
		"empty merchant":       strings.Replace(goodTotals, `"M1"`, `""`, 1),
		"trailing":             goodTotals + `{}`,
		"float":                strings.Replace(goodTotals, `"gross_fen":500`, `"gross_fen":500.5`, 1),
		"not json":             `merchants`,
	} {
		if _, err := DecodeJournalTotals([]byte(in)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// FuzzDecodeJournalTotals: any input decodes to totals that add up, or
// fails; what decodes survives a re-encode.
func FuzzDecodeJournalTotals(f *testing.F) {
	f.Add([]byte(goodTotals))
	f.Add([]byte(`{"source":"g","from":"0001-01-01T00:00:00Z","to":"0001-01-01T00:00:00Z","merchants":{}}`))
	f.Add([]byte(`{"source":"g","merchants":{"m":{"count":9223372036854775807,"gross_fen":9223372036854775807,"net_fen":9223372036854775807}}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := DecodeJournalTotals(in)
		if err != nil {
			return
		}
		for m, w := range b.Merchants {
			if err := w.check(); err != nil || m == "" {
				t.Fatalf("decoded merchant %q %+v fails its check: %v", m, w, err)
			}
		}
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeJournalTotals(out); err != nil {
			t.Fatalf("re-encoded totals do not decode: %v", err)
		}
	})
}

func TestNewHTTPJournalChecksConfig(t *testing.T) {
	for name, cfg := range map[string]HTTPJournalConfig{
		"no gateway": {Token: "t"},
		"no token":   {Gateways: []string{"http://a:1"}},
		"not http":   {Gateways: []string{"ftp://a:1"}, Token: "t"},
		"twice":      {Gateways: []string{"http://a:1", "http://a:1/"}, Token: "t"},
	} {
		if _, err := NewHTTPJournal(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The client checks what it is answered: the period echoed, and one
// source per gateway (two URLs of one gateway would count it twice).
func TestHTTPJournalRefusesWrongAnswers(t *testing.T) {
	w := store.Window{Start: time.Date(2026, 3, 1, 15, 0, 0, 0, time.UTC), CutOff: time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC)}
	var body atomic.Value
	body.Store(goodTotals)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Path != JournalTotalsPath ||
			r.URL.Query().Get("from") != "2026-03-01T15:00:00Z" || r.URL.Query().Get("to") != "2026-03-02T15:00:00Z" {
			http.Error(rw, `{"error":"bad request"}`, 400)
			return
		}
		rw.Write([]byte(body.Load().(string)))
	}))
	defer srv.Close()
	j, err := NewHTTPJournal(HTTPJournalConfig{Gateways: []string{srv.URL}, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := j.JournalTotals(context.Background(), w)
	if err != nil || got["M1"].Net != 400 {
		t.Fatalf("good answer: %v %v", got, err)
	}
	body.Store(strings.Replace(goodTotals, "2026-03-01T15", "2026-02-28T15", 1))
	if _, err := j.JournalTotals(context.Background(), w); err == nil || !strings.Contains(err.Error(), "asked") {
		t.Fatalf("answer for another period: %v", err)
	}
	body.Store(goodTotals)
	twice, _ := NewHTTPJournal(HTTPJournalConfig{Gateways: []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)}, Token: "tok"})
	if _, err := twice.JournalTotals(context.Background(), w); err == nil || !strings.Contains(err.Error(), "both answer as source") {
		t.Fatalf("one gateway under two URLs: %v", err)
	}
}

// failingJournal fails with err until ok is set.
type failingJournal struct {
	err error
	ok  atomic.Bool
}

func (f *failingJournal) JournalTotals(ctx context.Context, w store.Window) (map[string]store.Totals, error) {
	if f.ok.Load() {
		return map[string]store.Totals{}, nil
	}
	return nil, f.err
}

// The reconciliation pass: a window whose journal side fails stays due and
// is reconciled on a later pass; one a gateway no longer covers is given up.
func TestReconcilerRetriesAndGivesUp(t *testing.T) {
	ctx := context.Background()
	s, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := &batcher{last: map[string]uint64{}}
	day := time.Now().Add(-30 * time.Hour).Truncate(time.Second)
	b.send(t, s, "gw-1", time.Now().Add(-time.Minute).Truncate(time.Second), txn(day, "M1", "bus", "purchase", 250))
	cl, err := New(Config{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.Tick(ctx, time.Now())
	if err != nil || len(res.Settled) == 0 {
		t.Fatalf("tick: %+v %v", res, err)
	}
	down := &failingJournal{err: &GatewayError{Gateway: "http://gw-1:18080", Err: errors.New("connection refused")}}
	r, err := NewReconciler(cl, down, nil)
	if err != nil {
		t.Fatal(err)
	}
	pass, err := r.Pass(ctx, time.Now())
	if err != nil || len(pass.Reconciled) != 0 || pass.Pending != len(res.Settled) || pass.Failed[0].Reason != ReconcileUnavailable {
		t.Fatalf("pass with the gateway down: %+v %v", pass, err)
	}
	down.ok.Store(true)
	pass, err = r.Pass(ctx, time.Now())
	if err != nil || len(pass.Reconciled) != len(res.Settled) || pass.Pending != 0 || len(pass.Failed) != 0 {
		t.Fatalf("pass with the gateway back: %+v %v", pass, err)
	}
	// The journal's M1 is 0 here, so the store's 250 is a difference.
	diffs := 0
	for _, rc := range pass.Reconciled {
		diffs += len(rc.Differences)
	}
	if diffs == 0 {
		t.Fatalf("no difference against an empty journal: %+v", pass)
	}
	if pass, _ = r.Pass(ctx, time.Now()); len(pass.Reconciled)+len(pass.Failed) != 0 {
		t.Fatalf("a reconciled window was reconciled again: %+v", pass)
	}
	gone := &failingJournal{err: &GatewayError{Gateway: "http://gw-1:18080", Status: http.StatusGone, Msg: "journal no longer covers"}}
	r2, _ := NewReconciler(cl, gone, nil)
	pass, _ = r2.Pass(ctx, time.Now())
	if len(pass.Failed) == 0 || pass.Failed[0].Reason != ReconcileNotCovered || pass.Pending != 0 {
		t.Fatalf("pass with the window gone: %+v", pass)
	}
	if pass, _ = r2.Pass(ctx, time.Now()); len(pass.Failed) != 0 {
		t.Fatalf("a window given up was tried again: %+v", pass)
	}
}
