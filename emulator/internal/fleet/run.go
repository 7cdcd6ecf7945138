package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"scenepay/emulator/internal/device"
	"scenepay/emulator/internal/opclient"
	"scenepay/emulator/internal/wallet"
	"scenepay/terminals"
)

// Options configure a run. main fills them from flags and environment.
type Options struct {
	Broker   string // MQTT broker URL
	Username string // optional broker credentials
	Password string
	API      string // operator API base URL
	Token    string // operator bearer token
	// WalletToken is the wallet backend's bearer token for the stall code
	// payment and refund calls; "" = the operator token.
	WalletToken string
	Master      []byte // master key the terminal keys derive from
	KeyVersion  uint32 // 0 = 1
	Topics      terminals.Topics
	Seed        uint64
	Terminals   int     // fleet size (at least 3: bus, stall, kiosk)
	Accounts    int     // 0 = 4 per terminal, at least 8
	Rate        float64 // load purchases per second across the fleet; 0 = script only
	Duration    time.Duration
	Scenario    string // "demo" or a name in Scenarios
	// TimeScale is scenario seconds per wall second (scenarios only; < 1 = 1).
	TimeScale float64
	Faults    Faults
	Rig       Rig // processes the run started itself; nil = none
	// SettlementDB is the settlement store the gateway hands off to (a
	// SQLite path or a postgres:// URL); "" = no settlement audit.
	SettlementDB string
	// SettleWait bounds the wait for the handoff to reach the run's end; 0 = 30 s.
	SettleWait time.Duration
	// Progress receives the live progress line (nil = none); ProgressTTY
	// rewrites one line in place instead of printing a line per tick.
	Progress      io.Writer
	ProgressTTY   bool
	ProgressEvery time.Duration // 0 = 1 s
	// ClientSuffix is appended to every terminal's MQTT client id (its
	// terminal id): runs sharing a broker under different topic roots
	// must not take over each other's sessions. "" = the terminal id.
	ClientSuffix string
	// DebtPayee is the gateway's transit debt payee merchant (transit
	// config debt_payee_merchant); "" = DefaultDebtPayee.
	DebtPayee string
	// RunID makes operator references (top-ups) unique per run; TxnBase is
	// where every terminal's txn counter starts, above anything an earlier
	// run against the same gateway used. main derives both from the clock.
	RunID        uint64
	TxnBase      uint64
	ReplyTimeout time.Duration // 0 = device default
	Retries      int           // resends on timeout; 0 = none
	Out          io.Writer     // outcome lines, summary, audit; nil = io.Discard
	Now          func() time.Time
}

// Bounds of a run.
const (
	// LatencySamplesMax bounds the latencies kept for percentiles.
	LatencySamplesMax = 200_000
	// FailuresMax bounds the scenario check failures kept (all are counted).
	FailuresMax = 100
)

// ErrUnknownScenario is returned for a scenario other than "demo".
var ErrUnknownScenario = errors.New("fleet: unknown scenario")

// Report is what a run came to.
type Report struct {
	Elapsed    time.Duration
	Requests   int
	ByCode     map[terminals.Code]int
	NoReply    int // ended without a genuine reply
	Retries    int
	Reversed   int
	Unresolved int
	Approved   int64          // fen approved in purchases
	Skipped    int            // load ticks that found their terminal busy
	Faults     map[string]int // faults injected, by name
	// RetiredRiders: riders taken off the buses because a tap_out went
	// unanswered on a distance route (their journey may be open).
	RetiredRiders int
	// ByType counts requests by message type (genuine replies or not).
	ByType map[string]int
	// Scene counts scene events (offline stretches).
	Scene map[string]int
	// OfflineTaps are taps readers approved offline; OfflineRefused the
	// cards they refused offline (deny list, floor limits).
	OfflineTaps    int
	OfflineRefused int
	Uploads        UploadCounts
	// DenyVersion is the lowest deny-list version the bus readers held at
	// the end of a scenario.
	DenyVersion uint64
	// Wallet is the wallet backend's stall-code payments; Debt the
	// top-ups that repaid transit debt.
	Wallet     WalletCounts
	Debt       DebtRepay
	Settlement SettleResult
	Checks     int
	Failed     int
	Failures   []string
	Device     device.Stats // summed over the fleet
	Audit      AuditResult
	latencies  []time.Duration
	maxLatency time.Duration
}

// OK reports whether every scenario check held and the audit passed.
func (r *Report) OK() bool { return r.Failed == 0 && r.Audit.OK() && r.Settlement.OK() }

type runner struct {
	o      Options
	pop    Population
	op     *opclient.Client
	ledger *Ledger
	devs   []*device.Device
	byKind map[string][]*device.Device
	slots  []*slot
	town   Town
	// issuer is the consumer payment code issuer key (version 1) the
	// population's wallets sign codes with; nonce numbers the codes.
	issuer []byte
	nonce  atomic.Uint64
	// walletN numbers the wallet backend's payment ids.
	walletN atomic.Uint64
	// disrupting counts process faults under way; disruptedAt is when the
	// last one ended (both guarded by mu).
	disrupting  int
	disruptedAt time.Time
	quiet       bool       // scenarios: no line per outcome, only failures
	mu          sync.Mutex // guards rep, prog and output
	rep         *Report
	prog        progress
	out         io.Writer
}

// Run provisions the population, runs the scenario, drains in-flight
// requests, prints the summary and the audit, and returns the report. ctx
// ending (Ctrl-C) stops new work; requests in flight get a bounded drain so
// that their reversals can still be acknowledged.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Scenario == "" {
		o.Scenario = "demo"
	}
	var sc Scenario
	if o.Scenario != "demo" {
		var err error
		if sc, err = LookupScenario(o.Scenario); err != nil {
			return nil, err
		}
	}
	if o.KeyVersion == 0 {
		o.KeyVersion = 1
	}
	if o.Topics.Root == "" {
		o.Topics = terminals.DefaultTopics
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ReplyTimeout <= 0 {
		o.ReplyTimeout = device.DefaultReplyTimeout
	}
	if o.Accounts == 0 {
		o.Accounts = 4 * o.Terminals
	}
	pop, err := NewPopulation(o.Seed, o.Terminals, o.Accounts)
	if err != nil {
		return nil, err
	}
	r := &runner{
		o: o, pop: pop, op: opclient.New(o.API, o.Token, nil), ledger: NewLedger(),
		byKind: map[string][]*device.Device{},
		rep: &Report{ByCode: map[terminals.Code]int{}, Faults: map[string]int{}, ByType: map[string]int{},
			Scene: map[string]int{}}, out: o.Out,
		issuer: wallet.IssuerKey(o.Master, 1),
		town:   pop.NewTown(), quiet: o.Scenario != "demo",
	}
	for _, rt := range r.town.Routes {
		r.ledger.AddRoute(rt)
	}
	for _, t := range pop.Terminals {
		r.ledger.SetMerchant(t.TID, t.Merchant)
	}
	start := time.Now()
	if err := r.provision(ctx); err != nil {
		return nil, err
	}
	if err := r.connect(ctx); err != nil {
		r.closeAll()
		return nil, err
	}
	// workCtx outlives ctx by a drain period so that a request in flight
	// at Ctrl-C can still finish, and an unanswered one be reversed.
	workCtx, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()
	drain := o.ReplyTimeout*time.Duration(o.Retries+1) + 3*o.ReplyTimeout
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(drain, cancelWork) })
	defer stop()

	stopProgress := r.startProgress()
	if o.Scenario == "demo" {
		r.demo(ctx, workCtx)
		r.load(ctx, workCtx)
	} else {
		r.scenario(ctx, workCtx, sc)
	}
	stopProgress()
	cancelWork()
	for _, s := range r.slots {
		r.devs[s.i] = s.dev // a reboot replaced it
	}
	r.closeAll()
	r.rep.Elapsed = time.Since(start)
	for _, d := range r.devs {
		s := d.Stats()
		r.rep.Device.Published += s.Published
		r.rep.Device.Replies += s.Replies
		r.rep.Device.UnknownReplies += s.UnknownReplies
		r.rep.Device.BadReplyMAC += s.BadReplyMAC
		r.rep.Device.MalformedReplies += s.MalformedReplies
		r.rep.Device.Timeouts += s.Timeouts
		r.rep.Device.ConnectionLost += s.ConnectionLost
	}
	auditCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if o.Rig != nil {
		r.op = opclient.New(o.Rig.API(), o.Token, nil) // a restart moved it
	}
	r.rep.Audit = r.ledger.Audit(auditCtx, balances{r.op})
	r.rep.Uploads = r.ledger.Uploads()
	if o.SettlementDB != "" {
		// Its own deadline: the wait for the handoff is bounded by SettleWait.
		settleCtx, cancel := context.WithTimeout(context.Background(), o.SettleWait+time.Minute)
		r.rep.Settlement = r.settleAudit(settleCtx, start)
		cancel()
	}
	r.printSummary()
	r.printAudit()
	r.printSettlement()
	return r.rep, nil
}

type balances struct{ c *opclient.Client }

func (b balances) Balance(ctx context.Context, acct string) (int64, error) {
	a, err := b.c.Account(ctx, acct)
	return a.Balance, err
}

func (r *runner) provision(ctx context.Context) error {
	for _, t := range r.pop.Terminals {
		_, err := r.op.RegisterTerminal(ctx, opclient.Terminal{TID: t.TID, Kind: t.Kind, Merchant: t.Merchant, KeyVersion: r.o.KeyVersion})
		if err != nil {
			return fmt.Errorf("fleet: register %s: %w", t.TID, err)
		}
	}
	for _, a := range r.pop.Accounts {
		acct, _, err := r.op.OpenAccount(ctx, opclient.OpenAccount{Inst: a.Inst, Class: a.Class, Balance: a.Opening, Ref: "open-" + a.Inst.Key()})
		if err != nil {
			return fmt.Errorf("fleet: open %s: %w", a.Inst.Key(), err)
		}
		// The balance read back is the baseline: a gateway that kept its
		// state from an earlier run holds that run's result, not Opening.
		r.ledger.Open(a.Inst.Key(), acct.Balance)
	}
	fmt.Fprintf(r.out, "provisioned %d terminals and %d accounts (seed %d)\n", len(r.pop.Terminals), len(r.pop.Accounts), r.o.Seed)
	return nil
}

func (r *runner) connect(ctx context.Context) error {
	obs := device.ObserverFunc(r.observe)
	nbus := 0
	for i, t := range r.pop.Terminals {
		skew := new(atomic.Int64)
		cfg := device.Config{
			TID: t.TID, Key: terminals.DeriveKey(r.o.Master, t.TID, r.o.KeyVersion), ClientID: clientID(t.TID, r.o.ClientSuffix),
			Broker: r.o.Broker, Username: r.o.Username, Password: r.o.Password,
			Topics: r.o.Topics, Group: t.Kind,
			// The Store is the terminal's non-volatile counter: a reboot
			// builds a new Device over the same one.
			Store: device.NewMemStore(r.o.TxnBase), Observer: obs,
			ReplyTimeout: r.o.ReplyTimeout, Retries: r.o.Retries,
			Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
		}
		if t.Kind == KindBus {
			cfg.DenyKey = configKey(r.o.Master)
		}
		d, err := device.New(cfg)
		if err != nil {
			return err
		}
		s := &slot{i: i, spec: t, cfg: cfg, dev: d, skew: skew,
			rng: rand.New(rand.NewPCG(r.o.Seed, uint64(i)+0x7e41)),
			// Reader tap seqs are never reused, across runs too: start
			// where the txn counter starts.
			off: offlineState{seq: r.o.TxnBase, taps: map[string][]terminals.UploadTap{},
				insts: map[string]terminals.Instrument{}, riders: map[string]int{}}}
		if t.Kind == KindBus {
			s.route = r.town.Routes[nbus%len(r.town.Routes)]
			nbus++
		}
		r.slots = append(r.slots, s)
		r.devs = append(r.devs, d)
		r.byKind[t.Kind] = append(r.byKind[t.Kind], d)
	}
	// Connect in parallel: a large fleet should not dial one by one.
	errs := make([]error, len(r.devs))
	var wg sync.WaitGroup
	for i, d := range r.devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.Connect(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fleet: connect to %s: %w", r.o.Broker, err)
	}
	return nil
}

// clientID is tid with suffix, within MQTT's 23 bytes a broker must
// accept (the suffix is cut, never the terminal id).
func clientID(tid, suffix string) string {
	if suffix == "" {
		return ""
	}
	return tid + suffix[:min(len(suffix), max(0, 23-len(tid)))]
}

func (r *runner) closeAll() {
	var wg sync.WaitGroup
	for _, d := range r.devs {
		wg.Add(1)
		go func() { defer wg.Done(); d.Close() }()
	}
	wg.Wait()
}

// observe feeds the ledger and the report and prints one line per outcome.
func (r *runner) observe(o device.Outcome) {
	r.ledger.Observe(o)
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := r.rep
	rep.Requests++
	rep.ByType[o.Type]++
	rep.Retries += o.Retries
	if o.Reply != nil {
		rep.ByCode[o.Code]++
		if o.Code.Approved() && o.Type == terminals.TypePurchase && o.Fault == "" {
			rep.Approved += o.Amt
		}
	} else {
		rep.NoReply++
	}
	if o.Reversed {
		rep.Reversed++
	}
	if o.Unresolved {
		rep.Unresolved++
	}
	if len(rep.latencies) < LatencySamplesMax {
		rep.latencies = append(rep.latencies, o.Latency)
	}
	rep.maxLatency = max(rep.maxLatency, o.Latency)
	r.prog.observe(o)
	if !r.quiet {
		fmt.Fprintln(r.out, formatOutcome(r.o.Now(), o))
	}
}

func instString(in terminals.Instrument) string {
	if in.Kind == "" {
		return ""
	}
	if in.Last4 != "" {
		return in.Key() + "*" + in.Last4
	}
	return in.Key()
}

// formatOutcome renders e.g.
// 12:00:01 BUS-0001 purchase 200 fen county:8800000001 -> 00 APPROVED bal=9800 (3.1 ms)
func formatOutcome(now time.Time, o device.Outcome) string {
	var b strings.Builder
	b.WriteString(now.Format("15:04:05"))
	b.WriteByte(' ')
	b.WriteString(o.TID)
	b.WriteByte(' ')
	if o.Fault != "" {
		fmt.Fprintf(&b, "%s(%s)", o.Fault, o.Type)
	} else {
		b.WriteString(o.Type)
	}
	if o.Txn != 0 {
		fmt.Fprintf(&b, " txn=%d", o.Txn)
	}
	if o.Orig != 0 {
		fmt.Fprintf(&b, " orig=%d", o.Orig)
	}
	if o.Amt != 0 {
		fmt.Fprintf(&b, " %d fen", o.Amt)
	}
	if s := instString(o.Inst); s != "" {
		b.WriteByte(' ')
		b.WriteString(s)
	} else if in, ok := wallet.Decode(o.Req.PayCode); ok {
		b.WriteString(" code of " + in.Account)
	}
	b.WriteString(" -> ")
	if o.Reply != nil {
		fmt.Fprintf(&b, "%s %s", o.Code, o.Code.Name())
		if o.Reply.Bal != nil {
			fmt.Fprintf(&b, " bal=%d", *o.Reply.Bal)
		}
		if o.Reply.Amt != nil && o.Type != terminals.TypeTapIn && o.Type != terminals.TypeTapOut {
			fmt.Fprintf(&b, " amt=%d", *o.Reply.Amt)
		}
		if o.Reply.Out != "" {
			fmt.Fprintf(&b, " out=%s", o.Reply.Out)
		}
	} else {
		b.WriteString("no reply")
	}
	if o.Retries > 0 {
		fmt.Fprintf(&b, " retries=%d", o.Retries)
	}
	if o.Reversed {
		fmt.Fprintf(&b, " reversed by txn=%d (%s %s)", o.ReversalTxn, o.ReversalCode, o.ReversalCode.Name())
	}
	if o.Unresolved {
		b.WriteString(" UNRESOLVED")
	}
	if o.Err != nil && o.Reply == nil {
		fmt.Fprintf(&b, " [%v]", o.Err)
	}
	fmt.Fprintf(&b, " (%.1f ms)", float64(o.Latency.Microseconds())/1000)
	return b.String()
}

// check records a scenario expectation.
func (r *runner) check(what string, ok bool, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.Checks++
	mark := "ok"
	if !ok {
		r.rep.Failed++
		mark = "FAILED"
		if len(r.rep.Failures) < FailuresMax {
			r.rep.Failures = append(r.rep.Failures, what+": "+detail)
		}
	}
	if !r.quiet || !ok {
		fmt.Fprintf(r.out, "         check %s: %s (%s)\n", what, mark, detail)
	}
}

func (r *runner) expect(what string, rep terminals.Reply, err error, want ...terminals.Code) bool {
	if err != nil {
		r.check(what, false, err.Error())
		return false
	}
	for _, w := range want {
		if rep.Code == w {
			r.check(what, true, fmt.Sprintf("got %s %s", rep.Code, rep.Code.Name()))
			return true
		}
	}
	r.check(what, false, fmt.Sprintf("got %s %s, want %s", rep.Code, rep.Code.Name(), codeList(want)))
	return false
}

func codeList(cs []terminals.Code) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c) + " " + c.Name()
	}
	return strings.Join(s, " or ")
}

func (r *runner) acct(i int) AccountSpec { return r.pop.Accounts[i] }

// demo is the scripted part of make run: approvals on each scene, a top-up,
// two declines, a duplicate with its byte-identical replay, a changed-amount
// duplicate and a tampered message. ctx ending skips the remaining steps.
func (r *runner) demo(ctx, work context.Context) {
	bus, stall, kiosk := r.byKind[KindBus][0], r.byKind[KindStall][0], r.byKind[KindKiosk][0]
	county, ecny, bank := r.acct(r.pop.County[0]), r.acct(r.pop.ECNY[0]), r.acct(r.pop.Bank[0])
	steps := []func(){
		func() {
			rep, _, err := bus.Do(work, device.Heartbeat())
			r.expect("heartbeat", rep, err, terminals.CodeApproved)
		},
		func() {
			rep, _, err := bus.Do(work, device.Purchase(county.Inst, BusFare))
			r.expect("bus fare approved", rep, err, terminals.CodeApproved)
		},
		func() {
			rep, _, err := stall.Do(work, device.Purchase(ecny.Inst, 1_250))
			r.expect("stall sale on e-CNY approved", rep, err, terminals.CodeApproved)
		},
		func() {
			rep, _, err := kiosk.Do(work, device.Purchase(bank.Inst, 8_800))
			r.expect("hospital bill on bank card approved", rep, err, terminals.CodeApproved)
		},
		func() {
			ref := fmt.Sprintf("emu-%x-%x-topup", r.o.Seed, r.o.RunID) // hex: no digit run that could look like a card number
			a, err := r.op.TopUp(work, county.Inst.Key(), 5_000, ref)
			if err == nil {
				err = r.ledger.TopUp(county.Inst.Key(), 5_000)
			}
			r.mu.Lock()
			fmt.Fprintf(r.out, "%s operator topup 5000 fen %s -> balance=%d err=%v\n", r.o.Now().Format("15:04:05"), county.Inst.Key(), a.Balance, err)
			r.mu.Unlock()
			r.check("top-up accepted", err == nil, fmt.Sprint(err))
		},
		func() {
			rep, _, err := kiosk.Do(work, device.Balance(bank.Inst))
			r.expect("balance inquiry", rep, err, terminals.CodeApproved)
		},
		func() {
			low := r.acct(r.pop.LowCounty)
			rep, _, err := bus.Do(work, device.Purchase(low.Inst, BusFare))
			r.expect("fare on a card holding 100 fen declined", rep, err, terminals.CodeInsufficientFunds)
		},
		func() {
			c4 := r.acct(r.pop.ClassFour)
			rep, _, err := kiosk.Do(work, device.Purchase(c4.Inst, ClassFourBreach))
			r.expect("class-4 wallet above its single limit declined", rep, err, terminals.CodeLimitSingle)
		},
		func() { r.duplicates(work, stall, r.acct(r.pop.County[len(r.pop.County)-1])) },
		func() { r.demoMarket(work, stall, county) },
		func() { r.demoHospital(work, kiosk, bank) },
		func() {
			s, err := bus.Prepare(device.Purchase(county.Inst, BusFare))
			if err != nil {
				r.check("tampered message refused", false, err.Error())
				return
			}
			rep, _, err := bus.Inject(work, bus.Tampered(s))
			r.expect("tampered message refused", rep, err, terminals.CodeBadMAC)
		},
	}
	for _, step := range steps {
		if ctx.Err() != nil {
			return
		}
		step()
	}
}

// duplicates sends a purchase, then its exact bytes again (the reply must
// be byte-identical), then the same txn id with another amount (ID_CONFLICT;
// the first result stands).
func (r *runner) duplicates(work context.Context, d *device.Device, a AccountSpec) {
	s, err := d.Prepare(device.Purchase(a.Inst, 600))
	if err != nil {
		r.check("duplicate", false, err.Error())
		return
	}
	first, raw1, err := d.Send(work, s)
	if !r.expect("sale before its duplicate approved", first, err, terminals.CodeApproved) {
		return
	}
	dup, raw2, err := d.Inject(work, d.Duplicate(s))
	if err != nil {
		r.check("duplicate replayed", false, err.Error())
		return
	}
	r.check("duplicate gets the byte-identical reply", bytes.Equal(raw1, raw2) && dup.Code == first.Code,
		fmt.Sprintf("first %d bytes, replay %d bytes, identical=%v", len(raw1), len(raw2), bytes.Equal(raw1, raw2)))
	f, err := d.ChangedAmount(s, s.Req.Amt+500)
	if err != nil {
		r.check("changed-amount duplicate refused", false, err.Error())
		return
	}
	rep, _, err := d.Inject(work, f)
	r.expect("changed-amount duplicate refused", rep, err, terminals.CodeIDConflict)
}

// load sends purchases at Options.Rate across the fleet until Duration
// (0 = until ctx ends). Each terminal does one transaction at a time, as
// real ones do; a tick that finds its terminal busy is skipped and counted.
func (r *runner) load(ctx, work context.Context) {
	if r.o.Rate <= 0 || ctx.Err() != nil {
		return
	}
	if r.o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.o.Duration)
		defer cancel()
	}
	rng := rand.New(rand.NewPCG(r.o.Seed, 0x10ad))
	kinds := make([]string, len(r.devs))
	for i, t := range r.pop.Terminals {
		kinds[i] = t.Kind
	}
	// One job slot per terminal: the bound on queued work is the fleet size.
	jobs := make([]chan terminals.Request, len(r.devs))
	var wg sync.WaitGroup
	for i, d := range r.devs {
		jobs[i] = make(chan terminals.Request, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for req := range jobs[i] {
				d.Do(work, req)
			}
		}()
	}
	interval := time.Duration(float64(time.Second) / r.o.Rate)
	if interval <= 0 {
		interval = time.Microsecond
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		if r.ledger.Full() {
			break loop
		}
		i := rng.IntN(len(r.devs))
		inst, amt := r.pop.Pick(rng, kinds[i])
		select {
		case jobs[i] <- device.Purchase(inst, amt):
		default:
			r.mu.Lock()
			r.rep.Skipped++
			r.mu.Unlock()
		}
	}
	for _, j := range jobs {
		close(j)
	}
	wg.Wait()
}

func (r *Report) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), r.latencies...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func (r *runner) printSummary() {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := r.rep
	w := r.out
	rate := 0.0
	if rep.Elapsed > 0 {
		rate = float64(rep.Requests) / rep.Elapsed.Seconds()
	}
	fmt.Fprintf(w, "\nsummary: %d requests in %s (%.1f/s), %d fen approved in purchases\n", rep.Requests, rep.Elapsed.Round(time.Millisecond), rate, rep.Approved)
	codes := make([]string, 0, len(rep.ByCode))
	for c := range rep.ByCode {
		codes = append(codes, string(c))
	}
	sort.Strings(codes)
	for _, c := range codes {
		code := terminals.Code(c)
		fmt.Fprintf(w, "  %s %-20s %d\n", c, code.Name(), rep.ByCode[code])
	}
	fmt.Fprintf(w, "  messages:%s\n", typeCounts(rep.ByType))
	if rep.OfflineTaps+rep.OfflineRefused+rep.Uploads.Messages > 0 {
		letters := ""
		for _, c := range []byte("cdnuox") {
			if n := rep.Uploads.Taps[c]; n > 0 {
				letters += fmt.Sprintf(" %c:%d", c, n)
			}
		}
		fmt.Fprintf(w, "  offline: %d stretches, %d taps approved offline, %d cards refused offline, %d uploads answered (taps%s), lowest deny-list version a reader holds %d\n",
			rep.Scene["offline-stretch"], rep.OfflineTaps, rep.OfflineRefused, rep.Uploads.Messages, letters, rep.DenyVersion)
	}
	if wc := rep.Wallet; wc.Codes > 0 {
		fmt.Fprintf(w, "  stall codes: %d static and %d dynamic registered; wallet payments %d (approved %d, declined %d, refused %d, unanswered %d), refunds %d (approved %d), calls retried %d, stored answers replayed %d, paid notices at the stalls %d\n",
			wc.Codes, wc.Dynamic, wc.Payments, wc.Approved, wc.Declined, wc.Refused, wc.Unanswered, wc.Refunds, wc.Refunded, wc.Retries, wc.Replays, wc.Notices)
	}
	if d := rep.Debt; d.Cards > 0 {
		fmt.Fprintf(w, "  transit debt: %d cards topped up, %d fen of debt paid first, taken off every reader's deny list %v (lowest version %d)\n",
			d.Cards, d.Paid, d.Undenied, d.Version)
	}
	fmt.Fprintf(w, "  no reply %d, retries %d, reversed %d, unresolved %d, load ticks skipped (terminal busy) %d\n",
		rep.NoReply, rep.Retries, rep.Reversed, rep.Unresolved, rep.Skipped)
	fmt.Fprintf(w, "  latency ms: p50 %s, p99 %s, max %s\n", ms(rep.percentile(0.5)), ms(rep.percentile(0.99)), ms(rep.maxLatency))
	fmt.Fprintf(w, "  terminals: published %d, replies %d, unknown replies %d, bad reply MACs %d, malformed replies %d, connections lost %d\n",
		rep.Device.Published, rep.Device.Replies, rep.Device.UnknownReplies, rep.Device.BadReplyMAC, rep.Device.MalformedReplies, rep.Device.ConnectionLost)
	if len(rep.Faults) > 0 {
		names := make([]string, 0, len(rep.Faults))
		for n := range rep.Faults {
			names = append(names, n)
		}
		sort.Strings(names)
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, " %s %d,", n, rep.Faults[n])
		}
		fmt.Fprintf(w, "  faults injected:%s riders retired (open journey after an unanswered tap_out) %d, fault probes unanswered during a process fault (not checked) %d\n",
			strings.TrimSuffix(b.String(), ","), rep.RetiredRiders, rep.Scene["probe-lost-to-process-fault"])
	}
	fmt.Fprintf(w, "  scenario checks: %d of %d as expected\n", rep.Checks-rep.Failed, rep.Checks)
	for _, f := range rep.Failures {
		fmt.Fprintf(w, "    FAILED %s\n", f)
	}
}

func (r *runner) printAudit() {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.rep.Audit
	w := r.out
	verdict := "PASS"
	if !a.OK() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "audit: %d accounts, %d match, %d within unresolved range, %d mismatched, %d anomalies -> %s\n",
		a.Accounts, a.Matched, a.Uncertain, len(a.Mismatches), a.NAnomaly, verdict)
	for _, m := range a.Mismatches {
		if m.Err != nil {
			fmt.Fprintf(w, "  %s: %v\n", m.Account, m.Err)
			continue
		}
		fmt.Fprintf(w, "  %s: gateway %d fen, expected %d (opening %d + top-ups %d - debt paid %d - purchases %d + reversals %d + refunds %d; unresolved %d/+%d)\n",
			m.Account, m.Gateway, m.Expected, m.Opening, m.TopUps, m.DebtPaid, m.Purchases, m.Reversals, m.Refunds, m.Uncertain, m.UncertainCredit)
	}
	for _, s := range a.Anomalies {
		fmt.Fprintf(w, "  anomaly: %s\n", s)
	}
}

// typeCounts renders message counts by type, in a fixed order.
func typeCounts(m map[string]int) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, " %s %d", n, m[n])
	}
	return b.String()
}
