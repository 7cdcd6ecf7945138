package engine

import (
	"context"
	"errors"
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

// OperateTopUp runs an operator top-up (in.Op core.OpTopUp) as Operate
// does and also reports the debt it paid. The shard writer sets the
// work's output before it hands the work on; the answer channel orders
// that write before the read here, so no lock is taken.
func (e *Engine) OperateTopUp(ctx context.Context, in core.Input) (TopUpResult, error) {
	if in.Op != core.OpTopUp {
		return TopUpResult{}, fmt.Errorf("engine: OperateTopUp with op %d", in.Op)
	}
	if err := e.Ready(); err != nil {
		return TopUpResult{}, err
	}
	w := &work{kind: workOperator, in: in, res: make(chan OperatorResult, 1), errc: make(chan error, 1)}
	s := e.shards[core.ShardOf(in.Account, len(e.shards))]
	ctx, cancel := context.WithTimeout(ctx, e.cfg.OperatorTimeout)
	defer cancel()
	select {
	case s.ch <- w:
	case <-e.stop:
		return TopUpResult{}, errors.New("engine closed")
	case <-ctx.Done():
		return TopUpResult{}, fmt.Errorf("engine: shard queue full: %w", ctx.Err())
	}
	select {
	case r := <-w.res:
		e.denyFlags(in.Account, r.flags)
		return TopUpResult{OperatorResult: r, DebtPaid: w.out.DebtPaid}, nil
	case err := <-w.errc:
		return TopUpResult{}, err
	case <-e.stop:
		return TopUpResult{}, errors.New("engine closed")
	case <-ctx.Done():
		return TopUpResult{}, fmt.Errorf("engine: waiting for the journal: %w", ctx.Err())
	}
}
