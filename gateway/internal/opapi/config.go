package opapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/valyala/fasthttp"

	"scenepay/gateway/internal/confstore"
	"scenepay/terminals"
)

// ConfigEngine is what the config endpoints need of the engine. It is kept
// apart from Engine so that the API's other users (and fakes) need not
// implement it; without it the endpoints answer 404.
type ConfigEngine interface {
	PutConfig(name string, body []byte) (confstore.Doc, error)
	Config(name string) (confstore.Doc, bool)
	ConfigLagging(name string) (cur uint64, list []confstore.Lag, total int)
}

// configView is the JSON shape of a config document version.
type configView struct {
	Name    string          `json:"name"`
	Group   string          `json:"group"`
	Version uint64          `json:"version"`
	At      time.Time       `json:"at"`
	Doc     json.RawMessage `json:"doc,omitempty"`
}

type laggingView struct {
	Name    string          `json:"name"`
	Group   string          `json:"group"`
	Version uint64          `json:"version"`
	Count   int             `json:"count"`  // all lagging terminals
	Listed  int             `json:"listed"` // how many are in Lagging (bounded)
	Lagging []confstore.Lag `json:"lagging"`
}

// config routes /v1/config/{name}[/lagging]:
//
//	PUT /v1/config/{name}          body = the JSON document; answers the new version
//	GET /v1/config/{name}          the current version and document
//	GET /v1/config/{name}/lagging  terminals of the group behind the current version
func (s *Server) config(ctx *fasthttp.RequestCtx, parts []string) {
	ce, ok := s.e.(ConfigEngine)
	if !ok || len(parts) < 2 || len(parts) > 3 || (len(parts) == 3 && parts[2] != "lagging") {
		s.fail(ctx, fasthttp.StatusNotFound, "", "no such endpoint")
		return
	}
	name := parts[1]
	group, known := confstore.GroupOf(name)
	switch {
	case len(parts) == 2 && ctx.IsPut():
		s.putConfig(ctx, ce, name)
	case !known:
		s.fail(ctx, fasthttp.StatusNotFound, "", "no such config; known: transit, market, hospital, limits")
	case len(parts) == 2 && ctx.IsGet():
		d, ok := ce.Config(name)
		if !ok {
			s.fail(ctx, fasthttp.StatusNotFound, "", "config "+name+" has never been set")
			return
		}
		s.json(ctx, fasthttp.StatusOK, configView{Name: d.Name, Group: group, Version: d.Version, At: d.At, Doc: d.Body})
	case len(parts) == 3 && ctx.IsGet():
		cur, list, total := ce.ConfigLagging(name)
		if list == nil {
			list = []confstore.Lag{}
		}
		s.json(ctx, fasthttp.StatusOK, laggingView{Name: name, Group: group, Version: cur, Count: total, Listed: len(list), Lagging: list})
	default:
		s.fail(ctx, fasthttp.StatusMethodNotAllowed, "", "use PUT or GET")
	}
}

func (s *Server) putConfig(ctx *fasthttp.RequestCtx, ce ConfigEngine, name string) {
	d, err := ce.PutConfig(name, ctx.PostBody())
	var ce2 *confstore.Error
	switch {
	case errors.As(err, &ce2):
		// Every refusal of a document is the operator's to fix: 400, with
		// the reason (unknown_name, bad_json, too_large) in the message.
		s.audit(ctx, "config.put", name, string(ce2.Code), "reason", ce2.Msg, "doc_sha256", docFingerprint(ctx.PostBody()))
		s.fail(ctx, fasthttp.StatusBadRequest, terminals.CodeMalformed, ce2.Error())
		return
	case err != nil:
		s.internal(ctx, err)
		return
	}
	g, _ := confstore.GroupOf(d.Name)
	s.audit(ctx, "config.put", name, "ok", "version", d.Version, "bytes", len(d.Body), "doc_sha256", docFingerprint(d.Body))
	s.json(ctx, fasthttp.StatusOK, configView{Name: d.Name, Group: g, Version: d.Version, At: d.At})
}

// docFingerprint names a document in the audit trail without copying it
// there: an engineer matches it against GET /v1/config/{name} or the
// journal. The first 8 bytes of SHA-256 of the bytes as sent (refused) or
// as stored (accepted, compact JSON).
func docFingerprint(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
