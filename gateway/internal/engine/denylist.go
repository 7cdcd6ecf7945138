package engine

// The deny list: the cards bus readers refuse offline. The gateway owns one
// list (like the terminal registry, gateway-level state, not a shard's):
// its changes are journal entries (type 6) and it is in snapshots
// (SPSNAP4). Cards go on it when an offline upload leaves debt
// (transit.FlagDeny) or an operator lists them, and come off when a top-up
// pays the debt (transit.FlagUndeny) or an operator takes them off.
//
// Distribution, the exact rule. Two signed retained messages per bus group,
// under the config-signing key and in the config envelope's style (the
// format, topics and encoding are the wire contract's, terminals/deny.go):
//
//	{root}/g/bus/deny/full   {"v":1,"kind":"full","version":F,"cards":[...]}
//	{root}/g/bus/deny/delta  {"v":1,"kind":"delta","from":F,"version":V,"add":[...],"remove":[...]}
//
// The delta is cumulative from the version F of the last full list to the
// current version V (the net state of every card changed after F), so a
// reader only ever needs the latest retained delta: a reader holding
// version h with F <= h applies it (adds and removes are idempotent) and
// holds V; a reader with h < F (it missed more than one full period, or
// it is new) first replaces its list with the full message, then applies
// the delta. A new full list is published, and F moves to V, when the
// delta would list more than DenyDeltaCardsMax cards or DenyFullEvery
// versions have passed since F, and at every start and broker reconnect
// (republish; F starts at the list's first version, the empty list,
// before any full list was published). With Config.DenyVersionBase that
// first version is a base from the clock, not 0 (baseDenyList). The
// republish happens whatever the version, also for a list never changed
// (a full list at its first version without cards and an empty delta from
// it to itself): the broker may still hold retained deny-list
// messages of an earlier data directory (the gateway's data wiped, or
// restored from an older backup, with broker persistence on), and those
// must not stay. A reader holding such a stale version h > V takes the
// full list the delta's From names, so it ends on the gateway's list. The
// full message goes out before the delta, so a delta's From always names
// a full list the broker holds. Readers report the version they applied as
// "deny" in the heartbeat's cfg object; GET /v1/denylist/lagging lists the
// registered bus readers below the current version (or never reporting).
//
// First rides: an upload for a card the bank does not know (declined
// UNKNOWN_INSTRUMENT) books each tap-in's fare against its route's
// first-ride budget for the transit day (transit.FirstRideLoss; journal
// entry type 6, op 3, with the loss and whether the budget is now spent, so
// replay does not consult the fare policy). Once spent, the delta carries
// "stop_first_rides":[routes] and "stop_day":D; readers on those routes
// refuse unknown cards until their transit day is past D. The delta is
// republished when a route stops; its version does not change (the card
// list did not), so readers apply the stop list of every delta they get.
//
// Ordering: a change is journaled and durable before it is published, as
// config documents are. A top-up's removal is journaled after the top-up
// record is durable: a crash between the two leaves the card listed (the
// safe side) until the operator removes it or the next debt change.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"scenepay/gateway/internal/bincur"
	"scenepay/gateway/internal/core"
	"scenepay/gateway/internal/registry"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/gateway/opwire"
	"scenepay/terminals"
)

// entryDeny is a deny-list change:
//
//	u8 type (6) | u8 op (1 add, 2 remove, 3 first-ride loss, 4 base) |
//	u8 source (1 operator, 2 debt; 0 for a base) |
//	varint at (Unix ms) | uvarint len(card) | card (ops 3 and 4: see below)
const entryDeny = 6

const (
	denyOpAdd    = 1
	denyOpRemove = 2
	// denyOpLoss is a first-ride loss: the card field is the route, then
	// varint transit day | varint loss fen | u8 stop (the route's budget
	// is spent for that day).
	denyOpLoss = 3
	// denyOpBase starts a new data directory's list at a version base
	// (Config.DenyVersionBase): the card field is the base, 8 bytes big
	// endian; source 0.
	denyOpBase = 4

	// DenySourceOperator and DenySourceDebt say who changed the list.
	DenySourceOperator = 1
	DenySourceDebt     = 2
)

// Bounds of deny-list distribution.
const (
	DenyFullEvery     = 256  // versions after the last full list before the next one
	DenyDeltaCardsMax = 1024 // cards one delta may list before a full list replaces it
	DenyLagListMax    = 1000 // terminals one lagging answer lists
	// DenyCfgName is the heartbeat cfg key readers report the applied
	// deny-list version under.
	DenyCfgName = terminals.DenyCfgName
	// DenyGroup is the terminal kind (group) that receives the deny list.
	DenyGroup = registry.KindBus
)

// ErrDenyBadCard is an operator's malformed card key.
var ErrDenyBadCard = errors.New("engine: deny list: card key must be 1..64 bytes without NUL or newline")

// Lock order: mu, then Engine.snapMu, then lmu. lmu is held only briefly
// and never while taking another lock, so a snapshot (which holds snapMu)
// can read the list.
type denyState struct {
	mu   sync.Mutex // serializes changes and their publication; guards full
	lmu  sync.Mutex // guards list (changes, reads, reports)
	list *transit.DenyList
	full uint64 // version of the last full list published (base of the delta)
	// risk is the first-ride loss per route of one transit day and stop
	// the routes whose budget it spent (bounded by transit.RoutesMax);
	// guarded by lmu.
	risk transit.RiskBook
	stop map[string]bool
	// cardBytes is what the cards take in a full-list body (each entry
	// with its comma), kept so that an add that would make a body readers
	// refuse is refused (wouldOverflowLocked); guarded by lmu.
	cardBytes int
}

func (d *denyState) init() {
	d.list = transit.NewDenyList()
	d.risk = transit.RiskBook{Loss: map[string]int64{}}
	d.stop = map[string]bool{}
}

// DenyTopicFull and DenyTopicDelta are the retained topics of the bus
// group's deny list (terminals.DenyTopicFull, terminals.DenyTopicDelta).
func DenyTopicFull(t terminals.Topics) string { return terminals.DenyTopicFull(t) }

// DenyTopicDelta: see DenyTopicFull.
func DenyTopicDelta(t terminals.Topics) string { return terminals.DenyTopicDelta(t) }

// DenyAdd lists card (an operator change) and returns the list's version.
func (e *Engine) DenyAdd(card string) (uint64, error) {
	return e.denyChange(denyOpAdd, DenySourceOperator, card)
}

// DenyRemove takes card off the list (an operator change).
func (e *Engine) DenyRemove(card string) (uint64, error) {
	return e.denyChange(denyOpRemove, DenySourceOperator, card)
}

// denyFlags applies a core decision's deny-list facts for account.
func (e *Engine) denyFlags(account string, flags uint16) {
	var op byte
	switch {
	case flags&uint16(transit.FlagDeny) != 0:
		op = denyOpAdd
	case flags&uint16(transit.FlagUndeny) != 0:
		op = denyOpRemove
	default:
		return
	}
	if _, err := e.denyChange(op, DenySourceDebt, account); err != nil {
		e.log.Error("deny list change after a debt change failed", "op", op, "err", err)
	}
}

func appendDenyEntry(dst []byte, op, source byte, at time.Time, card string) []byte {
	dst = append(dst, entryDeny, op, source)
	dst = binary.AppendVarint(dst, at.UnixMilli())
	dst = binary.AppendUvarint(dst, uint64(len(card)))
	return append(dst, card...)
}

// denyChange journals and applies one change, waits until it is durable,
// then publishes. A change that changes nothing (adding a listed card) is
// not journaled.
func (e *Engine) denyChange(op, source byte, card string) (uint64, error) {
	if len(card) == 0 || len(card) > transit.CardKeyLenMax {
		return 0, ErrDenyBadCard
	}
	for i := 0; i < len(card); i++ {
		if card[i] == 0 || card[i] == '\n' {
			return 0, ErrDenyBadCard
		}
	}
	if err := e.Ready(); err != nil {
		return 0, err
	}
	d := &e.deny
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lmu.Lock()
	same, v := (op == denyOpAdd) == d.list.Has(card), d.list.Version()
	full := false
	if op == denyOpAdd && !same {
		full = d.wouldOverflowLocked(card)
	}
	d.lmu.Unlock()
	if same {
		return v, nil
	}
	if op == denyOpAdd && full {
		return v, transit.ErrDenyFull
	}
	payload := appendDenyEntry(nil, op, source, e.cfg.Clock(), card)
	e.snapMu.Lock()
	lsn, err := e.j.Append(payload, nil)
	if err == nil {
		d.lmu.Lock()
		err = d.apply(op, card)
		v = d.list.Version()
		d.lmu.Unlock()
	}
	e.snapMu.Unlock()
	if err != nil {
		e.fail(err)
		return 0, err
	}
	if err := e.j.Sync(lsn); err != nil {
		e.fail(err)
		return 0, err
	}
	e.log.Info("deny list changed", "op", op, "source", source, "version", v)
	e.publishDenyLocked(false)
	return v, nil
}

// denyBaseShift places a list base above every version a list based
// earlier can reach: base = Unix seconds << denyBaseShift leaves room for
// a million changes per second of an earlier list's life, and stays below
// 2^53 (exact in any JSON reader) until the year 2242.
const denyBaseShift = 20

// baseDenyList starts a never changed list at a version from the clock
// (Config.DenyVersionBase), journaled before the engine serves: a new data
// directory's versions then lie above those of any earlier directory's
// list, so a bus reader that missed a reset of the gateway's data takes the
// new full list instead of applying the new delta to its old list. A list
// already in use (changed, or based before) keeps its versions.
func (e *Engine) baseDenyList() error {
	d := &e.deny
	d.lmu.Lock()
	fresh := d.list.Version() == 0 && d.list.Len() == 0
	d.lmu.Unlock()
	if !fresh {
		return nil
	}
	now := e.cfg.Clock()
	base := uint64(max(now.Unix(), 1)) << denyBaseShift
	p := appendDenyEntry(nil, denyOpBase, 0, now, string(binary.BigEndian.AppendUint64(nil, base)))
	lsn, err := e.j.Append(p, nil)
	if err != nil {
		return err
	}
	if err := e.j.Sync(lsn); err != nil {
		return err
	}
	d.lmu.Lock()
	defer d.lmu.Unlock()
	if err := d.list.SetBase(base); err != nil {
		return err
	}
	e.log.Info("deny list started at a version base", "version", base)
	return nil
}

// wouldOverflowLocked reports whether adding card would make a list that
// the gateway cannot hold (transit.DenyCardsMax) or that readers refuse:
// more than terminals.DenyCardsMax cards, or a full-list body over
// terminals.DenyPayloadMax. Every reader would refuse such a full list and
// stay on its old one, so the add is refused instead (ErrDenyFull, which
// the operator API answers clearly and a debt-driven add logs). Adds are
// rare (an operator, or a card going into debt), so measuring the full
// body, O(list), is affordable. Caller holds d.lmu.
func (d *denyState) wouldOverflowLocked(card string) bool {
	n := d.list.Len()
	if n >= transit.DenyCardsMax || n >= terminals.DenyCardsMax {
		return true
	}
	return denyFullOverhead+d.cardBytes+terminals.DenyEntryJSONLen(card)+1 > terminals.DenyPayloadMax
}

// denyFullOverhead is the size of a full-list body without cards, with the
// longest version number.
var denyFullOverhead = len(AppendDenyFull(nil, math.MaxUint64, nil))

// recountLocked sets cardBytes from the list (after a snapshot restore).
func (d *denyState) recountLocked() {
	d.cardBytes = 0
	for _, c := range d.list.Delta(d.list.Version() + 1).Add {
		d.cardBytes += terminals.DenyEntryJSONLen(c) + 1
	}
}

func (d *denyState) apply(op byte, card string) error {
	switch op {
	case denyOpAdd:
		had := d.list.Has(card)
		_, err := d.list.Add(card)
		if err == nil && !had {
			d.cardBytes += terminals.DenyEntryJSONLen(card) + 1
		}
		return err
	case denyOpRemove:
		if d.list.Has(card) {
			d.cardBytes -= terminals.DenyEntryJSONLen(card) + 1
		}
		d.list.Remove(card)
		return nil
	}
	return fmt.Errorf("%w: deny op %d", errEntry, op)
}

func (e *Engine) applyDenyEntry(p []byte) error {
	c := bincur.New(p, errEntry)
	h := c.Take(2)
	if c.Err == nil {
		if _, n := binary.Varint(c.B); n > 0 {
			c.B = c.B[n:]
		} else {
			return fmt.Errorf("%w: deny entry time", errEntry)
		}
	}
	card := string(c.Bytes())
	if c.Err != nil {
		return c.Err
	}
	if h[0] == denyOpLoss {
		return e.applyLossEntry(card, c.B)
	}
	if h[0] == denyOpBase {
		if len(card) != 8 || len(c.B) != 0 || h[1] != 0 {
			return fmt.Errorf("%w: deny base entry", errEntry)
		}
		e.deny.lmu.Lock()
		defer e.deny.lmu.Unlock()
		if err := e.deny.list.SetBase(binary.BigEndian.Uint64([]byte(card))); err != nil {
			return fmt.Errorf("%w: deny base entry: %v", errEntry, err)
		}
		return nil
	}
	if len(c.B) != 0 || (h[0] != denyOpAdd && h[0] != denyOpRemove) || (h[1] != DenySourceOperator && h[1] != DenySourceDebt) {
		return fmt.Errorf("%w: deny entry", errEntry)
	}
	e.deny.lmu.Lock()
	defer e.deny.lmu.Unlock()
	if err := e.deny.apply(h[0], card); err != nil {
		return fmt.Errorf("%w: deny entry: %v", errEntry, err)
	}
	return nil
}

// DenyVersion is the list's current version.
func (e *Engine) DenyVersion() uint64 {
	e.deny.lmu.Lock()
	defer e.deny.lmu.Unlock()
	return e.deny.list.Version()
}

// DenyDelta returns what a reader at since must apply (Full when since is
// older than the kept history).
func (e *Engine) DenyDelta(since uint64) transit.Delta {
	e.deny.lmu.Lock()
	defer e.deny.lmu.Unlock()
	return e.deny.list.Delta(since)
}

// DenyListed reports whether card is on the list.
func (e *Engine) DenyListed(card string) bool {
	e.deny.lmu.Lock()
	defer e.deny.lmu.Unlock()
	return e.deny.list.Has(card)
}

// DenyLagging lists the registered bus readers whose reported deny-list
// version is below the current one, or that never reported one (sorted by
// id, at most DenyLagListMax; total counts them all).
func (e *Engine) DenyLagging() (cur uint64, list []opwire.DenyLag, total int) {
	ts := e.reg.All()
	e.deny.lmu.Lock()
	cur = e.deny.list.Version()
	reported := map[string]uint64{}
	for _, tv := range e.deny.list.Lagging(cur + 1) { // every reporter
		reported[tv.Terminal] = tv.Version
	}
	e.deny.lmu.Unlock()
	if cur == 0 {
		return 0, nil, 0
	}
	for _, t := range ts {
		if t.Kind != DenyGroup {
			continue
		}
		if v := reported[t.TID]; v < cur {
			total++
			if len(list) < DenyLagListMax {
				list = append(list, opwire.DenyLag{TID: t.TID, Reported: v})
			}
		}
	}
	return cur, list, total
}

// noteDenyReport records the deny-list version a heartbeat reported.
func (e *Engine) noteDenyReport(tid string, v *terminals.CfgVersions) {
	ver, ok := v.Get(DenyCfgName)
	if !ok {
		return
	}
	e.deny.lmu.Lock()
	err := e.deny.list.Report(tid, ver)
	e.deny.lmu.Unlock()
	if err != nil {
		e.log.Warn("deny-list report refused", "tid", tid, "version", ver, "err", err)
	}
}

// RepublishDeny publishes a full list and an empty delta at the current
// version (start-up, a new publisher, a reconnect), always, also when the
// list was never changed (version 0: an empty full list and a delta from 0
// to 0). The broker may hold retained messages of an earlier list (a wiped
// or restored data directory with broker persistence on); publishing
// nothing would leave readers refusing cards from that stale list until
// the first change. Readers ahead of the current version take the full
// list (the reader rule for a delta below h). Holding mu, it is ordered
// with every change's publication, so the current version is the one left
// retained.
func (e *Engine) RepublishDeny() {
	e.deny.mu.Lock()
	defer e.deny.mu.Unlock()
	e.publishDenyLocked(true)
}

func (e *Engine) publishDenyLocked(forceFull bool) {
	d := &e.deny
	d.lmu.Lock()
	v := d.list.Version()
	delta := d.list.Delta(d.full)
	all := d.list.Delta(v + 1) // newer than the list: the full list
	stops, stopDay := d.stopsLocked()
	d.lmu.Unlock()
	full := forceFull || delta.Full || v-d.full >= DenyFullEvery || len(delta.Add)+len(delta.Remove) > DenyDeltaCardsMax
	h := e.pub.Load()
	if h == nil {
		return
	}
	rp, ok := h.p.(RetainedPublisher)
	if !ok {
		return
	}
	if full {
		if err := rp.PublishRetained(DenyTopicFull(e.cfg.Topics), terminals.Seal(e.conf.key, AppendDenyFull(nil, v, all.Add))); err != nil {
			e.log.Error("deny list publish failed; retried on the next change, reconnect or restart", "version", v, "err", err)
			return
		}
		d.full = v
		delta = transit.Delta{From: v, To: v}
	}
	if err := rp.PublishRetained(DenyTopicDelta(e.cfg.Topics), terminals.Seal(e.conf.key, AppendDenyDelta(nil, delta, stops, stopDay))); err != nil {
		e.log.Error("deny list publish failed; retried on the next change, reconnect or restart", "version", v, "err", err)
	}
}

// AppendDenyFull appends the body of the full-list message.
func AppendDenyFull(dst []byte, version uint64, cards []string) []byte {
	m := terminals.DenyMessage{V: 1, Kind: terminals.DenyKindFull, Version: version, Cards: cards}
	return m.AppendJSON(dst)
}

// AppendDenyDelta appends the body of the delta message; stops (sorted)
// are the routes whose first-ride budget is spent for transit day stopDay.
func AppendDenyDelta(dst []byte, d transit.Delta, stops []string, stopDay int32) []byte {
	m := terminals.DenyMessage{V: 1, Kind: terminals.DenyKindDelta, From: d.From, Version: d.To,
		Add: d.Add, Remove: d.Remove, StopFirstRides: stops, StopDay: stopDay}
	return m.AppendJSON(dst)
}

// DenyMessage is a decoded deny-list message (what a reader reads).
type DenyMessage = terminals.DenyMessage

// appendDenySnapshot appends the list (transit.DenyList.AppendBinary,
// with the readers' reported versions) as uvarint len | bytes.
//
// Then the first-ride state: uvarint len | transit.RiskBook.AppendBinary |
// uvarint stopped routes, each uvarint len | route (sorted).
func (e *Engine) appendDenySnapshot(dst []byte) []byte {
	e.deny.lmu.Lock()
	b := e.deny.list.AppendBinary(nil)
	rb := e.deny.risk.AppendBinary(nil)
	stops, _ := e.deny.stopsLocked()
	e.deny.lmu.Unlock()
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	dst = append(dst, b...)
	dst = binary.AppendUvarint(dst, uint64(len(rb)))
	dst = append(dst, rb...)
	dst = binary.AppendUvarint(dst, uint64(len(stops)))
	for _, r := range stops {
		dst = binary.AppendUvarint(dst, uint64(len(r)))
		dst = append(dst, r...)
	}
	return dst
}

func (e *Engine) restoreDenySnapshot(c *bincur.Cursor) error {
	b := c.Bytes()
	if c.Err != nil {
		return c.Err
	}
	l, err := transit.DecodeDenyList(b)
	if err != nil {
		return fmt.Errorf("engine: snapshot: deny list: %w", err)
	}
	var rb transit.RiskBook
	if err := transit.DecodeRiskBook(c.Bytes(), &rb); err != nil || c.Err != nil {
		return fmt.Errorf("engine: snapshot: first-ride book: %v %v", err, c.Err)
	}
	n := c.Uvarint()
	if c.Err != nil || n > transit.RoutesMax {
		return fmt.Errorf("engine: snapshot: %d stopped routes", n)
	}
	stop := map[string]bool{}
	for i := uint64(0); i < n && c.Err == nil; i++ {
		stop[string(c.Bytes())] = true
	}
	if c.Err != nil {
		return fmt.Errorf("engine: snapshot: stopped routes: %w", c.Err)
	}
	e.deny.lmu.Lock()
	e.deny.list, e.deny.risk, e.deny.stop = l, rb, stop
	e.deny.recountLocked()
	e.deny.lmu.Unlock()
	return nil
}

// denyCollector exports the deny-list version and the lagging readers at
// scrape time (no label: one list).
type denyCollector struct {
	version, lagging *prometheus.Desc
	e                atomic.Pointer[Engine]
}

func newDenyCollector() *denyCollector {
	return &denyCollector{
		version: prometheus.NewDesc("scenepay_gateway_denylist_version", "Current version of the bus readers' deny list.", nil, nil),
		lagging: prometheus.NewDesc("scenepay_gateway_denylist_lagging_terminals",
			"Registered bus readers whose last reported deny-list version is below the current one, or that never reported one.", nil, nil),
	}
}

func (c *denyCollector) set(e *Engine) { c.e.Store(e) }

func (c *denyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.version; ch <- c.lagging }

func (c *denyCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.e.Load()
	if e == nil {
		return
	}
	cur, _, n := e.DenyLagging()
	ch <- prometheus.MustNewConstMetric(c.version, prometheus.GaugeValue, float64(cur))
	ch <- prometheus.MustNewConstMetric(c.lagging, prometheus.GaugeValue, float64(n))
}

// uploadTaps converts an offline_upload's taps for the core (the reader is
// the uploading terminal).
func uploadTaps(r *terminals.Request, dst []transit.Tap) []transit.Tap {
	for i := 0; i < r.Taps.Len(); i++ {
		t := r.Taps.At(i)
		k := transit.TapIn
		if t.Out {
			k = transit.TapOut
		}
		dst = append(dst, transit.Tap{Kind: k, Route: t.Route, Stop: t.Stop, At: time.UnixMilli(t.TS).UTC(), Reader: r.TID, Seq: t.Seq})
	}
	return dst
}

// stopsLocked returns the routes whose first-ride budget is spent, sorted,
// and the transit day they are spent for. lmu must be held.
func (d *denyState) stopsLocked() ([]string, int32) {
	var out []string
	for r := range d.stop {
		out = append(out, r)
	}
	slices.Sort(out)
	return out, d.risk.Day
}

// transitPolicy is the fare policy of the current transit document (the
// default when none was set): what first-ride losses are booked with.
func (e *Engine) transitPolicy() *transit.Engine {
	if d, ok := e.conf.store.Get("transit"); ok {
		if r, err := e.compileDoc(d.Name, d.Body); err == nil && r.transit != nil {
			return r.transit
		}
	}
	if e.cfg.Core != nil && e.cfg.Core.Transit != nil {
		return e.cfg.Core.Transit
	}
	return core.DefaultTransit()
}

// firstRideLosses books the tap-ins of an upload for a card the bank does
// not know (declined UNKNOWN_INSTRUMENT: nothing can be charged or become
// debt) against their routes' first-ride budgets, one journal entry per
// tap-in, and publishes the delta when a route's budget became spent.
// Runs after the upload is durable, off the journal's completion.
func (e *Engine) firstRideLosses(taps []transit.Tap) {
	if e.Ready() != nil {
		return // closed or failed: the upload's record stays, the loss is not booked
	}
	pol := e.transitPolicy()
	d := &e.deny
	d.mu.Lock()
	defer d.mu.Unlock()
	newStop := false
	for i := range taps {
		t := &taps[i]
		if t.Kind != transit.TapIn {
			continue
		}
		d.lmu.Lock()
		book := transit.RiskBook{Day: d.risk.Day, Loss: maps.Clone(d.risk.Loss)}
		d.lmu.Unlock()
		dec := pol.FirstRideLoss(&book, t, t.At)
		if dec.Code != terminals.CodeApproved || dec.Loss == 0 {
			continue
		}
		day, _ := pol.TransitDay(t.At)
		stop := dec.Has(transit.FlagStopFirstRides)
		p := appendDenyEntry(nil, denyOpLoss, DenySourceDebt, t.At, t.Route)
		p = binary.AppendVarint(p, int64(day))
		p = binary.AppendVarint(p, dec.Loss)
		p = append(p, boolByte(stop))
		e.snapMu.Lock()
		lsn, err := e.j.Append(p, nil)
		if err == nil {
			d.lmu.Lock()
			was := d.stop[t.Route]
			d.bookLoss(t.Route, day, dec.Loss, stop)
			newStop = newStop || (stop && !was)
			d.lmu.Unlock()
		}
		e.snapMu.Unlock()
		if err == nil {
			err = e.j.Sync(lsn)
		}
		if err != nil {
			e.fail(err)
			return
		}
	}
	if newStop {
		e.log.Info("first-ride budget spent; readers told to stop first rides")
		e.publishDenyLocked(false)
	}
}

// bookLoss applies one loss (live and replay). lmu must be held. A later
// transit day starts a new book and lifts every stop.
func (d *denyState) bookLoss(route string, day int32, loss int64, stop bool) {
	if day > d.risk.Day || d.risk.Loss == nil {
		d.risk = transit.RiskBook{Day: day, Loss: map[string]int64{}}
		d.stop = map[string]bool{}
	}
	if day < d.risk.Day {
		return // a late upload of an earlier day: that day's book is closed
	}
	if _, ok := d.risk.Loss[route]; ok || len(d.risk.Loss) < transit.RoutesMax {
		if s := d.risk.Loss[route] + loss; s >= d.risk.Loss[route] {
			d.risk.Loss[route] = s
		}
	}
	if stop && len(d.stop) < transit.RoutesMax {
		d.stop[route] = true
	}
}

func (e *Engine) applyLossEntry(route string, rest []byte) error {
	day, n := binary.Varint(rest)
	if n <= 0 {
		return fmt.Errorf("%w: loss entry day", errEntry)
	}
	rest = rest[n:]
	loss, n := binary.Varint(rest)
	if n <= 0 || loss < 0 || len(rest) != n+1 || rest[n] > 1 || route == "" {
		return fmt.Errorf("%w: loss entry", errEntry)
	}
	e.deny.lmu.Lock()
	e.deny.bookLoss(route, int32(day), loss, rest[n] == 1)
	e.deny.lmu.Unlock()
	return nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}
