package device

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"scenepay/terminals"
)

var county = terminals.Instrument{Kind: terminals.InstCounty, ID: "8800000001"}

func newDevice(t *testing.T, brokerURL string, topics terminals.Topics, tid string, mod func(*Config)) *Device {
	t.Helper()
	cfg := Config{
		TID: tid, Key: testKey(tid), Broker: brokerURL, Topics: topics, Group: "bus",
		ReplyTimeout: 300 * time.Millisecond, Retries: 2,
		BackoffBase: 20 * time.Millisecond, BackoffCap: 200 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func purchasesOf(got []received, txn uint64) [][]byte {
	var out [][]byte
	for _, r := range got {
		if r.req != nil && r.req.Txn == txn {
			out = append(out, r.payload)
		}
	}
	return out
}

func TestDoApprovedAndObserved(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	bal := int64(9800)
	startResponder(t, b.url(), topics, func(received) decision {
		return decision{code: terminals.CodeApproved, bal: &bal}
	})
	obs := &outcomes{}
	d := newDevice(t, b.url(), topics, "BUS-0001", func(c *Config) { c.Observer = obs })
	rep, raw, err := d.Do(ctx10(t), Purchase(county, 200))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Code != terminals.CodeApproved || rep.Bal == nil || *rep.Bal != 9800 || rep.Txn != 1 {
		t.Fatalf("reply = %+v", rep)
	}
	if _, err := terminals.Open(testKey("BUS-0001"), raw); err != nil {
		t.Fatalf("raw reply does not verify: %v", err)
	}
	o := obs.list()
	if len(o) != 1 || o[0].Code != terminals.CodeApproved || o[0].Txn != 1 || o[0].Amt != 200 || o[0].Retries != 0 || o[0].Reversed {
		t.Fatalf("outcomes = %+v", o)
	}
	if !d.Connected() {
		t.Fatal("device not connected")
	}
}

func TestRetryOnTimeoutResendsIdenticalBytes(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	var mu sync.Mutex
	seen := 0
	r := startResponder(t, b.url(), topics, func(received) decision {
		mu.Lock()
		defer mu.Unlock()
		seen++
		if seen <= 2 { // the first two copies are "lost"
			return decision{drop: true}
		}
		return decision{code: terminals.CodeApproved}
	})
	obs := &outcomes{}
	d := newDevice(t, b.url(), topics, "STALL-0001", func(c *Config) { c.Observer = obs })
	rep, _, err := d.Do(ctx10(t), Purchase(county, 500))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Code != terminals.CodeApproved {
		t.Fatalf("code = %s", rep.Code)
	}
	copies := purchasesOf(r.received(), rep.Txn)
	if len(copies) != 3 {
		t.Fatalf("gateway saw %d copies, want 3", len(copies))
	}
	for i := range copies {
		if !bytes.Equal(copies[i], copies[0]) {
			t.Fatalf("retry %d differs:\n%s\n%s", i, copies[i], copies[0])
		}
	}
	if o := obs.list(); len(o) != 1 || o[0].Retries != 2 {
		t.Fatalf("outcomes = %+v", o)
	}
	if s := d.Stats(); s.Retries != 2 || s.Timeouts != 2 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestBusyIsRetriedWithSameBytes(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	var mu sync.Mutex
	seen := 0
	r := startResponder(t, b.url(), topics, func(received) decision {
		mu.Lock()
		defer mu.Unlock()
		seen++
		if seen == 1 {
			return decision{code: terminals.CodeBusy}
		}
		return decision{code: terminals.CodeApproved}
	})
	d := newDevice(t, b.url(), topics, "KIOSK-0001", nil)
	rep, _, err := d.Do(ctx10(t), Purchase(county, 700))
	if err != nil || rep.Code != terminals.CodeApproved {
		t.Fatalf("rep=%+v err=%v", rep, err)
	}
	copies := purchasesOf(r.received(), rep.Txn)
	if len(copies) != 2 || !bytes.Equal(copies[0], copies[1]) {
		t.Fatalf("copies = %q", copies)
	}
}

func TestReversalAfterRetriesRunOut(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	var mu sync.Mutex
	reversals := 0
	r := startResponder(t, b.url(), topics, func(rec received) decision {
		if rec.req.Type == terminals.TypePurchase {
			return decision{drop: true} // the gateway never answers the purchase
		}
		mu.Lock()
		defer mu.Unlock()
		reversals++
		if reversals == 1 { // and loses the first reversal too
			return decision{drop: true}
		}
		return decision{code: terminals.CodeApproved}
	})
	obs := &outcomes{}
	d := newDevice(t, b.url(), topics, "BUS-0002", func(c *Config) { c.Observer = obs; c.Retries = 1 })
	_, _, err := d.Do(ctx10(t), Purchase(county, 200))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	o := obs.list()
	if len(o) != 1 || !o[0].Reversed || o[0].Unresolved || o[0].ReversalCode != terminals.CodeApproved || o[0].Retries != 1 {
		t.Fatalf("outcome = %+v", o)
	}
	got := r.received()
	if n := len(purchasesOf(got, 1)); n != 2 {
		t.Fatalf("purchase copies = %d, want 2 (1 retry)", n)
	}
	var rv [][]byte
	for _, x := range got {
		if x.req.Type == terminals.TypeReversal {
			if x.req.Orig != 1 || x.req.Txn != 2 || x.req.Amt != 200 || x.req.Inst != county {
				t.Fatalf("reversal = %+v", x.req)
			}
			rv = append(rv, x.payload)
		}
	}
	if len(rv) != 2 || !bytes.Equal(rv[0], rv[1]) {
		t.Fatalf("reversal copies = %d (want 2 identical)", len(rv))
	}
	if o[0].ReversalTxn != 2 {
		t.Fatalf("reversal txn = %d", o[0].ReversalTxn)
	}
}

func TestUnresolvedWhenContextEnds(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	startResponder(t, b.url(), topics, func(received) decision { return decision{drop: true} })
	obs := &outcomes{}
	d := newDevice(t, b.url(), topics, "BUS-0003", func(c *Config) { c.Observer = obs; c.Retries = 0 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _, err := d.Do(ctx, Purchase(county, 200))
	if !errors.Is(err, ErrUnresolved) {
		t.Fatalf("err = %v, want ErrUnresolved", err)
	}
	if o := obs.list(); len(o) != 1 || !o[0].Unresolved || o[0].Reversed {
		t.Fatalf("outcome = %+v", o)
	}
}

func TestRepliesMatchedToWaiters(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	// Hold the first two purchases and answer them in reverse order, plus a
	// reply for a txn nobody waits for.
	var mu sync.Mutex
	var held []received
	r := startResponder(t, b.url(), topics, func(received) decision { return decision{drop: true} })
	r.setFn(func(rec received) decision {
		mu.Lock()
		held = append(held, rec)
		h := append([]received(nil), held...)
		mu.Unlock()
		if len(h) == 2 {
			go func() {
				tid := "STALL-0002"
				for _, txn := range []uint64{h[1].req.Txn, 999, h[0].req.Txn} {
					rep := terminals.Reply{V: 1, Type: "purchase", TID: tid, Txn: txn, Code: terminals.CodeApproved, Auth: "A" + strconv.FormatUint(txn, 10), GTS: 1}
					r.client.Publish(topics.Reply(tid), 1, false, terminals.Seal(testKey(tid), rep.AppendJSON(nil))).Wait()
				}
			}()
		}
		return decision{drop: true}
	})
	d := newDevice(t, b.url(), topics, "STALL-0002", func(c *Config) { c.ReplyTimeout = 3 * time.Second })
	ctx := ctx10(t)
	var wg sync.WaitGroup
	reps := make([]terminals.Reply, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i], _, errs[i] = d.Do(ctx, Purchase(county, int64(100+i)))
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if reps[i].Auth != "A"+strconv.FormatUint(reps[i].Txn, 10) {
			t.Fatalf("reply %d = %+v: matched to the wrong waiter", i, reps[i])
		}
	}
	if reps[0].Txn == reps[1].Txn {
		t.Fatal("both requests got the same txn id")
	}
	deadline := time.Now().Add(2 * time.Second)
	for d.Stats().UnknownReplies != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := d.Stats(); s.UnknownReplies != 1 {
		t.Fatalf("unknown replies = %d, want 1", s.UnknownReplies)
	}
}

func TestBadReplyMACDetected(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	startResponder(t, b.url(), topics, func(rec received) decision {
		if rec.req.Type == terminals.TypePurchase {
			return decision{code: terminals.CodeApproved, wrongKey: true}
		}
		return decision{code: terminals.CodeApproved}
	})
	obs := &outcomes{}
	d := newDevice(t, b.url(), topics, "KIOSK-0002", func(c *Config) { c.Observer = obs; c.Retries = 1 })
	_, _, err := d.Do(ctx10(t), Purchase(county, 1500))
	if !errors.Is(err, ErrBadReplyMAC) {
		t.Fatalf("err = %v, want ErrBadReplyMAC", err)
	}
	if s := d.Stats(); s.BadReplyMAC != 2 || s.Replies != 1 {
		t.Fatalf("stats = %+v, want 2 bad-MAC replies and 1 genuine (the reversal)", s)
	}
	// A forged approval is not believed: the purchase is reversed.
	if o := obs.list(); len(o) != 1 || o[0].Reply != nil || !o[0].Reversed {
		t.Fatalf("outcome = %+v", o)
	}
}

func TestHeartbeatAndBalance(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	bal := int64(4200)
	r := startResponder(t, b.url(), topics, func(received) decision {
		return decision{code: terminals.CodeApproved, bal: &bal}
	})
	d := newDevice(t, b.url(), topics, "BUS-0004", nil)
	ctx := ctx10(t)
	rep, _, err := d.Do(ctx, Heartbeat())
	if err != nil || rep.Txn != 0 || rep.Code != terminals.CodeApproved {
		t.Fatalf("heartbeat rep=%+v err=%v", rep, err)
	}
	rep, _, err = d.Do(ctx, Balance(county))
	if err != nil || rep.Bal == nil || *rep.Bal != 4200 || rep.Txn != 1 {
		t.Fatalf("balance rep=%+v err=%v", rep, err)
	}
	got := r.received()
	if len(got) != 2 || got[0].req.Type != terminals.TypeHeartbeat || got[0].req.Txn != 0 {
		t.Fatalf("received = %+v", got)
	}
}

func TestFileStoreCounterSurvivesReboot(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	path := filepath.Join(t.TempDir(), "txn")
	// The responder reads the counter file when a request arrives: the id
	// must already be on disk by then.
	var mu sync.Mutex
	var onDisk []string
	startResponder(t, b.url(), topics, func(rec received) decision {
		s, _ := os.ReadFile(path)
		mu.Lock()
		onDisk = append(onDisk, strconv.FormatUint(rec.req.Txn, 10)+"/"+string(bytes.TrimSpace(s)))
		mu.Unlock()
		return decision{code: terminals.CodeApproved}
	})
	boot := func() *Device {
		st, err := OpenFileStore(path)
		if err != nil {
			t.Fatal(err)
		}
		return newDevice(t, b.url(), topics, "BUS-0005", func(c *Config) { c.Store = st })
	}
	ctx := ctx10(t)
	d := boot()
	for range 2 {
		if _, _, err := d.Do(ctx, Purchase(county, 200)); err != nil {
			t.Fatal(err)
		}
	}
	d.Close() // "reboot"
	d = boot()
	rep, _, err := d.Do(ctx, Purchase(county, 200))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Txn != 3 {
		t.Fatalf("txn after reboot = %d, want 3", rep.Txn)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"1/1", "2/2", "3/3"}
	if len(onDisk) != 3 || onDisk[0] != want[0] || onDisk[1] != want[1] || onDisk[2] != want[2] {
		t.Fatalf("txn/on-disk at arrival = %v, want %v", onDisk, want)
	}
}

func TestInjectFaultsAgainstResponder(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	startResponder(t, b.url(), topics, approveAll)
	obs := &outcomes{}
	d := newDevice(t, b.url(), topics, "STALL-0003", func(c *Config) { c.Observer = obs })
	ctx := ctx10(t)

	s, err := d.Prepare(Purchase(county, 300))
	if err != nil {
		t.Fatal(err)
	}
	_, raw1, err := d.Send(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	rep, _, err := d.Inject(ctx, d.Tampered(s))
	if err != nil || rep.Code != terminals.CodeBadMAC || rep.Txn != 0 {
		t.Fatalf("tamper: rep=%+v err=%v", rep, err)
	}
	mf, err := d.Malformed()
	if err != nil {
		t.Fatal(err)
	}
	if rep, _, err = d.Inject(ctx, mf); err != nil || rep.Code != terminals.CodeMalformed {
		t.Fatalf("malformed: rep=%+v err=%v", rep, err)
	}
	ov, err := d.Oversize(Purchase(county, 300))
	if err != nil {
		t.Fatal(err)
	}
	if rep, _, err = d.Inject(ctx, ov); err != nil || rep.Code != terminals.CodeOversize {
		t.Fatalf("oversize: rep=%+v err=%v", rep, err)
	}
	// This stand-in does not store replies, so a duplicate is answered
	// afresh; the real gateway's byte-identical replay is checked by fleet.
	rep, raw2, err := d.Inject(ctx, d.Duplicate(s))
	if err != nil || rep.Txn != s.Req.Txn || len(raw2) == 0 || len(raw1) == 0 {
		t.Fatalf("duplicate: rep=%+v err=%v", rep, err)
	}
	var kinds []FaultKind
	for _, o := range obs.list() {
		kinds = append(kinds, o.Fault)
	}
	want := []FaultKind{"", FaultTamper, FaultMalformed, FaultOversize, FaultDuplicate}
	if len(kinds) != len(want) {
		t.Fatalf("observed kinds %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("observed kinds %v, want %v", kinds, want)
		}
	}
}

func TestResubscribesAfterBrokerRestart(t *testing.T) {
	addr := freeAddr(t)
	b := startBroker(t, addr)
	topics := uniqueRoot("t-")
	startResponder(t, b.url(), topics, approveAll)
	d := newDevice(t, b.url(), topics, "BUS-0006", nil)
	ctx := ctx10(t)
	if _, _, err := d.Do(ctx, Heartbeat()); err != nil {
		t.Fatal(err)
	}
	// A broker restart without persistence: sessions and subscriptions are
	// gone, so only a resubscription in OnConnect brings replies back.
	b.stop()
	b = startBroker(t, addr)
	startResponder(t, b.url(), topics, approveAll)
	deadline := time.Now().Add(8 * time.Second)
	for {
		c, cancel := context.WithTimeout(ctx, time.Second)
		rep, _, err := d.Do(c, Purchase(county, 200))
		cancel()
		if err == nil && rep.Code == terminals.CodeApproved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reply after broker restart: %v (stats %+v)", err, d.Stats())
		}
	}
	if s := d.Stats(); s.Connects < 2 || s.ConnectionLost < 1 {
		t.Fatalf("stats = %+v, want a reconnection", s)
	}
}
