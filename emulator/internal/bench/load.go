package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"scenepay/terminals"
)

// Load bounds.
const (
	// pendingMax bounds the unanswered requests one terminal tracks; a send
	// past it is counted as an overflow error instead of growing the map.
	pendingMax = 8192
	// samplesMax bounds the latency samples one terminal keeps per window.
	samplesMax = 1 << 16
	// connectTimeout bounds one terminal's MQTT connect and subscribe.
	connectTimeout = 10 * time.Second
	// purchaseFen is the amount of every benchmark purchase.
	purchaseFen = 100
)

// term is one lightweight virtual terminal: it publishes sealed purchases on
// its request topic and matches replies on its reply topic by txn id, over
// its own paho connection or over a raw client connection (rawload.go).
// Unlike emulator/internal/device it keeps no txn store and does not retry:
// a lost message is a timeout in the figures.
type term struct {
	tid    string
	inst   terminals.Instrument
	req    string
	reply  string
	signer *terminals.Signer // sender goroutine only
	client mqtt.Client       // paho
	rc     *rawConn          // raw client
	txn    uint64            // sender goroutine only

	mu       sync.Mutex
	pending  map[uint64]int64 // txn -> scheduled send time, Unix ns
	samples  []int64          // latencies of measured requests, ns
	warmFrom int64            // requests scheduled before this are not sampled
	timeout  int64            // ns; a later reply counts as a timeout
	ok       int64
	bad      int64 // answered with a code other than APPROVED (when checked)
	late     int64
	overflow int64
	stray    int64 // replies for no pending txn (late from an earlier window)
	dropped  int64 // samples past samplesMax
	check    bool  // reply must carry code 00
}

// Fleet is the set of benchmark terminals, on paho clients (ConnectFleet)
// or on the raw client (ConnectRawFleet).
type Fleet struct {
	terms []*term
	raw   *rawNet // nil: paho
}

// newTerms makes n terminals named by tid, their txn ids starting after
// txnBase.
func newTerms(topics terminals.Topics, master []byte, n int, txnBase uint64, tid func(int) string) []*term {
	terms := make([]*term, n)
	for i := range n {
		id := tid(i)
		terms[i] = &term{
			tid:     id,
			inst:    terminals.Instrument{Kind: terminals.InstCounty, ID: AccountID(i)},
			req:     topics.Request(id),
			reply:   topics.Reply(id),
			signer:  terminals.NewSigner(terminals.DeriveKey(master, id, 1)),
			txn:     txnBase,
			pending: make(map[uint64]int64),
		}
	}
	return terms
}

// Client names the load client of f.
func (f *Fleet) Client() string {
	if f.raw != nil {
		return LoadRaw
	}
	return LoadPaho
}

// Err is the first connection error of the raw client (paho: nil; its
// losses show as timeouts).
func (f *Fleet) Err() error {
	if f.raw != nil {
		return f.raw.Err()
	}
	return nil
}

// TerminalID is the id of benchmark terminal i (0-based).
func TerminalID(i int) string { return fmt.Sprintf("BENCH-%04d", i+1) }

// AccountID is the county card the terminal i pays with.
func AccountID(i int) string { return fmt.Sprintf("77%08d", i+1) }

// ConnectFleet connects n terminals to brokerURL. Each subscribes to its
// reply topic before it sends anything.
func ConnectFleet(ctx context.Context, brokerURL string, topics terminals.Topics, master []byte, n int, txnBase uint64) (*Fleet, error) {
	f := &Fleet{terms: newTerms(topics, master, n, txnBase, TerminalID)}
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32) // dial in parallel, but not all at once
	for i, t := range f.terms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = t.connect(ctx, brokerURL, topics)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (t *term) connect(ctx context.Context, url string, topics terminals.Topics) error {
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(t.tid).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetKeepAlive(30 * time.Second).
		SetConnectTimeout(connectTimeout).SetOrderMatters(true)
	t.client = mqtt.NewClient(o)
	if err := wait(ctx, t.client.Connect()); err != nil {
		return fmt.Errorf("bench: connect %s: %w", t.tid, err)
	}
	if err := wait(ctx, t.client.Subscribe(t.reply, 1, t.onReply)); err != nil {
		return fmt.Errorf("bench: subscribe %s: %w", t.tid, err)
	}
	return nil
}

func wait(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(connectTimeout):
		return errors.New("timed out")
	}
}

// Close disconnects every terminal.
func (f *Fleet) Close() {
	if f.raw != nil {
		f.raw.close()
		return
	}
	var wg sync.WaitGroup
	for _, t := range f.terms {
		if t.client != nil {
			wg.Add(1)
			go func() { defer wg.Done(); t.client.Disconnect(50) }()
		}
	}
	wg.Wait()
}

// field returns the bytes after `"name":` up to the next ',' or '}' (string
// quotes removed). It does not parse JSON: the echo arm's replies are the
// request bytes, the gateway's are its reply bodies, and both carry the
// fields at top level before any nested object that could repeat a name.
func field(b []byte, name string) []byte {
	return fieldKey(b, []byte(`"`+name+`":`))
}

// Keys of the fields a reply is matched by.
var (
	keyTxn  = []byte(`"txn":`)
	keyCode = []byte(`"code":`)
)

// fieldKey is field for a prepared key `"name":`; it does not allocate.
func fieldKey(b, key []byte) []byte {
	i := bytes.Index(b, key)
	if i < 0 {
		return nil
	}
	v := b[i+len(key):]
	j := bytes.IndexAny(v, ",}\n")
	if j < 0 {
		return nil
	}
	return bytes.Trim(v[:j], `"`)
}

func (t *term) onReply(_ mqtt.Client, m mqtt.Message) {
	t.onPayload(m.Payload(), time.Now().UnixNano())
}

// parseTxn is strconv.ParseUint(string(b), 10, 64) without the string.
func parseTxn(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// onPayload matches a reply payload received at now (Unix ns).
func (t *term) onPayload(p []byte, now int64) {
	txn, okTxn := parseTxn(fieldKey(p, keyTxn))
	t.mu.Lock()
	defer t.mu.Unlock()
	sched, ok := t.pending[txn]
	if !okTxn || !ok {
		t.stray++
		return
	}
	delete(t.pending, txn)
	lat := now - sched
	switch {
	case t.check && string(fieldKey(p, keyCode)) != string(terminals.CodeApproved):
		t.bad++
	case lat > t.timeout:
		t.late++
	default:
		t.ok++
		if sched >= t.warmFrom {
			if len(t.samples) < samplesMax {
				t.samples = append(t.samples, lat)
			} else {
				t.dropped++
			}
		}
	}
}

// body appends a purchase body for txn at terminal time ts (Unix ms).
func (t *term) body(dst []byte, txn uint64, ts int64) []byte {
	dst = append(dst, `{"v":1,"type":"purchase","tid":"`...)
	dst = append(dst, t.tid...)
	dst = append(dst, `","txn":`...)
	dst = strconv.AppendUint(dst, txn, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, `,"amt":`...)
	dst = strconv.AppendInt(dst, purchaseFen, 10)
	dst = append(dst, `,"inst":{"k":"county","id":"`...)
	dst = append(dst, t.inst.ID...)
	return append(dst, `"}}`...)
}

// send runs one terminal's share of an open-loop window: requests are due
// at start+offset+k*interval for every k before end, whatever happened to
// earlier ones. A sender that wakes late sends at once, and the latency of
// that request still counts from its due time.
func (t *term) send(ctx context.Context, start, end time.Time, offset, interval time.Duration) {
	var buf []byte
	for k := int64(0); ; k++ {
		due := start.Add(offset + time.Duration(k)*interval)
		if !due.Before(end) || ctx.Err() != nil {
			return
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		t.mu.Lock()
		if len(t.pending) >= pendingMax {
			t.overflow++
			t.mu.Unlock()
			continue
		}
		t.txn++
		txn := t.txn
		t.pending[txn] = due.UnixNano()
		t.mu.Unlock()
		buf = t.body(buf[:0], txn, time.Now().UnixMilli())
		// A fresh slice per message: paho keeps the payload until PUBACK.
		t.client.Publish(t.req, 1, false, t.signer.Seal(make([]byte, 0, len(buf)+65), buf))
	}
}

// Window is the outcome of one open-loop window of one arm.
type Window struct {
	Arm      string        `json:"arm"`
	Rate     float64       `json:"rate"` // offered requests per second
	Sent     int64         `json:"sent"`
	OK       int64         `json:"ok"`
	Bad      int64         `json:"bad"`      // answered, not approved
	Timeouts int64         `json:"timeouts"` // unanswered or answered after the timeout
	Overflow int64         `json:"overflow"`
	Stray    int64         `json:"stray"`
	P50      time.Duration `json:"-"`
	P99      time.Duration `json:"-"`
	P999     time.Duration `json:"-"`
	Max      time.Duration `json:"-"`
	Samples  int           `json:"samples"`
	Elapsed  time.Duration `json:"-"`
	// CPU per answered request, by process name (broker, gateway).
	CPUPerTxn map[string]time.Duration `json:"-"`
	// System calls (reads and writes) per answered request, by process.
	SyscallsPerTxn map[string]float64 `json:"-"`
	// Internals is the gateway's own account of the window (gateway arm).
	Internals *Internals `json:"-"`
	Pass      bool       `json:"pass"`
}

// Failures is every request that did not end in a timely expected answer.
func (w Window) Failures() int64 { return w.Bad + w.Timeouts + w.Overflow }

// Objective is the latency objective a window must meet.
type Objective struct {
	P99         time.Duration // p99 at most this
	FailureRate float64       // failures/sent at most this
}

// Meets reports whether w meets o.
func (o Objective) Meets(w Window) bool {
	if w.Sent == 0 || w.Samples == 0 {
		return false
	}
	return w.P99 <= o.P99 && float64(w.Failures()) <= o.FailureRate*float64(w.Sent)
}

// Run offers rate requests per second across the fleet for dur, measuring
// requests scheduled after warm, then waits up to timeout for the last
// answers. check requires code 00 in every answer (the gateway arm).
func (f *Fleet) Run(ctx context.Context, rate float64, warm, dur, timeout time.Duration, check bool) Window {
	n := len(f.terms)
	start := time.Now().Add(20 * time.Millisecond)
	end := start.Add(dur)
	for _, t := range f.terms {
		t.mu.Lock()
		clear(t.pending)
		t.samples = t.samples[:0]
		t.ok, t.bad, t.late, t.overflow, t.stray, t.dropped = 0, 0, 0, 0, 0, 0
		t.warmFrom = start.Add(warm).UnixNano()
		t.timeout = int64(timeout)
		t.check = check
		t.mu.Unlock()
	}
	// Each terminal sends every n/rate seconds, the terminals spread
	// evenly over one interval so that the fleet's arrivals are uniform.
	// The raw client keeps the same schedule: request j is due at
	// start + j/rate and belongs to terminal j mod n.
	if f.raw != nil {
		f.raw.run(ctx, start, end, rate)
	} else {
		interval := time.Duration(float64(n) / rate * float64(time.Second))
		var wg sync.WaitGroup
		for i, t := range f.terms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.send(ctx, start, end, time.Duration(i)*interval/time.Duration(n), interval)
			}()
		}
		wg.Wait()
	}
	// Drain: wait for the answers still due, at most timeout past the end.
	drainEnd := time.Now().Add(timeout)
	for time.Now().Before(drainEnd) && ctx.Err() == nil {
		if f.pending() == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	w := Window{Rate: rate, Elapsed: time.Since(start)}
	var all []int64
	for _, t := range f.terms {
		t.mu.Lock()
		w.OK += t.ok
		w.Bad += t.bad
		w.Timeouts += t.late + int64(len(t.pending))
		w.Overflow += t.overflow
		w.Stray += t.stray
		w.Sent += t.ok + t.bad + t.late + int64(len(t.pending)) + t.overflow
		all = append(all, t.samples...)
		// Pending entries left now are counted; forget them so that a
		// late answer in the next window is a stray, not a sample.
		clear(t.pending)
		t.mu.Unlock()
	}
	slices.Sort(all)
	w.Samples = len(all)
	if len(all) > 0 {
		w.P50 = time.Duration(quantile(all, 0.50))
		w.P99 = time.Duration(quantile(all, 0.99))
		w.P999 = time.Duration(quantile(all, 0.999))
		w.Max = time.Duration(all[len(all)-1])
	}
	return w
}

func (f *Fleet) pending() int {
	n := 0
	for _, t := range f.terms {
		t.mu.Lock()
		n += len(t.pending)
		t.mu.Unlock()
	}
	return n
}

// quantile is the nearest-rank q-quantile of sorted s.
func quantile(s []int64, q float64) int64 {
	i := int(q*float64(len(s))+0.999999) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}

// Answered is the requests answered in w (for CPU per transaction).
func (w Window) Answered() int64 { return w.OK + w.Bad }
