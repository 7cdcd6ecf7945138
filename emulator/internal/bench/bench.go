package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"scenepay/terminals"
)

// Arm names.
const (
	ArmEcho    = "echo"
	ArmGateway = "gateway"
)

// Bounds of a whole run.
const (
	// StepsMax bounds the rate steps of the search, whatever the options say.
	StepsMax = 40
	// TerminalsMax bounds the load fleet.
	TerminalsMax = 5000
)

// Options configures a run. Zero values are not defaults: start from
// Defaults() or Quick().
type Options struct {
	GatewayBin string // the gateway binary (make bench-e2e builds it)
	ConfPath   string // deployed mosquitto.conf
	ACLPath    string // deployed ACL
	// BrokerUnit is the deployed systemd drop-in of the broker whose Nice=
	// the private broker runs at (UnitNice); empty: the default priority.
	BrokerUnit string
	Terminals  int // load terminals (MQTT connections)
	StartRate  float64
	RateFactor float64 // each step offers RateFactor times the previous rate
	MaxRate    float64
	Steps      int // at most this many rates per arm
	// RefineSteps bisects between an arm's last pass and its failure.
	RefineSteps int
	Warm        time.Duration // start of each window not sampled
	Window      time.Duration // offered-load duration of each window
	Timeout     time.Duration // an answer later than this is a timeout
	Objective   Objective
	Budget      time.Duration // the rate search stops stepping after this
	Conns       int           // MQTT connections of the echo and of the gateway
	Scale       int           // connection-scale target (0 = skip)
	ScaleTime   time.Duration // bound of the scale probe
	PprofAddr   string        // passed to the gateway as -pprof-listen
	// GatewayProcs, above 0, is the gateway's GOMAXPROCS (see
	// GatewayConfig.Procs); 0 leaves the runtime's default.
	GatewayProcs int
	// LoadClient is LoadRaw (the buffered raw MQTT client, rawload.go) or
	// LoadPaho (one paho client per terminal, for comparison).
	LoadClient string
	// TermsPerConn is the raw client's terminals per connection; above 1
	// they log in as the gateway user (see RawConfig.PerConn).
	TermsPerConn int
	LoadTick     time.Duration // the raw client's write-coalescing period
	LoadAckDelay time.Duration // the raw client's PUBACK hold (RawConfig.AckDelay)
	Quick        bool
	Out          io.Writer
}

// Defaults is the full benchmark: about three to four minutes on a 2-core
// machine.
func Defaults() Options {
	return Options{
		ConfPath: "deploy/mosquitto/mosquitto.conf", ACLPath: "deploy/mosquitto/scenepay.acl",
		BrokerUnit: "deploy/systemd/mosquitto.service.d/scenepay.conf",
		Terminals:  200, StartRate: 1000, RateFactor: 1.25, MaxRate: 40000, Steps: 20, RefineSteps: 2,
		Warm: 500 * time.Millisecond, Window: 3 * time.Second, Timeout: 2 * time.Second,
		Objective: Objective{P99: 50 * time.Millisecond, FailureRate: 0.001},
		Budget:    180 * time.Second, Conns: 4, Scale: 10_000, ScaleTime: 60 * time.Second,
		LoadClient: LoadRaw, TermsPerConn: 1, LoadTick: DefaultLoadTick, LoadAckDelay: DefaultAckDelay,
		Out: os.Stdout,
	}
}

// Quick is a smoke run: a small fleet, two low rates, a small scale probe.
func Quick() Options {
	o := Defaults()
	o.Terminals, o.StartRate, o.RateFactor, o.MaxRate, o.Steps = 10, 50, 2, 100, 2
	o.Warm, o.Window, o.Timeout = 200*time.Millisecond, time.Second, 2*time.Second
	o.Budget, o.Scale, o.ScaleTime = 30*time.Second, 200, 20*time.Second
	o.RefineSteps = 0
	o.Quick = true
	return o
}

// ArmResult is one arm's figures at its maximum sustainable rate.
type ArmResult struct {
	MaxRate      float64 `json:"max_rate"`
	LimitReached bool    `json:"limit_reached"` // false: never broke up to the last rate tried
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	P999ms       float64 `json:"p999_ms"`
	MaxMs        float64 `json:"max_ms"`
	BrokerCPUus  float64 `json:"broker_cpu_us_per_txn"`
	GatewayCPUus float64 `json:"gateway_cpu_us_per_txn,omitempty"`
	LoadCPUus    float64 `json:"load_cpu_us_per_txn"` // the benchmark process
	// Read and write system calls per transaction (/proc/<pid>/io).
	BrokerSyscalls  float64 `json:"broker_syscalls_per_txn"`
	GatewaySyscalls float64 `json:"gateway_syscalls_per_txn,omitempty"`
	LoadSyscalls    float64 `json:"load_syscalls_per_txn"`
}

// HalfRate compares the arms at half the gateway's maximum rate (the
// issue's latency target: gateway p99 <= 2 x echo p99 + 5 ms).
type HalfRate struct {
	Rate         float64 `json:"rate"`
	EchoP99ms    float64 `json:"echo_p99_ms"`
	GatewayP99ms float64 `json:"gateway_p99_ms"`
	TargetMet    bool    `json:"target_met"`
}

// Result is the whole run; it is the BENCH line's JSON.
type Result struct {
	Quick        bool        `json:"quick"`
	Terminals    int         `json:"terminals"`
	QoS          int         `json:"qos"`
	ObjP99ms     float64     `json:"objective_p99_ms"`
	ObjFailRate  float64     `json:"objective_failure_rate"`
	Echo         ArmResult   `json:"echo"`
	Gateway      ArmResult   `json:"gateway"`
	Ratio        float64     `json:"gateway_echo_ratio"`
	Half         *HalfRate   `json:"half_rate,omitempty"`
	Scale        ScaleResult `json:"scale"`
	Windows      int         `json:"windows"`
	ElapsedS     float64     `json:"elapsed_s"`
	LoadClient   string      `json:"load_client"` // raw or paho
	TermsPerConn int         `json:"terms_per_conn"`
	LoadTickMs   float64     `json:"load_tick_ms,omitempty"` // raw client only
	LoadAckMs    float64     `json:"load_ack_delay_ms,omitempty"`
	LoadProcs    int         `json:"load_procs"`    // GOMAXPROCS of the load (and echo) process
	GatewayProcs int         `json:"gateway_procs"` // GOMAXPROCS of the gateway; 0 = the runtime's default
	BrokerNice   int         `json:"broker_nice"`   // the broker's nice value as the kernel had it
	// Machine load averages (1, 5, 15 min) from /proc/loadavg at the start
	// and the end: the machine may be shared, and its load moves figures.
	LoadAvgStart [3]float64 `json:"load_avg_start"`
	LoadAvgEnd   [3]float64 `json:"load_avg_end"`
}

// LoadAvg reads the 1, 5 and 15 minute load averages from /proc/loadavg.
func LoadAvg() ([3]float64, error) {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l, err
	}
	_, err = fmt.Sscan(string(b), &l[0], &l[1], &l[2])
	return l, err
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func us(d time.Duration) float64 { return math.Round(float64(d)/1e2) / 10 }

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// gatewayUser is the gateway's MQTT user name in the deployed ACL.
const gatewayUser = "scenepay-gateway"

// Run performs the benchmark and prints its figures and the BENCH line.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Terminals <= 0 || o.Terminals > TerminalsMax || o.StartRate <= 0 || o.RateFactor <= 1 ||
		o.Window <= 0 || o.Timeout <= 0 || o.Conns <= 0 {
		return nil, errors.New("bench: terminals 1..5000, positive rates and windows, rate factor > 1 required")
	}
	if o.LoadClient != LoadRaw && o.LoadClient != LoadPaho {
		return nil, fmt.Errorf("bench: load client %q: want %s or %s", o.LoadClient, LoadRaw, LoadPaho)
	}
	if o.LoadClient == LoadPaho || o.TermsPerConn <= 0 {
		o.TermsPerConn = 1
	}
	if o.LoadTick <= 0 {
		o.LoadTick = DefaultLoadTick
	}
	if o.LoadAckDelay <= 0 {
		o.LoadAckDelay = DefaultAckDelay
	}
	loadStart, _ := LoadAvg()
	if _, err := os.Stat(o.GatewayBin); err != nil {
		return nil, fmt.Errorf("bench: gateway binary: %w", err)
	}
	began := time.Now()
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	limit, err := RaiseFileLimit()
	if err != nil {
		fmt.Fprintln(out, "warning:", err)
	}
	dir, err := os.MkdirTemp("", "scenepay-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	password, token := randHex(16), randHex(24)
	master := make([]byte, terminals.KeyLen)
	rand.Read(master)
	masterFile := filepath.Join(dir, "master.key")
	if err := os.WriteFile(masterFile, []byte(hex.EncodeToString(master)+"\n"), 0o600); err != nil {
		return nil, err
	}
	nice := 0
	if o.BrokerUnit != "" {
		if nice, err = UnitNice(o.BrokerUnit); err != nil {
			return nil, err
		}
	}
	br, err := StartBroker(BrokerConfig{ConfPath: o.ConfPath, ACLPath: o.ACLPath, Dir: dir, User: gatewayUser, Password: password, Nice: nice})
	if err != nil {
		return nil, err
	}
	defer br.Stop()
	topics := terminals.DefaultTopics
	brNice, err := br.Nice()
	if err != nil {
		return nil, err
	}
	prio := fmt.Sprintf("nice %d", brNice)
	switch {
	case o.BrokerUnit == "":
		prio += ", the default priority"
	case brNice == nice:
		prio += " as Nice= of " + o.BrokerUnit
	default:
		prio += fmt.Sprintf(", not Nice=%d of %s: the kernel refused it (a negative nice needs CAP_SYS_NICE)", nice, o.BrokerUnit)
	}
	fmt.Fprintf(out, "private mosquitto at %s (settings of %s, persistence off, max_connections -1; %s), fd limit %d\n", br.Addr, o.ConfPath, prio, limit)

	gcfg := GatewayConfig{Bin: o.GatewayBin, DataDir: filepath.Join(dir, "gateway"), BrokerURL: br.URL(),
		User: gatewayUser, Password: password, MasterFile: masterFile, Token: token, Conns: o.Conns, PprofAddr: o.PprofAddr, Procs: o.GatewayProcs}
	gw, err := StartGateway(ctx, gcfg)
	if err != nil {
		return nil, err
	}
	err = Provision(ctx, gw.API, token, o.Terminals)
	if serr := gw.Stop(); err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "provisioned %d stall terminals, each with a county card of %d fen; gateway journal fsync on, data in a temp dir, %s\n", o.Terminals, AccountOpeningFen, procsNote(o.GatewayProcs))

	txnBase := uint64(time.Now().UnixMilli()) * 1000
	var fleet *Fleet
	if o.LoadClient == LoadRaw {
		fleet, err = ConnectRawFleet(ctx, RawConfig{Addr: br.Addr, Topics: topics, PerConn: o.TermsPerConn,
			User: gatewayUser, Password: password, Tick: o.LoadTick, AckDelay: o.LoadAckDelay}, master, o.Terminals, txnBase)
	} else {
		fleet, err = ConnectFleet(ctx, br.URL(), topics, master, o.Terminals, txnBase)
	}
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	client := "paho, one client per terminal"
	if o.LoadClient == LoadRaw {
		client = fmt.Sprintf("raw buffered client, %d terminal(s) per connection, writes flushed every %v, PUBACKs held up to %v",
			o.TermsPerConn, o.LoadTick, o.LoadAckDelay)
	}
	fmt.Fprintf(out, "%d load terminals connected (%s; QoS 1, open-loop arrivals); objective p99 <= %v and failures <= %.2f%%\n",
		o.Terminals, client, o.Objective.P99, 100*o.Objective.FailureRate)
	fmt.Fprintf(out, "load average at start %.2f %.2f %.2f; load us/tx is this process (the terminals, and in the echo arm the echo too)\n\n",
		loadStart[0], loadStart[1], loadStart[2])
	fmt.Fprintf(out, "%-8s %8s %8s %7s %6s %9s %9s %9s %9s %10s %10s %10s %8s %8s %s\n",
		"arm", "rate/s", "sent", "fail", "stray", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "brk us/tx", "gw us/tx", "load us/tx",
		"gw sc/tx", "load sc/tx", "verdict")

	res := &Result{Quick: o.Quick, Terminals: o.Terminals, QoS: 1, ObjP99ms: ms(o.Objective.P99), ObjFailRate: o.Objective.FailureRate,
		LoadClient: o.LoadClient, TermsPerConn: o.TermsPerConn, LoadAvgStart: loadStart, LoadProcs: runtime.GOMAXPROCS(0),
		GatewayProcs: o.GatewayProcs, BrokerNice: brNice}
	if o.LoadClient == LoadRaw {
		res.LoadTickMs, res.LoadAckMs = ms(o.LoadTick), ms(o.LoadAckDelay)
	}
	window := func(arm string, rate float64) (Window, error) {
		w, err := runWindow(ctx, o, arm, rate, br, gcfg, fleet, topics, password)
		if err != nil {
			return w, err
		}
		res.Windows++
		verdict := "FAIL"
		if w.Pass {
			verdict = "ok"
		}
		gwCPU, gwSC := "-", "-"
		if c, ok := w.CPUPerTxn[ArmGateway]; ok {
			gwCPU = fmt.Sprintf("%.1f", us(c))
		}
		if c, ok := w.SyscallsPerTxn[ArmGateway]; ok {
			gwSC = fmt.Sprintf("%.1f", c)
		}
		fmt.Fprintf(out, "%-8s %8.0f %8d %7d %6d %9.2f %9.2f %9.2f %9.2f %10.1f %10s %10.1f %8s %8.1f %s\n",
			arm, rate, w.Sent, w.Failures(), w.Stray, ms(w.P50), ms(w.P99), ms(w.P999), ms(w.Max),
			us(w.CPUPerTxn["broker"]), gwCPU, us(w.CPUPerTxn["load"]), gwSC, w.SyscallsPerTxn["load"], verdict)
		if w.Internals != nil {
			fmt.Fprintf(out, "         %s\n", w.Internals)
		}
		return w, nil
	}
	record := func(a *ArmResult, w Window) {
		a.MaxRate = w.Rate
		a.P50ms, a.P99ms, a.P999ms, a.MaxMs = ms(w.P50), ms(w.P99), ms(w.P999), ms(w.Max)
		a.BrokerCPUus = us(w.CPUPerTxn["broker"])
		a.LoadCPUus = us(w.CPUPerTxn["load"])
		if c, ok := w.CPUPerTxn[ArmGateway]; ok {
			a.GatewayCPUus = us(c)
		}
		round := func(f float64) float64 { return math.Round(f*10) / 10 }
		a.BrokerSyscalls = round(w.SyscallsPerTxn["broker"])
		a.LoadSyscalls = round(w.SyscallsPerTxn["load"])
		a.GatewaySyscalls = round(w.SyscallsPerTxn[ArmGateway])
	}

	// The search: both arms step through the same rates, alternating
	// windows. A failed window is repeated once (a 2-core machine shared
	// with other work has bad seconds); a second failure takes the arm out
	// of the stepping, and then the gap between its last pass and its
	// failure is bisected RefineSteps times, still alternating arms.
	type armState struct {
		name       string
		res        *ArmResult
		on         bool
		pass, fail float64
	}
	arms := []*armState{{name: ArmEcho, res: &res.Echo, on: true}, {name: ArmGateway, res: &res.Gateway, on: true}}
	try := func(a *armState, rate float64, retry bool) (bool, error) {
		w, err := window(a.name, rate)
		if err == nil && !w.Pass && retry && time.Since(began) < o.Budget {
			fmt.Fprintf(out, "%-8s repeating %.0f/s once\n", a.name, rate)
			w, err = window(a.name, rate)
		}
		if err != nil {
			return false, err
		}
		if w.Pass && rate > a.pass {
			a.pass = rate
			record(a.res, w)
		}
		if !w.Pass && (a.fail == 0 || rate < a.fail) {
			a.fail = rate
			a.res.LimitReached = true
		}
		return w.Pass, nil
	}
	budgetLeft := func() bool {
		if time.Since(began) > o.Budget {
			fmt.Fprintf(out, "time budget %v reached; stopping the search\n", o.Budget)
			return false
		}
		return true
	}
	rate := o.StartRate
	for step := 0; step < min(o.Steps, StepsMax) && (arms[0].on || arms[1].on) && rate <= o.MaxRate*1.0001 && budgetLeft(); step++ {
		for _, a := range arms {
			if !a.on {
				continue
			}
			ok, err := try(a, rate, true)
			if err != nil {
				return nil, err
			}
			a.on = ok
		}
		rate = math.Round(rate * o.RateFactor)
	}
	for range min(o.RefineSteps, StepsMax) {
		if !budgetLeft() {
			break
		}
		for _, a := range arms {
			if a.fail == 0 || a.fail-a.pass < 0.02*a.fail {
				continue
			}
			if _, err := try(a, math.Round((a.pass+a.fail)/2), false); err != nil {
				return nil, err
			}
		}
	}
	if res.Echo.MaxRate > 0 {
		res.Ratio = math.Round(res.Gateway.MaxRate/res.Echo.MaxRate*1000) / 1000
	}
	if res.Gateway.MaxRate > 0 && ctx.Err() == nil {
		half := math.Round(res.Gateway.MaxRate / 2)
		fmt.Fprintf(out, "-- both arms at half the gateway's maximum rate\n")
		we, err := window(ArmEcho, half)
		if err != nil {
			return nil, err
		}
		wg, err := window(ArmGateway, half)
		if err != nil {
			return nil, err
		}
		res.Half = &HalfRate{Rate: half, EchoP99ms: ms(we.P99), GatewayP99ms: ms(wg.P99),
			TargetMet: we.Pass && wg.Pass && wg.P99 <= 2*we.P99+5*time.Millisecond}
	}
	fleet.Close()

	if o.Scale > 0 && ctx.Err() == nil {
		fmt.Fprintf(out, "-- scale: %d raw MQTT terminal connections held at once on the private broker\n", o.Scale)
		res.Scale = Scale(ctx, br.Addr, topics, o.Scale, limit, o.ScaleTime)
		fmt.Fprintf(out, "connected %d of %d, %d answered PINGREQ with all open, in %v (fd limit %d) %s\n",
			res.Scale.Connected, res.Scale.Target, res.Scale.Alive, res.Scale.Took.Round(time.Millisecond), limit, res.Scale.FirstErr)
	}
	res.ElapsedS = math.Round(time.Since(began).Seconds()*10) / 10
	res.LoadAvgEnd, _ = LoadAvg()
	printSummary(out, res)
	js, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "BENCH %s\n", js)
	return res, ctx.Err()
}

func printSummary(out io.Writer, r *Result) {
	fmt.Fprintf(out, "\n== summary (QoS 1, %d terminals on the %s load client, objective p99 <= %.0f ms, failures <= %.2f%%)\n",
		r.Terminals, r.LoadClient, r.ObjP99ms, 100*r.ObjFailRate)
	fmt.Fprintf(out, "load average: start %.2f %.2f %.2f, end %.2f %.2f %.2f\n",
		r.LoadAvgStart[0], r.LoadAvgStart[1], r.LoadAvgStart[2], r.LoadAvgEnd[0], r.LoadAvgEnd[1], r.LoadAvgEnd[2])
	for _, a := range []struct {
		name string
		r    ArmResult
	}{{ArmEcho, r.Echo}, {ArmGateway, r.Gateway}} {
		note := ""
		if !a.r.LimitReached {
			note = " (never broke: the last rate tried, not a limit)"
		}
		fmt.Fprintf(out, "%-8s max sustainable %6.0f/s%s  p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  CPU/txn broker %.1f us",
			a.name, a.r.MaxRate, note, a.r.P50ms, a.r.P99ms, a.r.P999ms, a.r.BrokerCPUus)
		if a.name == ArmGateway {
			fmt.Fprintf(out, " gateway %.1f us", a.r.GatewayCPUus)
		}
		fmt.Fprintf(out, " load %.1f us", a.r.LoadCPUus)
		fmt.Fprintf(out, "; syscalls/txn broker %.1f", a.r.BrokerSyscalls)
		if a.name == ArmGateway {
			fmt.Fprintf(out, " gateway %.1f", a.r.GatewaySyscalls)
		}
		fmt.Fprintf(out, " load %.1f", a.r.LoadSyscalls)
		fmt.Fprintln(out)
	}
	fmt.Fprintf(out, "gateway/echo ratio %.3f (target 0.8)\n", r.Ratio)
	if h := r.Half; h != nil {
		fmt.Fprintf(out, "at %.0f/s: echo p99 %.2f ms, gateway p99 %.2f ms, target (gateway <= 2 x echo + 5 ms) met: %v\n",
			h.Rate, h.EchoP99ms, h.GatewayP99ms, h.TargetMet)
	}
	fmt.Fprintf(out, "scale: %d of %d connections held (%d alive)\n", r.Scale.Connected, r.Scale.Target, r.Scale.Alive)
}

// runWindow runs one window of one arm: it brings the arm's responder up,
// samples CPU times, offers the load and takes the responder down again so
// that the other arm can use the same subscription.
func runWindow(ctx context.Context, o Options, arm string, rate float64, br *Broker, gcfg GatewayConfig, f *Fleet, topics terminals.Topics, password string) (Window, error) {
	// "load" is this process: the terminals, and in the echo arm also the
	// responder; it shows when the load generator itself is the limit.
	pids := map[string]int{"broker": br.Pid(), "load": os.Getpid()}
	var stop func() error
	check := false
	api := "" // the gateway's operator API, in the gateway arm
	switch arm {
	case ArmEcho:
		e, err := StartEcho(ctx, br.URL(), gatewayUser, password, topics, o.Conns)
		if err != nil {
			return Window{}, err
		}
		stop = func() error { e.Close(); return nil }
	default:
		g, err := StartGateway(ctx, gcfg)
		if err != nil {
			return Window{}, err
		}
		pids[ArmGateway] = g.Pid()
		stop = g.Stop
		check = true
		api = g.API
	}
	before := map[string]time.Duration{}
	beforeSC := map[string]int64{}
	for name, pid := range pids {
		before[name], _ = CPUTime(pid)
		beforeSC[name], _ = Syscalls(pid)
	}
	w := f.Run(ctx, rate, o.Warm, o.Window, o.Timeout, check)
	if err := f.Err(); err != nil {
		stop()
		return w, err
	}
	w.Arm = arm
	w.CPUPerTxn = map[string]time.Duration{}
	w.SyscallsPerTxn = map[string]float64{}
	for name, pid := range pids {
		after, err := CPUTime(pid)
		if err == nil && w.Answered() > 0 {
			w.CPUPerTxn[name] = (after - before[name]) / time.Duration(w.Answered())
		}
		if sc, err := Syscalls(pid); err == nil && w.Answered() > 0 && beforeSC[name] > 0 {
			w.SyscallsPerTxn[name] = float64(sc-beforeSC[name]) / float64(w.Answered())
		}
	}
	w.Pass = o.Objective.Meets(w)
	if api != "" {
		if in, err := GatewayInternals(ctx, api); err == nil {
			w.Internals = &in
		}
	}
	if err := stop(); err != nil {
		return w, err
	}
	return w, ctx.Err()
}

// procsNote says how many processors the gateway runs with.
func procsNote(n int) string {
	if n > 0 {
		return fmt.Sprintf("GOMAXPROCS=%d", n)
	}
	return "GOMAXPROCS the runtime's default"
}
