package hospital

// Bill is a hospital bill as the medical insurance platform split it: the
// platform computes the split, the payment side checks and records it.
type Bill struct {
	ID       string
	Item     string // optional pay-first item type; its price rule applies to Total
	Total    int64  // fen
	Pooled   int64  // paid by the pooled (social) fund
	Personal int64  // paid from the patient's medical insurance personal account
	SelfPay  int64  // paid by the patient's own instrument (card, e-CNY wallet)
}

// LegKind names the payer of a bill leg.
type LegKind uint8

const (
	LegPooled   LegKind = 1
	LegPersonal LegKind = 2
	LegSelfPay  LegKind = 3
)

func (k LegKind) String() string {
	switch k {
	case LegPooled:
		return "pooled"
	case LegPersonal:
		return "personal"
	case LegSelfPay:
		return "self"
	}
	return "?"
}

// BillLeg is one payer's part of a bill, for settlement.
type BillLeg struct {
	Kind   LegKind
	Payer  string // the insurance payer; empty for self-pay (the patient's instrument)
	Amount int64
}

// BillSplit is the decision on a bill: Charge is what the core debits from
// the patient's instrument (the self-pay part only; zero means no debit),
// Legs are all three parts, recorded for settlement with the bill id as
// their link, including zero legs so every bill has the same shape.
type BillSplit struct {
	Bill   string
	Charge int64
	Legs   [3]BillLeg
}

// SplitBill validates the platform's split: every leg non-negative, the
// legs summing (overflow-checked) exactly to a positive total, and the
// item's price rule if an item type is named.
func (r *Rules) SplitBill(b Bill) (BillSplit, error) {
	if !validID(b.ID) {
		return BillSplit{}, ErrFieldTooLong
	}
	if b.Total <= 0 {
		return BillSplit{}, ErrInvalidAmount
	}
	if b.Pooled < 0 || b.Personal < 0 || b.SelfPay < 0 {
		return BillSplit{}, ErrSplitNegative
	}
	if b.Pooled > maxFen-b.Personal || b.Pooled+b.Personal > maxFen-b.SelfPay {
		return BillSplit{}, ErrInvalidAmount
	}
	if b.Pooled+b.Personal+b.SelfPay != b.Total {
		return BillSplit{}, ErrSplitSum
	}
	if b.Item != "" {
		if err := r.CheckItem(b.Item, b.Total); err != nil {
			return BillSplit{}, err
		}
	}
	return BillSplit{
		Bill:   b.ID,
		Charge: b.SelfPay,
		Legs: [3]BillLeg{
			{LegPooled, r.cfg.PooledFundPayer, b.Pooled},
			{LegPersonal, r.cfg.PersonalAccountPayer, b.Personal},
			{LegSelfPay, "", b.SelfPay},
		},
	}, nil
}
