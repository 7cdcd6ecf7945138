package fleet

import (
	"testing"

	"scenepay/emulator/internal/opclient"
)

// TestDebtPaidWrong: the debt repayment check accepts exactly a top-up
// that paid min(debt, top-up) of the debt, left the rest owing and
// credited the rest; a gateway that credited the whole top-up, paid the
// debt twice, reported a debt_paid other than what it took, or left debt
// it was paid for fails it.
func TestDebtPaidWrong(t *testing.T) {
	before := opclient.Account{Balance: 100, Debt: 400}
	acc := func(bal, debt, paid int64) opclient.Account {
		return opclient.Account{Balance: bal, Debt: debt, DebtPaid: paid}
	}
	for _, c := range []struct {
		name   string
		before opclient.Account
		after  opclient.Account
		amt    int64
		ok     bool
	}{
		{"covers the debt", before, acc(100+5_000-400, 0, 400), 5_000, true},
		{"pays part of the debt", before, acc(100, 250, 150), 150, true},
		{"pays the debt exactly", before, acc(100, 0, 400), 400, true},
		{"no debt", acc(100, 0, 0), acc(600, 0, 0), 500, true},
		{"credited whole, debt not paid", before, acc(5_100, 400, 0), 5_000, false},
		{"credited whole, debt_paid claimed", before, acc(5_100, 0, 400), 5_000, false},
		{"debt paid twice", before, acc(100+5_000-800, 0, 800), 5_000, false},
		{"debt paid, debt_paid not told", before, acc(100+5_000-400, 0, 0), 5_000, false},
		{"debt paid, debt left in the view", before, acc(100+5_000-400, 400, 400), 5_000, false},
		{"paid more than the top-up", before, acc(100, 0, 400), 150, false},
	} {
		why := debtPaidWrong(c.before, c.after, c.amt)
		if (why == "") != c.ok {
			t.Errorf("%s: %q, want ok %t", c.name, why, c.ok)
		}
	}
}
