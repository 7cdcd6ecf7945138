package fleet

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"scenepay/emulator/internal/device"
	"scenepay/terminals"
)

// The live progress line: every ProgressEvery, the request rate over the
// last tick, p50/p99 latency of the last tick's replies, declines by code
// and errors (no genuine reply) since the start, and faults injected. On a
// terminal it is one line rewritten in place; otherwise (a log, a pipe)
// one plain line per tick, so that nothing is garbled by carriage returns.

// sceneShort names the scene messages on the progress line.
var sceneShort = map[string]string{
	terminals.TypeQRPay: "qr", terminals.TypeRefund: "refund", terminals.TypeHold: "hold",
	terminals.TypeCapture: "capture", terminals.TypeRelease: "release", terminals.TypePurchase: "insured",
	terminals.TypeOfflineUpload: "upload", terminals.TypeECNYOffline: "ecny-off", terminals.TypeHeartbeat: "hb",
}

// progressSamplesMax bounds the latencies kept for one tick.
const progressSamplesMax = 10_000

// progress is guarded by runner.mu.
type progress struct {
	tick     []time.Duration
	requests int
	// scene counts the scene messages since the start by short name.
	scene map[string]int
	note  string // a process fault under way, shown on the next line
}

func (p *progress) observe(o device.Outcome) {
	p.requests++
	if n := sceneShort[o.Type]; n != "" && o.Fault == "" {
		if o.Type == terminals.TypePurchase && !o.Req.Ins.Set {
			n = ""
		}
		if n != "" {
			if p.scene == nil {
				p.scene = map[string]int{}
			}
			p.scene[n]++
		}
	}
	if o.Reply != nil && len(p.tick) < progressSamplesMax {
		p.tick = append(p.tick, o.Latency)
	}
}

func (r *runner) progressNote(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prog.note = s
}

// startProgress starts the ticker and returns its stop function, which
// ends the line (a newline after an in-place line).
func (r *runner) startProgress() func() {
	w := r.o.Progress
	if w == nil {
		return func() {}
	}
	every := r.o.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				line := r.progressLine(now.Sub(start), now.Sub(last))
				last = now
				if r.o.ProgressTTY {
					fmt.Fprintf(w, "\r\x1b[K%s", line)
				} else {
					fmt.Fprintln(w, line)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		if r.o.ProgressTTY {
			fmt.Fprintln(w)
		}
	}
}

func (r *runner) progressLine(elapsed, interval time.Duration) string {
	r.mu.Lock()
	n := r.prog.requests
	lat := r.prog.tick
	note := r.prog.note
	r.prog.requests, r.prog.tick, r.prog.note = 0, nil, ""
	declines := map[terminals.Code]int{}
	for c, k := range r.rep.ByCode {
		if !c.Approved() {
			declines[c] = k
		}
	}
	var sc strings.Builder
	for _, n := range []string{"qr", "refund", "ecny-off", "hold", "capture", "release", "insured", "upload", "hb"} {
		if k := r.prog.scene[n]; k > 0 {
			fmt.Fprintf(&sc, " %s:%d", n, k)
		}
	}
	errs := r.rep.NoReply
	approved := r.rep.ByCode[terminals.CodeApproved]
	nfault := 0
	for _, k := range r.rep.Faults {
		nfault += k
	}
	r.mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) string {
		if len(lat) == 0 {
			return "-"
		}
		return ms(lat[int(p*float64(len(lat)-1))])
	}
	codes := make([]string, 0, len(declines))
	for c := range declines {
		codes = append(codes, string(c))
	}
	sort.Strings(codes)
	var dec strings.Builder
	for _, c := range codes {
		fmt.Fprintf(&dec, " %s:%d", c, declines[terminals.Code(c)])
	}
	rate := float64(n) / max(interval.Seconds(), 1e-3)
	line := fmt.Sprintf("[%s] %.0f req/s  p50 %s ms  p99 %s ms  approved %d  declines{%s }  scene{%s }  errors %d  faults %d",
		elapsed.Round(time.Second), rate, q(0.5), q(0.99), approved, dec.String(), sc.String(), errs, nfault)
	if note != "" {
		line += "  (" + note + ")"
	}
	return line
}
