package engine

import (
	"context"
	"fmt"

	"scenepay/gateway/internal/core"
)

// TopUpResult is the outcome of an operator top-up: the account after it
// and the part of the top-up that paid the card's transit debt
// (core.Output.DebtPaid, 0 when the card owed none; a repeated ref
// reports what the call that applied it paid).
type TopUpResult struct {
	OperatorResult
	DebtPaid int64
}

// OperateTopUp runs an operator top-up (in.Op core.OpTopUp) through
// Operate and also reports the debt it paid.
func (e *Engine) OperateTopUp(ctx context.Context, in core.Input) (TopUpResult, error) {
	if in.Op != core.OpTopUp {
		return TopUpResult{}, fmt.Errorf("engine: OperateTopUp with op %d", in.Op)
	}
	r, err := e.Operate(ctx, in)
	if err != nil {
		return TopUpResult{}, err
	}
	return TopUpResult{OperatorResult: r, DebtPaid: r.DebtPaid}, nil
}
