package transit

// The fare rules: one function per event (tap, expiry, upload, top-up),
// each deciding from (engine, card state, event, time) and returning a
// Decision value that the core turns into ledger effects in the same
// atomic step.

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "time/tzdata" // Asia/Shanghai without a system zoneinfo database

	"scenepay/terminals"
)

var shanghai = mustZone("Asia/Shanghai")

func mustZone(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err) // embedded tzdata: cannot fail
	}
	return l
}

// TapKind is tap-in or tap-out.
type TapKind uint8

// Tap kinds.
const (
	TapIn  TapKind = 1
	TapOut TapKind = 2
)

func (k TapKind) String() string {
	switch k {
	case TapIn:
		return "tap_in"
	case TapOut:
		return "tap_out"
	}
	return "tap(" + strconv.Itoa(int(k)) + ")"
}

// Tap is one card tap on a reader.
type Tap struct {
	Kind  TapKind
	Route string
	Stop  string // required on distance routes
	At    time.Time
	// Reader and Seq identify an uploaded (offline) tap; the pair is its
	// idempotency key. Online taps are deduplicated by the core instead.
	Reader string
	Seq    uint64
	// Merchant is the reader's merchant (the bus company). The core fills
	// Reader and Merchant of online taps too: a distance journey keeps
	// both (Journey.Reader, Journey.Merchant) so that a journey closed by
	// the sweep is paid to whom the card boarded with.
	Merchant string
}

// Key returns the tap's idempotency key.
func (t *Tap) Key() TapKey { return TapKey{Reader: fnv64(t.Reader), Seq: t.Seq} }

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Reason says why a decision came out as it did (for receipts, logs and
// scenario tests); the Code is what the terminal is told.
type Reason uint8

// Reasons.
const (
	ReasonFare          Reason = iota // an ordinary fare
	ReasonCancelled                   // same-stop tap-out within the grace period
	ReasonIncomplete                  // no (valid) tap-out in time: the maximum fare stands
	ReasonNoJourney                   // tap-out without an open journey: nothing to do
	ReasonDuplicate                   // uploaded tap already applied
	ReasonFunds                       // online: not enough available balance
	ReasonInDebt                      // online: the card owes debt (it is on the deny list)
	ReasonUnknownRoute                // route not in the config
	ReasonUnknownStop                 // stop not on the route
	ReasonTooOld                      // uploaded tap older than UploadMaxAge
	ReasonBadTap                      // malformed tap (kind, amount)
	ReasonFirstRideLoss               // unknown card: the fare is a loss to the route's budget
	ReasonTopUp                       // a top-up paid debt
	ReasonNothing                     // no effect (nothing to expire)
	reasonCount
)

var reasonNames = [reasonCount]string{"fare", "cancelled", "incomplete", "no-journey", "duplicate",
	"funds", "in-debt", "unknown-route", "unknown-stop", "too-old", "bad-tap", "first-ride-loss", "top-up", "nothing"}

func (r Reason) String() string {
	if r < reasonCount {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Flags are facts about a decision the core acts on.
type Flags uint16

// Flags.
const (
	FlagTransfer       Flags = 1 << iota // boarding inside the transfer window
	FlagCapped                           // reduced by the daily or weekly cap (best fare)
	FlagDeny                             // debt went above 0: add the card to the deny list
	FlagUndeny                           // debt paid to 0: remove the card from the deny list
	FlagOverFloor                        // uploaded tap beyond the readers' offline floor limits
	FlagStopFirstRides                   // the route's first-ride budget is spent: tell its readers
)

var flagNames = []string{"transfer", "capped", "deny", "undeny", "over-floor", "stop-first-rides"}

// Decision is the outcome of one event. Amounts are fen and never negative
// except Debt, which is the change of the card's debt. The core applies
// them in this order: PrevCapture (capture the open journey's hold in
// full: its maximum fare stands), Capture then Release (the open
// journey's hold), Charge (a debit), Hold (a new hold for the journey
// that starts), Debt.
type Decision struct {
	Code   terminals.Code // CodeApproved, or why the tap is declined/refused
	Reason Reason
	Flags  Flags
	// Fare is the payable fare before the cap (after concession and
	// transfer): what the receipt shows as the fare.
	Fare        int64
	PrevCapture int64
	Capture     int64
	Release     int64
	Charge      int64
	Hold        int64
	Debt        int64
	Loss        int64 // first-ride loss booked to the route's budget
	Tap         TapKey
}

// Has reports whether f is set.
func (d *Decision) Has(f Flags) bool { return d.Flags&f != 0 }

// String renders the decision canonically (scenario tests compare it):
// "decline CC" when not approved, then the non-zero amounts, then the
// reason (unless an ordinary fare) and the flags; "none" if empty.
func (d Decision) String() string {
	var b strings.Builder
	add := func(s string) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	if d.Code != terminals.CodeApproved {
		add("decline " + string(d.Code))
	}
	for _, a := range []struct {
		n string
		v int64
	}{{"prev-capture", d.PrevCapture}, {"capture", d.Capture}, {"release", d.Release},
		{"charge", d.Charge}, {"hold", d.Hold}, {"loss", d.Loss}} {
		if a.v != 0 {
			add(a.n + " " + strconv.FormatInt(a.v, 10))
		}
	}
	if d.Debt > 0 {
		add("debt +" + strconv.FormatInt(d.Debt, 10))
	} else if d.Debt < 0 {
		add("debt " + strconv.FormatInt(d.Debt, 10))
	}
	if d.Reason != ReasonFare {
		add(d.Reason.String())
	}
	for i, n := range flagNames {
		if d.Flags&(1<<i) != 0 {
			add(n)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// TransitDay returns the transit day number of t (days since 1970-01-01 of
// the Asia/Shanghai date of t - DayStart) and the first day of its
// transit week (Monday).
func (e *Engine) TransitDay(t time.Time) (day, week int32) {
	l := t.In(shanghai).Add(-e.dayStart)
	y, m, dd := l.Date()
	days := time.Date(y, m, dd, 0, 0, 0, 0, time.UTC).Unix() / 86400
	// 1970-01-01 was a Thursday: (days+3) mod 7 is days since Monday.
	since := (days%7 + 7 + 3) % 7
	return int32(days), int32(days - since)
}

// add64 adds non-negative amounts; false on overflow.
func add64(a, b int64) (int64, bool) {
	if b > math.MaxInt64-a {
		return 0, false
	}
	return a + b, true
}

func decline(code terminals.Code, r Reason) Decision { return Decision{Code: code, Reason: r} }

// ExpiresAt returns when the card's open journey becomes incomplete (its
// boarding time plus the route's maximum journey time), so the core can
// index cards by expiry; false if no journey is open. A journey whose
// route has left the config expires at once.
func (e *Engine) ExpiresAt(c *Card) (time.Time, bool) {
	if !c.Open {
		return time.Time{}, false
	}
	board := time.Unix(0, c.Journey.BoardAt).UTC()
	if r := e.routes[c.Journey.Route]; r != nil && !r.flat {
		return board.Add(r.maxDur), true
	}
	return board, true
}

func (e *Engine) expired(c *Card, now time.Time) bool {
	at, ok := e.ExpiresAt(c)
	return ok && !now.Before(at)
}

// Expire closes the card's open journey if its maximum journey time has
// passed: the maximum fare held at tap-in stands (Capture of the whole
// hold; a debt-backed part stays debt). The core calls it lazily before
// each of the card's events, or when a scan of ExpiresAt finds it due.
func (e *Engine) Expire(c *Card, now time.Time) Decision {
	if !e.expired(c, now) {
		return Decision{Code: terminals.CodeApproved, Reason: ReasonNothing}
	}
	held := e.closeIncomplete(c)
	return Decision{Code: terminals.CodeApproved, Reason: ReasonIncomplete, Capture: held, Fare: held}
}

// closeIncomplete ends the open journey at its provisional amount and
// counts it on the journey's transit day; returns the hold to capture.
func (e *Engine) closeIncomplete(c *Card) int64 {
	j := &c.Journey
	amt := j.Held + j.Debt // each <= FareMax: no overflow
	c.DaySpent = satAdd(c.DaySpent, amt)
	c.WeekSpent = satAdd(c.WeekSpent, amt)
	held := j.Held
	c.Open, c.Journey = false, Journey{}
	return held
}

func satAdd(a, b int64) int64 {
	if s, ok := add64(a, b); ok {
		return s
	}
	return math.MaxInt64
}

// Tap decides an online tap: the reader asked the gateway and waits.
// available is the account's available balance (balance - holds - floor)
// as the core sees it in the same step. A declined tap changes nothing.
func (e *Engine) Tap(c *Card, t *Tap, available int64) Decision {
	d := e.apply(c, t, &available, false)
	if d.Code == terminals.CodeApproved {
		c.OfflineTaps = 0 // online check done
	}
	return d
}

// ProcessUpload applies a batch of offline taps of one card (the reader
// already approved them within its floor limits), sorting taps in place by
// time (then reader, then seq) and applying each through the same rules:
// a tap already applied is skipped (ReasonDuplicate); a charge or hold the
// available balance cannot cover is booked as debt instead (FlagDeny when
// the card's debt becomes positive). available is the balance before the
// batch; out is reused for the decisions, one per tap in sorted order.
func (e *Engine) ProcessUpload(c *Card, taps []Tap, available int64, now time.Time, out []Decision) []Decision {
	slices.SortFunc(taps, func(a, b Tap) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		if c := strings.Compare(a.Reader, b.Reader); c != 0 {
			return c
		}
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	out = out[:0]
	for i := range taps {
		t := &taps[i]
		var d Decision
		switch {
		case c.seenHas(t.Key()):
			d = Decision{Code: terminals.CodeApproved, Reason: ReasonDuplicate}
		case now.Sub(t.At) > e.uploadAge:
			d = decline(terminals.CodeReplay, ReasonTooOld)
		default:
			d = e.apply(c, t, &available, true)
			if d.Code == terminals.CodeApproved {
				c.seenAdd(t.Key())
				if c.OfflineTaps < math.MaxUint16 {
					c.OfflineTaps++
				}
				amt := d.Charge + d.Hold + max(d.Debt, 0)
				if int(c.OfflineTaps) > e.cfg.Offline.TapsMax || amt > e.cfg.Offline.AmountMax {
					d.Flags |= FlagOverFloor
				}
			}
		}
		d.Tap = t.Key()
		out = append(out, d)
	}
	return out
}

// TopUp applies a top-up of amount fen to the card's debt: the part that
// pays debt (Debt < 0 in the decision; the core moves that much of the
// top-up to the bus company's receivable) and FlagUndeny when the debt
// is paid off.
func (e *Engine) TopUp(c *Card, amount int64) Decision {
	if amount <= 0 {
		return decline(terminals.CodeInvalidAmount, ReasonBadTap)
	}
	if c.Debt == 0 {
		return Decision{Code: terminals.CodeApproved, Reason: ReasonNothing}
	}
	pay := min(amount, c.Debt)
	c.Debt -= pay
	d := Decision{Code: terminals.CodeApproved, Reason: ReasonTopUp, Debt: -pay}
	if c.Debt == 0 {
		d.Flags |= FlagUndeny
	}
	return d
}

// remaining is what the caps still allow on (day, week) given spent.
func (e *Engine) remaining(ds, ws int64) int64 {
	rem := int64(math.MaxInt64)
	if e.cfg.DailyCap > 0 {
		rem = min(rem, max(0, e.cfg.DailyCap-ds))
	}
	if e.cfg.WeeklyCap > 0 {
		rem = min(rem, max(0, e.cfg.WeeklyCap-ws))
	}
	return rem
}

// payable applies the card's concession and, for a transfer, the transfer
// percent.
func (e *Engine) payable(c *Card, fare int64, transfer bool) int64 {
	p := e.concession[c.Profile].Apply(fare)
	if transfer {
		p = e.cfg.TransferPayable.Apply(p)
	}
	return p
}

func (e *Engine) apply(c *Card, t *Tap, avail *int64, offline bool) Decision {
	r := e.routes[t.Route]
	if r == nil {
		return decline(terminals.CodeMalformed, ReasonUnknownRoute)
	}
	if !r.flat {
		if _, ok := r.stops[t.Stop]; !ok {
			return decline(terminals.CodeMalformed, ReasonUnknownStop)
		}
	}
	if c.Profile >= profileCount || *avail < 0 {
		return decline(terminals.CodeMalformed, ReasonBadTap)
	}
	switch t.Kind {
	case TapIn:
		return e.tapIn(c, r, t, avail, offline)
	case TapOut:
		if r.flat {
			// A flat route needs no tap-out; a stray one changes nothing.
			return Decision{Code: terminals.CodeApproved, Reason: ReasonNoJourney}
		}
		return e.tapOut(c, r, t)
	}
	return decline(terminals.CodeMalformed, ReasonBadTap)
}

func (e *Engine) tapIn(c *Card, r *route, t *Tap, avail *int64, offline bool) Decision {
	now := t.At.UnixNano()
	if !offline && c.Debt > 0 {
		return decline(terminals.CodeInstrumentBlocked, ReasonInDebt)
	}
	transfer := c.Anchor != 0 && now >= c.Anchor && now-c.Anchor <= int64(e.transferW) && t.Route != c.AnchorRoute
	base := r.maxFare
	if r.flat {
		base = r.fare
	}
	day, week := e.TransitDay(t.At)
	if day < c.Day {
		return e.lateTapIn(c, r, t, base, avail, offline, day, week)
	}
	// Counters as they will be after closing a journey left open (its
	// maximum fare stands, on its own day) and rolling to today.
	ds, ws := c.DaySpent, c.WeekSpent
	var prev int64
	if c.Open {
		prev = c.Journey.Held
		ds = satAdd(ds, c.Journey.Held+c.Journey.Debt)
		ws = satAdd(ws, c.Journey.Held+c.Journey.Debt)
	}
	left := ds // the final spend of the card's day, if this tap leaves it
	if day > c.Day {
		ds = 0
	}
	if week > c.Week {
		ws = 0
	}
	fare := e.payable(c, base, transfer)
	amt := min(fare, e.remaining(ds, ws))
	debt := int64(0)
	if amt > *avail {
		if !offline {
			return decline(terminals.CodeInsufficientFunds, ReasonFunds)
		}
		debt = amt
	}
	newDebt, ok := add64(c.Debt, debt)
	if !ok {
		return decline(terminals.CodeInvalidAmount, ReasonBadTap)
	}
	// Commit.
	d := Decision{Code: terminals.CodeApproved, Fare: fare, PrevCapture: prev}
	if amt < fare {
		d.Flags |= FlagCapped
	}
	if transfer {
		d.Flags |= FlagTransfer
	}
	if c.Open {
		c.Open, c.Journey = false, Journey{}
	}
	if day > c.Day {
		c.rollTo(day, left)
	}
	c.DaySpent, c.WeekSpent, c.Day, c.Week = ds, ws, day, week
	if debt > 0 {
		if c.Debt == 0 {
			d.Flags |= FlagDeny
		}
		c.Debt, d.Debt = newDebt, debt
	} else {
		*avail -= amt
	}
	prevAnchor, prevRoute := c.Anchor, c.AnchorRoute
	if !transfer {
		c.Anchor, c.AnchorRoute = now, r.id
	}
	if r.flat {
		if debt == 0 {
			d.Charge = amt
		}
		c.DaySpent = satAdd(c.DaySpent, amt)
		c.WeekSpent = satAdd(c.WeekSpent, amt)
		return d
	}
	c.Open = true
	c.Journey = Journey{Route: r.id, Stop: t.Stop, BoardAt: now, Day: c.Day, Week: c.Week,
		Transfer: transfer, PrevAnchor: prevAnchor, PrevAnchorRoute: prevRoute,
		Reader: clipParty(t.Reader), Merchant: clipParty(t.Merchant)}
	if debt > 0 {
		c.Journey.Debt = amt
	} else {
		c.Journey.Held, d.Hold = amt, amt
	}
	return d
}

// lateTapIn handles an uploaded tap-in from a transit day the card's
// counters have already left (a batch uploaded after later taps). It pays
// the full fare (concession applied, no transfer) at once even on a
// distance route (its tap-out finds no journey), and touches no anchor or
// open journey. The cap: a day among the PastDaysMax before the card's
// Day is capped together with that day's other taps (Card.Past, to which
// the charge is added). The weekly cap applies too when the week's spend
// is known: the card's current week (WeekSpent grows by the charge), or an
// earlier week all of whose days are among the remembered ones (the sum
// of their Past entries). A day older than that history is charged alone,
// bounded by one daily cap (its other taps are forgotten; the rider never
// pays more than a cap for it).
func (e *Engine) lateTapIn(c *Card, r *route, t *Tap, base int64, avail *int64, offline bool, day, week int32) Decision {
	fare := e.payable(c, base, false)
	back := int(c.Day - day) // >= 1
	inHistory := back <= PastDaysMax
	rem := int64(math.MaxInt64)
	if e.cfg.DailyCap > 0 {
		rem = e.cfg.DailyCap
		if inHistory {
			rem = max(0, e.cfg.DailyCap-c.Past[back-1])
		}
	}
	sameWeek := week == c.Week
	if e.cfg.WeeklyCap > 0 {
		if ws, ok := c.weekSpent(week); ok {
			rem = min(rem, max(0, e.cfg.WeeklyCap-ws))
		}
	}
	amt := min(fare, rem)
	d := Decision{Code: terminals.CodeApproved, Fare: fare}
	if amt < fare {
		d.Flags |= FlagCapped
	}
	count := func() {
		if inHistory {
			c.Past[back-1] = satAdd(c.Past[back-1], amt)
		}
		if sameWeek {
			c.WeekSpent = satAdd(c.WeekSpent, amt)
		}
	}
	if amt <= *avail {
		*avail -= amt
		d.Charge = amt
		count()
		return d
	}
	if !offline {
		return decline(terminals.CodeInsufficientFunds, ReasonFunds)
	}
	nd, ok := add64(c.Debt, amt)
	if !ok {
		return decline(terminals.CodeInvalidAmount, ReasonBadTap)
	}
	if c.Debt == 0 && amt > 0 {
		d.Flags |= FlagDeny
	}
	c.Debt, d.Debt = nd, amt
	count()
	return d
}

// weekSpent is what the card paid in the transit week starting on week,
// and whether that is known: the current week's counter, or the sum of the
// remembered days of an earlier week when all its days are remembered.
func (c *Card) weekSpent(week int32) (int64, bool) {
	if week == c.Week {
		return c.WeekSpent, true
	}
	if week > c.Week || int64(c.Day)-int64(week) > PastDaysMax {
		return 0, false
	}
	var sum int64
	for d := week; d < week+7 && d < c.Day; d++ {
		sum = satAdd(sum, c.Past[c.Day-1-d])
	}
	return sum, true
}

// rollTo moves the card from its Day to the later transit day day: the
// spend of the day it leaves (final: with a journey closed on it) becomes
// Past[day-Day-1], older entries move back, and what falls out of the
// last PastDaysMax days is forgotten.
func (c *Card) rollTo(day int32, final int64) {
	k := int64(day) - int64(c.Day)
	if k <= 0 {
		return
	}
	if k > PastDaysMax {
		c.Past = [PastDaysMax]int64{}
		return
	}
	n := int(k)
	copy(c.Past[n:], c.Past[:PastDaysMax-n])
	clear(c.Past[:n])
	c.Past[n-1] = final
}

func (e *Engine) tapOut(c *Card, r *route, t *Tap) Decision {
	if !c.Open {
		return Decision{Code: terminals.CodeApproved, Reason: ReasonNoJourney}
	}
	j := &c.Journey
	if t.At.UnixNano() < j.BoardAt {
		return Decision{Code: terminals.CodeApproved, Reason: ReasonNoJourney}
	}
	if e.expired(c, t.At) || t.Route != j.Route {
		held := e.closeIncomplete(c)
		return Decision{Code: terminals.CodeApproved, Reason: ReasonIncomplete, Capture: held, Fare: held}
	}
	now := t.At.UnixNano()
	if t.Stop == j.Stop && now-j.BoardAt <= int64(e.grace) {
		d := Decision{Code: terminals.CodeApproved, Reason: ReasonCancelled, Release: j.Held, Debt: -j.Debt}
		c.Debt -= j.Debt
		if j.Debt > 0 && c.Debt == 0 {
			d.Flags |= FlagUndeny
		}
		if !j.Transfer {
			c.Anchor, c.AnchorRoute = j.PrevAnchor, j.PrevAnchorRoute
		}
		c.Open, c.Journey = false, Journey{}
		return d
	}
	fare := e.payable(c, r.zoneFare[r.stops[j.Stop]][r.stops[t.Stop]], j.Transfer)
	amt := min(fare, e.remaining(c.DaySpent, c.WeekSpent), j.Held+j.Debt)
	d := Decision{Code: terminals.CodeApproved, Fare: fare}
	if amt < fare {
		d.Flags |= FlagCapped
	}
	if j.Transfer {
		d.Flags |= FlagTransfer
	}
	d.Capture = min(amt, j.Held)
	d.Release = j.Held - d.Capture
	keepDebt := amt - d.Capture
	if back := j.Debt - keepDebt; back > 0 {
		d.Debt = -back
		c.Debt -= back
		if c.Debt == 0 {
			d.Flags |= FlagUndeny
		}
	}
	c.DaySpent += amt
	c.WeekSpent += amt
	c.Open, c.Journey = false, Journey{}
	return d
}
