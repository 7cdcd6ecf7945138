package hospital

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"scenepay/gateway/internal/scene/scenescript"
	"scenepay/terminals"
)

// The scenario runner reads testdata/*.txt, one command per line:
//
//	config key=value ...            low, pause, deposit_min, deposit_max (CNY), expiry (hours), legs_max, orders_max
//	item CODE fixed=CNY | min=CNY max=CNY     replaces the default item table on first use
//	account ID balance=CNY          the patient's instrument in a model of the core ledger
//	at TIME pay ACCOUNT item=CODE amount=CNY                          -> charge CNY | decline NAME
//	at TIME bill ACCOUNT id=B total=CNY pooled=CNY personal=CNY self=CNY [item=CODE]
//	                                -> charge CNY pooled=CNY personal=CNY self=CNY | decline NAME
//	at TIME open DEPOSIT account=ACCOUNT txn=N amount=CNY             -> EFFECTS remaining=CNY [low] [notice]
//	at TIME topup DEPOSIT txn=N amount=CNY                            -> ...
//	at TIME capture DEPOSIT order=ID amount=CNY [emergency]           -> ... [duplicate]
//	at TIME discharge DEPOSIT [order=ID amount=CNY]                   -> ...
//	at TIME sweep DEPOSIT                                             -> none | EFFECTS ...
//	restart                         encode every deposit, decode into fresh values, continue
//	expect DEPOSIT state=S remaining=CNY captured=CNY
//	expect ACCOUNT balance=CNY held=CNY
//
// EFFECTS are the core operations of the plan ("hold 101 300.00, capture
// 101 20.00, release 101 280.00"). The model core applies them to the
// account (a hold needs available funds) before the plan is committed.

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScenario(t, f) })
	}
}

// account is a model of a core account: balance and held, with holds by txn.
type account struct {
	balance, held int64
	holds         map[uint64]int64
}

type scenario struct {
	t        *testing.T
	file     string
	line     int
	cfg      Config
	items    bool
	rules    *Rules
	deposits map[string]*Deposit
	accounts map[string]*account
	plan     Plan
	now      time.Time
}

func (s *scenario) fatalf(format string, a ...any) {
	s.t.Fatalf("%s:%d: %s", s.file, s.line, fmt.Sprintf(format, a...))
}

func runScenario(t *testing.T, path string) {
	s := &scenario{t: t, file: path, cfg: DefaultConfig(), deposits: map[string]*Deposit{}, accounts: map[string]*account{}}
	scenescript.Run(t, path, func(line int, f []string) string { s.line = line; return s.exec(f) })
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

func codeName(c terminals.Code) string {
	switch c {
	case CodeDepositPaused:
		return "DEPOSIT_PAUSED"
	case CodeDepositClosed:
		return "DEPOSIT_CLOSED"
	}
	return c.Name()
}

func decline(err error) string { return "decline " + codeName(CodeOf(err)) }

func (s *scenario) exec(f []string) string {
	switch f[0] {
	case "config":
		if s.rules != nil {
			s.fatalf("config after the first event")
		}
		kv, _ := scenescript.Args(f[1:])
		for k, v := range kv {
			switch k {
			case "low":
				s.cfg.LowBalanceFen = s.cny(kv, k)
			case "pause":
				s.cfg.PauseBelowFen = s.cny(kv, k)
			case "deposit_min":
				s.cfg.DepositMinFen = s.cny(kv, k)
			case "deposit_max":
				s.cfg.DepositMaxFen = s.cny(kv, k)
			case "expiry":
				s.cfg.DepositExpiryHours = s.num(v)
			case "legs_max":
				s.cfg.LegsMax = int(s.num(v))
			case "orders_max":
				s.cfg.OrdersMax = int(s.num(v))
			default:
				s.fatalf("unknown config key %q", k)
			}
		}
		return "ok"
	case "item":
		if s.rules != nil {
			s.fatalf("item after the first event")
		}
		if !s.items {
			s.cfg.Items, s.items = nil, true
		}
		kv, _ := scenescript.Args(f[2:])
		it := ItemType{Code: f[1], Name: f[1]}
		if _, ok := kv["fixed"]; ok {
			it.FixedFen = s.cny(kv, "fixed")
		} else {
			it.MinFen, it.MaxFen = s.cny(kv, "min"), s.cny(kv, "max")
		}
		s.cfg.Items = append(s.cfg.Items, it)
		return "ok"
	}
	if s.rules == nil {
		r, err := NewRules(s.cfg)
		if err != nil {
			s.fatalf("config: %v", err)
		}
		s.rules = r
	}
	switch f[0] {
	case "account":
		kv, _ := scenescript.Args(f[2:])
		s.accounts[f[1]] = &account{balance: s.cny(kv, "balance"), holds: map[uint64]int64{}}
		return "ok"
	case "restart":
		return s.restart()
	case "expect":
		s.expect(f[1:])
		return ""
	case "at":
		if len(f) < 4 {
			s.fatalf("at TIME COMMAND TARGET ...")
		}
		now, err := time.Parse(time.RFC3339, f[1])
		if err != nil {
			if now, err = time.Parse("2006-01-02T15:04Z07:00", f[1]); err != nil {
				s.fatalf("bad time %q", f[1])
			}
		}
		s.now = now
		return s.event(f[2], f[3], f[4:])
	}
	s.fatalf("unknown command %q", f[0])
	return ""
}

func (s *scenario) acct(id string) *account {
	a, ok := s.accounts[id]
	if !ok {
		s.fatalf("unknown account %q", id)
	}
	return a
}

func (s *scenario) event(cmd, target string, f []string) string {
	kv, flags := scenescript.Args(f)
	switch cmd {
	case "pay":
		amount := s.cny(kv, "amount")
		if err := s.rules.CheckItem(kv["item"], amount); err != nil {
			return decline(err)
		}
		return s.debit(target, amount)
	case "bill":
		b := Bill{ID: kv["id"], Item: kv["item"], Total: s.cny(kv, "total"), Pooled: s.cny(kv, "pooled"),
			Personal: s.cny(kv, "personal"), SelfPay: s.cny(kv, "self")}
		sp, err := s.rules.SplitBill(b)
		if err != nil {
			return decline(err)
		}
		if sum := sp.Legs[0].Amount + sp.Legs[1].Amount + sp.Legs[2].Amount; sum != b.Total || sp.Charge != sp.Legs[2].Amount {
			s.fatalf("legs %+v do not make the bill", sp)
		}
		out := "charge " + scenescript.FormatCNY(sp.Charge)
		if sp.Charge > 0 {
			if out = s.debit(target, sp.Charge); strings.HasPrefix(out, "decline") {
				return out
			}
		}
		for _, l := range sp.Legs {
			out += fmt.Sprintf(" %s=%s", l.Kind, scenescript.FormatCNY(l.Amount))
		}
		return out
	}
	d, ok := s.deposits[target]
	if !ok {
		d = &Deposit{}
		s.deposits[target] = d
	}
	p := &s.plan
	var err error
	switch cmd {
	case "open":
		err = s.rules.Open(d, target, kv["account"], uint64(s.num(kv["txn"])), s.cny(kv, "amount"), s.now, p)
	case "topup":
		err = s.rules.TopUp(d, uint64(s.num(kv["txn"])), s.cny(kv, "amount"), s.now, p)
	case "capture":
		err = s.rules.Capture(d, kv["order"], s.cny(kv, "amount"), flags["emergency"], s.now, p)
	case "discharge":
		var amount int64
		if _, ok := kv["amount"]; ok {
			amount = s.cny(kv, "amount")
		}
		err = s.rules.Discharge(d, kv["order"], amount, s.now, p)
	case "sweep":
		if !s.rules.Expire(d, s.now, p) {
			return "none"
		}
	default:
		s.fatalf("unknown event %q", cmd)
	}
	if err != nil {
		return decline(err)
	}
	acctID := d.Account
	if cmd == "open" {
		acctID = kv["account"]
	}
	if out, ok := s.core(s.acct(acctID), p); !ok {
		return out
	}
	if err := s.rules.Commit(d, p); err != nil {
		s.fatalf("commit: %v", err)
	}
	return formatPlan(p)
}

func (s *scenario) debit(id string, amount int64) string {
	a := s.acct(id)
	if a.balance-a.held < amount {
		return "decline " + codeName(terminals.CodeInsufficientFunds)
	}
	a.balance -= amount
	return "charge " + scenescript.FormatCNY(amount)
}

// core applies the plan's effects to the model account, all or none, as
// the shard step must.
func (s *scenario) core(a *account, p *Plan) (string, bool) {
	var need int64
	for _, e := range p.Effects {
		if e.Op == EffectHold {
			need += e.Amount
		}
	}
	if a.balance-a.held < need {
		return "decline " + codeName(terminals.CodeInsufficientFunds), false
	}
	for _, e := range p.Effects {
		switch e.Op {
		case EffectHold:
			a.holds[e.Txn] += e.Amount
			a.held += e.Amount
		case EffectCapture:
			if a.holds[e.Txn] < e.Amount {
				s.fatalf("core: capture %d of hold %d holding %d", e.Amount, e.Txn, a.holds[e.Txn])
			}
			a.holds[e.Txn] -= e.Amount
			a.held -= e.Amount
			a.balance -= e.Amount
		case EffectRelease:
			if a.holds[e.Txn] != e.Amount {
				s.fatalf("core: release of hold %d says %d, core holds %d", e.Txn, e.Amount, a.holds[e.Txn])
			}
			a.held -= a.holds[e.Txn]
			delete(a.holds, e.Txn)
		}
	}
	return "", true
}

func formatPlan(p *Plan) string {
	var parts []string
	for _, e := range p.Effects {
		parts = append(parts, fmt.Sprintf("%s %d %s", e.Op, e.Txn, scenescript.FormatCNY(e.Amount)))
	}
	out := strings.Join(parts, ", ")
	if out != "" {
		out += " "
	}
	out += "remaining=" + scenescript.FormatCNY(p.Remaining)
	if p.LowBalance {
		out += " low"
	}
	if p.Notice {
		out += " notice"
	}
	if p.Duplicate {
		out += " duplicate"
	}
	return out
}

func (s *scenario) restart() string {
	ids := make([]string, 0, len(s.deposits))
	for id := range s.deposits {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		b := s.deposits[id].AppendBinary(nil)
		d := &Deposit{}
		if err := d.DecodeBinary(b); err != nil {
			s.fatalf("deposit %s: %v", id, err)
		}
		if string(d.AppendBinary(nil)) != string(b) {
			s.fatalf("deposit %s: encoding not stable", id)
		}
		s.deposits[id] = d
	}
	return "ok"
}

func (s *scenario) expect(f []string) {
	kv, _ := scenescript.Args(f[1:])
	if d, ok := s.deposits[f[0]]; ok {
		for k, v := range kv {
			var got string
			switch k {
			case "state":
				got = d.State.String()
			case "remaining":
				got = scenescript.FormatCNY(d.Remaining())
			case "captured":
				got = scenescript.FormatCNY(d.Captured())
			case "legs":
				got = strconv.Itoa(len(d.Legs))
			default:
				s.fatalf("expect deposit: unknown %q", k)
			}
			if k != "state" && k != "legs" {
				w, err := scenescript.ParseCNY(v)
				if err != nil {
					s.fatalf("%v", err)
				}
				v = scenescript.FormatCNY(w)
			}
			if got != v {
				s.t.Errorf("%s:%d: deposit %s %s=%s, want %s", s.file, s.line, f[0], k, got, v)
			}
		}
		return
	}
	a := s.acct(f[0])
	for k := range kv {
		got := map[string]int64{"balance": a.balance, "held": a.held}[k]
		if want := s.cny(kv, k); got != want {
			s.t.Errorf("%s:%d: account %s %s=%s, want %s", s.file, s.line, f[0], k, scenescript.FormatCNY(got), scenescript.FormatCNY(want))
		}
	}
}
