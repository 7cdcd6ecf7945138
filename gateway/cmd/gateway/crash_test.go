package main

// The crash-safety test of design promises 1 and 2: the gateway runs as a
// separate process under load from real MQTT terminals, is killed with
// SIGKILL at random moments many times and restarted on the same data
// directory, and the test then proves from the terminals' side that
//
//  1. every account's balance equals its opening balance plus the top-ups
//     that were acknowledged minus the purchases whose approval a terminal
//     received, to the fen (nothing a terminal was told is lost, nothing is
//     applied twice), and no two received approvals share a ledger ref;
//  2. every answered txn, resent after the last restart, gets the reply the
//     terminal received first, byte for byte, and has no ledger effect;
//  3. no txn id was ever answered with two different codes (or two
//     different replies);
//  4. every start recovered ("engine recovered"), snapshots were written
//     between kills, and some recovery combined a snapshot with journal
//     replay.
//
// SIGKILL keeps what the process wrote into the page cache, so this test
// checks the order "journal write, then reply" and the recovery code; the
// fsync itself (power loss) is the journal tests' business (vfs error
// injection).
//
// A run is driven by one seed (logged): the kill schedule, the balances and
// every terminal's choice of account and amount. SCENEPAY_CRASH_SEED=<n>
// replays those; the interleaving with the process is up to the machine.

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"scenepay/gateway/internal/testkit"
	"scenepay/terminals"
)

const (
	// crashKills is how many times the gateway is killed with SIGKILL.
	crashKills = 22
	// crashKillGapMin/Max bound the random time between a start being
	// ready and the next kill.
	crashKillGapMin = 50 * time.Millisecond
	crashKillGapMax = 700 * time.Millisecond
	// crashTerminals and crashAccounts size the fleet and the ledger.
	crashTerminals = 16
	crashAccounts  = 20
	// crashPoorAccounts have a small opening balance, so that purchases
	// on them decline for funds from the start.
	crashPoorAccounts = 4
	// crashTopUpsMax bounds the top-ups made during the run.
	crashTopUpsMax = 60
	// crashTopUpWait bounds the retries of one top-up until it answers 200.
	crashTopUpWait = 30 * time.Second
	// crashDrainWait bounds how long the load may take to finish its
	// current txns once the kills are over.
	crashDrainWait = 45 * time.Second
	// crashSnapshotEvery is the gateway's -snapshot-every: small, so that
	// snapshots are written between kills and recovery mixes a snapshot
	// with journal replay.
	crashSnapshotEvery = 50
	// crashReplayWindow is the gateway's -replay-window (its default).
	crashReplayWindow = 1024
	// Every crashSnapshotKillEvery-th kill first waits (up to
	// crashSnapshotWait) until the running process has written a snapshot,
	// so that recovery from a snapshot plus journal replay happens in every
	// run, also on a slow machine where few requests fit between kills.
	crashSnapshotKillEvery = 4
	crashSnapshotWait      = 15 * time.Second
)

// PCG streams of the run's seed, one per consumer, so that a change in one
// consumer's draws does not shift another's.
const (
	crashStreamKill     = 1
	crashStreamOpen     = 2
	crashStreamTopUp    = 3
	crashStreamTerminal = 100 // + terminal index
)

func crashSeed(t *testing.T) uint64 {
	if v := os.Getenv("SCENEPAY_CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SCENEPAY_CRASH_SEED=%q: %v", v, err)
		}
		return n
	}
	return rand.Uint64()
}

func TestCrashKill9UnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode: it builds and kills the gateway binary for about a minute")
	}
	seed := crashSeed(t)
	t.Logf("crash seed %d (replay the kill schedule and the load's choices with SCENEPAY_CRASH_SEED=%d)", seed, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with crash seed %d: rerun with SCENEPAY_CRASH_SEED=%d", seed, seed)
		}
	})
	began := time.Now()
	dir := t.TempDir()
	bin := buildGateway(t, dir)

	master := []byte(testkit.RandHex(32)) // the hex text; decoded below
	keyFile := filepath.Join(dir, "master.key")
	if err := os.WriteFile(keyFile, append(master, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	masterKey, err := hex.DecodeString(string(master))
	if err != nil {
		t.Fatal(err)
	}
	token := testkit.RandHex(16)
	topics := testkit.Topics()
	args := []string{
		"-broker", testkit.MQTTURL(),
		"-topic-root", topics.Root,
		"-instance", "crash-" + testkit.RandHex(4),
		"-data-dir", filepath.Join(dir, "data"),
		"-master-key-file", keyFile,
		"-snapshot-every", strconv.Itoa(crashSnapshotEvery),
		"-replay-window", strconv.Itoa(crashReplayWindow),
		"-mqtt-conns", "2",
		"-log-format", "text",
		"-log-level", "info",
	}
	g := newCrashGateway(t, bin, dir, args, token)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log %s, last %d lines:\n%s", g.logPath, crashTailLines, g.tail(crashTailLines))
		}
	})
	t.Cleanup(g.stop)
	if err := g.start(); err != nil {
		t.Fatalf("first start: %v", err)
	}

	// Provision: accounts and terminals through the operator API.
	orng := rand.New(rand.NewPCG(seed, crashStreamOpen))
	accounts := make([]string, crashAccounts)
	opening := make([]int64, crashAccounts)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("C%04d", i+1)
		if i < crashPoorAccounts {
			opening[i] = 300 + orng.Int64N(1701)
		} else {
			opening[i] = 8000 + orng.Int64N(22001)
		}
		status, b, err := g.call(http.MethodPost, "/v1/accounts", map[string]any{
			"inst":    map[string]string{"k": terminals.InstCounty, "id": accounts[i]},
			"balance": opening[i], "ref": "open-" + accounts[i],
		})
		if err != nil || status != http.StatusCreated {
			t.Fatalf("open account %s: %d %s %v", accounts[i], status, b, err)
		}
	}
	terms := make([]*crashTerm, crashTerminals)
	for i := range terms {
		tid := fmt.Sprintf("CRASH-%02d", i+1)
		status, b, err := g.call(http.MethodPost, "/v1/terminals", map[string]any{
			"tid": tid, "kind": "stall", "merchant": "M-1", "key_version": 1,
		})
		if err != nil || status != http.StatusCreated {
			t.Fatalf("register terminal %s: %d %s %v", tid, status, b, err)
		}
		tm := testkit.Connect(t, testkit.MQTTURL(), topics, tid, terminals.DeriveKey(masterKey, tid, 1))
		terms[i] = newCrashTerm(tid, tm, seed, crashStreamTerminal+uint64(i))
	}

	// Load: the terminals and the top-ups run across every kill.
	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		abort     = make(chan struct{})
		abortOnce sync.Once
	)
	t.Cleanup(func() { // runs before the terminals disconnect
		abortOnce.Do(func() { close(abort) })
		wg.Wait()
	})
	for _, c := range terms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(accounts, &stop, abort)
		}()
	}
	tu := &crashTopUps{g: g, rng: rand.New(rand.NewPCG(seed, crashStreamTopUp)), accounts: accounts}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tu.run(&stop, abort)
	}()

	// Kill and restart.
	loadStart := time.Now()
	krng := rand.New(rand.NewPCG(seed, crashStreamKill))
	snapWaits := 0
	for k := 1; k <= crashKills; k++ {
		gap := crashKillGapMin + time.Duration(krng.Int64N(int64(crashKillGapMax-crashKillGapMin)+1))
		if k%crashSnapshotKillEvery == 0 {
			if !g.waitLog(`msg="snapshot written"`, crashSnapshotWait) {
				t.Errorf("before kill %d: no snapshot written within %s under load (-snapshot-every %d)", k, crashSnapshotWait, crashSnapshotEvery)
			}
			snapWaits++
		}
		time.Sleep(gap)
		if err := g.kill(); err != nil {
			t.Fatalf("kill %d: %v", k, err)
		}
		if err := g.start(); err != nil {
			t.Fatalf("restart after kill %d: %v", k, err)
		}
	}
	killsDone := time.Now()
	stop.Store(true)
	drained := make(chan struct{})
	go func() {
		wg.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(crashDrainWait):
		t.Fatalf("the load did not finish its current txns within %s of the last restart", crashDrainWait)
	}
	loadDone := time.Now()

	// Anything a terminal or the top-ups saw that a correct gateway never does.
	for _, c := range terms {
		for _, e := range c.errs {
			t.Errorf("terminal: %s", e)
		}
	}
	for _, e := range tu.errs {
		t.Errorf("top-up: %s", e)
	}

	// Proof 1: balances to the fen; no ledger ref handed out twice.
	topped := make([]int64, crashAccounts)
	for _, u := range tu.done {
		topped[u.acct] += u.amt
	}
	approved := make([]int64, crashAccounts)
	approvedN := make([]int, crashAccounts)
	codes := map[terminals.Code]int{}
	auths := map[string]string{}
	txns, needResend := 0, 0
	for _, c := range terms {
		for _, x := range c.txns {
			txns++
			codes[x.code]++
			if x.sends > 1 {
				needResend++
			}
			if !x.code.Approved() {
				continue
			}
			approved[x.acct] += x.req.Amt
			approvedN[x.acct]++
			who := fmt.Sprintf("%s txn %d", c.tid, x.req.Txn)
			if prev, dup := auths[x.auth]; dup {
				t.Errorf("auth ref %s received for two approvals: %s and %s", x.auth, prev, who)
			}
			auths[x.auth] = who
		}
	}
	balances := make([]int64, crashAccounts)
	mismatches := 0
	for i, id := range accounts {
		key := terminals.InstCounty + ":" + id
		bal, err := g.balance(key)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		balances[i] = bal
		want := opening[i] + topped[i] - approved[i]
		if bal != want {
			mismatches++
			t.Errorf("%s: balance %d fen, want %d = opening %d + top-ups %d - %d approved purchases %d: off by %+d fen",
				key, bal, want, opening[i], topped[i], approvedN[i], approved[i], bal-want)
		}
	}

	// Proof 2: resend every answered txn now that the gateway stays up.
	var rwg sync.WaitGroup
	checked := make([]int, len(terms))
	errsBefore := make([]int, len(terms))
	for i, c := range terms {
		errsBefore[i] = len(c.errs)
		rwg.Add(1)
		wg.Add(1) // so that cleanup's abort also waits for the resends
		go func() {
			defer rwg.Done()
			defer wg.Done()
			checked[i] = c.resendAll(abort)
		}()
	}
	rwg.Wait()
	resent, replayDiffs, approvalDiffs := 0, 0, 0
	for i, c := range terms {
		resent += checked[i]
		replayDiffs += c.replayDiffs
		approvalDiffs += c.approvalDiffs
		for _, e := range c.errs[errsBefore[i]:] {
			t.Errorf("terminal, resending: %s", e)
		}
	}
	if replayDiffs > 0 {
		t.Errorf("%d of %d txns resent after the last restart got a reply different from the first (%d involving an approval); see the violations below",
			replayDiffs, resent, approvalDiffs)
	}
	if resent != txns {
		t.Errorf("resent %d of %d answered txns", resent, txns)
	}
	for i, id := range accounts {
		key := terminals.InstCounty + ":" + id
		bal, err := g.balance(key)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if bal != balances[i] {
			t.Errorf("%s: the resends changed the balance from %d to %d fen (%+d): a resent txn took effect again (applied twice, or its first effect was lost)",
				key, balances[i], bal, bal-balances[i])
		}
	}

	// Proof 3: one answer per txn id.
	for _, c := range terms {
		for _, v := range c.violations {
			t.Errorf("two answers for one txn id: %s", v)
		}
	}

	// Proof 4: the gateway's own account of the run.
	logText := g.logText()
	recov := regexp.MustCompile(`msg="engine recovered" snapshot_lsn=(\d+) replayed_entries=(\d+)`).FindAllStringSubmatch(logText, -1)
	mixed := 0
	for _, m := range recov {
		if m[1] != "0" && m[2] != "0" {
			mixed++
		}
	}
	snapshots := strings.Count(logText, `msg="snapshot written"`)
	if g.starts != crashKills+1 {
		t.Errorf("%d successful starts, want %d", g.starts, crashKills+1)
	}
	if len(recov) != g.starts {
		t.Errorf(`%d "engine recovered" lines for %d starts`, len(recov), g.starts)
	}
	if snapshots == 0 {
		t.Errorf(`no "snapshot written" in the gateway log (-snapshot-every %d)`, crashSnapshotEvery)
	}
	if mixed == 0 {
		t.Errorf("no recovery combined a snapshot with journal replay (snapshot_lsn > 0 and replayed_entries > 0)")
	}
	for _, bad := range []string{"panic:", "fatal error:", "journal failed", "DATA RACE"} {
		if strings.Contains(logText, bad) {
			t.Errorf("the gateway log contains %q", bad)
		}
	}

	// The run must have exercised what it claims to prove.
	approvals := codes[terminals.CodeApproved]
	if approvals < 100 {
		t.Errorf("only %d approvals in the run; the load is too thin to prove anything", approvals)
	}
	if codes[terminals.CodeInsufficientFunds] == 0 {
		t.Errorf("no purchase declined for funds; the balances do not exercise declines")
	}
	if len(tu.done) < 5 {
		t.Errorf("only %d top-ups in the run", len(tu.done))
	}

	faults := map[terminals.Code]int{}
	resends, stale := 0, 0
	perTerm := make([]string, len(terms))
	for i, c := range terms {
		for k, v := range c.faults {
			faults[k] += v
		}
		resends += c.resends
		stale += c.staleSeen
		perTerm[i] = strconv.Itoa(len(c.txns))
	}
	t.Logf("kills %d, starts %d; load %s under kills + %s drain; whole test %s so far",
		crashKills, g.starts, killsDone.Sub(loadStart).Round(time.Millisecond),
		loadDone.Sub(killsDone).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	t.Logf("txns %d (per terminal %s): approved %d, declined for funds %d, other codes %v; %d txns needed a resend (%d timeouts resent), faults %v, %d stale replies",
		txns, strings.Join(perTerm, " "), approvals, codes[terminals.CodeInsufficientFunds],
		otherCodes(codes), needResend, resends, faults, stale)
	t.Logf("top-ups %d (%d needed a retry after a kill); balances checked %d, mismatches %d; resent %d txns after the last restart, %d differing replies",
		len(tu.done), tu.retried, crashAccounts, mismatches, resent, replayDiffs)
	t.Logf(`gateway log: %d "engine recovered" (%d from a snapshot plus replay), %d "snapshot written" (%d kills waited for one)`,
		len(recov), mixed, snapshots, snapWaits)
}

func otherCodes(m map[terminals.Code]int) map[terminals.Code]int {
	o := map[terminals.Code]int{}
	for k, v := range m {
		if k != terminals.CodeApproved && k != terminals.CodeInsufficientFunds {
			o[k] = v
		}
	}
	return o
}

// crashTopUp is one top-up that the gateway acknowledged with 200.
type crashTopUp struct {
	acct  int
	amt   int64
	ref   string
	calls int
}

// crashTopUps makes top-ups during the run. A call that fails (the process
// was killed under it) is repeated with the same ref until it answers 200:
// the gateway applies a ref once, so the test knows exactly which top-ups
// took effect. Its fields belong to its goroutine until that ends.
type crashTopUps struct {
	g        *crashGateway
	rng      *rand.Rand
	accounts []string
	done     []crashTopUp // bounded by crashTopUpsMax
	errs     []string
	retried  int
}

func (u *crashTopUps) run(stop *atomic.Bool, abort <-chan struct{}) {
	for i := 0; i < crashTopUpsMax && !stop.Load(); i++ {
		select {
		case <-abort:
			return
		case <-time.After(150*time.Millisecond + time.Duration(u.rng.Int64N(int64(350*time.Millisecond)))):
		}
		x := crashTopUp{acct: u.rng.IntN(len(u.accounts)), amt: 2000 + u.rng.Int64N(8001), ref: fmt.Sprintf("crash-topup-%03d", i)}
		path := "/v1/accounts/" + terminals.InstCounty + ":" + u.accounts[x.acct] + "/topup"
		deadline := time.Now().Add(crashTopUpWait)
		for {
			x.calls++
			status, b, err := u.g.call(http.MethodPost, path, map[string]any{"amt": x.amt, "ref": x.ref})
			if err == nil && status == http.StatusOK {
				break
			}
			if err == nil && status < 500 {
				u.errs = append(u.errs, fmt.Sprintf("top-up %s of %d fen: %d %s", x.ref, x.amt, status, b))
				return
			}
			if time.Now().After(deadline) {
				u.errs = append(u.errs, fmt.Sprintf("top-up %s of %d fen: no 200 within %s (last: %d %s %v)", x.ref, x.amt, crashTopUpWait, status, b, err))
				return
			}
			select {
			case <-abort:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		if x.calls > 1 {
			u.retried++
		}
		u.done = append(u.done, x)
	}
}
