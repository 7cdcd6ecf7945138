package merchant

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"scenepay/settlement/store/pgtest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

// Test data. day is 2026-03-01 in Asia/Shanghai; the clock stands at
// 18:00 that day. Merchant A has 30 rows that day, merchant B one row on
// 2026-02-27 and four on 2026-03-01.
const (
	mA = "M-A"
	mB = "M-B"
)

var (
	day   = time.Date(2026, 3, 1, 8, 0, 0, 0, Shanghai)
	clock = func() time.Time { return time.Date(2026, 3, 1, 18, 0, 0, 0, Shanghai) }
)

func row(lsn uint64, at time.Time, merchant, scene, terminal, op string, amount int64) handoff.Txn {
	var orig uint64
	if op == handoff.OpRefund || op == handoff.OpReversal {
		orig = lsn - 1
	}
	return handoff.Txn{Source: "gw1", LSN: lsn, At: at.UTC(), Merchant: merchant, Terminal: terminal, Scene: scene,
		Op: op, InstKind: "county", Account: "county:C-" + string(rune('0'+lsn%10)) + "123", Amount: amount,
		Auth: "A" + string(rune('a'+lsn%26)), Txn: lsn, Orig: orig}
}

func dataset() *handoff.Batch {
	var rows []handoff.Txn
	rows = append(rows, row(1, day.AddDate(0, 0, -2), mB, handoff.SceneStall, "STALL-B", handoff.OpPurchase, 500))
	for l := uint64(2); l <= 29; l++ {
		if l%2 == 0 {
			rows = append(rows, row(l, day.Add(time.Duration(l)*time.Second), mA, handoff.SceneBus, "BUS-1", handoff.OpPurchase, 100))
		} else {
			rows = append(rows, row(l, day.Add(time.Duration(l)*time.Second), mA, handoff.SceneStall, "STALL-9", handoff.OpPurchase, 100))
		}
	}
	rows = append(rows, row(30, day.Add(30*time.Second), mA, handoff.SceneStall, "STALL-9", handoff.OpRefund, -100))
	rows = append(rows, row(31, day.Add(31*time.Second), mA, handoff.SceneBus, "BUS-1", handoff.OpReversal, -100))
	for l := uint64(32); l <= 35; l++ {
		rows = append(rows, row(l, day.Add(time.Duration(l)*time.Second), mB, handoff.SceneKiosk, "KIOSK-1", handoff.OpPurchase, 700))
	}
	return &handoff.Batch{ID: handoff.BatchID("gw1", 1, 35), Source: "gw1", FirstLSN: 1, LastLSN: 35,
		Watermark: day.Add(time.Minute).UTC(), Rows: rows}
}

// env is one backend with the dataset, keys for A and B, and a server.
type env struct {
	t     *testing.T
	st    store.Store
	keys  *Keys
	h     *Handler
	base  string
	keyA  string
	keyB  string
	idA   string
	extra atomic.Pointer[func(ctx *fasthttp.RequestCtx) bool] // test-only routes, tried first
}

type backend struct {
	name string
	open func(t *testing.T) (store.Store, *Keys)
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T) (store.Store, *Keys) {
			path := t.TempDir() + "/settlement.db"
			st, err := store.OpenSQLite(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			k, err := OpenKeysSQLite(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			return st, k
		}},
		{"postgres", func(t *testing.T) (store.Store, *Keys) {
			u := pgtest.Schema(t, "merchant")
			st, err := store.OpenPostgres(context.Background(), u)
			if err != nil {
				t.Fatal(err)
			}
			k, err := OpenKeysPostgres(context.Background(), u)
			if err != nil {
				t.Fatal(err)
			}
			return st, k
		}},
	}
}

func newEnv(t *testing.T, b backend) *env {
	t.Helper()
	ctx := context.Background()
	st, keys := b.open(t)
	if _, err := st.Ingest(ctx, dataset()); err != nil {
		t.Fatal(err)
	}
	keys.clock = clock
	e := &env{t: t, st: st, keys: keys}
	ia, err := keys.Issue(ctx, mA, "test")
	if err != nil {
		t.Fatal(err)
	}
	ib, err := keys.Issue(ctx, mB, "")
	if err != nil {
		t.Fatal(err)
	}
	e.keyA, e.keyB, e.idA = ia.Key, ib.Key, ia.ID
	e.h, err = New(Config{Store: st, Keys: keys, Clock: clock, Statements: &StoreStatements{Store: st, Clock: clock}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if x := e.extra.Load(); x != nil && (*x)(ctx) {
			return
		}
		e.h.Handle(ctx)
	}}
	go srv.Serve(ln)
	e.base = "http://" + ln.Addr().String()
	t.Cleanup(func() {
		srv.Shutdown()
		keys.Close()
		st.Close()
	})
	return e
}

// response is what a client can observe, minus the Date header.
type response struct {
	status int
	header http.Header
	body   []byte
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (e *env) do(method, path, key string, body url.Values, cookie string) response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(body.Encode())
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if cookie != "" {
		req.Header.Set("Cookie", SessionCookie+"="+cookie)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Header.Del("Date")
	return response{resp.StatusCode, resp.Header, b}
}

func (e *env) get(path, key string) response { return e.do("GET", path, key, nil, "") }

func (e *env) getJSON(path, key string, v any) {
	e.t.Helper()
	r := e.get(path, key)
	if r.status != 200 {
		e.t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
}

func eachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { fn(t, newEnv(t, b)) })
	}
}

func TestAuth(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		ok := e.get("/m/v1/transactions", e.keyA)
		if ok.status != 200 {
			t.Fatalf("valid key: %d %s", ok.status, ok.body)
		}
		missing := e.get("/m/v1/transactions", "")
		if missing.status != 401 || !strings.Contains(string(missing.body), "UNAUTHORIZED") {
			t.Fatalf("missing key: %d %s", missing.status, missing.body)
		}
		// Same id, wrong secret: must fail even though the id exists.
		wrong := e.keyA[:len(e.keyA)-4] + "AAAA"
		if wrong == e.keyA {
			wrong = e.keyA[:len(e.keyA)-4] + "BBBB"
		}
		w := e.get("/m/v1/transactions", wrong)
		garbage := e.get("/m/v1/transactions", "not-a-key")
		unknown := e.get("/m/v1/transactions", "spm_0000000000000000_"+strings.Repeat("A", 43))
		for name, r := range map[string]response{"wrong": w, "garbage": garbage, "unknown": unknown} {
			if r.status != 401 {
				t.Errorf("%s key: status %d", name, r.status)
			}
		}
		if err := e.keys.Revoke(context.Background(), e.idA); err != nil {
			t.Fatal(err)
		}
		revoked := e.get("/m/v1/transactions", e.keyA)
		if revoked.status != 401 {
			t.Fatalf("revoked key: %d", revoked.status)
		}
		// A revoked key looks exactly like a wrong one.
		if !reflect.DeepEqual(revoked, w) {
			t.Errorf("revoked and wrong key answers differ:\n%v\n%v", revoked, w)
		}
		if err := e.keys.Revoke(context.Background(), "ffffffffffffffff"); err != ErrKeyNotFound {
			t.Errorf("revoke unknown id: %v", err)
		}
		if e.get("/m/v1/transactions", e.keyB).status != 200 {
			t.Error("B's key stopped working when A's was revoked")
		}
	})
}

func TestKeysStoredHashed(t *testing.T) {
	path := t.TempDir() + "/keys.db"
	keys, err := OpenKeysSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	ia, err := keys.Issue(context.Background(), mA, "till 1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Authenticate(context.Background(), ia.Key); err != nil {
		t.Fatal(err)
	}
	e := &env{keys: keys, keyA: ia.Key, idA: ia.ID}
	secret := ia.Key[len(ia.Key)-43:]
	for _, f := range []string{path, path + "-wal"} {
		raw, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), secret) || strings.Contains(string(raw), secret[:20]) {
			t.Fatalf("the key's secret is in %s", f)
		}
	}
	sk := e.keys.db.(*sqliteKeys)
	r, found, err := sk.lookup(context.Background(), e.idA)
	if err != nil || !found {
		t.Fatal(found, err)
	}
	if strings.Contains(string(r.hash), e.keyA) || len(r.hash) != 32 || len(r.salt) != keySaltLen {
		t.Fatalf("stored row is not a salted hash: %d-byte hash, %d-byte salt", len(r.hash), len(r.salt))
	}
	for i := 0; i < KeysPerMerchantMax-1; i++ {
		if _, err := e.keys.Issue(context.Background(), mA, ""); err != nil {
			t.Fatal(i, err)
		}
	}
	if _, err := e.keys.Issue(context.Background(), mA, ""); err != ErrKeyLimit {
		t.Fatalf("issue beyond the bound: %v", err)
	}
}

func lsns(p TxnPage) []uint64 {
	var out []uint64
	for _, r := range p.Rows {
		out = append(out, r.LSN)
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for l := from; l <= to; l++ {
		out = append(out, l)
	}
	return out
}

func TestPagination(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		var got []uint64
		path := "/m/v1/transactions?limit=7"
		pages := 0
		for {
			var p TxnPage
			e.getJSON(path, e.keyA, &p)
			pages++
			if len(p.Rows) > 7 {
				t.Fatalf("page of %d rows with limit 7", len(p.Rows))
			}
			got = append(got, lsns(p)...)
			if p.Next == "" {
				break
			}
			if pages > 10 {
				t.Fatal("pagination does not end")
			}
			path = "/m/v1/transactions?limit=7&cursor=" + url.QueryEscape(p.Next)
		}
		if want := seq(2, 31); !reflect.DeepEqual(got, want) {
			t.Fatalf("A's rows over pages:\n got %v\nwant %v", got, want)
		}
		if pages != 5 {
			t.Errorf("pages = %d, want 5", pages)
		}
		if r := e.get("/m/v1/transactions?cursor=%21%21", e.keyA); r.status != 400 {
			t.Errorf("bad cursor: %d %s", r.status, r.body)
		}
	})
}

func TestFilters(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		var bus []uint64
		for l := uint64(2); l <= 28; l += 2 {
			bus = append(bus, l)
		}
		cases := []struct {
			query string
			key   string
			want  []uint64
		}{
			{"scene=bus&op=purchase", e.keyA, bus},
			{"terminal=STALL-9&op=refund", e.keyA, []uint64{30}},
			{"status=reversal", e.keyA, []uint64{31}},
			{"op=debt_recovery", e.keyA, nil},
			{"scene=kiosk", e.keyA, nil},
			{"from=2026-02-27&to=2026-02-27", e.keyA, nil},
			{"from=2026-02-27&to=2026-02-27", e.keyB, []uint64{1}},
			{"from=2026-03-01", e.keyB, seq(32, 35)},
			{"to=2026-02-28", e.keyB, []uint64{1}},
			{"from=" + url.QueryEscape(day.Add(10*time.Second).Format(time.RFC3339)) + "&to=" +
				url.QueryEscape(day.Add(13*time.Second).Format(time.RFC3339)), e.keyA, seq(10, 12)},
		}
		for _, c := range cases {
			var p TxnPage
			e.getJSON("/m/v1/transactions?"+c.query, c.key, &p)
			if got := lsns(p); !reflect.DeepEqual(got, c.want) {
				t.Errorf("%s: got %v, want %v", c.query, got, c.want)
			}
		}
		for _, q := range []string{"scene=train", "op=topup", "from=yesterday", "limit=0", "limit=1001",
			"merchant=M-B", "from=2026-03-02&to=2026-03-01"} {
			r := e.get("/m/v1/transactions?"+q, e.keyA)
			if r.status != 400 || !strings.Contains(string(r.body), "BAD_QUERY") {
				t.Errorf("%s: %d %s", q, r.status, r.body)
			}
		}
		// The view never carries the whole account.
		var p TxnPage
		e.getJSON("/m/v1/transactions?limit=1", e.keyA, &p)
		if len(p.Rows) != 1 || p.Rows[0].Account != "2123" || p.Rows[0].Amount != 100 {
			t.Errorf("first row: %+v", p.Rows)
		}
	})
}

func readCSV(t *testing.T, r response) [][]string {
	t.Helper()
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV answer: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	recs, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestCSV(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		recs := readCSV(t, e.get("/m/v1/transactions.csv?limit=4", e.keyA))
		if !reflect.DeepEqual(recs[0], TxnCSVHeader) || len(recs) != 31 {
			t.Fatalf("transactions.csv: %d records, header %v", len(recs), recs[0])
		}
		want := []string{day.Add(30 * time.Second).UTC().Format(time.RFC3339Nano), day.Add(30 * time.Second).Format(time.RFC3339Nano),
			"gw1", "30", "STALL-9", "stall", "refund", "county", "0123", "-100", "-1.00", "Ae", "30", "29"}
		if !reflect.DeepEqual(recs[29], want) {
			t.Errorf("refund line:\n got %q\nwant %q", recs[29], want)
		}
		recs = readCSV(t, e.get("/m/v1/statements/2026-03-01.csv", e.keyA))
		if len(recs) != 2 || !reflect.DeepEqual(recs[0], StatementCSVHeader) {
			t.Fatalf("statement csv: %q", recs)
		}
		got := map[string]string{}
		for i, h := range recs[0] {
			got[h] = recs[1][i]
		}
		for k, v := range map[string]string{"merchant": mA, "window": "2026-03-01", "count": "30", "payments": "28",
			"gross_fen": "2800", "refunds_fen": "-100", "reversals_fen": "-100", "net_fen": "2600", "net_yuan": "26.00",
			"status": "OPEN", "from_utc": "2026-02-28T15:00:00Z", "to_utc": "2026-03-01T15:00:00Z"} {
			if got[k] != v {
				t.Errorf("statement csv %s = %q, want %q", k, got[k], v)
			}
		}
		recs = readCSV(t, e.get("/m/v1/settlement-file/2026-03-01", e.keyB))
		if len(recs) != 2 || recs[1][1] != mB || recs[1][3] != "2800" {
			t.Errorf("B's settlement file: %q", recs)
		}
		for _, rec := range recs[1:] {
			if rec[1] != mB {
				t.Errorf("B's settlement file has a line of %s", rec[1])
			}
		}
	})
}

func TestStatements(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		var la, lb struct{ Statements []Statement }
		e.getJSON("/m/v1/statements", e.keyA, &la)
		e.getJSON("/m/v1/statements", e.keyB, &lb)
		if len(la.Statements) != 1 || la.Statements[0].Window != "2026-03-01" || la.Statements[0].Net != 2600 {
			t.Errorf("A's statements: %+v", la.Statements)
		}
		if len(lb.Statements) != 2 || lb.Statements[0].Window != "2026-03-01" || lb.Statements[1].Window != "2026-02-27" ||
			lb.Statements[1].Gross != 500 || lb.Statements[1].Status != "CLOSED" {
			t.Errorf("B's statements: %+v", lb.Statements)
		}
		var st Statement
		e.getJSON("/m/v1/statements/2026-03-01", e.keyB, &st)
		if st.Merchant != mB || st.Count != 4 || st.Gross != 2800 || st.Net != 2800 {
			t.Errorf("B's statement: %+v", st)
		}
	})
}

// TestIsolation: another merchant's window answers exactly like a window
// that exists for nobody, on every endpoint that takes a window.
func TestIsolation(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		for _, p := range []string{"/m/v1/statements/%s", "/m/v1/statements/%s.csv", "/m/v1/settlement-file/%s"} {
			theirs := e.get(strings.Replace(p, "%s", "2026-02-27", 1), e.keyA) // B's only
			missing := e.get(strings.Replace(p, "%s", "2026-02-26", 1), e.keyA)
			garbage := e.get(strings.Replace(p, "%s", "..%2Fetc", 1), e.keyA)
			future := e.get(strings.Replace(p, "%s", "2026-03-05", 1), e.keyA)
			if theirs.status != 404 {
				t.Errorf("%s: another merchant's window answered %d %s", p, theirs.status, theirs.body)
			}
			for name, r := range map[string]response{"missing": missing, "garbage": garbage, "future": future} {
				if !reflect.DeepEqual(theirs, r) {
					t.Errorf("%s: another merchant's window differs from a %s one:\n%d %v %q\n%d %v %q", p, name,
						theirs.status, theirs.header, theirs.body, r.status, r.header, r.body)
				}
			}
			if own := e.get(strings.Replace(p, "%s", "2026-02-27", 1), e.keyB); own.status != 200 {
				t.Errorf("%s: B's own window: %d", p, own.status)
			}
		}
		// A query naming another merchant is refused; a cursor from B's
		// listing only positions A's own listing.
		var pb TxnPage
		e.getJSON("/m/v1/transactions?limit=1", e.keyB, &pb)
		var pa TxnPage
		e.getJSON("/m/v1/transactions?cursor="+url.QueryEscape(pb.Next), e.keyA, &pa)
		for _, r := range pa.Rows {
			if r.LSN == 1 || r.LSN >= 32 {
				t.Errorf("A's listing with B's cursor shows B's row %d", r.LSN)
			}
		}
	})
}

func TestMoney(t *testing.T) {
	for fen, want := range map[int64]string{0: "0.00", 5: "0.05", -5: "-0.05", 100: "1.00", -12345: "-123.45",
		9223372036854775807: "92233720368547758.07", -9223372036854775808: "-92233720368547758.08"} {
		if got := yuan(fen); got != want {
			t.Errorf("yuan(%d) = %q, want %q", fen, got, want)
		}
	}
}
