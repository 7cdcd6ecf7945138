package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProcessSettlesAndServes(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db := filepath.Join(dir, "settlement.db")
	s, err := store.OpenSQLite(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	sh := time.FixedZone("CST", 8*3600)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, sh).UTC()
	b := &handoff.Batch{ID: handoff.BatchID("gw-1", 1, 2), Source: "gw-1", FirstLSN: 1, LastLSN: 2,
		Watermark: time.Date(2026, 3, 1, 23, 30, 0, 0, sh).UTC(),
		Rows: []handoff.Txn{{Source: "gw-1", LSN: 1, At: at, Merchant: "M1", Terminal: "T-1", Scene: "bus", Op: "purchase",
			InstKind: "county", Account: "county:C-1", Amount: 200, Auth: "A1", Txn: 1,
			// The market operator's leg of the payment: the process
			// clears with the store as its leg source.
			Legs: []handoff.Leg{{Kind: handoff.LegMarketFee, Payee: "MKT-OP", Amount: 4}}},
			// An e-CNY double-offline payment whose wallet never syncs: held.
			{Source: "gw-1", LSN: 2, At: at.Add(time.Hour), Merchant: "M2", Terminal: "T-2", Scene: "stall", Op: "purchase",
				InstKind: "ecny", Account: "w-1", Amount: 300, Auth: "A2", Txn: 2, Unsynced: true}}}
	if _, err := s.Ingest(ctx, b); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cfg, err := parseFlags([]string{"-db", db, "-files-dir", filepath.Join(dir, "files"), "-cutoff", "23:00", "-grace", "10m", "-tick", "50ms"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DefaultRate.Cmp(decimal.Zero) != 0 || cfg.CutOff != 23*time.Hour {
		t.Fatalf("config = %+v", cfg)
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
	file := filepath.Join(dir, "files", "settlement-2026-03-01.csv")
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _ := get(t, base+"/readyz")
		if _, err := os.Stat(file); err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready with a settlement file (readyz %d)", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	code, body := get(t, base+"/metrics")
	for _, want := range []string{`scenepay_settlement_window_state{state="SETTLED"} 1`,
		`scenepay_settlement_window_state{state="OPEN"} 1`, "scenepay_settlement_windows_closed_total 1",
		"scenepay_settlement_statements_total 2", "scenepay_settlement_files_written_total 1",
		"scenepay_settlement_ecny_held_fen 300", "scenepay_settlement_ecny_held_receipts 1",
		"scenepay_settlement_ecny_held_oldest_seconds 38700", // 23:45 - 13:00
		// SQLite has no recent part: nothing moved, nothing waiting.
		"scenepay_settlement_recent_rows_moved_total 0", "scenepay_settlement_recent_rows 0"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get(t, base+"/nope"); code != 404 {
		t.Errorf("/nope = %d", code)
	}
	content, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(content)), "\n")
	if len(lines) != 9 || !strings.HasPrefix(lines[0], "H,scenepay-settlement,3,2026-03-01,") ||
		lines[4] != "D,2026-03-01,M1,,1,200,0,0,200,0,4,MKT-OP,0,196" || lines[5] != "L,2026-03-01,M1,market_fee,MKT-OP,4" ||
		lines[6] != "D,2026-03-01,M2,,1,300,0,0,300,0,0,,0,0" || lines[7] != "U,2026-03-01,M2,300,0" ||
		lines[8] != "T,2026-03-01,2,2,500,500,0,4,0,196" {
		t.Fatalf("settlement file:\n%s", content)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestParseFlags(t *testing.T) {
	for _, bad := range [][]string{{"-cutoff", "25:00"}, {"-cutoff", "00:00"}, {"-cutoff", "9:00"}, {"-default-rate", "1.5"}, {"-tick", "0s"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%v) accepted", bad)
		}
	}
	c, err := parseFlags([]string{"-data-dir", "/x", "-cutoff", "24:00"})
	if err != nil || c.DB != "/x/settlement.db" || c.FilesDir != "/x/settlement-files" || c.CutOff != 24*time.Hour {
		t.Fatalf("defaults = %+v, %v", c, err)
	}
}
