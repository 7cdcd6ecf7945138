package market

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"scenepay/gateway/internal/scene/scenescript"
	"scenepay/terminals"
)

// The scenario runner reads testdata/*.txt, one command per line:
//
//	config key=value ...                 fee_ratio, limit_a..limit_d (CNY), code_lifetime, skew,
//	                                     dynamic_lifetime (seconds), used_codes_max, payments_max, refunds_max,
//	                                     stall_codes_max
//	key ID SECRET                        an issuer key of the wallet app
//	stall ID merchant=M [business]       onboard a stall
//	stallcode ID stall=S static|dynamic personal|business [-> ok | -> error]
//	customer ID [agreed_a=CNY]           open the customer's PBoC counters
//	at TIME issue ACCOUNT class=B as=NAME [key=1] [nonce=N] [issued=TIME]
//	at TIME tamper NAME as=NAME2         flip one character of the MAC part
//	at TIME scan NAME stall=S amount=CNY id=PAYID        -> approve class=B stall=.. operator=.. | decline NAME
//	at TIME pay ACCOUNT code=Q verified=B amount=CNY id=PAYID [remote] [shown=TIME] -> ...
//	at TIME refund PAYID id=RID amount=CNY              -> refund CNY stall=.. operator=.. [duplicate] | decline NAME
//	at TIME register ID stall=S static|dynamic personal|business [amount=CNY ttl=SECONDS] -> ok | error NAME
//	at TIME revoke ID                    -> ok | unchanged | error NAME
//	at TIME walletpay ACCOUNT code=Q verified=B [amount=CNY] id=PAYID [remote] -> approve ... | decline NAME
//	                                     (the lifecycle: Authorize, the limit, then MarkPaid)
//	restart                              encode every state, decode into fresh values, continue
//	expect ACCOUNT A=CNY B=CNY C=CNY D=CNY   (today's spent by class, as of the last "at")
//	expect payment PAYID refunded=CNY
//	expect used=N payments=N
//
// "-> outcome" is compared exactly (spaces normalised); "#" starts a comment.

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScenario(t, f) })
	}
}

type scenario struct {
	t         *testing.T
	file      string
	line      int
	cfg       Config
	rules     *Rules
	keys      map[uint8][]byte
	verifier  *Verifier
	used      *UsedCodes
	ledger    *Ledger
	reg       *Registry
	customers map[string]*Customer
	codes     map[string]string
	now       time.Time
	started   bool
}

func (s *scenario) fatalf(format string, a ...any) {
	s.t.Fatalf("%s:%d: %s", s.file, s.line, fmt.Sprintf(format, a...))
}

func runScenario(t *testing.T, path string) {
	s := &scenario{t: t, file: path, cfg: DefaultConfig(), keys: map[uint8][]byte{},
		customers: map[string]*Customer{}, codes: map[string]string{}}
	scenescript.Run(t, path, func(line int, f []string) string { s.line = line; return s.exec(f) })
}

func (s *scenario) start() {
	if s.started {
		return
	}
	r, err := NewRules(s.cfg)
	if err != nil {
		s.fatalf("config: %v", err)
	}
	s.rules, s.started = r, true
	s.verifier = NewVerifier(s.keys)
	s.used = NewUsedCodes(s.cfg.UsedCodesMax)
	s.ledger = NewLedger(r)
	s.reg = NewRegistry(r)
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04Z07:00", time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("bad time %q", s)
}

func (s *scenario) cny(kv map[string]string, k string) int64 {
	v, ok := kv[k]
	if !ok {
		s.fatalf("missing %s=", k)
	}
	f, err := scenescript.ParseCNY(v)
	if err != nil {
		s.fatalf("%v", err)
	}
	return f
}

func (s *scenario) num(v string) int64 {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		s.fatalf("bad number %q", v)
	}
	return n
}

// codeName names a code for the scripts, including this package's local codes.
func codeName(c terminals.Code) string {
	switch c {
	case CodePayCodeInvalid:
		return "PAYCODE_INVALID"
	case CodePayCodeExpired:
		return "PAYCODE_EXPIRED"
	case CodePayCodeReused:
		return "PAYCODE_REUSED"
	case CodeRemoteStatic:
		return "QR_REMOTE_REFUSED"
	case CodeRefundExceeds:
		return "REFUND_EXCEEDS"
	}
	return c.Name()
}

func decline(err error) string { return "decline " + codeName(CodeOf(err)) }

func (s *scenario) exec(f []string) string {
	switch f[0] {
	case "config":
		if s.started {
			s.fatalf("config after the first event")
		}
		kv, _ := scenescript.Args(f[1:])
		for k, v := range kv {
			switch k {
			case "fee_ratio":
				d, err := decimal.NewFromString(v)
				if err != nil {
					s.fatalf("fee_ratio: %v", err)
				}
				s.cfg.FeeRatio = d
			case "limit_a", "limit_b", "limit_c", "limit_d":
				fen := s.cny(kv, k)
				*map[string]*int64{"limit_a": &s.cfg.LimitAFen, "limit_b": &s.cfg.LimitBFen,
					"limit_c": &s.cfg.LimitCFen, "limit_d": &s.cfg.LimitDFen}[k] = fen
			case "code_lifetime":
				s.cfg.CodeLifetimeSeconds = s.num(v)
			case "skew":
				s.cfg.CodeSkewSeconds = s.num(v)
			case "dynamic_lifetime":
				s.cfg.DynamicCodeLifetimeSeconds = s.num(v)
			case "used_codes_max":
				s.cfg.UsedCodesMax = int(s.num(v))
			case "payments_max":
				s.cfg.PaymentsMax = int(s.num(v))
			case "refunds_max":
				s.cfg.RefundsPerPaymentMax = int(s.num(v))
			case "stall_codes_max":
				s.cfg.StallCodesMax = int(s.num(v))
			default:
				s.fatalf("unknown config key %q", k)
			}
		}
		return "ok"
	case "key":
		if s.started || len(f) != 3 {
			s.fatalf("key ID SECRET, before the first event")
		}
		s.keys[uint8(s.num(f[1]))] = []byte(f[2])
		return "ok"
	}
	s.start()
	switch f[0] {
	case "stall":
		kv, flags := scenescript.Args(f[2:])
		if err := s.reg.AddStall(Stall{ID: f[1], Merchant: kv["merchant"], Business: flags["business"]}); err != nil {
			return "error " + err.Error()
		}
		return "ok"
	case "stallcode":
		kv, flags := scenescript.Args(f[2:])
		err := s.reg.AddCode(StallCode{ID: f[1], Stall: kv["stall"], Dynamic: flags["dynamic"], Business: flags["business"]})
		if err != nil {
			return "error " + codeName(CodeOf(err))
		}
		return "ok"
	case "customer":
		kv, _ := scenescript.Args(f[2:])
		c := &Customer{}
		if _, ok := kv["agreed_a"]; ok {
			c.AgreedA = s.cny(kv, "agreed_a")
		}
		s.customers[f[1]] = c
		return "ok"
	case "restart":
		return s.restart()
	case "expect":
		return s.expect(f[1:])
	case "at":
		if len(f) < 3 {
			s.fatalf("at TIME COMMAND ...")
		}
		now, err := parseTime(f[1])
		if err != nil {
			s.fatalf("%v", err)
		}
		s.now = now
		return s.event(f[2], f[3:])
	}
	s.fatalf("unknown command %q", f[0])
	return ""
}

func (s *scenario) event(cmd string, f []string) string {
	kv, flags := scenescript.Args(f)
	switch cmd {
	case "issue":
		class, ok := ParseClass(kv["class"])
		if !ok || len(f) < 1 {
			s.fatalf("issue ACCOUNT class=A|B|C as=NAME")
		}
		key := uint8(1)
		if v, ok := kv["key"]; ok {
			key = uint8(s.num(v))
		}
		issued := s.now
		if v, ok := kv["issued"]; ok {
			var err error
			if issued, err = parseTime(v); err != nil {
				s.fatalf("%v", err)
			}
		}
		nonce := uint64(s.line)
		if v, ok := kv["nonce"]; ok {
			nonce = uint64(s.num(v))
		}
		secret := s.keys[key]
		if secret == nil {
			secret = []byte("not-the-issuer")
		}
		code, err := Issue(secret, key, f[0], class, issued, nonce)
		if err != nil {
			return "error " + codeName(CodeOf(err))
		}
		s.codes[kv["as"]] = code
		return "ok"
	case "tamper":
		code := s.codes[f[0]]
		b := []byte(code)
		i := len(b) - 3
		b[i] = b32[(strings.IndexByte(b32, b[i])+1)%32]
		s.codes[kv["as"]] = string(b)
		return "ok"
	case "scan":
		code, ok := s.codes[f[0]]
		if !ok {
			code = f[0] // a literal code
		}
		return s.scan(code, kv)
	case "pay":
		return s.payMerchantCode(f[0], kv, flags)
	case "refund":
		return s.refund(f[0], kv)
	case "register":
		c := StallCode{ID: f[0], Stall: kv["stall"], Dynamic: flags["dynamic"], Business: flags["business"]}
		if c.Dynamic {
			c.Amount = s.cny(kv, "amount")
			c.Expires = s.now.UnixMilli() + s.num(kv["ttl"])*1000
		}
		if err := s.reg.Register(c, s.now); err != nil {
			return "error " + codeName(CodeOf(err))
		}
		return "ok"
	case "revoke":
		_, changed, err := s.reg.Revoke(f[0], s.now)
		switch {
		case err != nil:
			return "error " + codeName(CodeOf(err))
		case !changed:
			return "unchanged"
		}
		return "ok"
	case "walletpay":
		return s.walletPay(f[0], kv, flags)
	}
	s.fatalf("unknown event %q", cmd)
	return ""
}

func (s *scenario) stall(kv map[string]string) Stall {
	st, ok := s.reg.Stall(kv["stall"])
	if !ok {
		s.fatalf("unknown stall %q", kv["stall"])
	}
	return st
}

// scan is a stall terminal scanning the customer's dynamic payment code.
func (s *scenario) scan(code string, kv map[string]string) string {
	amount, st := s.cny(kv, "amount"), s.stall(kv)
	pc, err := s.verifier.Verify(s.rules, s.used, code, s.now)
	if err != nil {
		return decline(err)
	}
	acct := pc.Account()
	c, ok := s.customers[acct]
	if !ok {
		return "decline " + codeName(terminals.CodeUnknownInstrument)
	}
	if err := s.rules.Check(c, pc.Class, amount, s.now); err != nil {
		return decline(err)
	}
	split, err := s.rules.SplitPayment(kv["id"], st.Merchant, amount)
	if err != nil {
		return decline(err)
	}
	// The core debit would run here; every effect below follows its approval.
	if err := s.used.Add(s.rules, &pc, s.now.Unix()); err != nil {
		s.fatalf("Add after Verify: %v", err)
	}
	return s.commit(acct, c, pc.Class, amount, split)
}

func (s *scenario) commit(acct string, c *Customer, class Class, amount int64, split Split) string {
	if err := s.rules.Apply(c, class, amount, s.now); err != nil {
		s.fatalf("Apply after Check: %v", err)
	}
	if err := s.ledger.Record(Payment{ID: split.Link, Account: acct, StallMerchant: split.Stall.Merchant,
		Class: class, Amount: amount, Operator: split.Operator.Amount, PaidAt: s.now}); err != nil {
		return "error " + err.Error()
	}
	if split.Stall.Amount+split.Operator.Amount != amount {
		s.fatalf("legs %d + %d != %d", split.Stall.Amount, split.Operator.Amount, amount)
	}
	return fmt.Sprintf("approve class=%s stall=%s operator=%s", class, scenescript.FormatCNY(split.Stall.Amount), scenescript.FormatCNY(split.Operator.Amount))
}

// payMerchantCode is the customer scanning a stall's code with the bank app.
func (s *scenario) payMerchantCode(acct string, kv map[string]string, flags map[string]bool) string {
	amount := s.cny(kv, "amount")
	sc, ok := s.reg.Code(kv["code"])
	if !ok {
		return "decline " + codeName(ErrUnknownStallCode.Code)
	}
	st, _ := s.reg.Stall(sc.Stall)
	verified, _ := ParseClass(kv["verified"])
	scan := Scan{Verified: verified, Remote: flags["remote"], ShownAt: s.now}
	if v, ok := kv["shown"]; ok {
		var err error
		if scan.ShownAt, err = parseTime(v); err != nil {
			s.fatalf("%v", err)
		}
	}
	class, err := s.rules.ClassFor(&sc, scan, s.now)
	if err != nil {
		return decline(err)
	}
	c, ok := s.customers[acct]
	if !ok {
		return "decline " + codeName(terminals.CodeUnknownInstrument)
	}
	if err := s.rules.Check(c, class, amount, s.now); err != nil {
		return decline(err)
	}
	split, err := s.rules.SplitPayment(kv["id"], st.Merchant, amount)
	if err != nil {
		return decline(err)
	}
	return s.commit(acct, c, class, amount, split)
}

// walletPay is a wallet's payment through a registered stall code, as the
// gateway runs it: Authorize, the customer's class limit, the split, and
// on approval the code used up.
func (s *scenario) walletPay(acct string, kv map[string]string, flags map[string]bool) string {
	var amount int64
	if _, ok := kv["amount"]; ok {
		amount = s.cny(kv, "amount")
	}
	verified, _ := ParseClass(kv["verified"])
	sc, class, amount, err := s.reg.Authorize(s.rules, kv["code"], amount, Scan{Verified: verified, Remote: flags["remote"]}, s.now)
	if err != nil {
		return decline(err)
	}
	c, ok := s.customers[acct]
	if !ok {
		return "decline " + codeName(terminals.CodeUnknownInstrument)
	}
	if err := s.rules.Check(c, class, amount, s.now); err != nil {
		return decline(err)
	}
	st, _ := s.reg.Stall(sc.Stall)
	split, err := s.rules.SplitPayment(kv["id"], st.Merchant, amount)
	if err != nil {
		return decline(err)
	}
	out := s.commit(acct, c, class, amount, split)
	s.reg.MarkPaid(sc.ID, kv["id"])
	return out
}

func (s *scenario) refund(payID string, kv map[string]string) string {
	amount := s.cny(kv, "amount")
	f, err := s.ledger.CheckRefund(s.rules, payID, kv["id"], amount)
	if err != nil {
		return decline(err)
	}
	if err := s.ledger.ApplyRefund(&f); err != nil {
		s.fatalf("ApplyRefund after CheckRefund: %v", err)
	}
	out := fmt.Sprintf("refund %s stall=%s operator=%s", scenescript.FormatCNY(f.Amount), scenescript.FormatCNY(f.Stall.Amount), scenescript.FormatCNY(f.Operator.Amount))
	if f.Duplicate {
		return out + " duplicate"
	}
	if c, ok := s.customers[f.Account]; ok {
		s.rules.Reverse(c, f.Class, f.Amount, f.PaidAt, s.now)
	}
	return out
}

// restart encodes every piece of state, decodes it into fresh values and
// re-encodes, proving the round trip is exact and counters survive.
func (s *scenario) restart() string {
	s.start()
	ids := make([]string, 0, len(s.customers))
	for id := range s.customers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	fresh := map[string]*Customer{}
	for _, id := range ids {
		b := s.customers[id].AppendBinary(nil)
		c := &Customer{}
		if err := c.DecodeBinary(b); err != nil {
			s.fatalf("customer %s: %v", id, err)
		}
		if *c != *s.customers[id] {
			s.fatalf("customer %s changed over restart", id)
		}
		fresh[id] = c
	}
	ub := s.used.AppendBinary(nil)
	u := &UsedCodes{}
	if err := u.DecodeBinary(ub); err != nil {
		s.fatalf("used codes: %v", err)
	}
	lb := s.ledger.AppendBinary(nil)
	l := &Ledger{}
	if err := l.DecodeBinary(lb); err != nil {
		s.fatalf("ledger: %v", err)
	}
	gb := s.reg.AppendBinary(nil)
	g := &Registry{}
	if err := g.DecodeBinary(gb); err != nil {
		s.fatalf("stall registry: %v", err)
	}
	if string(u.AppendBinary(nil)) != string(ub) || string(l.AppendBinary(nil)) != string(lb) || string(g.AppendBinary(nil)) != string(gb) {
		s.fatalf("state encoding is not stable over restart")
	}
	s.customers, s.used, s.ledger, s.reg = fresh, u, l, g
	s.verifier = NewVerifier(s.keys) // keys come from configuration
	return "ok"
}

func (s *scenario) expect(f []string) string {
	if len(f) == 0 {
		s.fatalf("expect what?")
	}
	kv, _ := scenescript.Args(f)
	switch {
	case f[0] == "payment":
		_, refunded, ok := s.ledger.Lookup(f[1])
		if !ok {
			s.t.Errorf("%s:%d: payment %s not in ledger", s.file, s.line, f[1])
			return ""
		}
		if want := s.cny(kv, "refunded"); refunded != want {
			s.t.Errorf("%s:%d: payment %s refunded %s, want %s", s.file, s.line, f[1], scenescript.FormatCNY(refunded), scenescript.FormatCNY(want))
		}
	case strings.Contains(f[0], "="):
		for k, v := range kv {
			got := map[string]int{"used": s.used.Len(), "payments": s.ledger.Len()}[k]
			if strconv.Itoa(got) != v {
				s.t.Errorf("%s:%d: %s=%d, want %s", s.file, s.line, k, got, v)
			}
		}
	default:
		c, ok := s.customers[f[0]]
		if !ok {
			s.fatalf("unknown customer %q", f[0])
		}
		day := DayOf(s.now)
		for k, v := range kv {
			class, ok := ParseClass(k)
			if !ok {
				s.fatalf("expect %s: class A..D", k)
			}
			want, err := scenescript.ParseCNY(v)
			if err != nil {
				s.fatalf("%v", err)
			}
			if got := c.spent(class, day); got != want {
				s.t.Errorf("%s:%d: %s spent class %s %s, want %s", s.file, s.line, f[0], k, scenescript.FormatCNY(got), scenescript.FormatCNY(want))
			}
		}
	}
	return ""
}
