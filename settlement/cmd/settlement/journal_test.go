package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"scenepay/settlement/clearing"
	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

func TestParseFlagsJournalGateways(t *testing.T) {
	t.Setenv("SCENEPAY_GATEWAY_TOKEN", "")
	if _, err := parseFlags([]string{"-journal-gateways", "http://gw1:18080"}); err == nil {
		t.Fatal("gateways without a token accepted")
	}
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseFlags([]string{"-journal-gateways", "http://gw1:18080, http://gw2:18080,", "-gateway-token-file", tok})
	if err != nil || len(c.JournalGateways) != 2 || c.JournalGateways[1] != "http://gw2:18080" || c.GatewayToken != "s3cret" {
		t.Fatalf("config = %+v, %v", c, err)
	}
	t.Setenv("SCENEPAY_GATEWAY_TOKEN", "from-env")
	if c, err := parseFlags([]string{"-journal-gateways", "http://gw1:18080"}); err != nil || c.GatewayToken != "from-env" {
		t.Fatalf("token from the environment: %+v, %v", c, err)
	}
	// The gateway compares the lower-case hex form of its token file.
	if err := os.WriteFile(tok, []byte("AB12CD34EF\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := parseFlags([]string{"-journal-gateways", "http://gw1:18080", "-gateway-token-file", tok}); err != nil || c.GatewayToken != "ab12cd34ef" {
		t.Fatalf("hex token in upper case: %+v, %v", c, err)
	}
	if c, err := parseFlags(nil); err != nil || len(c.JournalGateways) != 0 {
		t.Fatalf("no gateways: %+v, %v", c, err)
	}
}

// The process reconciles a settled window against the configured gateway
// (here a stand-in serving the gateway's answer for one merchant, 150 fen
// short of the store) and records the difference; the gauge names one
// gateway.
func TestProcessReconcilesAgainstGateways(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db := filepath.Join(dir, "settlement.db")
	s, err := store.OpenSQLite(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	sh := time.FixedZone("CST", 8*3600)
	b := &handoff.Batch{ID: handoff.BatchID("gw-1", 1, 1), Source: "gw-1", FirstLSN: 1, LastLSN: 1,
		Watermark: time.Date(2026, 3, 1, 23, 30, 0, 0, sh).UTC(),
		Rows: []handoff.Txn{{Source: "gw-1", LSN: 1, At: time.Date(2026, 3, 1, 12, 0, 0, 0, sh).UTC(), Merchant: "M1", Terminal: "T-1",
			Scene: "bus", Op: "purchase", InstKind: "county", Account: "county:C-1", Amount: 350, Auth: "A1", Txn: 1}}}
	if _, err := s.Ingest(ctx, b); err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int32
	gw := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Path != clearing.JournalTotalsPath {
			http.Error(rw, `{"error":"no"}`, 401)
			return
		}
		asked.Add(1)
		from, _ := time.Parse(time.RFC3339Nano, r.URL.Query().Get("from"))
		to, _ := time.Parse(time.RFC3339Nano, r.URL.Query().Get("to"))
		body := clearing.JournalTotalsBody{Source: "gw-1", From: from, To: to, Merchants: map[string]clearing.WireTotals{}}
		if from.Equal(time.Date(2026, 2, 28, 23, 0, 0, 0, sh)) {
			body.Merchants["M1"] = clearing.WireTotals{Count: 1, Gross: 200, Payments: 1, Net: 200}
		}
		json.NewEncoder(rw).Encode(body)
	}))
	defer gw.Close()
	t.Setenv("SCENEPAY_GATEWAY_TOKEN", "tok")
	cfg, err := parseFlags([]string{"-db", db, "-files-dir", filepath.Join(dir, "files"), "-tick", "50ms", "-journal-gateways", gw.URL})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 23, 45, 0, 0, sh)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(rctx, cfg, ln, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	base := "http://" + ln.Addr().String()
	deadline := time.Now().Add(20 * time.Second)
	var diffs []store.Difference
	for {
		if diffs, err = s.Differences(ctx, "2026-03-01"); err == nil && len(diffs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no difference recorded (gateway asked %d times): %v", asked.Load(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	found := false
	for _, d := range diffs {
		found = found || (d.Merchant == "M1" && d.Field == "gross" && d.Journal == 200 && d.Store == 350)
	}
	if !found {
		t.Fatalf("differences %+v, want gross journal 200 store 350", diffs)
	}
	_, body := get(t, base+"/metrics")
	for _, want := range []string{"scenepay_settlement_reconciliation_journal_gateways 1", "scenepay_settlement_reconciliation_pending_windows 0",
		`scenepay_settlement_reconciliation_failures_total{reason="unavailable"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	s.Close()
}
