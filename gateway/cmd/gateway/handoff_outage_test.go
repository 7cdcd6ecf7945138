package main

// PostgreSQL unavailable under load: the test creates a PostgreSQL cluster
// of its own (initdb, pg_ctl as the postgres user, a free port), points the
// gateway's handoff at it, stops it while terminals keep buying, checks
// that authorizations continue and the backlog grows, starts it again and
// waits until the store matches what the terminals were told.

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"scenepay/gateway/internal/testkit"
	"scenepay/settlement/store"
	"scenepay/terminals"
)

const (
	// outageBuys is how many purchases are made in each phase.
	outageBuys = 30
	// outageSettleWait bounds the drain after the database returns.
	outageSettleWait = 60 * time.Second
)

// pgCluster is a throwaway PostgreSQL cluster run as the postgres user.
type pgCluster struct {
	bin, dir string
	port     int
}

func (c *pgCluster) run(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(c.bin, args[0])}, args[1:]...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

func newPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		t.Skip("no initdb under /usr/lib/postgresql/*/bin: cannot create a second cluster")
	}
	if _, err := exec.LookPath("runuser"); err != nil || os.Geteuid() != 0 {
		t.Skip("the outage test needs root and runuser to run a cluster as the postgres user")
	}
	dir, err := os.MkdirTemp("", "scenepay-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	c := &pgCluster{bin: filepath.Dir(matches[0]), dir: dir, port: testkit.FreePort(t)}
	c.run(t, "initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
	c.start(t)
	t.Cleanup(func() {
		exec.Command("runuser", "-u", "postgres", "--", filepath.Join(c.bin, "pg_ctl"), "-D", filepath.Join(dir, "data"), "-m", "immediate", "stop").Run()
	})
	return c
}

func (c *pgCluster) start(t *testing.T) {
	c.run(t, "pg_ctl", "-D", filepath.Join(c.dir, "data"), "-w", "-l", filepath.Join(c.dir, "log"),
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", c.port, c.dir), "start")
}

func (c *pgCluster) stop(t *testing.T) {
	c.run(t, "pg_ctl", "-D", filepath.Join(c.dir, "data"), "-w", "-m", "fast", "stop")
}

func (c *pgCluster) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

var backlogLine = regexp.MustCompile(`(?m)^scenepay_handoff_backlog_records ([0-9.e+]+)$`)

func (g *crashGateway) backlog(t *testing.T) float64 {
	t.Helper()
	resp, err := g.hc.Get(*g.base.Load() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := backlogLine.FindSubmatch(b)
	if m == nil {
		t.Fatal("scenepay_handoff_backlog_records not in /metrics")
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func TestHandoffPostgresOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("outage test skipped in -short mode")
	}
	pg := newPGCluster(t)
	dir := t.TempDir()
	bin := buildGateway(t, dir)
	masterHex := testkit.RandHex(32)
	keyFile := filepath.Join(dir, "master.key")
	if err := os.WriteFile(keyFile, []byte(masterHex+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	masterKey, _ := hex.DecodeString(masterHex)
	topics := testkit.Topics()
	g := newCrashGateway(t, bin, dir, []string{
		"-broker", testkit.MQTTURL(), "-topic-root", topics.Root, "-instance", "out-" + testkit.RandHex(4),
		"-data-dir", filepath.Join(dir, "data"), "-master-key-file", keyFile, "-mqtt-conns", "1",
		"-settlement-db", pg.url(), "-handoff-batch-rows", "10", "-handoff-batch-age", "50ms",
	}, testkit.RandHex(16))
	t.Cleanup(g.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log, last %d lines:\n%s", crashTailLines, g.tail(crashTailLines))
		}
	})
	if err := g.start(); err != nil {
		t.Fatal(err)
	}
	if status, b, err := g.call(http.MethodPost, "/v1/accounts", map[string]any{
		"inst": map[string]string{"k": terminals.InstCounty, "id": "C1"}, "balance": 50_000_000, "ref": "open-C1"}); err != nil || status != http.StatusCreated {
		t.Fatalf("open account: %d %s %v", status, b, err)
	}
	if status, b, err := g.call(http.MethodPost, "/v1/terminals", map[string]any{
		"tid": "OUT-1", "kind": "kiosk", "merchant": "M-hosp", "key_version": 1}); err != nil || status != http.StatusCreated {
		t.Fatalf("register: %d %s %v", status, b, err)
	}
	tm := testkit.Connect(t, testkit.MQTTURL(), topics, "OUT-1", terminals.DeriveKey(masterKey, "OUT-1", 1))
	var count, net int64
	var txn uint64
	buy := func() {
		txn++
		amt := int64(100 + txn*17%500)
		_, rep := tm.Do(t, tm.Request(terminals.Request{Type: terminals.TypePurchase, Txn: txn, Amt: amt,
			Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}}))
		if rep.Code != terminals.CodeApproved {
			t.Fatalf("purchase %d: %s, want approved (the database must not stop authorizations)", txn, rep.Code)
		}
		count++
		net += amt
	}
	for i := 0; i < outageBuys; i++ {
		buy()
	}
	pg.stop(t)
	for i := 0; i < outageBuys; i++ {
		buy()
	}
	time.Sleep(300 * time.Millisecond)
	if bl := g.backlog(t); bl < outageBuys {
		t.Fatalf("backlog %v records with the database down after %d purchases", bl, outageBuys)
	}
	pg.start(t)
	for i := 0; i < outageBuys; i++ {
		buy()
	}
	st, err := store.OpenPostgres(context.Background(), pg.url())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(outageSettleWait)
	for {
		tot, err := st.Totals(context.Background(), "M-hosp", time.Time{}, time.Time{})
		if err == nil && tot.Count == count && tot.Net == net && g.backlog(t) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the outage: store %+v (err %v), terminals told %d approvals %d fen, backlog %v", tot, err, count, net, g.backlog(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("outage: %d approvals (%d during the outage), store matches, backlog drained", count, outageBuys)
}
