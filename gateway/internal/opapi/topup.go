package opapi

import (
	"context"

	"github.com/valyala/fasthttp"

	"scenepay/gateway/internal/core"
	"scenepay/terminals"
)

// topUpRun runs a top-up as run does, and answers the account after it
// with the transit debt the top-up paid.
func (s *Server) topUpRun(ctx *fasthttp.RequestCtx, in core.Input) {
	r, err := s.e.OperateTopUp(context.Background(), in)
	if err != nil {
		s.internal(ctx, err)
		return
	}
	if r.Code != terminals.CodeApproved {
		s.audit(ctx, accountAction(in.Op), in.Account, string(r.Code), auditAttrs(in)...)
		s.fail(ctx, r.Code.HTTPStatus(), r.Code, r.Code.Name())
		return
	}
	if !r.Found {
		s.fail(ctx, fasthttp.StatusNotFound, terminals.CodeUnknownInstrument, "no such account")
		return
	}
	s.audit(ctx, accountAction(in.Op), in.Account, "ok", append(auditAttrs(in), "debt_paid_fen", r.DebtPaid)...)
	s.json(ctx, fasthttp.StatusOK, TopUpView{AccountView: view(in.Account, r.Account), DebtPaid: r.DebtPaid})
}
