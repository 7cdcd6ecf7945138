package market

import "math/bits"

// Leg is one payee's part of a payment, to be settled to Merchant.
type Leg struct {
	Merchant string
	Amount   int64 // fen
}

// Split is a payment divided between the stall and the market operator.
// The two legs carry the same Link (the payment id) and settle together:
// settlement books both or neither, and Stall.Amount + Operator.Amount is
// always the payment amount.
type Split struct {
	Link     string
	Stall    Leg
	Operator Leg
}

// OperatorShare is the management fee on amount: amount * FeeRatio
// rounded half-even (banker's rounding) to the fen. The stall gets the
// rest, so the legs always sum to the payment and rounding never favours
// one side systematically. Exact: 128-bit integer arithmetic on the ratio
// compiled to num/10^k (at most 6 places); amount must be >= 0.
func (r *Rules) OperatorShare(amount int64) int64 {
	if amount <= 0 || r.feeNum == 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(amount), r.feeNum)
	q, rem := bits.Div64(hi, lo, r.feeDen) // hi < feeDen since feeNum <= feeDen
	if twice := 2 * rem; twice > r.feeDen || (twice == r.feeDen && q&1 == 1) {
		q++
	}
	return int64(q) // <= amount since ratio <= 1
}

// SplitPayment divides a payment of amount to stall merchant stallMerchant.
func (r *Rules) SplitPayment(link, stallMerchant string, amount int64) (Split, error) {
	if amount <= 0 {
		return Split{}, ErrInvalidAmount
	}
	op := r.OperatorShare(amount)
	return Split{
		Link:     link,
		Stall:    Leg{Merchant: stallMerchant, Amount: amount - op},
		Operator: Leg{Merchant: r.operatorMerchant, Amount: op},
	}, nil
}
