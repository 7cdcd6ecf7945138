// Package gwstub owns a small in-process stand-in for the scenepay gateway,
// used to test the emulator before (and independently of) the real one: an
// embedded mochi-mqtt broker, a responder that follows the gateway contract
// (check order size -> frame -> terminal -> MAC -> decode -> topic id ->
// replay window -> idempotency -> a tiny ledger, which also serves QR
// payments with their codes' MAC, age and single use, refunds, deposits,
// insured bills and e-CNY offline payments) and the operator HTTP API
// subset the emulator calls. It keeps everything in memory and does no
// journaling; it is not a gateway, only a faithful enough counterpart for
// the emulator's tests. Knobs let a test make it misbehave so that the
// emulator's audit can be shown to catch it.
package gwstub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"scenepay/emulator/internal/wallet"
	"scenepay/internal/mochistop"
	"scenepay/terminals"
)

// Bounds of the stub.
const (
	// Window is the replay window W in txn ids, as the gateway's default.
	Window = 4096
	// RepliesMax bounds the stored replies per terminal (the window).
	RepliesMax = Window
	// BodyBytesMax bounds an operator API request body.
	BodyBytesMax = 64 << 10
)

// Knobs make the stub misbehave on purpose.
type Knobs struct {
	// ApplyDuplicates processes an exact duplicate afresh (a second debit)
	// instead of replaying the stored reply: promise 2 broken.
	ApplyDuplicates bool
}

// Options configure a stub.
type Options struct {
	Master []byte
	Topics terminals.Topics
	Token  string
	Knobs  Knobs
}

type terminal struct {
	TID        string `json:"tid"`
	Kind       string `json:"kind"`
	Merchant   string `json:"merchant"`
	KeyVersion uint32 `json:"key_version"`
	Blocked    bool   `json:"blocked"`
}

type account struct {
	Account string `json:"account"`
	Balance int64  `json:"balance"`
	Held    int64  `json:"held"`
	Avail   int64  `json:"available"`
	Blocked bool   `json:"blocked"`
	Class   int    `json:"class,omitempty"`
	floor   int64
}

type stored struct {
	hash  uint64
	class terminals.Class
	raw   []byte
	req   terminals.Request
}

type window struct {
	hwm      uint64
	replies  map[uint64]*stored
	reversed map[uint64]bool // originals reversed before they were seen
	voided   map[uint64]bool
	refunded map[uint64]int64    // qr_pay txn -> refunded so far
	deposits map[uint64]*deposit // opening hold txn -> deposit
}

// deposit is an inpatient deposit: a hold on acct, remain fen left.
type deposit struct {
	acct   string
	remain int64
}

// Stub is a running stand-in gateway.
type Stub struct {
	opts    Options
	broker  *mochi.Server
	http    *httptest.Server
	client  mqtt.Client
	brkAddr string

	mu        sync.Mutex
	terminals map[string]*terminal
	accounts  map[string]*account
	topups    map[string]bool
	windows   map[string]*window
	usedCodes map[string]bool // payment codes paid with (single use)
	unknown   int
}

// PayCodeLifetime is how long a consumer payment code verifies, as the
// gateway's default.
const PayCodeLifetime = 60 * time.Second

// ECNYSingleLimit is the stub's single-payment limit per wallet class, fen.
var ECNYSingleLimit = [5]int64{0, 5_000_000, 500_000, 200_000, 50_000}

// ECNYBalanceCap is the stub's balance cap per wallet class, fen.
var ECNYBalanceCap = [5]int64{0, 50_000_000, 1_000_000, 200_000, 100_000}

// Start runs a broker on a free loopback port, the responder and the API.
func Start(o Options) (*Stub, error) {
	if o.Topics.Root == "" {
		o.Topics = terminals.DefaultTopics
	}
	s := &Stub{
		opts: o, terminals: map[string]*terminal{}, accounts: map[string]*account{},
		topups: map[string]bool{}, windows: map[string]*window{}, usedCodes: map[string]bool{},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.brkAddr = l.Addr().String()
	l.Close()
	s.broker = mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s.broker.AddHook(new(allowAll), nil); err != nil {
		return nil, err
	}
	if err := mochistop.AddListener(s.broker, listeners.NewTCP(listeners.Config{ID: "stub", Address: s.brkAddr})); err != nil {
		return nil, err
	}
	go s.broker.Serve()
	if err := waitListening(s.brkAddr, 5*time.Second); err != nil {
		mochistop.Close(s.broker)
		return nil, err
	}
	subscribed := make(chan error, 1)
	s.client = mqtt.NewClient(mqtt.NewClientOptions().AddBroker(s.BrokerURL()).
		SetClientID("gwstub").SetCleanSession(true).SetAutoReconnect(true).
		SetOrderMatters(true).
		SetOnConnectHandler(func(c mqtt.Client) {
			t := c.Subscribe(s.opts.Topics.RequestFilter(), 1, s.handle)
			t.Wait()
			select {
			case subscribed <- t.Error():
			default:
			}
		}))
	if t := s.client.Connect(); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		mochistop.Close(s.broker)
		return nil, fmt.Errorf("gwstub: responder connect: %v", t.Error())
	}
	select {
	case err := <-subscribed:
		if err != nil {
			s.Close()
			return nil, err
		}
	case <-time.After(5 * time.Second):
		s.Close()
		return nil, errors.New("gwstub: responder subscribe timed out")
	}
	s.http = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s, nil
}

func waitListening(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gwstub: broker not listening on %s: %w", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BrokerURL is the embedded broker's URL.
func (s *Stub) BrokerURL() string { return "tcp://" + s.brkAddr }

// APIURL is the operator API base URL.
func (s *Stub) APIURL() string { return s.http.URL }

// Close stops everything.
func (s *Stub) Close() {
	if s.http != nil {
		s.http.Close()
	}
	s.client.Disconnect(100)
	mochistop.Close(s.broker)
}

// Unknown is how many requests came from unknown terminals (not answered).
func (s *Stub) Unknown() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unknown
}

type allowAll struct{ mochi.HookBase }

func (h *allowAll) ID() string { return "allow-all" }
func (h *allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (h *allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (h *allowAll) OnACLCheck(*mochi.Client, string, bool) bool              { return true }

// handle answers one request, following the gateway's check order.
func (s *Stub) handle(c mqtt.Client, m mqtt.Message) {
	tid, ok := s.opts.Topics.TerminalFromTopic(m.Topic())
	if !ok {
		return
	}
	if raw := s.answer(tid, m.Payload()); raw != nil {
		c.Publish(s.opts.Topics.Reply(tid), 1, false, raw)
	}
}

func (s *Stub) answer(tid string, p []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.terminals[tid]
	if t == nil {
		s.unknown++
		return nil
	}
	key := terminals.DeriveKey(s.opts.Master, tid, t.KeyVersion)
	now := time.Now().UnixMilli()
	var amt *int64 // reply "amt" of a scene message
	reply := func(typ string, txn uint64, code terminals.Code, bal *int64, auth string) []byte {
		r := terminals.Reply{V: 1, Type: typ, TID: tid, Txn: txn, Code: code, Bal: bal, Auth: auth, Amt: amt, GTS: now}
		return terminals.Seal(key, r.AppendJSON(nil))
	}
	body, err := terminals.Open(key, p)
	if err != nil {
		var te *terminals.Error
		errors.As(err, &te)
		return reply("", 0, te.Code, nil, "")
	}
	if t.Blocked {
		return reply("", 0, terminals.CodeTerminalBlocked, nil, "")
	}
	req, err := terminals.DecodeRequest(body)
	if err != nil {
		var te *terminals.Error
		errors.As(err, &te)
		return reply("", 0, te.Code, nil, "")
	}
	if req.TID != tid {
		return reply(req.Type, req.Txn, terminals.CodeIDMismatch, nil, "")
	}
	if req.Type == terminals.TypeHeartbeat {
		return reply(req.Type, 0, terminals.CodeApproved, nil, "")
	}
	w := s.windows[tid]
	if w == nil {
		w = &window{replies: map[uint64]*stored{}, reversed: map[uint64]bool{}, voided: map[uint64]bool{},
			refunded: map[uint64]int64{}, deposits: map[uint64]*deposit{}}
		s.windows[tid] = w
	}
	if w.hwm >= Window && req.Txn <= w.hwm-Window {
		return reply(req.Type, req.Txn, terminals.CodeReplay, nil, "")
	}
	if req.Type == terminals.TypeBalance {
		a := s.accounts[req.Inst.Key()]
		if a == nil {
			return reply(req.Type, req.Txn, terminals.CodeUnknownInstrument, nil, "")
		}
		bal := a.Balance
		return reply(req.Type, req.Txn, terminals.CodeApproved, &bal, "")
	}
	h := req.ContentHash()
	if st := w.replies[req.Txn]; st != nil {
		switch {
		case st.hash == h && !s.opts.Knobs.ApplyDuplicates:
			return st.raw
		case st.hash != h && st.class != terminals.ClassDecline:
			return reply(req.Type, req.Txn, terminals.CodeIDConflict, nil, "")
		}
	}
	code, bal, a := s.apply(w, req)
	if code.Approved() {
		amt = a
	}
	var auth string
	if code.Approved() {
		auth = "S" + strconv.FormatUint(req.Txn, 10)
	}
	raw := reply(req.Type, req.Txn, code, bal, auth)
	if len(w.replies) >= RepliesMax {
		for k := range w.replies {
			if k+Window <= w.hwm {
				delete(w.replies, k)
			}
		}
	}
	w.replies[req.Txn] = &stored{hash: h, class: code.Class(), raw: raw, req: *req}
	w.hwm = max(w.hwm, req.Txn)
	return raw
}

// apply is the stub's authorization core: balances, floors, class limits,
// reversals, QR payments and refunds, deposits. Called with s.mu held. It
// returns the code, the available balance and the reply's "amt" (scene
// messages).
func (s *Stub) apply(w *window, req *terminals.Request) (terminals.Code, *int64, *int64) {
	switch req.Type {
	case terminals.TypeQRPay, terminals.TypeRefund, terminals.TypeHold, terminals.TypeCapture, terminals.TypeRelease,
		terminals.TypeECNYOffline:
		return s.applyScene(w, req)
	}
	if req.Type == terminals.TypePurchase && req.Ins.Set {
		// An insured bill: only the self-pay is charged, and told in "amt".
		if w.reversed[req.Txn] {
			return terminals.CodeAlreadyReversed, nil, nil
		}
		self := req.Ins.Self
		if req.Ins.Pool+req.Ins.Personal+self != req.Amt || self <= 0 {
			return terminals.CodeInvalidAmount, nil, nil
		}
		c, bal := s.debit(req.Inst.Key(), self)
		return c, bal, &self
	}
	c, bal := s.applyBasic(w, req)
	return c, bal, nil
}

func (s *Stub) applyBasic(w *window, req *terminals.Request) (terminals.Code, *int64) {
	switch req.Type {
	case terminals.TypePurchase:
		if w.reversed[req.Txn] {
			return terminals.CodeAlreadyReversed, nil
		}
		a := s.accounts[req.Inst.Key()]
		if a == nil {
			return terminals.CodeUnknownInstrument, nil
		}
		if a.Blocked {
			return terminals.CodeInstrumentBlocked, nil
		}
		if a.Class >= 1 && a.Class <= 4 && req.Amt > ECNYSingleLimit[a.Class] {
			return terminals.CodeLimitSingle, nil
		}
		if a.Balance-a.Held-req.Amt < a.floor {
			return terminals.CodeInsufficientFunds, nil
		}
		a.Balance -= req.Amt
		a.Avail = a.Balance - a.Held
		bal := a.Avail
		return terminals.CodeApproved, &bal
	case terminals.TypeReversal:
		orig := w.replies[req.Orig]
		if orig == nil {
			w.reversed[req.Orig] = true
			return terminals.CodeApproved, nil
		}
		if orig.class != terminals.ClassApproved || orig.req.Type != terminals.TypePurchase {
			return terminals.CodeOriginalNotFound, nil
		}
		if w.voided[req.Orig] {
			return terminals.CodeApproved, nil
		}
		a := s.accounts[orig.req.Inst.Key()]
		if a == nil {
			return terminals.CodeOriginalNotFound, nil
		}
		w.voided[req.Orig] = true
		a.Balance += orig.req.Amt
		a.Avail = a.Balance - a.Held
		bal := a.Avail
		return terminals.CodeApproved, &bal
	}
	return terminals.CodeUnsupported, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func coded(w http.ResponseWriter, c terminals.Code, msg string) {
	writeJSON(w, c.HTTPStatus(), map[string]string{"code": string(c), "name": c.Name(), "error": msg})
}

func (s *Stub) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/readyz", "/healthz":
		io.WriteString(w, "ok\n")
		return
	case "/metrics":
		s.mu.Lock()
		fmt.Fprintf(w, "gwstub_unknown_terminal_total %d\n", s.unknown)
		s.mu.Unlock()
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.opts.Token {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "bad token"})
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, BodyBytesMax))
	s.mu.Lock()
	defer s.mu.Unlock()
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && p == "/v1/terminals":
		var t terminal
		if json.Unmarshal(body, &t) != nil || !terminals.ValidID(t.TID, terminals.MaxTerminalIDLen) {
			coded(w, terminals.CodeMalformed, "bad terminal")
			return
		}
		if _, ok := s.terminals[t.TID]; ok {
			writeJSON(w, http.StatusConflict, map[string]string{"error": "terminal exists"})
			return
		}
		if t.KeyVersion == 0 {
			t.KeyVersion = 1
		}
		s.terminals[t.TID] = &t
		writeJSON(w, http.StatusCreated, t)
	case r.Method == http.MethodGet && strings.HasPrefix(p, "/v1/terminals/"):
		t := s.terminals[strings.TrimPrefix(p, "/v1/terminals/")]
		if t == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such terminal"})
			return
		}
		writeJSON(w, http.StatusOK, t)
	case r.Method == http.MethodPost && p == "/v1/accounts":
		var in struct {
			Inst    terminals.Instrument `json:"inst"`
			Class   int                  `json:"class"`
			Floor   int64                `json:"floor"`
			Balance int64                `json:"balance"`
		}
		if json.Unmarshal(body, &in) != nil || in.Balance < 0 || in.Class < 0 || in.Class > 4 {
			coded(w, terminals.CodeMalformed, "bad account")
			return
		}
		k := in.Inst.Key()
		if _, ok := s.accounts[k]; ok {
			writeJSON(w, http.StatusConflict, map[string]string{"error": "account exists"})
			return
		}
		if in.Class > 0 && in.Balance > ECNYBalanceCap[in.Class] {
			coded(w, terminals.CodeLimitBalance, "above the class balance cap")
			return
		}
		a := &account{Account: k, Balance: in.Balance, Avail: in.Balance, Class: in.Class, floor: in.Floor}
		s.accounts[k] = a
		writeJSON(w, http.StatusCreated, a)
	case strings.HasPrefix(p, "/v1/accounts/"):
		key, op, _ := strings.Cut(strings.TrimPrefix(p, "/v1/accounts/"), "/")
		a := s.accounts[key]
		if a == nil {
			coded(w, terminals.CodeUnknownInstrument, "no such account")
			return
		}
		switch {
		case op == "" && r.Method == http.MethodGet:
			writeJSON(w, http.StatusOK, a)
		case op == "topup" && r.Method == http.MethodPost:
			var in struct {
				Amt int64  `json:"amt"`
				Ref string `json:"ref"`
			}
			if json.Unmarshal(body, &in) != nil || in.Amt <= 0 || in.Amt > terminals.MaxAmount {
				coded(w, terminals.CodeInvalidAmount, "bad amount")
				return
			}
			if !s.topups[in.Ref] {
				if a.Class > 0 && a.Balance+in.Amt > ECNYBalanceCap[a.Class] {
					coded(w, terminals.CodeLimitBalance, "above the class balance cap")
					return
				}
				s.topups[in.Ref] = true
				a.Balance += in.Amt
				a.Avail = a.Balance - a.Held
			}
			writeJSON(w, http.StatusOK, a)
		case op == "block" && r.Method == http.MethodPost:
			var in struct {
				Blocked bool `json:"blocked"`
			}
			json.Unmarshal(body, &in)
			a.Blocked = in.Blocked
			writeJSON(w, http.StatusOK, a)
		default:
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such route"})
		}
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such route"})
	}
}

// debit takes amt from acct within its floor and class limit.
func (s *Stub) debit(acct string, amt int64) (terminals.Code, *int64) {
	a := s.accounts[acct]
	switch {
	case a == nil:
		return terminals.CodeUnknownInstrument, nil
	case a.Blocked:
		return terminals.CodeInstrumentBlocked, nil
	case a.Class >= 1 && a.Class <= 4 && amt > ECNYSingleLimit[a.Class]:
		return terminals.CodeLimitSingle, nil
	case a.Balance-a.Held-amt < a.floor:
		return terminals.CodeInsufficientFunds, nil
	}
	a.Balance -= amt
	a.Avail = a.Balance - a.Held
	bal := a.Avail
	return terminals.CodeApproved, &bal
}

// applyScene serves the market and hospital messages in the stub's small
// way: a qr_pay's code is checked by re-issuing it under the issuer key
// (MAC), its age and single use; a refund returns at most what is left of
// its qr_pay; a deposit is a hold on the account, captured oldest first.
func (s *Stub) applyScene(w *window, req *terminals.Request) (terminals.Code, *int64, *int64) {
	amt := req.Amt
	switch req.Type {
	case terminals.TypeQRPay:
		in, ok := wallet.Decode(req.PayCode)
		if !ok {
			return terminals.CodePayCodeInvalid, nil, nil
		}
		good, err := wallet.Issue(wallet.IssuerKey(s.opts.Master, in.KeyID), in.KeyID, in.Account, in.Class, time.Unix(in.At, 0), in.Nonce)
		switch {
		case err != nil || good != req.PayCode:
			return terminals.CodePayCodeInvalid, nil, nil
		case time.Since(time.Unix(in.At, 0)) >= PayCodeLifetime:
			return terminals.CodePayCodeExpired, nil, nil
		case s.usedCodes[req.PayCode]:
			return terminals.CodePayCodeReused, nil, nil
		}
		c, bal := s.debit(in.Account, amt)
		if c.Approved() {
			s.usedCodes[req.PayCode] = true
		}
		return c, bal, &amt
	case terminals.TypeRefund:
		orig := w.replies[req.Orig]
		if orig == nil || orig.class != terminals.ClassApproved || orig.req.Type != terminals.TypeQRPay {
			return terminals.CodeOriginalNotFound, nil, nil
		}
		if in, _ := wallet.Decode(orig.req.PayCode); in.Account != req.Inst.Key() {
			return terminals.CodeOriginalNotFound, nil, nil
		}
		if w.refunded[req.Orig]+amt > orig.req.Amt {
			return terminals.CodeRefundExceeds, nil, nil
		}
		a := s.accounts[req.Inst.Key()]
		w.refunded[req.Orig] += amt
		a.Balance += amt
		a.Avail = a.Balance - a.Held
		bal := a.Avail
		return terminals.CodeApproved, &bal, &amt
	case terminals.TypeECNYOffline:
		if req.Inst.Kind != terminals.InstECNY {
			return terminals.CodeMalformed, nil, nil
		}
		c, bal := s.debit(req.Inst.Key(), amt)
		return c, bal, &amt
	}
	// Deposits.
	a := s.accounts[req.Inst.Key()]
	if a == nil {
		return terminals.CodeUnknownInstrument, nil, nil
	}
	d := w.deposits[req.Orig]
	if req.Type == terminals.TypeHold && req.Orig == 0 {
		d = &deposit{acct: req.Inst.Key()}
		w.deposits[req.Txn] = d
	} else if d == nil || d.acct != req.Inst.Key() {
		return terminals.CodeOriginalNotFound, nil, nil
	}
	switch req.Type {
	case terminals.TypeHold:
		if a.Balance-a.Held-amt < a.floor {
			if req.Orig == 0 {
				delete(w.deposits, req.Txn)
			}
			return terminals.CodeInsufficientFunds, nil, nil
		}
		a.Held += amt
		d.remain += amt
	case terminals.TypeCapture, terminals.TypeRelease:
		if amt > d.remain {
			return terminals.CodeInsufficientFunds, nil, nil
		}
		a.Held -= amt
		a.Balance -= amt
		d.remain -= amt
		if req.Type == terminals.TypeRelease {
			a.Held -= d.remain
			d.remain = 0
			delete(w.deposits, req.Orig)
		}
	}
	a.Avail = a.Balance - a.Held
	bal, rem := a.Avail, d.remain
	return terminals.CodeApproved, &bal, &rem
}
