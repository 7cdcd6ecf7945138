package clearing

// The settlement file for the bank's core and the per-merchant statements.
// Layouts are documented in docs/settlement.md; a change of columns is a
// change of FileVersion.

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"time"

	"scenepay/settlement/store"
)

// FileVersion is the settlement file layout version (third header field).
// Version 2 added the L lines (one per division leg, with its payee);
// version 3 the U lines (e-CNY offline receipts held and released).
const FileVersion = "3"

// UnsyncedColumns are the fields of an unsynced (U) line: after the D
// line of a merchant whose settlement holds or releases e-CNY double
// offline receipts (Settlement.Held, Settlement.Released), one U line.
// The D line's payable_fen already excludes held_fen and includes
// released_fen.
var UnsyncedColumns = []string{"record", "window", "merchant", "held_fen", "released_fen"}

// LegColumns are the fields of a division leg (L) line. Every division of
// a merchant's settlement gets one, after the merchant's D line: the D
// line's market_operator names a payee only when there is one, and a
// merchant's market fee legs may go to several operators.
var LegColumns = []string{"record", "window", "merchant", "kind", "payee", "amount_fen"}

// FileColumns are the fields of a detail (D) line.
var FileColumns = []string{"record", "window", "merchant", "payee_account", "count", "gross_fen", "reversals_fen",
	"refunds_fen", "net_fen", "fee_fen", "market_fee_fen", "market_operator", "insurance_fen", "payable_fen"}

// TrailerColumns are the fields of the trailer (T) line.
var TrailerColumns = []string{"record", "window", "lines", "count", "gross_fen", "net_fen", "fee_fen",
	"market_fee_fen", "insurance_fen", "payable_fen"}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// legSum sums the divisions of the given kinds; payee is theirs when they
// all have the same one, "" when there are none, and "*" (see the L lines)
// when there are several.
func legSum(s *store.Settlement, kinds ...string) (int64, string, error) {
	var n int64
	payee := ""
	for _, d := range s.Divisions {
		for _, k := range kinds {
			if d.Kind == k {
				var err error
				if n, err = add(n, d.Amount); err != nil {
					return 0, "", err
				}
				switch payee {
				case "", d.Payee:
					payee = d.Payee
				default:
					payee = "*"
				}
			}
		}
	}
	return n, payee, nil
}

// FileLine is one detail line's fields (FileColumns order).
func FileLine(s *store.Settlement, m store.Merchant) ([]string, error) {
	market, operator, err := legSum(s, store.DivisionMarketFee)
	if err != nil {
		return nil, err
	}
	ins, _, err := legSum(s, store.DivisionInsurancePooled, store.DivisionInsurancePersonal)
	if err != nil {
		return nil, err
	}
	return []string{"D", s.Window, s.Merchant, m.PayeeAccount, itoa(s.Count), itoa(s.Gross), itoa(s.Reversals),
		itoa(s.Refunds), itoa(s.Net), itoa(s.Fee), itoa(market), operator, itoa(ins), itoa(s.Payable)}, nil
}

// WriteFile writes window w's settlement file: a header line
//
//	H,scenepay-settlement,<FileVersion>,<window>,<start UTC>,<cut-off UTC>,<settled_at UTC>
//
// then the column names prefixed "C" (D lines), "CL" (L lines) and "CU"
// (U lines), one D line per merchant (by merchant id) followed by its U
// line if it holds or releases e-CNY offline receipts and one L line per
// division leg of that merchant (kind, payee, amount), and a trailer line
// T with the line count (D lines) and the totals,
// every total overflow-checked. merchants supplies payee accounts; a
// merchant missing from it gets an empty account, which the bank's core
// must refuse rather than guess.
func WriteFile(out io.Writer, w store.Window, ss []store.Settlement, merchants map[string]store.Merchant) error {
	cw := csv.NewWriter(out)
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	if err := cw.Write([]string{"H", "scenepay-settlement", FileVersion, w.ID, ts(w.Start), ts(w.CutOff), ts(w.SettledAt)}); err != nil {
		return err
	}
	if err := cw.Write(append([]string{"C"}, FileColumns[1:]...)); err != nil {
		return err
	}
	if err := cw.Write(append([]string{"CL"}, LegColumns[1:]...)); err != nil {
		return err
	}
	if err := cw.Write(append([]string{"CU"}, UnsyncedColumns[1:]...)); err != nil {
		return err
	}
	var count, gross, net, fee, market, ins, payable int64
	for i := range ss {
		s := &ss[i]
		line, err := FileLine(s, merchants[s.Merchant])
		if err != nil {
			return err
		}
		mk, _, _ := legSum(s, store.DivisionMarketFee)
		in, _, _ := legSum(s, store.DivisionInsurancePooled, store.DivisionInsurancePersonal)
		for _, p := range []struct {
			sum *int64
			v   int64
		}{{&count, s.Count}, {&gross, s.Gross}, {&net, s.Net}, {&fee, s.Fee}, {&market, mk}, {&ins, in}, {&payable, s.Payable}} {
			if *p.sum, err = add(*p.sum, p.v); err != nil {
				return err
			}
		}
		if err := cw.Write(line); err != nil {
			return err
		}
		if s.Held != 0 || s.Released != 0 {
			if err := cw.Write([]string{"U", s.Window, s.Merchant, itoa(s.Held), itoa(s.Released)}); err != nil {
				return err
			}
		}
		for _, d := range s.Divisions {
			if err := cw.Write([]string{"L", s.Window, s.Merchant, d.Kind, d.Payee, itoa(d.Amount)}); err != nil {
				return err
			}
		}
	}
	if err := cw.Write([]string{"T", w.ID, strconv.Itoa(len(ss)), itoa(count), itoa(gross), itoa(net), itoa(fee),
		itoa(market), itoa(ins), itoa(payable)}); err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// Statement is one merchant's settlement for one window, as the merchant
// sees it. Amounts are fen.
type Statement struct {
	Merchant      string         `json:"merchant"`
	Window        string         `json:"window"`
	From          time.Time      `json:"from"` // [From, To) UTC
	To            time.Time      `json:"to"`
	State         string         `json:"state"`
	Count         int64          `json:"count"`
	Payments      int64          `json:"payments"`
	Gross         int64          `json:"gross_fen"`
	Reversals     int64          `json:"reversals_fen"`
	ReversalCount int64          `json:"reversal_count"`
	Refunds       int64          `json:"refunds_fen"`
	RefundCount   int64          `json:"refund_count"`
	Net           int64          `json:"net_fen"`
	Fee           int64          `json:"fee_fen"`
	Divisions     []StatementLeg `json:"divisions"`
	Held          int64          `json:"held_fen"`     // e-CNY offline receipts of the window held until their wallets sync
	Released      int64          `json:"released_fen"` // earlier windows' held receipts paid in this one
	Payable       int64          `json:"payable_fen"`
}

// StatementLeg is one division leg on a statement.
type StatementLeg struct {
	Kind   string `json:"kind"`
	Payee  string `json:"payee"`
	Amount int64  `json:"amount_fen"`
}

// NewStatement builds merchant's statement from its settlement.
func NewStatement(w store.Window, s *store.Settlement) Statement {
	st := Statement{Merchant: s.Merchant, Window: w.ID, From: w.Start, To: w.CutOff, State: string(w.State),
		Count: s.Count, Payments: s.Payments, Gross: s.Gross, Reversals: s.Reversals, ReversalCount: s.ReversalCount,
		Refunds: s.Refunds, RefundCount: s.RefundCount, Net: s.Net, Fee: s.Fee, Payable: s.Payable,
		Held: s.Held, Released: s.Released, Divisions: []StatementLeg{}}
	for _, d := range s.Divisions {
		st.Divisions = append(st.Divisions, StatementLeg{Kind: d.Kind, Payee: d.Payee, Amount: d.Amount})
	}
	return st
}

// WriteStatementJSON writes st as one JSON object.
func WriteStatementJSON(out io.Writer, st Statement) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

// StatementColumns are the columns of a statement CSV.
var StatementColumns = []string{"merchant", "window", "from_utc", "to_utc", "state", "count", "payments", "gross_fen",
	"reversals_fen", "reversal_count", "refunds_fen", "refund_count", "net_fen", "fee_fen", "market_fee_fen",
	"insurance_fen", "payable_fen", "held_fen", "released_fen"}

// WriteStatementCSV writes st as a header line and one data line.
func WriteStatementCSV(out io.Writer, st Statement) error {
	var market, ins int64
	var err error
	for _, d := range st.Divisions {
		switch d.Kind {
		case store.DivisionMarketFee:
			market, err = add(market, d.Amount)
		default:
			ins, err = add(ins, d.Amount)
		}
		if err != nil {
			return err
		}
	}
	cw := csv.NewWriter(out)
	if err := cw.Write(StatementColumns); err != nil {
		return err
	}
	if err := cw.Write([]string{st.Merchant, st.Window, st.From.UTC().Format(time.RFC3339), st.To.UTC().Format(time.RFC3339),
		st.State, itoa(st.Count), itoa(st.Payments), itoa(st.Gross), itoa(st.Reversals), itoa(st.ReversalCount),
		itoa(st.Refunds), itoa(st.RefundCount), itoa(st.Net), itoa(st.Fee), itoa(market), itoa(ins), itoa(st.Payable),
		itoa(st.Held), itoa(st.Released)}); err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}
