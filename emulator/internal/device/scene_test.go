package device

import (
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"scenepay/terminals"
)

var wallet1 = terminals.Instrument{Kind: terminals.InstECNY, ID: "w-0001"}

func fenp(v int64) *int64 { return &v }

// TestSceneMessagesOnTheWire: every scene builder reaches the responder as
// the protocol's message (the fields the gateway decodes), is answered, and
// its outcome carries the request as sealed.
func TestSceneMessagesOnTheWire(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	resp := startResponder(t, b.url(), topics, func(r received) decision {
		return decision{code: terminals.CodeApproved, amt: fenp(r.req.Amt), out: "cn"[:min(2, r.req.Taps.Len())]}
	})
	var obs outcomes
	d := newDevice(t, b.url(), topics, "STALL-1", func(c *Config) { c.Observer = &obs })
	up, err := OfflineUpload(county, []terminals.UploadTap{
		{Seq: 7, Route: "B1", TS: 1767220000000}, {Seq: 8, Out: true, Route: "B1", TS: 1767220060000}})
	if err != nil {
		t.Fatal(err)
	}
	ins := terminals.Insurance{Pool: 6000, Personal: 1000, Self: 3000}
	reqs := []terminals.Request{
		QRPay("SPC1AEBAAAAAAB", 1550),
		Refund(county, 1, 500),
		DepositOpen(wallet1, 50_000),
		DepositTopUp(wallet1, 3, 20_000),
		DepositCapture(wallet1, 3, 2_500),
		DepositRelease(wallet1, 3, 0),
		InsuredPurchase(county, "LAB", ins),
		ECNYOffline(wallet1, 1_500),
		up,
	}
	for _, req := range reqs {
		rep, _, err := d.Do(ctx10(t), req)
		if err != nil || rep.Code != terminals.CodeApproved || rep.Type != req.Type {
			t.Fatalf("%s: %+v %v", req.Type, rep, err)
		}
	}
	got := resp.received()
	if len(got) != len(reqs) {
		t.Fatalf("responder saw %d requests, want %d", len(got), len(reqs))
	}
	for i, g := range got {
		w := reqs[i]
		r := g.req
		if r == nil || r.Type != w.Type || r.Amt != w.Amt || r.Orig != w.Orig || r.Inst != w.Inst || r.PayCode != w.PayCode ||
			r.Item != w.Item || r.Ins != w.Ins || r.Taps != w.Taps {
			t.Errorf("request %d: sent %+v, gateway read %+v", i, w, r)
		}
	}
	if got[0].req.Inst.Kind != "" || got[6].req.Amt != 10_000 || !got[6].req.Ins.Set || got[8].req.Taps.Len() != 2 {
		t.Errorf("qr_pay inst %+v, insured amt %d, upload taps %d", got[0].req.Inst, got[6].req.Amt, got[8].req.Taps.Len())
	}
	outs := obs.list()
	if len(outs) != len(reqs) || outs[0].Req.PayCode != "SPC1AEBAAAAAAB" || outs[8].Req.Taps.Len() != 2 || outs[8].Reply.Out != "cn" {
		t.Fatalf("outcomes %+v", outs)
	}
}

// TestUploadBuilderKeepsTheProtocolBounds: at most 16 taps per message,
// seqs unique.
func TestUploadBuilderKeepsTheProtocolBounds(t *testing.T) {
	var taps []terminals.UploadTap
	for i := range terminals.MaxUploadTaps + 1 {
		taps = append(taps, terminals.UploadTap{Seq: uint64(i + 1), Route: "B1", TS: 1767220000000})
	}
	if _, err := OfflineUpload(county, taps[:terminals.MaxUploadTaps]); err != nil {
		t.Fatalf("16 taps: %v", err)
	}
	if _, err := OfflineUpload(county, taps); err == nil {
		t.Fatal("17 taps accepted")
	}
	if _, err := OfflineUpload(county, []terminals.UploadTap{taps[0], taps[0]}); err == nil {
		t.Fatal("a repeated seq accepted")
	}
}

// TestUnansweredSceneMessageIsRepeatedNotReversed: a qr_pay, a refund, a
// capture and an upload whose replies are lost are not reversed (a reversal
// would be ORIGINAL_NOT_FOUND and read as "no effect"); Resend repeats the
// same txn id and content with a new ts and gets the answer.
func TestUnansweredSceneMessageIsRepeatedNotReversed(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	var drop atomic.Bool
	drop.Store(true)
	resp := startResponder(t, b.url(), topics, func(r received) decision {
		if drop.Load() {
			return decision{drop: true}
		}
		return decision{code: terminals.CodeApproved, amt: fenp(r.req.Amt)}
	})
	var obs outcomes
	d := newDevice(t, b.url(), topics, "STALL-2", func(c *Config) { c.Observer = &obs; c.Retries = 1 })
	for _, req := range []terminals.Request{QRPay("SPC1AEBAAAAAAB", 900), Refund(county, 1, 300),
		DepositCapture(wallet1, 1, 2_000), ECNYOffline(wallet1, 700)} {
		drop.Store(true)
		s, err := d.Prepare(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Send(ctx10(t), s); !errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnresolved) {
			t.Fatalf("%s: err %v, want a plain timeout", req.Type, err)
		}
		time.Sleep(5 * time.Millisecond) // a new ts
		drop.Store(false)
		n, rep, _, err := d.Resend(ctx10(t), s)
		if err != nil || rep.Code != terminals.CodeApproved || n.Req.Txn != s.Req.Txn || rep.Txn != s.Req.Txn {
			t.Fatalf("%s resend: %+v %v", req.Type, rep, err)
		}
		if n.Req.ContentHash() != s.Req.ContentHash() {
			t.Fatalf("%s resend changed the content", req.Type)
		}
	}
	for _, g := range resp.received() {
		if g.req != nil && g.req.Type == terminals.TypeReversal {
			t.Fatalf("a reversal was sent for a non-reversible message: %+v", g.req)
		}
	}
	if st := d.Stats(); st.Reversals != 0 || st.Unresolved != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, _, _, err := d.Resend(ctx10(t), Sealed{}); err == nil {
		t.Fatal("resend of an unsealed request accepted")
	}
}

// TestDepositLowNoticeIsNotAReply: a deposit_low notice under a capture's
// txn id, arriving before the capture's reply, is counted as a notice and
// the device waits for the real reply.
func TestDepositLowNoticeIsNotAReply(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	startResponder(t, b.url(), topics, func(r received) decision {
		return decision{code: terminals.CodeApproved, amt: fenp(40_000), notice: r.req.Type == terminals.TypeCapture}
	})
	d := newDevice(t, b.url(), topics, "KIOSK-1", nil)
	if rep, _, err := d.Do(ctx10(t), DepositOpen(wallet1, 50_000)); err != nil || rep.Code != terminals.CodeApproved {
		t.Fatalf("open: %+v %v", rep, err)
	}
	rep, _, err := d.Do(ctx10(t), DepositCapture(wallet1, 1, 2_500))
	if err != nil || rep.Type != terminals.TypeCapture || rep.Code != terminals.CodeApproved {
		t.Fatalf("capture: %+v %v", rep, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for d.Stats().Notices != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := d.Stats(); st.Notices != 1 {
		t.Fatalf("notices %d, want 1 (%+v)", st.Notices, st)
	}
}

// TestHeartbeatReportsBacklogAndDenyVersion: the heartbeat carries obk and
// cfg {"deny":v} as the protocol has them.
func TestHeartbeatReportsBacklogAndDenyVersion(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	resp := startResponder(t, b.url(), topics, approveAll)
	d := newDevice(t, b.url(), topics, "BUS-1", nil)
	var cfg terminals.CfgVersions
	if err := cfg.Add(DenyCfgName, 12); err != nil {
		t.Fatal(err)
	}
	for _, obk := range []terminals.Backlog{{Set: true, N: 3, Oldest: 1767220000000}, {Set: true}} {
		if rep, _, err := d.Do(ctx10(t), HeartbeatReport(cfg, obk)); err != nil || rep.Code != terminals.CodeApproved {
			t.Fatalf("heartbeat: %+v %v", rep, err)
		}
	}
	got := resp.received()
	if len(got) != 2 {
		t.Fatalf("%d heartbeats", len(got))
	}
	if o := got[0].req.OBK; !o.Set || o.N != 3 || o.Oldest != 1767220000000 {
		t.Errorf("first obk %+v", o)
	}
	if o := got[1].req.OBK; !o.Set || o.N != 0 || o.Oldest != 0 {
		t.Errorf("second obk %+v", o)
	}
	if v, ok := got[1].req.Cfg.Get(DenyCfgName); !ok || v != 12 {
		t.Errorf("cfg deny %d %v", v, ok)
	}
}

var testKcfg = []byte("0123456789abcdef0123456789abcdef")

func denyFull(v uint64, cards ...string) []byte {
	b := `{"v":1,"kind":"full","version":` + strconv.FormatUint(v, 10) + `,"cards":` + jsonList(cards) + `}`
	return terminals.Seal(testKcfg, []byte(b))
}

func denyDelta(from, v uint64, add, remove []string, stops ...string) []byte {
	b := `{"v":1,"kind":"delta","from":` + strconv.FormatUint(from, 10) + `,"version":` + strconv.FormatUint(v, 10) +
		`,"add":` + jsonList(add) + `,"remove":` + jsonList(remove)
	if len(stops) > 0 {
		b += `,"stop_first_rides":` + jsonList(stops) + `,"stop_day":20500`
	}
	return terminals.Seal(testKcfg, []byte(b+`}`))
}

func jsonList(l []string) string {
	s := "["
	for i, c := range l {
		if i > 0 {
			s += ","
		}
		s += strconv.Quote(c)
	}
	return s + "]"
}

func sameCards(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// TestDenyListFollowsTheProtocolRule walks the rule of section 16: a delta
// that needs a full list waits for it, a reset takes the full list, a full
// list not above the held version is ignored, a bad MAC is dropped, the
// first-ride stop list comes from every delta.
func TestDenyListFollowsTheProtocolRule(t *testing.T) {
	l := NewDenyList()
	must := func(p []byte) {
		t.Helper()
		if err := l.Receive(testKcfg, p); err != nil {
			t.Fatal(err)
		}
	}
	must(denyDelta(4, 6, []string{"county:C"}, []string{"county:A"})) // h=0 < from: waits
	if l.Version() != 0 || l.Denied("county:C") {
		t.Fatalf("a delta applied without its full list: v%d", l.Version())
	}
	must(denyFull(4, "county:A", "county:B"))
	if l.Version() != 6 || !sameCards(l.Cards(), "county:B", "county:C") {
		t.Fatalf("after full 4 + pending delta: v%d %v", l.Version(), l.Cards())
	}
	must(denyDelta(4, 7, []string{"county:C", "county:D"}, []string{"county:A"}, "B1"))
	if l.Version() != 7 || !sameCards(l.Cards(), "county:B", "county:C", "county:D") {
		t.Fatalf("cumulative delta: v%d %v", l.Version(), l.Cards())
	}
	if !l.FirstRidesStopped("B1", 20500) || l.FirstRidesStopped("B1", 20501) || l.FirstRidesStopped("D1", 20500) {
		t.Fatal("first-ride stop list")
	}
	must(denyFull(4, "county:A", "county:B")) // not above h: ignored
	if l.Version() != 7 || l.Denied("county:A") {
		t.Fatalf("a stale full list replaced the list: v%d %v", l.Version(), l.Cards())
	}
	// The gateway's list was reset: full 1, delta 1 -> 2.
	must(denyFull(1, "county:Z"))
	must(denyDelta(1, 2, []string{"county:Y"}, nil))
	if l.Version() != 2 || !sameCards(l.Cards(), "county:Y", "county:Z") {
		t.Fatalf("after a reset: v%d %v", l.Version(), l.Cards())
	}
	forged := terminals.Seal([]byte("another key, not the config key!"), []byte(`{"v":1,"kind":"full","version":99,"cards":[]}`))
	if err := l.Receive(testKcfg, forged); err == nil || l.Version() != 2 {
		t.Fatalf("a message under another key was applied: %v, v%d", err, l.Version())
	}
	if err := l.Receive(testKcfg, nil); err != nil {
		t.Fatalf("an empty retained payload: %v", err)
	}
	if applied, refused := l.Counts(); applied != 6 || refused != 1 {
		t.Fatalf("counts %d applied, %d refused", applied, refused)
	}
}

// TestDenyListSyncOnRealMosquitto: a reader connecting to the machine's
// broker gets the retained full list and delta of its bus group, whatever
// order they arrive in, and follows a later delta.
func TestDenyListSyncOnRealMosquitto(t *testing.T) {
	c, err := net.DialTimeout("tcp", "127.0.0.1:1883", time.Second)
	if err != nil {
		t.Skipf("no Mosquitto at 127.0.0.1:1883: %v", err)
	}
	c.Close()
	topics := uniqueRoot("t-")
	tid := "BUS-" + topics.Root[2:14]
	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(mosquittoURL).SetClientID(tid + "-gw").SetCleanSession(true))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() {
		pub.Publish(terminals.DenyTopicFull(topics), 1, true, []byte{}).WaitTimeout(2 * time.Second)
		pub.Publish(terminals.DenyTopicDelta(topics), 1, true, []byte{}).WaitTimeout(2 * time.Second)
		pub.Disconnect(100)
		cleanMosquitto(t, topics, tid)
	})
	publish := func(topic string, p []byte) {
		t.Helper()
		if tok := pub.Publish(topic, 1, true, p); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	publish(terminals.DenyTopicFull(topics), denyFull(3, "county:A", "county:B"))
	publish(terminals.DenyTopicDelta(topics), denyDelta(3, 5, []string{"county:C"}, []string{"county:A"}))
	startResponder(t, mosquittoURL, topics, approveAll)
	d := newDevice(t, mosquittoURL, topics, tid, func(c *Config) { c.DenyKey = testKcfg })
	waitVersion := func(v uint64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for d.Deny().Version() != v && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if d.Deny().Version() != v {
			t.Fatalf("deny version %d, want %d (cards %v)", d.Deny().Version(), v, d.Deny().Cards())
		}
	}
	waitVersion(5)
	if !sameCards(d.Deny().Cards(), "county:B", "county:C") {
		t.Fatalf("cards %v", d.Deny().Cards())
	}
	publish(terminals.DenyTopicDelta(topics), denyDelta(3, 6, []string{"county:C", "county:D"}, []string{"county:A", "county:B"}))
	waitVersion(6)
	if !sameCards(d.Deny().Cards(), "county:C", "county:D") {
		t.Fatalf("cards %v", d.Deny().Cards())
	}
}

// TestPaidNoticeIsCountedOnceAndNotAReply: a stall terminal gets a "paid"
// notice (a wallet paid one of its stall codes) on its reply topic: it is
// recorded once even when redelivered, never taken for a reply, and a
// notice naming another terminal or signed under another key is refused.
func TestPaidNoticeIsCountedOnceAndNotAReply(t *testing.T) {
	b := startBroker(t, freeAddr(t))
	topics := uniqueRoot("t-")
	resp := startResponder(t, b.url(), topics, approveAll)
	d := newDevice(t, b.url(), topics, "STALL-1", nil)
	p := terminals.Paid{V: 1, Type: terminals.NoticePaid, TID: "STALL-1", Txn: 1<<62 | 99, Code: terminals.CodeApproved,
		Auth: "03-0000000041", Amt: 1_550, SC: "SCAB2CD3EF4GH5IJ6KL7MN", GTS: time.Now().UnixMilli()}
	other := p
	other.TID, other.Txn = "STALL-2", 1<<62|100
	pub := func(key []byte, n terminals.Paid) {
		resp.client.Publish(topics.Reply("STALL-1"), 1, false, terminals.Seal(key, n.AppendJSON(nil))).Wait()
	}
	pub(testKey("STALL-1"), p)
	pub(testKey("STALL-1"), p) // a redelivery
	pub(testKey("STALL-1"), other)
	pub(testKey("STALL-2"), p)
	// The notice's txn never meets the terminal's own: a sale still gets its reply.
	if rep, _, err := d.Do(ctx10(t), Purchase(wallet1, 700)); err != nil || rep.Code != terminals.CodeApproved {
		t.Fatalf("sale after the notices: %+v %v", rep, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for d.Stats().BadReplyMAC+d.Stats().MalformedReplies < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := d.Stats()
	if st.PaidNotices != 1 || st.Notices != 2 || st.MalformedReplies != 1 || st.BadReplyMAC != 1 || st.UnknownReplies != 0 {
		t.Fatalf("stats %+v: want 1 paid notice (2 deliveries), 1 malformed, 1 bad MAC", st)
	}
	got := d.Paid()
	if len(got) != 1 || got[0] != p {
		t.Fatalf("paid notices %+v, want %+v", got, p)
	}
}
