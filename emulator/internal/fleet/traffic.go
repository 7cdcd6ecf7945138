package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"scenepay/emulator/internal/device"
	"scenepay/terminals"
)

// The scenario traffic: a dispatcher draws arrivals from the scenario's
// rate profile (exponential gaps at Options.Rate times the profile's level)
// and hands each to a free terminal of the scene the mix picks; each
// terminal does one piece of work at a time, as real hardware does:
//   - a bus reader taps a rider in, and out again at a later stop;
//   - a stall terminal takes a sale;
//   - a hospital kiosk takes a patient's registration fee.
//
// and the scene messages of scene_work.go: QR payments, refunds and e-CNY
// offline payments at stalls, deposits and insured bills at kiosks,
// offline stretches, uploads, heartbeats and the deny list on buses.

// Faults switch on the per-work faults of a scenario run. Each piece of work
// gets one of the enabled ones with probability Rate; GatewayKills and
// BrokerRestarts happen at even intervals through the run and need a Rig.
type Faults struct {
	Rate       float64
	Duplicate  bool // resend the exact bytes; the reply must be byte-identical
	Tamper     bool // flip a body byte after sealing; BAD_MAC
	Replay     bool // replay a message captured earlier from the same terminal
	Skew       bool // terminal clock SkewFault ahead; CLOCK_SKEW, then a corrected retry
	Disconnect bool // the broker drops the terminal's connection
	Reboot     bool // power loss after publishing; the counter survives in the Store
	Offline    bool // the link is down for two reply timeouts while the terminal works
	// GatewayKills and BrokerRestarts are how many times the run SIGKILLs
	// and restarts the gateway, or restarts the broker.
	GatewayKills   int
	BrokerRestarts int
}

// SkewFault is the clock error of the skew fault: twice the gateway's
// default allowance of 5 minutes.
const SkewFault = 10 * time.Minute

// FaultNames are the names ParseFaults accepts.
const FaultNames = "dup, tamper, replay, skew, disconnect, reboot, offline, gateway-kill, broker-restart, all"

// ParseFaults reads a comma-separated list of fault names ("" = none).
func ParseFaults(s string, rate float64) (Faults, error) {
	f := Faults{Rate: rate}
	for _, n := range strings.Split(s, ",") {
		switch strings.TrimSpace(n) {
		case "":
		case "dup", "duplicate":
			f.Duplicate = true
		case "tamper":
			f.Tamper = true
		case "replay":
			f.Replay = true
		case "skew":
			f.Skew = true
		case "disconnect":
			f.Disconnect = true
		case "reboot":
			f.Reboot = true
		case "offline":
			f.Offline = true
		case "gateway-kill":
			f.GatewayKills = 1
		case "broker-restart":
			f.BrokerRestarts = 1
		case "all":
			f.Duplicate, f.Tamper, f.Replay, f.Skew, f.Disconnect, f.Reboot, f.Offline = true, true, true, true, true, true, true
			f.GatewayKills, f.BrokerRestarts = 1, 1
		default:
			return Faults{}, fmt.Errorf("fleet: unknown fault %q (known: %s)", n, FaultNames)
		}
	}
	if rate < 0 || rate > 1 {
		return Faults{}, fmt.Errorf("fleet: fault rate %v outside 0..1", rate)
	}
	return f, nil
}

func (f Faults) perWork() []string {
	var out []string
	for _, e := range []struct {
		on   bool
		name string
	}{{f.Duplicate, "dup"}, {f.Tamper, "tamper"}, {f.Replay, "replay"}, {f.Skew, "skew"},
		{f.Disconnect, "disconnect"}, {f.Reboot, "reboot"}, {f.Offline, "offline"}} {
		if e.on {
			out = append(out, e.name)
		}
	}
	return out
}

// Rig is the processes a run started itself (the gateway binary, a private
// broker), for the faults that need them. nil when the run was given them.
type Rig interface {
	// KillGateway SIGKILLs the gateway and starts it again on the same
	// data, returning once it is ready.
	KillGateway(ctx context.Context) error
	// RestartBroker stops the broker and starts it again on the same port.
	RestartBroker(ctx context.Context) error
	// API is the gateway's operator API base URL (it may change on restart).
	API() string
}

// slot is one terminal's worker state; only its worker goroutine touches it
// after start (the device pointer changes on a reboot).
type slot struct {
	i        int
	spec     TerminalSpec
	cfg      device.Config
	dev      *device.Device
	skew     *atomic.Int64 // clock error in ns, read by cfg.Now
	rng      *rand.Rand
	route    RouteSpec
	capture  *captured    // a message kept for the replay fault
	paid     []*paid      // stalls: recent qr_pays that may be refunded
	lastCode *shownCode   // stalls: the last code paid by (scanned again now and then)
	deps     []*deposit   // kiosks: open inpatient deposits
	off      offlineState // bus readers: offline stretch and backlog
	wal      stallWallet  // stalls: stall codes and the wallet payments through them
}

type captured struct {
	s   device.Sealed
	raw []byte
}

// riders hands out riders not on a bus now; a rider whose tap_out went
// unanswered on a distance route is retired (its journey may still be open).
type riders struct {
	mu      sync.Mutex
	all     []terminals.Instrument
	busy    map[int]bool
	retired int
	// low is the rider index of the card holding less than a fare; the
	// first offline journey of a run takes it when it is free.
	low     int
	lowUsed bool
}

// takeLow hands out the low-balance card once per run, if it is free.
func (rs *riders) takeLow() (int, bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.lowUsed || rs.busy[rs.low] {
		return 0, false
	}
	rs.lowUsed, rs.busy[rs.low] = true, true
	return rs.low, true
}

func (rs *riders) take(rng *rand.Rand) (int, bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for range 8 {
		i := rng.IntN(len(rs.all))
		if !rs.busy[i] {
			rs.busy[i] = true
			return i, true
		}
	}
	return 0, false
}

func (rs *riders) release(i int, retire bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if retire {
		rs.retired++
		return // stays busy for good
	}
	delete(rs.busy, i)
}

func (r *runner) countFault(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.Faults[name]++
}

// scenario runs the named rate profile until its end (or Duration, or ctx).
func (r *runner) scenario(ctx, work context.Context, sc Scenario) {
	scale := r.o.TimeScale
	if scale < 1 {
		scale = 1
	}
	length := sc.WallLength(scale)
	if r.o.Duration > 0 {
		length = r.o.Duration
	}
	ctx, cancel := context.WithTimeout(ctx, length)
	defer cancel()
	clock := Clock{Start: sc.Start(), Scale: scale}
	rng := rand.New(rand.NewPCG(r.o.Seed, 0x5cea))
	town := r.town
	// The card holding less than one fare rides too: online it is
	// declined, offline a reader lets it on, and its upload leaves debt,
	// which puts it on the deny list every reader then follows.
	all := append(r.pop.Riders(), r.pop.Accounts[r.pop.LowCounty].Inst)
	rs := &riders{all: all, busy: map[int]bool{}, low: len(all) - 1}
	perWork := r.o.Faults.perWork()
	if sc.StallCodes {
		r.registerStallCodes(ctx)
	}

	jobs := make([]chan struct{}, len(r.slots))
	var wg sync.WaitGroup
	for i, s := range r.slots {
		jobs[i] = make(chan struct{}, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs[i] {
				fault := ""
				if len(perWork) > 0 && s.rng.Float64() < r.o.Faults.Rate {
					fault = perWork[s.rng.IntN(len(perWork))]
				}
				r.work(work, s, fault, rs, town)
			}
			// The run ends: a reader still offline comes back and uploads.
			s.off.left = 0
			r.flushOffline(work, s, rs)
		}()
	}
	byKind := map[string][]int{}
	for i, s := range r.slots {
		byKind[s.spec.Kind] = append(byKind[s.spec.Kind], i)
	}
	kinds := [3]string{KindBus, KindStall, KindKiosk}
	var rigWG sync.WaitGroup
	r.rigFaults(ctx, work, length, &rigWG)
	start := time.Now()
loop:
	for ctx.Err() == nil {
		level := sc.Level(clock.At(time.Since(start)))
		rate := r.o.Rate * level
		if rate <= 0 {
			if !sleepFor(ctx, 50*time.Millisecond) {
				break
			}
			continue
		}
		if !sleepFor(ctx, time.Duration(rng.ExpFloat64()/rate*float64(time.Second))) {
			break
		}
		if r.ledger.Full() {
			break loop
		}
		// The mix picks a scene among those the fleet has.
		var total float64
		for k, w := range sc.Mix {
			if len(byKind[kinds[k]]) > 0 {
				total += w
			}
		}
		x := rng.Float64() * total
		kind := kinds[0]
		for k, w := range sc.Mix {
			if len(byKind[kinds[k]]) == 0 {
				continue
			}
			kind = kinds[k]
			if x < w {
				break
			}
			x -= w
		}
		idx := byKind[kind]
		i := idx[rng.IntN(len(idx))]
		select {
		case jobs[i] <- struct{}{}:
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
	rigWG.Wait()
	r.denyCheck(work)
	r.paidCheck(work)
	r.repayDebt(work)
	r.mu.Lock()
	r.rep.RetiredRiders = rs.retired
	r.mu.Unlock()
}

func sleepFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// rigFaults schedules the process faults at even intervals of the run.
func (r *runner) rigFaults(ctx, work context.Context, length time.Duration, wg *sync.WaitGroup) {
	f := r.o.Faults
	if f.GatewayKills+f.BrokerRestarts == 0 {
		return
	}
	if r.o.Rig == nil {
		r.check("process faults need a rig", false, "gateway-kill and broker-restart need -gateway-bin (the emulator must have started the processes)")
		return
	}
	type ev struct {
		at   time.Duration
		name string
		do   func(context.Context) error
	}
	var evs []ev
	for k := range f.GatewayKills {
		evs = append(evs, ev{length * time.Duration(2*k+1) / time.Duration(2*f.GatewayKills+1), "gateway-kill", r.o.Rig.KillGateway})
	}
	for k := range f.BrokerRestarts {
		evs = append(evs, ev{length * time.Duration(2*k+2) / time.Duration(2*f.BrokerRestarts+2), "broker-restart", r.o.Rig.RestartBroker})
	}
	for _, e := range evs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sleepFor(ctx, e.at) {
				return
			}
			r.countFault(e.name)
			r.progressNote(e.name)
			r.disrupt(true)
			err := e.do(work)
			r.disrupt(false)
			r.check(e.name+" and recovery", err == nil, fmt.Sprint(err))
		}()
	}
}

// work is one piece of a terminal's work, with an optional fault.
func (r *runner) work(ctx context.Context, s *slot, fault string, rs *riders, town Town) {
	if fault != "" {
		r.countFault(fault)
	}
	switch fault {
	case "tamper":
		inst, amt := r.pop.Pick(s.rng, KindStall)
		if sl, err := s.dev.Prepare(device.Purchase(inst, amt)); err == nil {
			t0 := time.Now()
			rep, _, err := s.dev.Inject(ctx, s.dev.Tampered(sl))
			if !r.lostToDisruption(t0, err) {
				r.expect("tampered message refused", rep, err, terminals.CodeBadMAC)
			}
		}
	case "replay":
		if c := s.capture; c != nil {
			rep, raw, err := s.dev.Inject(ctx, s.dev.Duplicate(c.s))
			ok := err == nil && (bytes.Equal(raw, c.raw) || rep.Code == terminals.CodeReplay)
			r.check("replayed message gets the stored reply or REPLAY", ok, fmt.Sprintf("%s txn %d: code %s err %v", s.spec.TID, c.s.Req.Txn, rep.Code, err))
		}
	case "skew":
		s.skew.Store(int64(SkewFault))
		inst, amt := r.pop.Pick(s.rng, KindStall)
		t0 := time.Now()
		rep, _, err := s.dev.Do(ctx, device.Purchase(inst, amt))
		s.skew.Store(0)
		if !r.lostToDisruption(t0, err) {
			r.expect("skewed clock refused", rep, err, terminals.CodeClockSkew)
		}
	case "disconnect":
		if err := s.dev.Kick(ctx); err != nil {
			r.check("disconnect", false, err.Error())
		}
	case "offline":
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.dev.Offline(ctx, 2*r.o.ReplyTimeout)
		}()
		defer func() { <-done }()
	}
	switch s.spec.Kind {
	case KindBus:
		st := &s.off
		st.works++
		switch {
		case st.left > 0:
			r.offlineJourney(ctx, s, rs)
			if st.left--; st.left == 0 {
				r.flushOffline(ctx, s, rs)
			}
			return
		case !s.route.Distance && ((st.stretches == 0 && st.works >= 3) || s.rng.IntN(100) < offlinePercent):
			// The reader's link goes; it works offline for a while.
			st.left = 4 + s.rng.IntN(12)
			st.stretches++
			r.countScene("offline-stretch")
			r.offlineJourney(ctx, s, rs)
			return
		}
		if st.works >= heartbeatEvery {
			st.works = 0
			r.heartbeat(ctx, s)
		}
		r.busWork(ctx, s, fault, rs)
	case KindStall:
		r.stallWork(ctx, s, fault)
	default:
		r.kioskWork(ctx, s, fault, town)
	}
}

// busWork is one rider's journey: tap_in, a short ride, tap_out. A tap_in
// without an answer is followed by the tap_out anyway: it closes whatever
// the gateway holds (or is approved with amt 0). A rider whose tap_out is
// unanswered on a distance route is retired: the journey may be open.
func (r *runner) busWork(ctx context.Context, s *slot, fault string, rs *riders) {
	ri, ok := rs.take(s.rng)
	if !ok {
		return
	}
	inst := rs.all[ri]
	rt := s.route
	var in, out string
	if rt.Distance {
		a := s.rng.IntN(len(rt.Stops) - 1)
		b := a + 1 + s.rng.IntN(len(rt.Stops)-a-1)
		in, out = rt.Stops[a], rt.Stops[b]
	}
	rep, err := r.send(ctx, s, fault, device.TapIn(inst, rt.ID, in))
	if err == nil && !rep.Code.Approved() {
		rs.release(ri, false) // declined: no journey
		return
	}
	sleepFor(ctx, time.Duration(5+s.rng.IntN(20))*time.Millisecond)
	rep, err = r.send(ctx, s, "", device.TapOut(inst, rt.ID, out))
	rs.release(ri, err != nil && rt.Distance)
	_ = rep
}

// send prepares and sends req on the slot's device, applying the faults
// that wrap a single request (dup, reboot), and keeps the message for a
// later replay.
func (r *runner) send(ctx context.Context, s *slot, fault string, req terminals.Request) (terminals.Reply, error) {
	_, rep, _, err := r.sendSealed(ctx, s, fault, req)
	return rep, err
}

// sendSealed is send, returning the sealed request and the raw reply.
func (r *runner) sendSealed(ctx context.Context, s *slot, fault string, req terminals.Request) (device.Sealed, terminals.Reply, []byte, error) {
	sl, err := s.dev.Prepare(req)
	if err != nil {
		r.check("prepare", false, err.Error())
		return sl, terminals.Reply{}, nil, err
	}
	if fault == "reboot" {
		// Power goes after the publish; the terminal boots, reads its
		// counter and pending request from the Store and sends it again.
		if err := s.dev.PublishOnly(sl); err != nil {
			r.check("reboot: publish before power loss", false, err.Error())
		}
		r.rebootSlot(ctx, s)
	}
	rep, raw, err := s.dev.Send(ctx, sl)
	if err != nil {
		return sl, rep, raw, err
	}
	if fault == "dup" {
		t0 := time.Now()
		d, draw, derr := s.dev.Inject(ctx, s.dev.Duplicate(sl))
		if r.lostToDisruption(t0, derr) {
			return sl, rep, raw, nil
		}
		r.check("duplicate gets the byte-identical reply", derr == nil && bytes.Equal(raw, draw) && d.Code == rep.Code,
			fmt.Sprintf("%s txn %d: err %v identical=%v", s.spec.TID, sl.Req.Txn, derr, bytes.Equal(raw, draw)))
	}
	if s.capture == nil || s.rng.IntN(4) == 0 {
		s.capture = &captured{s: sl, raw: raw}
	}
	return sl, rep, raw, nil
}

// rebootSlot replaces the slot's device by a new one over the same Store
// and configuration, as a terminal coming back from a power loss.
func (r *runner) rebootSlot(ctx context.Context, s *slot) {
	old := s.dev
	old.Close()
	r.addStats(old.Stats())
	s.wal.keepNotices(old.Paid()) // what the display showed before the power went
	d, err := device.New(s.cfg)
	if err != nil {
		r.check("reboot", false, err.Error())
		return
	}
	if err := d.Connect(ctx); err != nil {
		r.check("reboot: reconnect", false, err.Error())
	}
	s.dev = d
}

func (r *runner) addStats(s device.Stats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &r.rep.Device
	d.Published += s.Published
	d.Replies += s.Replies
	d.UnknownReplies += s.UnknownReplies
	d.BadReplyMAC += s.BadReplyMAC
	d.MalformedReplies += s.MalformedReplies
	d.Timeouts += s.Timeouts
	d.ConnectionLost += s.ConnectionLost
}

// disrupt marks the start (true) or end of a process fault (the gateway
// killed and restarting, the broker restarting).
func (r *runner) disrupt(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.disrupting++
		return
	}
	r.disrupting--
	r.disruptedAt = time.Now()
}

// lostToDisruption reports whether a fault probe sent at t0 went
// unanswered while a process fault was under way (or ended shortly before
// or after t0): a
// gateway that is down answers nothing, which says nothing about how it
// treats the probe. It is noted, not checked.
func (r *runner) lostToDisruption(t0 time.Time, err error) bool {
	if !errors.Is(err, device.ErrTimeout) && !errors.Is(err, device.ErrNotConnected) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// A gateway ready again may still be subscribing: a grace of two
	// reply timeouts after the fault ended.
	if r.disrupting == 0 && r.disruptedAt.Add(2*r.o.ReplyTimeout).Before(t0) {
		return false
	}
	r.rep.Scene["probe-lost-to-process-fault"]++
	return true
}
