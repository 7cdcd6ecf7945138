package main

// The exactly-once proof of the settlement handoff across crashes: the
// gateway runs as a separate process against the real PostgreSQL (a schema
// of its own), terminals buy through Mosquitto, and a test-only crash point
// (SCENEPAY_HANDOFF_TEST_CRASH) makes the process SIGKILL itself before,
// during and after the database commit of a batch (after: before the
// gateway records anything). After each crash it is restarted; at the end
// the store must hold, per merchant, exactly the count and the sum of the
// approvals the terminals received: no batch lost, none applied twice.

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"scenepay/gateway/internal/handoff"
	"scenepay/gateway/internal/testkit"
	"scenepay/settlement/store"
	"scenepay/terminals"
)

const (
	// handoffCrashReplyWait bounds the wait for one reply.
	handoffCrashReplyWait = 3 * time.Second
	// handoffCrashDieWait bounds the wait for the armed crash point.
	handoffCrashDieWait = 20 * time.Second
	// handoffCrashSettleWait bounds the wait for the store to catch up.
	handoffCrashSettleWait = 30 * time.Second
	// handoffCrashBuysPerPhase is how many purchases each phase sends.
	handoffCrashBuysPerPhase = 40
)

func handoffPGURL() string {
	if u := os.Getenv("SCENEPAY_TEST_PG"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

func handoffPGSchema(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	schema := "handoff_crash_" + testkit.RandHex(6)
	c, err := pgx.Connect(ctx, handoffPGURL())
	if err != nil {
		t.Fatalf("PostgreSQL at %s: %v", handoffPGURL(), err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, handoffPGURL())
		if err == nil {
			c.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`)
			c.Close(ctx)
		}
	})
	sep := "?"
	if strings.Contains(handoffPGURL(), "?") {
		sep = "&"
	}
	return handoffPGURL() + sep + "search_path=" + schema
}

type hcTerm struct {
	tm       *testkit.Terminal
	merchant string
}

func TestHandoffCrashEachStep(t *testing.T) {
	if testing.Short() {
		t.Skip("handoff crash test skipped in -short mode: it builds and kills the gateway binary")
	}
	dir := t.TempDir()
	bin := buildGateway(t, dir)
	masterHex := testkit.RandHex(32)
	keyFile := filepath.Join(dir, "master.key")
	if err := os.WriteFile(keyFile, []byte(masterHex+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	masterKey, _ := hex.DecodeString(masterHex)
	pgURL := handoffPGSchema(t)
	topics := testkit.Topics()
	token := testkit.RandHex(16)
	args := []string{
		"-broker", testkit.MQTTURL(), "-topic-root", topics.Root,
		"-instance", "hc-" + testkit.RandHex(4), "-data-dir", filepath.Join(dir, "data"),
		"-master-key-file", keyFile, "-mqtt-conns", "1", "-snapshot-every", "30",
		"-settlement-db", pgURL, "-handoff-batch-rows", "7", "-handoff-batch-age", "30ms",
	}
	g := newCrashGateway(t, bin, dir, args, token)
	baseEnv := g.env
	t.Cleanup(func() {
		if t.Failed() {
			var hl []string
			for _, l := range strings.Split(g.logText(), "\n") {
				if strings.Contains(l, "handoff") || strings.Contains(l, "crash") || strings.Contains(l, "recovered") {
					hl = append(hl, l)
				}
			}
			t.Logf("gateway log, handoff lines:\n%s", strings.Join(hl, "\n"))
		}
	})
	t.Cleanup(g.stop)
	if err := g.start(); err != nil {
		t.Fatal(err)
	}
	status, b, err := g.call(http.MethodPost, "/v1/accounts", map[string]any{
		"inst": map[string]string{"k": terminals.InstCounty, "id": "C1"}, "balance": 50_000_000, "ref": "open-C1"})
	if err != nil || status != http.StatusCreated {
		t.Fatalf("open account: %d %s %v", status, b, err)
	}
	var terms []hcTerm
	for i, kind := range []string{"stall", "bus"} {
		tid, merchant := fmt.Sprintf("HC-%d", i+1), fmt.Sprintf("M-%s", kind)
		status, b, err := g.call(http.MethodPost, "/v1/terminals", map[string]any{
			"tid": tid, "kind": kind, "merchant": merchant, "key_version": 1})
		if err != nil || status != http.StatusCreated {
			t.Fatalf("register %s: %d %s %v", tid, status, b, err)
		}
		terms = append(terms, hcTerm{tm: testkit.Connect(t, testkit.MQTTURL(), topics, tid, terminals.DeriveKey(masterKey, tid, 1)), merchant: merchant})
	}

	told := map[string][2]int64{} // merchant -> count, net, as the terminals were told
	var txn uint64
	done := map[uint64]bool{} // txns whose outcome a terminal received
	// buy sends purchase txn on terminal k until it is answered (a retry
	// after a crash reuses the id and gets the stored reply).
	answered := func(k int, id uint64, amt int64) bool {
		tm := terms[k].tm
		tm.Send(t, tm.Request(terminals.Request{Type: terminals.TypePurchase, Txn: id, Amt: amt,
			Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}}))
		for {
			select {
			case raw := <-tm.Replies:
				rep := tm.Decode(t, raw)
				if rep.Txn != id {
					continue // a late reply to an earlier retry
				}
				if rep.Code == terminals.CodeApproved && !done[id] {
					c := told[terms[k].merchant]
					told[terms[k].merchant] = [2]int64{c[0] + 1, c[1] + amt}
				} else if rep.Code.Class() != terminals.ClassDecline {
					return false // BUSY or a fault: not decided, retry
				}
				done[id] = true
				return true
			case <-time.After(handoffCrashReplyWait):
				return false
			}
		}
	}
	for _, step := range []string{handoff.StepBeforeIngest, handoff.StepDuringIngest, handoff.StepAfterIngest} {
		g.kill()
		g.env = append(append([]string(nil), baseEnv...), "SCENEPAY_HANDOFF_TEST_CRASH="+step+":3")
		if err := g.start(); err != nil {
			t.Fatalf("start armed at %s: %v", step, err)
		}
		for i := 0; i < handoffCrashBuysPerPhase && !g.hasExited(); i++ {
			txn++
			amt := int64(100 + txn*13%700)
			if !answered(int(txn%2), txn, amt) {
				break // the process is dying; this txn is retried below
			}
		}
		select {
		case <-g.exited:
		case <-time.After(handoffCrashDieWait):
			t.Fatalf("crash point %s not reached within %s", step, handoffCrashDieWait)
		}
		if !strings.Contains(g.logText()[g.logFrom:], "test crash point reached: SIGKILL") {
			t.Fatalf("the gateway exited at step %s, but not from the crash point", step)
		}
		g.env = baseEnv
		if err := g.start(); err != nil {
			t.Fatalf("restart after crash at %s: %v", step, err)
		}
		amt := int64(100 + txn*13%700)
		if txn > 0 && !done[txn] && !answered(int(txn%2), txn, amt) {
			t.Fatalf("txn %d unanswered after the restart", txn)
		}
	}

	st, err := store.OpenPostgres(context.Background(), pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(handoffCrashSettleWait)
	for {
		diff := ""
		for m, want := range told {
			tot, err := st.Totals(context.Background(), m, time.Time{}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if tot.Count != want[0] || tot.Net != want[1] {
				diff += fmt.Sprintf(" %s: store %d rows %d fen, terminals told %d approvals %d fen;", m, tot.Count, tot.Net, want[0], want[1])
			}
		}
		if diff == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store does not match the terminals after %s:%s", handoffCrashSettleWait, diff)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("after crashes at each handoff step: store matches the terminals: %v", told)
}
