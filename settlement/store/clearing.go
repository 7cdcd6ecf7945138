package store

// Clearing records: settlement windows and their states, per-merchant
// settlements with division legs, fee rates, merchants and reconciliation
// differences. The rules that compute them live in settlement/clearing;
// the store only keeps them, enforces the state machine
// OPEN -> CLOSED -> SETTLED with conditional updates (so a repeated close
// or settle changes nothing), and writes a window's settlements in the
// same transaction as its move to SETTLED.

import (
	"context"
	"regexp"
	"time"

	"github.com/shopspring/decimal"

	"scenepay/settlement/handoff"
)

// Named bounds of the clearing records.
const (
	// WindowsListMax is the most windows one listing returns.
	WindowsListMax = 400
	// SettlementsPerWindowMax is the most merchants one window settles;
	// beyond it SettleWindow and the clearing query refuse.
	SettlementsPerWindowMax = 100_000
	// DivisionsPerSettlementMax is the most division legs one merchant's
	// settlement carries.
	DivisionsPerSettlementMax = 16
	// FeeRatesMax and MerchantsMax bound those tables' listings.
	FeeRatesMax  = 100_000
	MerchantsMax = 100_000
	// DifferencesListMax is the most differences one listing returns.
	DifferencesListMax = 10_000
	// TextLenMax bounds names, payees and accounts.
	TextLenMax = 128
)

// CodeNotFound: a window, settlement or merchant that does not exist.
// CodeState: a transition the window's state does not allow.
const (
	CodeNotFound Code = "NOT_FOUND"
	CodeState    Code = "BAD_STATE"
)

// More sentinels for errors.Is.
var (
	ErrNotFound = &Error{Code: CodeNotFound}
	ErrState    = &Error{Code: CodeState}
)

// WindowState is a window's place in OPEN -> CLOSED -> SETTLED.
type WindowState string

const (
	WindowOpen    WindowState = "OPEN"
	WindowClosed  WindowState = "CLOSED"
	WindowSettled WindowState = "SETTLED"
)

// Window is one business day's settlement window: the transactions with
// Start <= at < CutOff. ClosedAt and SettledAt are zero until then.
type Window struct {
	ID        string // business date YYYY-MM-DD (Asia/Shanghai)
	Start     time.Time
	CutOff    time.Time
	State     WindowState
	ClosedAt  time.Time
	SettledAt time.Time
}

// Division kinds.
const (
	// DivisionMarketFee is the market operator's management fee, taken
	// from the merchant's net takings and paid to the operator.
	DivisionMarketFee = "market_fee"
	// DivisionInsurancePooled and DivisionInsurancePersonal are the parts
	// of hospital bills the medical insurance platform pays (pooled fund,
	// personal account). They are owed by the insurance platform, not by
	// the bank, so they are reported beside the net payable, not in it.
	DivisionInsurancePooled   = "insurance_pooled"
	DivisionInsurancePersonal = "insurance_personal"
)

// Division is one leg of a merchant's settlement paid to or by someone
// else than the merchant. Amount is fen: positive, except a market fee
// from per-payment legs, which is negative when the window's refunds took
// back more of the operator's part than its payments gave.
type Division struct {
	Kind   string
	Payee  string
	Amount int64
}

// Settlement is one merchant's clearing result for one window.
type Settlement struct {
	Window    string
	Merchant  string
	Totals          // takings: Count, Gross, Reversals, Refunds, Net (= Gross + Reversals + Refunds)
	Fee       int64 // merchant discount fee
	Divisions []Division
	// Held is the window's e-CNY offline receipts whose wallets had not
	// synced when the window was settled: in Net, not in Payable.
	// Released is earlier windows' held receipts whose wallets synced
	// since: paid in this window (in Payable, not in Net). Fen, >= 0.
	Held     int64
	Released int64
	Payable  int64 // Net - Fee - market fee legs - Held + Released: what the bank pays the merchant
}

// SceneTotals are one merchant's takings in one scene over a period.
type SceneTotals struct {
	Merchant string
	Scene    string
	Totals
}

// FeeRate is a merchant discount rate: a decimal fraction in [0, 1).
// Merchant "*" is the default for the scene.
type FeeRate struct {
	Merchant string
	Scene    string
	Rate     string
}

// Merchant is a payee of settlement.
type Merchant struct {
	ID             string
	Name           string
	PayeeAccount   string // settlement account at the bank
	MarketOperator string // payee of the market management fee, "" for none
	MarketFeeRate  string // decimal fraction of net takings, "0" for none
}

// Difference is a reconciliation finding: the journal and the store
// disagree on one field of one merchant's window. FoundAt is when it was
// first seen, SeenAt the latest time.
type Difference struct {
	Window   string
	Merchant string
	Field    string
	Journal  int64
	Store    int64
	FoundAt  time.Time
	SeenAt   time.Time
}

// Clearing is the part of the store that settlement/clearing uses.
type Clearing interface {
	// OpenWindow stores w as OPEN unless a window with its id exists; it
	// returns the stored window and whether it was created.
	OpenWindow(ctx context.Context, w Window) (Window, bool, error)
	// Window returns one window or ErrNotFound.
	Window(ctx context.Context, id string) (Window, error)
	// Windows lists windows with from <= id <= to, ascending, at most
	// WindowsListMax ("" leaves a side open).
	Windows(ctx context.Context, from, to string) ([]Window, error)
	// UnsettledWindows lists the OPEN and CLOSED windows, oldest first,
	// at most WindowsListMax.
	UnsettledWindows(ctx context.Context) ([]Window, error)
	// LatestWindow returns the window with the greatest id, if any.
	LatestWindow(ctx context.Context) (Window, bool, error)
	// CloseWindow moves an OPEN window to CLOSED at at. It reports false,
	// changing nothing, if the window is already CLOSED or SETTLED.
	CloseWindow(ctx context.Context, id string, at time.Time) (bool, error)
	// SettleWindow writes the settlements and moves a CLOSED window to
	// SETTLED, in one transaction. It reports false, changing nothing, if
	// the window is already SETTLED; an OPEN window is ErrState.
	SettleWindow(ctx context.Context, id string, at time.Time, s []Settlement) (bool, error)
	// Settlements lists a window's settlements by merchant.
	Settlements(ctx context.Context, window string) ([]Settlement, error)
	// Settlement returns one merchant's settlement or ErrNotFound.
	Settlement(ctx context.Context, window, merchant string) (Settlement, error)
	// SceneTotals is the clearing query: takings per merchant and scene
	// over [from, to), ordered by merchant and scene.
	SceneTotals(ctx context.Context, from, to time.Time) ([]SceneTotals, error)
	// FirstTxnAt is the time of the earliest stored transaction, moved
	// or not (false on a store without rows). The scheduler asks it on
	// every pass to open the windows of a backlog handed off late, so it
	// must not read the whole table: SQLite answers from its txns_at
	// index, PostgreSQL from txns_first (kept by MoveRecent) and the
	// recent part.
	FirstTxnAt(ctx context.Context) (time.Time, bool, error)

	PutFeeRate(ctx context.Context, r FeeRate) error
	FeeRates(ctx context.Context) ([]FeeRate, error)
	PutMerchant(ctx context.Context, m Merchant) error
	Merchant(ctx context.Context, id string) (Merchant, error)
	Merchants(ctx context.Context) ([]Merchant, error)

	// RecordDifference stores d, or updates the latest values and SeenAt
	// of the same (window, merchant, field); it reports whether it is new.
	RecordDifference(ctx context.Context, d Difference) (bool, error)
	// Differences lists a window's differences ("" for all windows),
	// at most DifferencesListMax.
	Differences(ctx context.Context, window string) ([]Difference, error)

	// Legs sums the per-payment division legs of the rows in window w
	// (Start <= at < CutOff) per row merchant, kind and payee: the map is
	// keyed by merchant, each list ordered by kind and payee, kinds as
	// Division kinds (DivisionMarketFee, DivisionInsurancePooled,
	// DivisionInsurancePersonal). A market fee sum may be negative (a
	// window whose refunds took back more than its payments gave).
	// It makes the store a clearing.LegSource.
	Legs(ctx context.Context, w Window) (map[string][]Division, error)

	// Unsynced lists the e-CNY offline receipts clearing needs for window
	// w, ordered by (at, source, lsn): every receipt of the window, and
	// the earlier ones the window releases (synced and not yet paid, or
	// paid by w). SettleWindow marks the ones it pays (ecny.go).
	Unsynced(ctx context.Context, w Window) ([]UnsyncedReceipt, error)
	// HeldUnsynced sums the receipts held back from payout now: those
	// of SETTLED windows that no window has paid (ecny_held.go).
	HeldUnsynced(ctx context.Context) (HeldSummary, error)
	// PruneSyncs deletes at most limit (1..SyncsPruneMax) wallet syncs
	// that can no longer mark a receipt: those before the start of the
	// oldest window not SETTLED (none while no such window exists). It
	// reports how many it deleted.
	PruneSyncs(ctx context.Context, limit int) (int64, error)
}

var windowIDPattern = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)

func checkWindowID(id string) error {
	if !windowIDPattern.MatchString(id) {
		return badQuery("window id must be YYYY-MM-DD")
	}
	return nil
}

func checkWindow(w *Window) error {
	if err := checkWindowID(w.ID); err != nil {
		return err
	}
	if w.Start.IsZero() || !w.Start.Before(w.CutOff) {
		return badQuery("window must start before its cut-off")
	}
	return nil
}

// ParseRate parses a fee rate: a decimal fraction in [0, 1).
func ParseRate(s string) (decimal.Decimal, error) {
	if s == "" || len(s) > 32 {
		return decimal.Decimal{}, badQuery("rate must be a decimal fraction")
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, badQuery("rate must be a decimal fraction")
	}
	if d.IsNegative() || d.GreaterThanOrEqual(decimal.NewFromInt(1)) {
		return decimal.Decimal{}, badQuery("rate must be in [0, 1)")
	}
	return d, nil
}

func checkName(field, s string, required bool) error {
	if s == "" && !required {
		return nil
	}
	if s == "" || len(s) > TextLenMax {
		return badQuery(field + " must be 1..128 bytes")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return badQuery(field + " has a control character")
		}
	}
	return nil
}

func checkFeeRate(r *FeeRate) error {
	if r.Merchant == "" || len(r.Merchant) > handoff.MerchantLenMax {
		return badQuery("merchant is required")
	}
	switch r.Scene {
	case handoff.SceneBus, handoff.SceneStall, handoff.SceneKiosk:
	default:
		return badQuery("unknown scene")
	}
	_, err := ParseRate(r.Rate)
	return err
}

func checkMerchant(m *Merchant) error {
	if m.ID == "" || len(m.ID) > handoff.MerchantLenMax {
		return badQuery("merchant id is required")
	}
	if err := checkName("name", m.Name, true); err != nil {
		return err
	}
	if err := checkName("payee account", m.PayeeAccount, false); err != nil {
		return err
	}
	if err := checkName("market operator", m.MarketOperator, false); err != nil {
		return err
	}
	if m.MarketFeeRate == "" {
		m.MarketFeeRate = "0"
	}
	_, err := ParseRate(m.MarketFeeRate)
	return err
}

func checkSettlements(id string, ss []Settlement) error {
	if len(ss) > SettlementsPerWindowMax {
		return badQuery("more settlements than SettlementsPerWindowMax")
	}
	for i := range ss {
		s := &ss[i]
		if s.Window != id {
			return badQuery("settlement of another window")
		}
		if s.Merchant == "" || len(s.Merchant) > handoff.MerchantLenMax {
			return badQuery("settlement merchant is required")
		}
		if s.Held < 0 || s.Released < 0 {
			return badQuery("held and released must not be negative")
		}
		if len(s.Divisions) > DivisionsPerSettlementMax {
			return badQuery("more divisions than DivisionsPerSettlementMax")
		}
		for _, d := range s.Divisions {
			// A market fee from per-payment legs is negative in a window
			// whose refunds gave back more than its payments took.
			if d.Kind == "" || d.Amount < 0 && d.Kind != DivisionMarketFee {
				return badQuery("division needs a kind and a non-negative amount")
			}
			if err := checkName("division payee", d.Payee, true); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkDifference(d *Difference) error {
	if err := checkWindowID(d.Window); err != nil {
		return err
	}
	if d.Merchant == "" || len(d.Merchant) > handoff.MerchantLenMax || d.Field == "" || len(d.Field) > 32 {
		return badQuery("difference needs a merchant and a field")
	}
	if d.SeenAt.IsZero() {
		return badQuery("difference needs a time")
	}
	return nil
}

func notFound(what string) error { return &Error{Code: CodeNotFound, Reason: what + " not found"} }

// oneSettlement is Settlement for both stores: one merchant's row of a
// window from the store's settlements query, or not found.
func oneSettlement(ctx context.Context, list func(ctx context.Context, window, merchant string) ([]Settlement, error),
	window, merchant string) (Settlement, error) {
	if merchant == "" {
		return Settlement{}, badQuery("merchant is required")
	}
	out, err := list(ctx, window, merchant)
	if err != nil {
		return Settlement{}, err
	}
	if len(out) == 0 {
		return Settlement{}, notFound("settlement")
	}
	return out[0], nil
}
