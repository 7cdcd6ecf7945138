package hospital

// CheckItem decides a pay-first item payment: the item type must be
// configured and the amount must be its fixed price or within its range.
// The approved payment is an ordinary core purchase of amount (or, with an
// insurance split, of the self-pay part; see SplitBill).
func (r *Rules) CheckItem(code string, amount int64) error {
	it, ok := r.items[code]
	if !ok {
		return ErrUnknownItem
	}
	if amount <= 0 {
		return ErrInvalidAmount
	}
	if it.FixedFen > 0 {
		if amount != it.FixedFen {
			return ErrItemAmount
		}
		return nil
	}
	if amount < it.MinFen || amount > it.MaxFen {
		return ErrItemAmount
	}
	return nil
}
