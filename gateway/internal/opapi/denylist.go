package opapi

// Deny-list endpoints. The list itself is the engine's (engine/denylist.go:
// journaled, in snapshots, pushed to bus readers as signed retained
// messages); these endpoints change it by hand and show who lags. Every
// change, accepted or refused, writes one audit line.

import (
	"errors"
	"strconv"

	"github.com/valyala/fasthttp"

	"scenepay/gateway/internal/engine"
	"scenepay/gateway/internal/scene/transit"
	"scenepay/gateway/opwire"
	"scenepay/terminals"
)

// DenyEngine is what the deny-list endpoints need of the engine.
type DenyEngine interface {
	DenyAdd(card string) (uint64, error)
	DenyRemove(card string) (uint64, error)
	DenyDelta(since uint64) transit.Delta
	DenyLagging() (cur uint64, list []opwire.DenyLag, total int)
}

// denyView answers a change and GET /v1/denylist?since=V.
type denyView struct {
	Version uint64   `json:"version"`
	From    uint64   `json:"from"`
	Full    bool     `json:"full"` // since was older than the kept history: Add is the whole list
	Add     []string `json:"add"`
	Remove  []string `json:"remove"`
}

// denylist routes:
//
//	POST   /v1/denylist/{card}     list the card; answers the new version
//	DELETE /v1/denylist/{card}     take it off
//	GET    /v1/denylist?since=V    changes since version V (default 0: the whole list)
//	GET    /v1/denylist/lagging    bus readers behind the current version
func (s *Server) denylist(ctx *fasthttp.RequestCtx, parts []string) {
	de, ok := s.e.(DenyEngine)
	if !ok || len(parts) > 2 {
		s.fail(ctx, fasthttp.StatusNotFound, "", "no such endpoint")
		return
	}
	switch {
	case len(parts) == 1 && ctx.IsGet():
		since := uint64(0)
		if q := ctx.QueryArgs().Peek("since"); len(q) > 0 {
			v, err := strconv.ParseUint(string(q), 10, 64)
			if err != nil {
				s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, "since must be a version number")
				return
			}
			since = v
		}
		d := de.DenyDelta(since)
		s.json(ctx, fasthttp.StatusOK, deltaView(d))
	case len(parts) == 2 && parts[1] == "lagging" && ctx.IsGet():
		// At most engine.DenyLagListMax are listed; Count is all of them.
		cur, list, total := de.DenyLagging()
		if list == nil {
			list = []opwire.DenyLag{}
		}
		s.json(ctx, fasthttp.StatusOK, opwire.DenyLagging{Version: cur, Count: total, Listed: len(list), Lagging: list})
	case len(parts) == 2 && (ctx.IsPost() || ctx.IsDelete()):
		card := parts[1]
		action, change := "denylist.add", de.DenyAdd
		if ctx.IsDelete() {
			action, change = "denylist.remove", de.DenyRemove
		}
		v, err := change(card)
		switch {
		case errors.Is(err, engine.ErrDenyBadCard):
			s.audit(ctx, action, "", string(terminals.CodeMalformed))
			s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, err.Error())
			return
		case errors.Is(err, transit.ErrDenyFull):
			s.audit(ctx, action, card, string(terminals.CodeBusy))
			s.fail(ctx, fasthttp.StatusServiceUnavailable, terminals.CodeBusy, err.Error())
			return
		case err != nil:
			s.audit(ctx, action, card, string(terminals.CodeSystemError))
			s.internal(ctx, err)
			return
		}
		s.audit(ctx, action, card, "ok", "version", v)
		s.json(ctx, fasthttp.StatusOK, denyView{Version: v, From: v, Add: []string{}, Remove: []string{}})
	default:
		s.fail(ctx, fasthttp.StatusMethodNotAllowed, "", "use GET, POST or DELETE")
	}
}

func deltaView(d transit.Delta) denyView {
	v := denyView{Version: d.To, From: d.From, Full: d.Full, Add: d.Add, Remove: d.Remove}
	if v.Add == nil {
		v.Add = []string{}
	}
	if v.Remove == nil {
		v.Remove = []string{}
	}
	return v
}
