package core

// Transit debt as the operator sees it: the account view's Debt, and the
// debt each remembered top-up ref paid, so that a repeated ref reports
// the same Output.DebtPaid as the call that applied it, also after a
// snapshot restore (snapshot version 5).

// cardDebt is the transit debt a's card owes, 0 without a card.
func cardDebt(a *account) int64 {
	if a.card == nil {
		return 0
	}
	return a.card.Debt
}

// appendRefDebts writes the version 5 section: for every top-up ref, in
// the order the refs section lists them (oldest first), the debt it paid.
func (s *Shard) appendRefDebts(sw *snapWriter) {
	s.refs.each(func(_ string, e *refEntry) bool {
		sw.u64(uint64(e.debt))
		return sw.err == nil
	})
}

// restoreRefDebts reads the version 5 section into the refs already
// restored: each debt is 0..the ref's amount.
func (s *Shard) restoreRefDebts(sr *snapReader) {
	s.refs.each(func(ref string, e *refEntry) bool {
		d := sr.i64()
		if sr.err == nil && (d < 0 || d > e.amount) {
			sr.fail("top-up ref %q: debt paid %d of %d", ref, d, e.amount)
		}
		e.debt = d
		return sr.err == nil
	})
}
