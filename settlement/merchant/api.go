package merchant

// The merchant HTTP surface, one fasthttp handler for everything under /m/:
//
//	/m/v1/...   the API, Authorization: Bearer <merchant key>
//	/m/dl/...   the same GET endpoints for the web page, by session cookie
//	/m/, /m/login, /m/logout   the web page (page.go)
//
// The merchant comes only from the credential. A window, cursor or id of
// another merchant is looked up under the caller's merchant and so is
// simply not there; every not-found answer is written by notFound, so it
// is byte-identical whatever the reason.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

// Named bounds.
const (
	// ExportRowsMax is the most rows one CSV export returns; a wider
	// export is refused with 422 (narrow the dates) rather than truncated.
	ExportRowsMax = 50_000
	// RequestTimeout bounds the store work of one request.
	RequestTimeout = 15 * time.Second
	// queryParamsMax bounds the query arguments one request may carry.
	queryParamsMax = 16
)

// Authenticator checks merchant keys (Keys implements it).
type Authenticator interface {
	Authenticate(ctx context.Context, key string) (Principal, error)
	Active(ctx context.Context, keyID string) (bool, error)
}

// Config of the merchant handler.
type Config struct {
	Store      store.Store   // required
	Keys       Authenticator // required
	Statements Statements    // nil: ClearingStatements if Store is a store.Clearing, else StoreStatements
	Clock      func() time.Time
	Logger     *slog.Logger
	// SecureCookie marks the session cookie Secure; set it when the page
	// is served over TLS (a Secure cookie is not sent over plain HTTP
	// except to localhost).
	SecureCookie bool
	SessionTTL   time.Duration         // 0: SessionTTLDefault
	Registerer   prometheus.Registerer // nil: no metrics
}

// Handler serves /m/.
type Handler struct {
	cfg      Config
	sessions *sessions
	requests *prometheus.CounterVec
}

// New builds the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.Keys == nil {
		return nil, errors.New("merchant: Store and Keys are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Statements == nil {
		// Clearing's records when the store keeps them (both stores
		// do); the interim business-day totals otherwise.
		if cs, ok := cfg.Store.(store.Clearing); ok {
			cfg.Statements = &ClearingStatements{Store: cs, Clock: cfg.Clock}
		} else {
			cfg.Statements = &StoreStatements{Store: cfg.Store, Clock: cfg.Clock}
		}
	}
	h := &Handler{cfg: cfg, sessions: newSessions(cfg.SessionTTL)}
	h.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scenepay_merchant_requests_total",
		Help: "Merchant API and page requests by endpoint and HTTP status.",
	}, []string{"endpoint", "status"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(h.requests); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Routes lists the path prefixes the handler owns, for a mux.
func Routes() []string { return []string{"/m/"} }

// Handle serves one request under /m/.
func (h *Handler) Handle(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	path := string(ctx.Path())
	endpoint := "other"
	defer func() {
		h.requests.WithLabelValues(endpoint, strconv.Itoa(ctx.Response.StatusCode())).Inc()
	}()
	switch {
	case strings.HasPrefix(path, "/m/v1/"):
		endpoint = h.api(ctx, path[len("/m/v1/"):], h.bearer)
	case strings.HasPrefix(path, "/m/dl/"):
		endpoint = h.api(ctx, path[len("/m/dl/"):], h.cookie)
	case path == "/m" || path == "/m/":
		endpoint = "page"
		h.page(ctx)
	case path == "/m/login":
		endpoint = "login"
		h.login(ctx)
	case path == "/m/logout":
		endpoint = "logout"
		h.logout(ctx)
	default:
		notFound(ctx)
	}
}

// bearer authenticates the API: Authorization: Bearer <key>.
func (h *Handler) bearer(ctx *fasthttp.RequestCtx, c context.Context) (Principal, bool) {
	auth := ctx.Request.Header.Peek("Authorization")
	const p = "Bearer "
	if !bytes.HasPrefix(auth, []byte(p)) {
		ctx.Response.Header.Set("WWW-Authenticate", "Bearer")
		fail(ctx, fasthttp.StatusUnauthorized, "UNAUTHORIZED", "missing merchant key")
		return Principal{}, false
	}
	pr, err := h.cfg.Keys.Authenticate(c, string(auth[len(p):]))
	if err != nil {
		if !errors.Is(err, ErrKeyInvalid) {
			h.internal(ctx, err)
			return Principal{}, false
		}
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		fail(ctx, fasthttp.StatusUnauthorized, "UNAUTHORIZED", "invalid or revoked merchant key")
		return Principal{}, false
	}
	return pr, true
}

type authFunc func(ctx *fasthttp.RequestCtx, c context.Context) (Principal, bool)

// api authenticates and routes one API request; it returns the endpoint
// label for the metric (a fixed set).
func (h *Handler) api(ctx *fasthttp.RequestCtx, rest string, auth authFunc) string {
	c, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		fail(ctx, fasthttp.StatusMethodNotAllowed, "METHOD", "only GET")
		return "api_method"
	}
	p, ok := auth(ctx, c)
	if !ok {
		return "api_auth"
	}
	switch {
	case rest == "transactions":
		h.transactions(ctx, c, p, false)
		return "transactions"
	case rest == "transactions.csv":
		h.transactions(ctx, c, p, true)
		return "transactions_csv"
	case rest == "statements":
		h.statementList(ctx, c, p)
		return "statements"
	case strings.HasPrefix(rest, "statements/"):
		w := rest[len("statements/"):]
		if strings.HasSuffix(w, ".csv") {
			h.statement(ctx, c, p, strings.TrimSuffix(w, ".csv"), true)
			return "statement_csv"
		}
		h.statement(ctx, c, p, w, false)
		return "statement"
	case strings.HasPrefix(rest, "settlement-file/"):
		h.settlementFile(ctx, c, p, rest[len("settlement-file/"):])
		return "settlement_file"
	}
	notFound(ctx)
	return "other"
}

type errorBody struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

func fail(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	writeJSON(ctx, status, errorBody{Code: code, Error: msg})
}

// notFound is the one answer for "missing" and "not yours".
func notFound(ctx *fasthttp.RequestCtx) {
	fail(ctx, fasthttp.StatusNotFound, "NOT_FOUND", "not found")
}

func (h *Handler) internal(ctx *fasthttp.RequestCtx, err error) {
	h.cfg.Logger.Error("merchant api: store fault", "err", err)
	ctx.Response.Header.Set("Retry-After", "5")
	fail(ctx, fasthttp.StatusServiceUnavailable, "UNAVAILABLE", "settlement store unavailable, retry later")
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	b, err := json.Marshal(v)
	if err != nil { // only plain structs are marshalled here
		b = []byte(`{"code":"INTERNAL","error":"encoding"}`)
	}
	ctx.SetBody(append(b, '\n'))
}

// csvCell keeps a text cell from being read as a formula by a spreadsheet.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func writeCSV(ctx *fasthttp.RequestCtx, filename string, header []string, rows [][]string) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(header)
	w.WriteAll(rows) // flushes; a bytes.Buffer cannot fail
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/csv; charset=utf-8")
	ctx.Response.Header.Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	ctx.SetBody(buf.Bytes())
}

// safeName keeps a file name to [A-Za-z0-9._-].
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}

// parseTime reads a filter bound: "YYYY-MM-DD" is a business day in
// Asia/Shanghai (for "to", the whole day is included), anything else must
// be RFC 3339.
func parseTime(v string, isTo bool) (time.Time, error) {
	if len(v) == len("2006-01-02") {
		d, err := time.ParseInLocation("2006-01-02", v, Shanghai)
		if err != nil {
			return time.Time{}, err
		}
		if isTo {
			y, m, dd := d.Date()
			d = time.Date(y, m, dd+1, 0, 0, 0, 0, Shanghai)
		}
		return d, nil
	}
	return time.Parse(time.RFC3339Nano, v)
}

// filter builds the store filter from the query string. The merchant is
// the caller's, never a parameter.
func filter(ctx *fasthttp.RequestCtx, merchant string) (store.Filter, string) {
	f := store.Filter{Merchant: merchant}
	args := ctx.QueryArgs()
	if args.Len() > queryParamsMax {
		return f, "too many query parameters"
	}
	var why string
	args.VisitAll(func(k, v []byte) {
		if why != "" {
			return
		}
		val := string(v)
		switch string(k) {
		case "from", "to":
			t, err := parseTime(val, string(k) == "to")
			if err != nil {
				why = string(k) + " must be YYYY-MM-DD or RFC 3339"
				return
			}
			if string(k) == "from" {
				f.From = t
			} else {
				f.To = t
			}
		case "scene":
			switch val {
			case handoff.SceneBus, handoff.SceneStall, handoff.SceneKiosk:
				f.Scene = val
			default:
				why = "scene must be bus, stall or kiosk"
			}
		case "terminal":
			if val == "" || len(val) > 64 {
				why = "terminal must be 1..64 characters"
				return
			}
			f.Terminal = val
		case "op", "status":
			switch val {
			case handoff.OpPurchase, handoff.OpCapture, handoff.OpReversal, handoff.OpRefund, handoff.OpDebtRecovery:
				f.Op = val
			default:
				why = string(k) + " must be purchase, capture, reversal, refund or debt_recovery"
			}
		case "cursor":
			f.Cursor = val
		case "limit":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > store.PageLimitMax {
				why = "limit must be 1.." + strconv.Itoa(store.PageLimitMax)
				return
			}
			f.Limit = n
		default:
			why = "unknown query parameter " + strconv.Quote(string(k))
		}
	})
	if why == "" && !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		why = "from must be before to"
	}
	return f, why
}

// TxnView is a transaction as the merchant sees it: the customer's account
// only by its last four characters.
type TxnView struct {
	At       time.Time `json:"at"`
	Source   string    `json:"source"`
	LSN      uint64    `json:"lsn"`
	Terminal string    `json:"terminal"`
	Scene    string    `json:"scene"`
	Op       string    `json:"op"`
	Inst     string    `json:"inst"`
	Account  string    `json:"account_last4"`
	Amount   int64     `json:"amount_fen"`
	Auth     string    `json:"auth"`
	Txn      uint64    `json:"txn"`
	Orig     uint64    `json:"orig,omitempty"`
}

func last4(s string) string {
	if len(s) <= 4 {
		return s
	}
	return s[len(s)-4:]
}

func view(r *handoff.Txn) TxnView {
	return TxnView{At: r.At.UTC(), Source: r.Source, LSN: r.LSN, Terminal: r.Terminal, Scene: r.Scene, Op: r.Op,
		Inst: r.InstKind, Account: last4(r.Account), Amount: r.Amount, Auth: r.Auth, Txn: r.Txn, Orig: r.Orig}
}

// TxnPage is the JSON of GET /m/v1/transactions.
type TxnPage struct {
	Rows []TxnView `json:"rows"`
	Next string    `json:"next,omitempty"`
}

// TxnCSVHeader is the column list of the transactions CSV export.
var TxnCSVHeader = []string{"at_utc", "at_local", "source", "lsn", "terminal", "scene", "op", "inst",
	"account_last4", "amount_fen", "amount_yuan", "auth", "txn", "orig"}

func (h *Handler) storeErr(ctx *fasthttp.RequestCtx, err error) {
	var se *store.Error
	if errors.As(err, &se) && se.Code == store.CodeBadQuery {
		fail(ctx, fasthttp.StatusBadRequest, "BAD_QUERY", se.Reason)
		return
	}
	h.internal(ctx, err)
}

func (h *Handler) transactions(ctx *fasthttp.RequestCtx, c context.Context, p Principal, asCSV bool) {
	f, why := filter(ctx, p.Merchant)
	if why != "" {
		fail(ctx, fasthttp.StatusBadRequest, "BAD_QUERY", why)
		return
	}
	if !asCSV {
		pg, err := h.cfg.Store.Transactions(c, f)
		if err != nil {
			h.storeErr(ctx, err)
			return
		}
		out := TxnPage{Rows: make([]TxnView, 0, len(pg.Rows)), Next: pg.Next}
		for i := range pg.Rows {
			out.Rows = append(out.Rows, view(&pg.Rows[i]))
		}
		writeJSON(ctx, fasthttp.StatusOK, out)
		return
	}
	// The export walks every page of the filter (cursor and limit only
	// choose where it starts and the page size).
	if f.Limit == 0 {
		f.Limit = store.PageLimitMax
	}
	var rows [][]string
	for {
		pg, err := h.cfg.Store.Transactions(c, f)
		if err != nil {
			h.storeErr(ctx, err)
			return
		}
		if len(rows)+len(pg.Rows) > ExportRowsMax {
			fail(ctx, fasthttp.StatusUnprocessableEntity, "TOO_MANY_ROWS",
				"more than "+strconv.Itoa(ExportRowsMax)+" rows: narrow the dates")
			return
		}
		for i := range pg.Rows {
			r := &pg.Rows[i]
			rows = append(rows, []string{r.At.UTC().Format(time.RFC3339Nano), r.At.In(Shanghai).Format(time.RFC3339Nano),
				csvCell(r.Source), strconv.FormatUint(r.LSN, 10), csvCell(r.Terminal), r.Scene, r.Op, r.InstKind,
				csvCell(last4(r.Account)), strconv.FormatInt(r.Amount, 10), yuan(r.Amount), csvCell(r.Auth),
				strconv.FormatUint(r.Txn, 10), strconv.FormatUint(r.Orig, 10)})
		}
		if pg.Next == "" {
			break
		}
		f.Cursor = pg.Next
	}
	writeCSV(ctx, "transactions-"+safeName(p.Merchant)+".csv", TxnCSVHeader, rows)
}

func (h *Handler) statementList(ctx *fasthttp.RequestCtx, c context.Context, p Principal) {
	if ctx.QueryArgs().Len() > 0 {
		fail(ctx, fasthttp.StatusBadRequest, "BAD_QUERY", "no query parameters here")
		return
	}
	list, err := h.cfg.Statements.List(c, p.Merchant)
	if err != nil {
		h.internal(ctx, err)
		return
	}
	if list == nil {
		list = []Statement{}
	}
	writeJSON(ctx, fasthttp.StatusOK, struct {
		Statements []Statement `json:"statements"`
	}{list})
}

// StatementCSVHeader is the column list of a statement CSV. Columns are
// only ever added at the end, so a reader by position keeps working.
var StatementCSVHeader = []string{"merchant", "window", "from_utc", "to_utc", "status", "count", "payments",
	"gross_fen", "refunds_fen", "refund_count", "reversals_fen", "reversal_count", "fees_fen", "divisions_fen",
	"net_fen", "net_yuan", "held_fen", "released_fen", "payable_fen", "payable_yuan"}

func (h *Handler) statement(ctx *fasthttp.RequestCtx, c context.Context, p Principal, window string, asCSV bool) {
	st, err := h.cfg.Statements.Get(c, p.Merchant, window)
	if errors.Is(err, ErrNotFound) {
		notFound(ctx)
		return
	}
	if err != nil {
		h.internal(ctx, err)
		return
	}
	if !asCSV {
		writeJSON(ctx, fasthttp.StatusOK, st)
		return
	}
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	writeCSV(ctx, "statement-"+safeName(p.Merchant)+"-"+safeName(st.Window)+".csv", StatementCSVHeader, [][]string{{
		csvCell(st.Merchant), csvCell(st.Window), st.From.UTC().Format(time.RFC3339), st.To.UTC().Format(time.RFC3339),
		st.Status, i(st.Count), i(st.Payments), i(st.Gross), i(st.Refunds), i(st.RefundCount), i(st.Reversals),
		i(st.ReversalCount), i(st.Fees), i(st.Divisions), i(st.Net), yuan(st.Net), i(st.Held), i(st.Released),
		i(st.Payable), yuan(st.Payable)}})
}

func (h *Handler) settlementFile(ctx *fasthttp.RequestCtx, c context.Context, p Principal, window string) {
	fx, err := h.cfg.Statements.File(c, p.Merchant, window)
	if errors.Is(err, ErrNotFound) {
		notFound(ctx)
		return
	}
	if err != nil {
		h.internal(ctx, err)
		return
	}
	rows := make([][]string, len(fx.Rows))
	for i, r := range fx.Rows {
		out := make([]string, len(r))
		for j, v := range r {
			// Amounts stay as the bank's file has them ("-100"); only
			// text is kept from being read as a formula.
			if _, err := strconv.ParseInt(v, 10, 64); err == nil {
				out[j] = v
			} else {
				out[j] = csvCell(v)
			}
		}
		rows[i] = out
	}
	writeCSV(ctx, "settlement-"+safeName(p.Merchant)+"-"+safeName(window)+".csv", fx.Header, rows)
}
