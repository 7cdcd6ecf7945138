package opapi

// GET /v1/journal/totals?from=<RFC3339>&to=<RFC3339>: the journal side of
// settlement's reconciliation. The gateway sums, per merchant, the
// settlement rows of the records it decided in [from, to), read from its
// retained journal with the handoff's row mapping (engine.JournalTotals),
// and answers {source, from, to, merchants: {id: totals}} in the shape
// settlement decodes (clearing.JournalTotalsBody). A period the journal no
// longer holds whole is 410 Gone, never partial totals; a second scan
// while one runs is 503 (each reads the whole retained journal).

import (
	"context"
	"errors"
	"time"

	"github.com/valyala/fasthttp"

	"scenepay/gateway/internal/engine"
	"scenepay/settlement/clearing"
	"scenepay/settlement/store"
	"scenepay/terminals"
)

// JournalEngine is what the journal totals endpoint needs of the engine.
type JournalEngine interface {
	JournalTotals(ctx context.Context, source string, from, to time.Time) (map[string]store.Totals, error)
}

// journalTotalsTimeout bounds one scan (the settlement client waits 2 min).
const journalTotalsTimeout = 110 * time.Second

func (s *Server) journalTotals(ctx *fasthttp.RequestCtx) {
	je, ok := s.e.(JournalEngine)
	if !ok || s.cfg.Source == "" {
		s.fail(ctx, fasthttp.StatusNotFound, "", "journal totals are not served by this gateway (no instance name)")
		return
	}
	parse := func(name string) (time.Time, bool) {
		t, err := time.Parse(time.RFC3339Nano, string(ctx.QueryArgs().Peek(name)))
		if err != nil {
			s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, name+" must be an RFC 3339 time")
			return time.Time{}, false
		}
		return t.UTC(), true
	}
	from, ok := parse("from")
	if !ok {
		return
	}
	to, ok := parse("to")
	if !ok {
		return
	}
	if !from.Before(to) {
		s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, "from must be before to")
		return
	}
	c, cancel := context.WithTimeout(context.Background(), journalTotalsTimeout)
	defer cancel()
	totals, err := je.JournalTotals(c, s.cfg.Source, from, to)
	switch {
	case errors.Is(err, engine.ErrNotCovered):
		s.fail(ctx, fasthttp.StatusGone, "", err.Error())
		return
	case errors.Is(err, engine.ErrTotalsBusy):
		s.fail(ctx, fasthttp.StatusServiceUnavailable, terminals.CodeBusy, err.Error())
		return
	case err != nil:
		s.internal(ctx, err)
		return
	}
	body := clearing.JournalTotalsBody{Source: s.cfg.Source, From: from, To: to, Merchants: make(map[string]clearing.WireTotals, len(totals))}
	for m, t := range totals {
		body.Merchants[m] = clearing.WireOf(t)
	}
	s.json(ctx, fasthttp.StatusOK, body)
}
