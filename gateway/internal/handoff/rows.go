package handoff

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"scenepay/gateway/internal/core"
	settle "scenepay/settlement/handoff"
	"scenepay/terminals"
)

// Row mapping from an approved core record (declines, holds, releases,
// inquiries and operator operations move no merchant money and give no row;
// an op not listed stops the handoff instead of being dropped):
//
//	purchase, QR pay  +Amount                      op purchase
//	refund            -Amount, Orig = the payment  op refund
//	reversal          -Amount, Orig = original     op reversal
//	capture           +Amount, Orig = the hold     op capture
//	tap-in / tap-out  +(Charge + PrevCapture + Capture); op purchase when the
//	                  tap only charged a flat fare, else capture (money taken
//	                  from a journey hold); no row when the sum is 0 (a tap-in
//	                  that only placed a hold, a free transfer); a journey the
//	                  sweep closed (journey_expire) is a capture of the maximum
//	                  fare for the boarding reader and its merchant
//
// The terminal's scene is its kind in the registry at handoff time. The
// mapping is deterministic for a given record and registry, so a batch
// re-cut after a crash carries identical rows.
//
// e-CNY double-offline payments and wallet syncs:
//
//	ecny_offline      purchase +Amount with Unsynced (record flag): held
//	                  from payout until the wallet syncs
//	online operation  an approved top-up, purchase, hold, QR payment or
//	of an ecny wallet tap (the ops that reset the core's offline count) is
//	                  the wallet's sync: its row shows it when the row is an
//	                  online purchase at a stall or kiosk
//	                  (settle.Txn.SyncsWallet), else it goes into the
//	                  batch's Syncs (one per LSN and wallet, at the
//	                  record's time), whether or not it gives a row
//
// Division legs (settle.Txn.Legs) and debt recovery:
//
//	QR pay            purchase +Amount for the stall merchant, with leg
//	                  market_fee +Market.Operator to Market.OpMerch (none
//	                  when the operator's leg is 0)
//	refund            refund -Amount, with leg market_fee -Market.Operator
//	                  (the operator's part taken back) to Market.OpMerch
//	hospital purchase the self-pay row as above, with legs ins_pooled and
//	with a split      ins_personal (each when > 0) to the hospital config's
//	                  PooledFundPayer and PersonalAccountPayer (Payees): the
//	                  split is in the hospital journal entry (Extras.Split)
//	top-up that paid  debt_recovery +Orig (the debt paid) for the transit
//	transit debt      debt payee (Payees.Debt: transit config
//	                  debt_payee_merchant, default transit.DefaultDebtPayee),
//	                  scene bus, terminal the record's or "operator", txn
//	                  the record's or the LSN; a top-up that paid no debt
//	                  still gives no row
//
// A row's Amount stays what the customer paid or got back, so the
// per-merchant sum of rows still equals the ledger's postings (DESIGN.md
// promise 4): a market_fee leg is part of the stall's Amount, which
// clearing divides; insurance legs are not part of it (the insurance
// platform, not the patient, owes them). The handoff still checks the
// core's market legs (they sum to Amount, neither is negative, an
// operator leg names its payee), so an inconsistent division stops the
// handoff instead of settling. The payees are read from the current
// configuration when the row is cut: a batch re-cut after a payee change
// would differ and be refused by the store as a conflict, which stops the
// handoff with an alarm rather than pay someone else silently.

// errRow marks a record that cannot become a valid row: a software or data
// bug, which stops the handoff (with an alarm) rather than drop money.
type rowError struct {
	LSN    uint64
	Reason string
}

func (e *rowError) Error() string {
	return fmt.Sprintf("handoff: journal lsn %d: %s", e.LSN, e.Reason)
}

// rowOf returns the settlement row of record r at lsn, and whether there is one.
func rowOf(source string, lsn uint64, r *core.Record, scene func(tid string) (string, bool), payees func() Payees) (settle.Txn, bool, error) {
	if r.Code != terminals.CodeApproved {
		return settle.Txn{}, false, nil
	}
	var op string
	var amt int64
	var orig uint64
	var legs []settle.Leg
	marketFee := func(sign int64) {
		if r.Market.Operator > 0 {
			legs = []settle.Leg{{Kind: settle.LegMarketFee, Payee: r.Market.OpMerch, Amount: sign * r.Market.Operator}}
		}
	}
	switch r.Op {
	case core.OpPurchase, core.OpECNYOffline:
		// An offline e-CNY payment (r.Unsynced) settles as a purchase; the
		// payee's value is not spendable until the wallet syncs.
		op, amt = settle.OpPurchase, r.Amount
	case core.OpQRPay:
		if why := marketLegs(r); why != "" {
			return settle.Txn{}, false, &rowError{LSN: lsn, Reason: why}
		}
		op, amt = settle.OpPurchase, r.Amount
		marketFee(1)
	case core.OpRefund:
		if why := marketLegs(r); why != "" {
			return settle.Txn{}, false, &rowError{LSN: lsn, Reason: why}
		}
		op, amt, orig = settle.OpRefund, -r.Amount, r.Orig
		marketFee(-1)
	case core.OpTopUp:
		if r.Orig == 0 {
			return settle.Txn{}, false, nil // paid no transit debt: no money for a merchant
		}
		return debtRow(source, lsn, r, payees)
	case core.OpReversal:
		op, amt, orig = settle.OpReversal, -r.Amount, r.Orig
	case core.OpCapture:
		op, amt, orig = settle.OpCapture, r.Amount, r.Orig
	case core.OpTapIn, core.OpTapOut, core.OpTapUpload, core.OpJourneyExpire:
		// An offline upload's record carries the sums over one card's
		// taps in the same fields (debt is not money received).
		t := &r.Tap
		amt = t.Charge + t.PrevCapture + t.Capture // each <= transit.FareMax: no overflow
		if t.PrevCapture == 0 && t.Capture == 0 {
			op = settle.OpPurchase
		} else {
			op = settle.OpCapture
		}
	case core.OpOpenAccount, core.OpBlock, core.OpHold, core.OpRelease, core.OpSetProfile:
		return settle.Txn{}, false, nil
	default:
		// A new op that moves money must be mapped here, never dropped.
		return settle.Txn{}, false, &rowError{LSN: lsn, Reason: "no settlement mapping for op " + r.Op.String()}
	}
	if amt == 0 {
		return settle.Txn{}, false, nil
	}
	kind, id, ok := strings.Cut(r.Account, ":")
	if !ok {
		return settle.Txn{}, false, &rowError{LSN: lsn, Reason: "account key without a kind"}
	}
	sc, ok := scene(r.TID)
	if !ok {
		return settle.Txn{}, false, &rowError{LSN: lsn, Reason: "terminal " + r.TID + " is not registered"}
	}
	row := settle.Txn{
		Source: source, LSN: lsn, At: time.Unix(0, r.Time).UTC().Truncate(time.Microsecond),
		Merchant: r.Merchant, Terminal: r.TID, Scene: sc, Op: op, InstKind: kind, Account: id,
		Amount: amt, Auth: authRef(r.Shard, r.Seq), Txn: r.Txn, Orig: orig, Legs: legs,
	}
	row.Unsynced = r.Op == core.OpECNYOffline && r.Unsynced
	if err := row.Validate(); err != nil {
		return settle.Txn{}, false, &rowError{LSN: lsn, Reason: err.Error()}
	}
	return row, true, nil
}

// syncsOnline reports whether an approved record of op is an online
// operation of its account, which syncs an e-CNY wallet: the list of the
// core's syncsOffline (core/ecny_offline.go), which resets the wallet's
// offline count on the same ops; TestSyncOpsMatchCore keeps them in step.
func syncsOnline(op core.Op) bool {
	switch op {
	case core.OpTopUp, core.OpPurchase, core.OpHold, core.OpQRPay, core.OpTapIn, core.OpTapOut:
		return true
	}
	return false
}

// walletSync is the sync of an e-CNY wallet that approved record r is, if
// it is one.
func walletSync(lsn uint64, r *core.Record) (settle.Sync, bool) {
	if r.Code != terminals.CodeApproved || !syncsOnline(r.Op) {
		return settle.Sync{}, false
	}
	kind, id, ok := strings.Cut(r.Account, ":")
	if !ok || kind != terminals.InstECNY {
		return settle.Sync{}, false
	}
	return settle.Sync{Account: id, At: time.Unix(0, r.Time).UTC().Truncate(time.Microsecond), LSN: lsn}, true
}

// walletSyncs appends to *out (nil: only checks) the syncs of one entry
// (online, in record order) that the entry's row, if any (hasRow), does
// not show by itself (settle.Txn.SyncsWallet), one per wallet, ordered by
// account. A row that reads as its wallet's sync while no record of the
// entry synced that wallet (an offline tap upload from a terminal that is
// not a bus reader) would release held payments wrongly: it stops the
// handoff instead.
func walletSyncs(lsn uint64, row *settle.Txn, hasRow bool, online []settle.Sync, out *[]settle.Sync) error {
	rowSyncs := hasRow && row.SyncsWallet()
	if rowSyncs && !slices.ContainsFunc(online, func(s settle.Sync) bool { return s.Account == row.Account }) {
		return &rowError{LSN: lsn, Reason: "an e-CNY purchase row reads as a wallet sync but its record is no online operation"}
	}
	if out == nil || len(online) == 0 {
		return nil
	}
	slices.SortStableFunc(online, func(a, b settle.Sync) int { return strings.Compare(a.Account, b.Account) })
	for i, s := range online {
		if i > 0 && online[i-1].Account == s.Account || rowSyncs && s.Account == row.Account {
			continue
		}
		*out = append(*out, s)
	}
	return nil
}

// OperatorTerminal is the terminal of a debt_recovery row whose top-up
// came from no terminal (an operator's top-up through the operator API).
const OperatorTerminal = "operator"

// debtRow is the debt_recovery row of an approved top-up that paid r.Orig
// fen of transit debt.
func debtRow(source string, lsn uint64, r *core.Record, payees func() Payees) (settle.Txn, bool, error) {
	if r.Orig > uint64(terminals.MaxAmount) {
		return settle.Txn{}, false, &rowError{LSN: lsn, Reason: "top-up paid more debt than the protocol maximum"}
	}
	if payees == nil || payees().Debt == "" {
		return settle.Txn{}, false, &rowError{LSN: lsn, Reason: "top-up paid transit debt but no debt payee is configured"}
	}
	kind, id, ok := strings.Cut(r.Account, ":")
	if !ok {
		return settle.Txn{}, false, &rowError{LSN: lsn, Reason: "account key without a kind"}
	}
	tid, txn := r.TID, r.Txn
	if tid == "" {
		tid = OperatorTerminal
	}
	if txn == 0 {
		txn = lsn // an operator's top-up has no terminal txn id; the LSN is unique and stable
	}
	row := settle.Txn{
		Source: source, LSN: lsn, At: time.Unix(0, r.Time).UTC().Truncate(time.Microsecond),
		Merchant: payees().Debt, Terminal: tid, Scene: settle.SceneBus, Op: settle.OpDebtRecovery, InstKind: kind,
		Account: id, Amount: int64(r.Orig), Auth: authRef(r.Shard, r.Seq), Txn: txn,
	}
	if err := row.Validate(); err != nil {
		return settle.Txn{}, false, &rowError{LSN: lsn, Reason: err.Error()}
	}
	return row, true, nil
}

// Payees names who receives what the records do not name: the insurance
// payers of a hospital bill's legs and the bus company's merchant id for
// recovered transit debt (engine.SettlementPayees, from the hospital and
// transit configuration).
type Payees struct {
	InsPooled   string // hospital.Config.PooledFundPayer
	InsPersonal string // hospital.Config.PersonalAccountPayer
	Debt        string // transit.Config.DebtPayeeMerchant()
}

// Extras is what the row mapping needs besides the core records of an
// entry. The zero Extras maps no insurance legs and refuses a top-up that
// paid debt (no payee).
type Extras struct {
	// Split returns the insurance split of a journal entry payload (the
	// pooled fund and personal account fen of a hospital bill; ok false
	// when the entry has none): engine.EntrySplit.
	Split func(payload []byte) (pooled, personal int64, ok bool, err error)
	// Payees returns the current payees: engine.SettlementPayees.
	Payees func() Payees
}

// insuranceLegs adds the insurance legs of a hospital entry to its row.
func insuranceLegs(lsn uint64, payload []byte, row *settle.Txn, x *Extras) error {
	if x == nil || x.Split == nil {
		return nil
	}
	pooled, personal, ok, err := x.Split(payload)
	if err != nil {
		return &rowError{LSN: lsn, Reason: err.Error()}
	}
	if !ok || pooled == 0 && personal == 0 {
		return nil
	}
	if row.Op != settle.OpPurchase && row.Op != settle.OpCapture {
		return &rowError{LSN: lsn, Reason: "insurance split on a " + row.Op + " row"}
	}
	if x.Payees == nil {
		return &rowError{LSN: lsn, Reason: "insurance split but no insurance payers are configured"}
	}
	p := x.Payees()
	if pooled > 0 {
		row.Legs = append(row.Legs, settle.Leg{Kind: settle.LegInsPooled, Payee: p.InsPooled, Amount: pooled})
	}
	if personal > 0 {
		row.Legs = append(row.Legs, settle.Leg{Kind: settle.LegInsPersonal, Payee: p.InsPersonal, Amount: personal})
	}
	if err := row.Validate(); err != nil {
		return &rowError{LSN: lsn, Reason: err.Error()}
	}
	return nil
}

// EntryRow is the row mapping the handoff applies to one journal entry
// (entryRow: at most one row per LSN), for readers that must agree with it
// to the fen, such as the gateway's journal totals for reconciliation.
// ok is false for an entry that makes no row; at is the time of the
// entry's first record (zero when it has none).
// x supplies the insurance split and the payees (nil: as the zero Extras).
func EntryRow(source string, lsn uint64, payload []byte, entry func([]byte, func(string, []byte) error) error,
	scene func(string) (string, bool), rec *core.Record, x *Extras) (row settle.Txn, ok bool, at time.Time, err error) {
	row, rows, at, err := entryRow(source, lsn, payload, entry, scene, rec, x)
	return row, rows > 0, at, err
}

// marketLegs checks the stall/operator division of an approved market
// record; it returns why it is inconsistent, or "".
func marketLegs(r *core.Record) string {
	m := &r.Market
	switch {
	case m.Stall < 0 || m.Operator < 0:
		return "market record with a negative leg"
	case m.Stall > r.Amount || m.Operator != r.Amount-m.Stall:
		return "market legs " + strconv.FormatInt(m.Stall, 10) + " + " + strconv.FormatInt(m.Operator, 10) +
			" do not make the amount " + strconv.FormatInt(r.Amount, 10)
	case m.Operator > 0 && m.OpMerch == "":
		return "market operator leg without its merchant"
	}
	return ""
}

// authRef is the gateway's authorization reference of a record, the same
// "SS-NNNNNNNNNN" (shard, shard sequence) the terminal was told.
func authRef(shard uint32, seq uint64) string {
	b := make([]byte, 0, 20)
	if shard < 10 {
		b = append(b, '0')
	}
	b = strconv.AppendUint(b, uint64(shard), 10)
	b = append(b, '-')
	s := strconv.FormatUint(seq, 10)
	for i := len(s); i < 10; i++ {
		b = append(b, '0')
	}
	return string(append(b, s...))
}
