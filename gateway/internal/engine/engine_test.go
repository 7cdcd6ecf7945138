package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/journal"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/vfs"
	"scenepay/terminals"
)

// fakePub records published replies (a plain fake: no I/O involved).
type fakePub struct {
	mu   sync.Mutex
	msgs [][]byte
	ch   chan []byte
}

func newFakePub() *fakePub { return &fakePub{ch: make(chan []byte, 1024)} }

func (p *fakePub) Publish(topic string, payload []byte) {
	p.mu.Lock()
	p.msgs = append(p.msgs, payload)
	p.mu.Unlock()
	p.ch <- payload
}

func (p *fakePub) next(t *testing.T, d time.Duration) []byte {
	t.Helper()
	select {
	case b := <-p.ch:
		return b
	case <-time.After(d):
		t.Fatal("no reply published")
		return nil
	}
}

// gateFS blocks every journal segment fsync until released, to observe
// that no reply leaves before the fsync covering it returns.
type gateFS struct {
	vfs.FS
	mu   sync.Mutex
	gate chan struct{} // nil: open
}

type gateFile struct {
	vfs.File
	fs *gateFS
}

func (g *gateFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return gateFile{f, g}, nil
}
func (g *gateFS) Create(n string) (vfs.File, error) { return g.wrap(g.FS.Create(n)) }
func (g *gateFS) OpenFile(n string, fl int, p os.FileMode) (vfs.File, error) {
	return g.wrap(g.FS.OpenFile(n, fl, p))
}
func (f gateFile) Sync() error {
	f.fs.mu.Lock()
	gate := f.fs.gate
	f.fs.mu.Unlock()
	if gate != nil && strings.Contains(f.Name(), "journal") {
		<-gate
	}
	return f.File.Sync()
}

var master = []byte("0123456789abcdef0123456789abcdef")

func openEngine(t *testing.T, dir string, fs vfs.FS) (*Engine, *fakePub) {
	t.Helper()
	cfg := DefaultConfig(dir)
	cfg.FS = fs
	cfg.Shards = 2
	cfg.SnapshotEvery = 0
	e, err := Open(cfg, master)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	p := newFakePub()
	e.SetPublisher(p)
	return e, p
}

func setup(t *testing.T, e *Engine, bal int64) {
	t.Helper()
	if err := e.RegisterTerminal(registry.Terminal{TID: "T1", Kind: "bus", Merchant: "M", KeyVersion: 1}); err != nil {
		t.Fatal(err)
	}
	r, err := e.Operate(context.Background(), core.Input{Op: core.OpOpenAccount, Account: "county:C1", Amount: bal, Ref: "o"})
	if err != nil || r.Code != terminals.CodeApproved {
		t.Fatalf("open: %v %v", r.Code, err)
	}
}

var signer = terminals.NewSigner(terminals.DeriveKey(master, "T1", 1))

func buy(txn uint64, amt int64) []byte {
	r := terminals.Request{V: 1, Type: terminals.TypePurchase, TID: "T1", Txn: txn, TS: time.Now().UnixMilli(), Amt: amt,
		Inst: terminals.Instrument{Kind: terminals.InstCounty, ID: "C1"}}
	return signer.Seal(nil, r.AppendJSON(nil))
}

func decode(t *testing.T, raw []byte) *terminals.Reply {
	t.Helper()
	body, err := signer.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := terminals.DecodeReply(body)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

const topic = "scp/v1/t/T1/req"

func balance(t *testing.T, e *Engine) int64 {
	t.Helper()
	r, err := e.Operate(context.Background(), core.Input{Account: "county:C1"})
	if err != nil || !r.Found {
		t.Fatalf("read: %v", err)
	}
	return r.Account.Balance
}

// Promise 1 at the unit level: while the journal fsync is held, the
// approval is decided and written but not published; it is published as
// soon as the fsync returns.
func TestReplyWaitsForFsync(t *testing.T) {
	g := &gateFS{FS: vfs.Default}
	e, p := openEngine(t, t.TempDir(), g)
	defer e.Close()
	setup(t, e, 1000)

	gate := make(chan struct{})
	g.mu.Lock()
	g.gate = gate
	g.mu.Unlock()
	e.HandleMessage(topic, buy(1, 100))
	select {
	case b := <-p.ch:
		t.Fatalf("reply %q published before the fsync returned", b)
	case <-time.After(300 * time.Millisecond):
	}
	g.mu.Lock()
	g.gate = nil
	g.mu.Unlock()
	close(gate)
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved {
		t.Fatalf("code %s", rep.Code)
	}
}

// A failed fsync (or write) never yields an approval: the terminal is told
// SYSTEM_ERROR, the engine stops authorizing, and after a restart a retry
// with the same id takes effect exactly once.
func TestJournalFaultsNeverApprove(t *testing.T) {
	for _, op := range []vfs.Op{vfs.OpSync, vfs.OpWrite} {
		t.Run(op.String(), func(t *testing.T) {
			dir := t.TempDir()
			efs := vfs.NewErrorFS(vfs.Default)
			e, p := openEngine(t, dir, efs)
			setup(t, e, 1000)
			efs.Inject(vfs.Rule{Op: op, Path: "journal", Sticky: true})
			e.HandleMessage(topic, buy(1, 100))
			rep := decode(t, p.next(t, 5*time.Second))
			if rep.Code != terminals.CodeSystemError {
				t.Fatalf("code %s after a journal %s error, want 96", rep.Code, op)
			}
			select {
			case <-e.Failed():
			case <-time.After(time.Second):
				t.Fatal("engine did not report the journal failure")
			}
			if e.Ready() == nil {
				t.Fatal("engine still ready after a journal failure")
			}
			// Further requests are refused, not approved.
			e.HandleMessage(topic, buy(2, 100))
			if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeSystemError {
				t.Fatalf("after failure: code %s", rep.Code)
			}
			e.Close()

			e2, p2 := openEngine(t, dir, vfs.Default)
			defer e2.Close()
			e2.HandleMessage(topic, buy(1, 100))
			if rep := decode(t, p2.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved {
				t.Fatalf("retry after restart: %s", rep.Code)
			}
			e2.HandleMessage(topic, buy(1, 100))
			if rep := decode(t, p2.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved {
				t.Fatalf("duplicate after restart: %s", rep.Code)
			}
			if got := balance(t, e2); got != 900 {
				t.Fatalf("balance %d, want 900 (one debit)", got)
			}
		})
	}
}

// A flipped bit in a committed journal record stops startup with a clear,
// typed error instead of replaying a wrong amount.
func TestCorruptRecordStopsStartup(t *testing.T) {
	dir := t.TempDir()
	e, p := openEngine(t, dir, vfs.Default)
	setup(t, e, 100000)
	for txn := uint64(1); txn <= 20; txn++ {
		e.HandleMessage(topic, buy(txn, 1234))
		if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved {
			t.Fatalf("txn %d: %s", txn, rep.Code)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Drop the snapshots so that startup must replay the journal.
	if err := os.RemoveAll(filepath.Join(dir, "snapshots")); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "journal", "*"))
	if len(segs) == 0 {
		t.Fatal("no journal segment")
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	// Find the amount 1234 fen of a middle purchase in the core record and flip one bit of it.
	at := -1
	for i, n := len(b)/2, 0; i < len(b)-8 && n < 1; i++ {
		if strings.Contains(string(b[i:i+40]), "C1") {
			at = i
			n++
		}
	}
	if at < 0 {
		t.Fatal("could not find a record to corrupt")
	}
	b[at] ^= 0x04
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(dir)
	cfg.Shards = 2
	_, err = Open(cfg, master)
	var ce *journal.CorruptionError
	if err == nil || !errors.As(err, &ce) {
		t.Fatalf("Open after a flipped bit: %v, want a *journal.CorruptionError", err)
	}
	if !strings.Contains(err.Error(), "journal") {
		t.Fatalf("error does not say where: %v", err)
	}
	t.Logf("startup refused: %v", err)
}

// Snapshot plus journal replay gives the same state as the live run.
func TestRecoveryFromSnapshotAndJournal(t *testing.T) {
	dir := t.TempDir()
	e, p := openEngine(t, dir, vfs.Default)
	setup(t, e, 100000)
	for txn := uint64(1); txn <= 10; txn++ {
		e.HandleMessage(topic, buy(txn, 100))
		p.next(t, 5*time.Second)
	}
	if err := e.Snapshot(); err != nil {
		t.Fatal(err)
	}
	var last []byte
	for txn := uint64(11); txn <= 15; txn++ {
		e.HandleMessage(topic, buy(txn, 100))
		last = p.next(t, 5*time.Second)
	}
	want := balance(t, e)
	// Simulate a crash: stop the writers without the closing snapshot.
	crash(e)

	e2, p2 := openEngine(t, dir, vfs.Default)
	defer e2.Close()
	if got := balance(t, e2); got != want || got != 100000-1500 {
		t.Fatalf("recovered balance %d, want %d", got, want)
	}
	e2.HandleMessage(topic, buy(15, 100))
	if got := p2.next(t, 5*time.Second); string(got) != string(last) {
		t.Fatalf("stored reply differs after recovery")
	}
}

func FuzzDecodeTxnEntry(f *testing.F) {
	f.Add(appendTxnEntry(nil, &txnEntry{tid: "T1", txn: 7, hash: 9, code: "00", tomb: true, orig: 3, record: []byte{1, 2}, reply: []byte("r")}))
	f.Add([]byte{1, 2, 'T', '1', 7})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e txnEntry
		if err := decodeTxnEntry(b, &e); err != nil {
			return
		}
		var e2 txnEntry
		if err := decodeTxnEntry(appendTxnEntry(nil, &e), &e2); err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if e2.tid != e.tid || e2.txn != e.txn || e2.hash != e.hash || e2.code != e.code || e2.tomb != e.tomb ||
			e2.orig != e.orig || string(e2.record) != string(e.record) || string(e2.reply) != string(e.reply) {
			t.Fatalf("round trip: %+v != %+v", e2, e)
		}
	})
}

// A corrupt snapshot is not fatal: an older one, or the whole journal, rebuilds the same state.
func TestCorruptSnapshotFallsBack(t *testing.T) {
	dir := t.TempDir()
	e, p := openEngine(t, dir, vfs.Default)
	setup(t, e, 100000)
	for txn := uint64(1); txn <= 5; txn++ {
		e.HandleMessage(topic, buy(txn, 100))
		p.next(t, 5*time.Second)
	}
	if err := e.Close(); err != nil { // writes a snapshot
		t.Fatal(err)
	}
	snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*"))
	if len(snaps) == 0 {
		t.Fatal("no snapshot written")
	}
	for _, f := range snaps {
		b, _ := os.ReadFile(f)
		b[len(b)/2] ^= 0xff
		os.WriteFile(f, b, 0o600)
	}
	e2, _ := openEngine(t, dir, vfs.Default)
	defer e2.Close()
	if got := balance(t, e2); got != 100000-500 {
		t.Fatalf("balance after fallback %d, want %d", got, 100000-500)
	}
}

// Overload answers BUSY at the named bound instead of queueing: with one
// in-flight slot held by a request whose fsync is blocked, the next request
// is refused 91 at once, and succeeds when retried after the first completes.
func TestOverloadAnswersBusy(t *testing.T) {
	g := &gateFS{FS: vfs.Default}
	cfg := DefaultConfig(t.TempDir())
	cfg.FS = g
	cfg.Shards = 2
	cfg.InFlightMax = 1
	e, err := Open(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := newFakePub()
	e.SetPublisher(p)
	setup(t, e, 1000)

	gate := make(chan struct{})
	g.mu.Lock()
	g.gate = gate
	g.mu.Unlock()
	e.HandleMessage(topic, buy(1, 100))
	time.Sleep(100 * time.Millisecond)
	e.HandleMessage(topic, buy(2, 100))
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeBusy || rep.Txn != 2 {
		t.Fatalf("second request: %s txn %d, want 91 BUSY for txn 2", rep.Code, rep.Txn)
	}
	g.mu.Lock()
	g.gate = nil
	g.mu.Unlock()
	close(gate)
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved || rep.Txn != 1 {
		t.Fatalf("first request: %s txn %d", rep.Code, rep.Txn)
	}
	e.HandleMessage(topic, buy(2, 100))
	if rep := decode(t, p.next(t, 5*time.Second)); rep.Code != terminals.CodeApproved || rep.Txn != 2 {
		t.Fatalf("retry after busy: %s txn %d", rep.Code, rep.Txn)
	}
	if got := testutilCount(e.m.Busy); got != 1 {
		t.Fatalf("busy counted %v times", got)
	}
}

// A retried top-up (same ref) is not acknowledged before the first one is
// durable: otherwise a crash could lose a top-up the operator was told of.
func TestRepeatedTopUpWaitsForDurability(t *testing.T) {
	g := &gateFS{FS: vfs.Default}
	e, _ := openEngine(t, t.TempDir(), g)
	defer e.Close()
	setup(t, e, 1000)
	gate := make(chan struct{})
	g.mu.Lock()
	g.gate = gate
	g.mu.Unlock()
	done := make(chan OperatorResult, 2)
	topUp := func() {
		r, err := e.Operate(context.Background(), core.Input{Op: core.OpTopUp, Account: "county:C1", Amount: 500, Ref: "R1"})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}
	go topUp()
	time.Sleep(100 * time.Millisecond)
	go topUp()
	select {
	case r := <-done:
		t.Fatalf("a top-up was acknowledged (%s) while its record's fsync was held", r.Code)
	case <-time.After(300 * time.Millisecond):
	}
	g.mu.Lock()
	g.gate = nil
	g.mu.Unlock()
	close(gate)
	for i := 0; i < 2; i++ {
		if r := <-done; r.Code != terminals.CodeApproved || r.Account.Balance != 1500 {
			t.Fatalf("top-up %d: %s balance %d", i, r.Code, r.Account.Balance)
		}
	}
}
