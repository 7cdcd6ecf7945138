package rig

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"scenepay/emulator/internal/fleet"
	"scenepay/settlement/store/pgtest"
	"scenepay/terminals"
)

// machineBroker is the machine's Mosquitto (anonymous, loopback).
const machineBroker = "tcp://127.0.0.1:1883"

func buildGateway(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gateway")
	out, err := exec.Command("go", "build", "-o", bin, "scenepay/gateway/cmd/gateway").CombinedOutput()
	if err != nil {
		t.Fatalf("build gateway: %v\n%s", err, out)
	}
	return bin
}

func readMaster(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestMixedScenarioWithFaultsPassesAudit runs a compressed town day against
// the real gateway binary on the machine's Mosquitto (a topic root of its
// own), with every per-work fault and a gateway SIGKILL + restart in the
// middle, and requires the balance and settlement audits to pass, with the
// stalls' codes paid and refunded by the wallet backend and the card an
// offline upload left in debt repaid by a top-up (debt first, then off the
// deny list on every reader). It runs
// once per settlement store the gateway can hand off to: the embedded
// SQLite file and a private schema on the machine's PostgreSQL, which the
// gateway gets as -settlement-db and the audit reads through the same URL.
func TestMixedScenarioWithFaultsPassesAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the gateway binary")
	}
	if _, err := exec.LookPath("mosquitto"); err != nil {
		t.Skip("mosquitto not installed")
	}
	bin := buildGateway(t)
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) string // the rig's SettlementDB
	}{
		{"sqlite", func(*testing.T) string { return "" }},
		{"postgres", func(t *testing.T) string { return pgtest.Schema(t, "rig") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runMixedScenario(t, bin, tc.store(t))
		})
	}
}

func runMixedScenario(t *testing.T, bin, settleDB string) {
	root := fmt.Sprintf("t-rig-%d/scp/v1", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dataDir := t.TempDir()
	rg, err := Start(ctx, Config{GatewayBin: bin, DataDir: dataDir, BrokerURL: machineBroker, TopicRoot: root,
		Token: "rig-op", WalletToken: "rig-wallet", SettlementDB: settleDB})
	if err != nil {
		t.Skipf("gateway on the machine broker: %v", err)
	}
	defer rg.Close()
	if settleDB != "" && rg.SettlementDB() != settleDB {
		t.Fatalf("rig audits %q, the gateway writes %q", rg.SettlementDB(), settleDB)
	}
	f, err := fleet.ParseFaults("all", 0.15)
	if err != nil {
		t.Fatal(err)
	}
	f.BrokerRestarts = 0 // the machine's broker is not ours to restart
	var out, prog bytes.Buffer
	now := time.Now()
	rep, err := fleet.Run(ctx, fleet.Options{
		Broker: rg.BrokerURL(), API: rg.API(), Token: "rig-op", WalletToken: "rig-wallet", Master: readMaster(t, rg.MasterKeyFile()),
		Topics: terminals.Topics{Root: root, Group: terminals.DefaultTopics.Group},
		Seed:   11, Terminals: 9, Rate: 60, Scenario: "town-day", TimeScale: 15.5 * 3600 / 6,
		TxnBase: uint64(now.UnixMilli()) * 1000, RunID: uint64(now.UnixNano()),
		// Runs on the machine's broker (other tests, other checkouts) use
		// the same terminal ids: client ids of this run's own.
		ClientSuffix: fmt.Sprintf("-%x", now.UnixNano()&0xffffff),
		ReplyTimeout: 700 * time.Millisecond, Retries: 2, Faults: f, Rig: rg,
		SettlementDB: rg.SettlementDB(), Out: &out, Progress: &prog, ProgressEvery: time.Second,
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log("\n" + prog.String() + out.String())
	if !rep.OK() {
		t.Fatalf("run failed the audit or a check\n%s\ngateway log:\n%s", out.String(), rg.GatewayLog())
	}
	if rep.ByCode[terminals.CodeApproved] < 50 || rep.Faults["gateway-kill"] != 1 || len(rep.Faults) < 7 {
		t.Fatalf("too little happened: approvals %d, faults %v", rep.ByCode[terminals.CodeApproved], rep.Faults)
	}
	// The scene messages the town's hardware sends all took part.
	for _, typ := range []string{terminals.TypeQRPay, terminals.TypeRefund, terminals.TypeECNYOffline, terminals.TypeHold,
		terminals.TypeCapture, terminals.TypeOfflineUpload, terminals.TypeHeartbeat, terminals.TypeTapIn} {
		if rep.ByType[typ] == 0 {
			t.Errorf("no %s in the run: %v", typ, rep.ByType)
		}
	}
	if rep.OfflineTaps == 0 || rep.Uploads.Messages == 0 || rep.Uploads.Taps['d'] == 0 {
		t.Errorf("no offline taps uploaded, or none left debt: %d taps, %+v", rep.OfflineTaps, rep.Uploads)
	}
	// The debt listed the card; every reader applied the gateway's deny
	// list (a scenario check, part of rep.OK) and holds a version.
	if rep.DenyVersion == 0 {
		t.Errorf("the readers hold no deny list after offline debt")
	}
	if !rep.Settlement.Ran || len(rep.Settlement.Merchants) == 0 {
		t.Fatalf("settlement audit did not run: %+v", rep.Settlement)
	}
	// The stalls showed codes the wallet backend paid (static and
	// dynamic), retried under the same id, refunded; the stalls were told.
	if w := rep.Wallet; w.Codes == 0 || w.Dynamic == 0 || w.Approved == 0 || w.Replays == 0 || w.Refunded == 0 || w.Notices == 0 {
		t.Errorf("stall-code wallet payments did not all take part: %+v", w)
	}
	// The card in debt was topped up: the debt was paid first, to the
	// debt payee (its settlement rows match exactly: the audit passed),
	// and every reader took the card off its list.
	if d := rep.Debt; d.Cards == 0 || d.Paid <= 0 || !d.Undenied || d.Version < 2 {
		t.Errorf("transit debt was not repaid: %+v", d)
	}
	payee := false
	for _, m := range rep.Settlement.Merchants {
		if m.Merchant == fleet.DefaultDebtPayee {
			payee = m.Store == rep.Debt.Paid && m.Rows > 0
		}
	}
	if !payee {
		t.Errorf("settlement holds no debt_recovery rows of %d fen for %s: %+v", rep.Debt.Paid, fleet.DefaultDebtPayee, rep.Settlement.Merchants)
	}
	checkWatermarkAdvances(ctx, t, rg)
	// With PostgreSQL the embedded store must stay unopened: a passing
	// audit then proves the handoff reached the schema, not a local file.
	_, err = os.Stat(filepath.Join(dataDir, "settlement.db"))
	if settleDB != "" && err == nil {
		t.Fatal("the gateway wrote the embedded settlement.db although it was given -settlement-db")
	}
	if settleDB == "" && err != nil {
		t.Fatalf("embedded settlement store: %v", err)
	}
}

// watermarkWait bounds the wait for the handoff watermark to pass the
// moment the run ended: an idle gateway sends now - 2 s every batch age
// (1 s), so a few seconds are enough, and a watermark that stopped
// advancing (settlement windows would never close) never gets there.
const watermarkWait = 30 * time.Second

// checkWatermarkAdvances requires one settlement source in the store (the
// gateway's: the store is the run's own, and a restart keeps the
// instance), with a watermark that passes the moment the run ended: after
// the kill, the restart and every fault, the handoff still moves it on
// once the terminals are quiet.
func checkWatermarkAdvances(ctx context.Context, t *testing.T, rg *Rig) {
	t.Helper()
	end := time.Now()
	st, err := fleet.OpenSettlement(ctx, rg.SettlementDB())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(watermarkWait)
	for {
		ws, err := st.Watermarks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != 1 {
			t.Fatalf("settlement sources %+v, want the gateway's alone", ws)
		}
		source := ws[0].Source
		if !ws[0].At.Before(end) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("source %s: watermark %s (high water %d) did not pass the run's end %s within %s\ngateway log:\n%s",
				source, ws[0].At.Format(time.RFC3339Nano), ws[0].HighWater, end.Format(time.RFC3339Nano), watermarkWait, rg.GatewayLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStartRejectsNonPostgresSettlementDB: the gateway takes only a
// postgres:// URL for -settlement-db, so the rig refuses anything else
// before it starts a process rather than after the gateway exits.
func TestStartRejectsNonPostgresSettlementDB(t *testing.T) {
	_, err := Start(context.Background(), Config{GatewayBin: "/nonexistent/gateway", DataDir: t.TempDir(),
		BrokerURL: machineBroker, SettlementDB: "/tmp/settlement.db"})
	if err == nil || !strings.Contains(err.Error(), "postgres://") {
		t.Fatalf("want a postgres:// URL error, got %v", err)
	}
}

// TestCleanMarketDayNotifiesEveryWalletPayment runs a compressed market day
// without faults against the real gateway binary: the audits must agree
// exactly (no account in an unresolved range), every wallet payment the
// gateway approved through a stall code must have reached its stall as a
// paid notice (a scenario check, exact without faults), and no call needed
// a retry.
func TestCleanMarketDayNotifiesEveryWalletPayment(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the gateway binary")
	}
	bin := buildGateway(t)
	root := fmt.Sprintf("t-rigm-%d/scp/v1", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rg, err := Start(ctx, Config{GatewayBin: bin, DataDir: t.TempDir(), BrokerURL: machineBroker, TopicRoot: root, Token: "rig-op", WalletToken: "rig-wallet"})
	if err != nil {
		t.Skipf("gateway on the machine broker: %v", err)
	}
	defer rg.Close()
	var out bytes.Buffer
	now := time.Now()
	rep, err := fleet.Run(ctx, fleet.Options{
		Broker: rg.BrokerURL(), API: rg.API(), Token: "rig-op", WalletToken: "rig-wallet", Master: readMaster(t, rg.MasterKeyFile()),
		Topics: terminals.Topics{Root: root, Group: terminals.DefaultTopics.Group},
		Seed:   5, Terminals: 6, Rate: 40, Scenario: "market-day", TimeScale: 7 * 3600 / 5,
		TxnBase: uint64(now.UnixMilli()) * 1000, RunID: uint64(now.UnixNano()),
		ClientSuffix: fmt.Sprintf("-%x", now.UnixNano()&0xffffff),
		ReplyTimeout: time.Second, Retries: 2, SettlementDB: rg.SettlementDB(), Out: &out,
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	if !rep.OK() || rep.Audit.Uncertain != 0 {
		t.Fatalf("a clean run failed the audit or a check, or left an account unresolved\n%s", out.String())
	}
	w := rep.Wallet
	if w.Codes == 0 || w.Approved == 0 || w.Notices != w.Approved || w.Unanswered != 0 || w.Retries != 0 {
		t.Fatalf("wallet payments %+v: want some, each notified to its stall, none unanswered", w)
	}
}
