package handoff

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"scenepay/internal/strictjson"
)

// The wire form is JSON with short keys, times as Unix microseconds UTC and
// money as integer fen. JSON rather than a binary form because a batch is
// written once per few thousand transactions, operators read them when a
// handoff is stuck, and a bank's other systems can produce them; the cost
// that matters is the database write, not the encoding.

type wireBatch struct {
	ID        string     `json:"id"`
	Source    string     `json:"src"`
	FirstLSN  uint64     `json:"first"`
	LastLSN   uint64     `json:"last"`
	Watermark int64      `json:"wm"`
	Rows      []wireTxn  `json:"rows"`
	Syncs     []wireSync `json:"syncs,omitempty"`
}

// wireSync is one Sync. A batch without syncs omits "syncs" (an empty
// list decodes to none), so batches of producers that never carry them
// are unchanged on the wire.
type wireSync struct {
	Account string `json:"acct"`
	At      int64  `json:"at"`
	LSN     uint64 `json:"lsn"`
}

type wireTxn struct {
	LSN      uint64    `json:"lsn"`
	At       int64     `json:"at"`
	Merchant string    `json:"mer"`
	Terminal string    `json:"tid"`
	Scene    string    `json:"scene"`
	Op       string    `json:"op"`
	InstKind string    `json:"ik"`
	Account  string    `json:"acct"`
	Amount   int64     `json:"amt"`
	Auth     string    `json:"auth,omitempty"`
	Txn      uint64    `json:"txn"`
	Orig     uint64    `json:"orig,omitempty"`
	Legs     []wireLeg `json:"legs,omitempty"`
	Unsynced bool      `json:"uns,omitempty"` // only on e-CNY offline payments
}

// wireLeg is one Leg. A row without legs omits "legs" (an empty list
// decodes to none), so rows of producers that never carry legs are
// unchanged on the wire.
type wireLeg struct {
	Kind   string `json:"kind"`
	Payee  string `json:"payee"`
	Amount int64  `json:"amt"`
}

// Encode validates b and returns its wire form. The row source is implied
// by the batch source and not repeated.
func Encode(b *Batch) ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	w := wireBatch{ID: b.ID, Source: b.Source, FirstLSN: b.FirstLSN, LastLSN: b.LastLSN,
		Watermark: b.Watermark.UnixMicro(), Rows: make([]wireTxn, len(b.Rows))}
	for i := range b.Rows {
		r := &b.Rows[i]
		w.Rows[i] = wireTxn{LSN: r.LSN, At: r.At.UnixMicro(), Merchant: r.Merchant, Terminal: r.Terminal,
			Scene: r.Scene, Op: r.Op, InstKind: r.InstKind, Account: r.Account, Amount: r.Amount,
			Auth: r.Auth, Txn: r.Txn, Orig: r.Orig, Legs: wireLegs(r.Legs), Unsynced: r.Unsynced}
	}
	for _, s := range b.Syncs {
		w.Syncs = append(w.Syncs, wireSync{Account: s.Account, At: s.At.UnixMicro(), LSN: s.LSN})
	}
	out, err := json.Marshal(&w)
	if err != nil {
		return nil, err
	}
	if len(out) > EncodedBytesMax {
		return nil, &Error{Code: CodeOversize, Reason: "encoded batch exceeds EncodedBytesMax"}
	}
	return out, nil
}

// Decode parses and validates one batch. It is strict: unknown keys, a
// missing required key, trailing data, input over EncodedBytesMax and
// every rule of Validate are refused with a coded *Error.
func Decode(data []byte) (*Batch, error) {
	if len(data) > EncodedBytesMax {
		return nil, &Error{Code: CodeOversize, Reason: "encoded batch exceeds EncodedBytesMax"}
	}
	if err := requireKeys(data); err != nil {
		return nil, err
	}
	var w wireBatch
	if err := strictjson.Decode(data, &w); errors.Is(err, strictjson.ErrTrailing) {
		return nil, malformed("", "trailing data after the batch")
	} else if err != nil {
		return nil, malformed("", "json: "+err.Error())
	}
	if len(w.Rows) > BatchRowsMax {
		return nil, &Error{Code: CodeOversize, Field: "rows", Reason: "too many rows"}
	}
	b := &Batch{ID: w.ID, Source: w.Source, FirstLSN: w.FirstLSN, LastLSN: w.LastLSN,
		Watermark: fromMicro(w.Watermark)}
	if len(w.Rows) > 0 {
		b.Rows = make([]Txn, len(w.Rows))
	}
	for i := range w.Rows {
		r := &w.Rows[i]
		b.Rows[i] = Txn{Source: w.Source, LSN: r.LSN, At: fromMicro(r.At), Merchant: r.Merchant,
			Terminal: r.Terminal, Scene: r.Scene, Op: r.Op, InstKind: r.InstKind, Account: r.Account,
			Amount: r.Amount, Auth: r.Auth, Txn: r.Txn, Orig: r.Orig, Unsynced: r.Unsynced}
		if len(r.Legs) > LegsMax {
			return nil, malformed(rowField(i, "legs"), "more than "+strconv.Itoa(LegsMax)+" legs")
		}
		if len(r.Legs) > 0 {
			legs := make([]Leg, len(r.Legs))
			for j, l := range r.Legs {
				legs[j] = Leg{Kind: l.Kind, Payee: l.Payee, Amount: l.Amount}
			}
			b.Rows[i].Legs = legs
		}
	}
	if len(w.Syncs) > SyncsMax {
		return nil, &Error{Code: CodeOversize, Field: "syncs", Reason: "too many syncs"}
	}
	if len(w.Syncs) > 0 {
		b.Syncs = make([]Sync, len(w.Syncs))
		for j, s := range w.Syncs {
			b.Syncs[j] = Sync{Account: s.Account, At: fromMicro(s.At), LSN: s.LSN}
		}
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return b, nil
}

func wireLegs(ls []Leg) []wireLeg {
	if len(ls) == 0 {
		return nil
	}
	out := make([]wireLeg, len(ls))
	for i, l := range ls {
		out[i] = wireLeg{Kind: l.Kind, Payee: l.Payee, Amount: l.Amount}
	}
	return out
}

// fromMicro maps 0 to the zero time so that a missing time is reported as
// missing rather than as 1970.
func fromMicro(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// requireKeys refuses a batch that omits "rows" or "wm" outright: a zero
// value there is valid for some fields and would otherwise hide a producer
// that forgot them. Row fields are covered by Validate (every one of them
// has a zero value that Validate refuses, except the optional ones).
func requireKeys(data []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return malformed("", "json: "+err.Error())
	}
	for _, k := range []string{"id", "src", "first", "last", "wm", "rows"} {
		if _, ok := top[k]; !ok {
			return malformed(k, "missing")
		}
	}
	return nil
}
