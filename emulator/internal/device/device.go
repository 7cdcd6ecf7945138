package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"scenepay/terminals"
)

// Errors of the request path. They are wrapped with the terminal and txn id;
// test with errors.Is.
var (
	// ErrTimeout: no genuine reply within the reply timeout (after retries).
	ErrTimeout = errors.New("device: no reply within timeout")
	// ErrBadReplyMAC: a reply for this txn arrived whose MAC does not verify
	// under the terminal key. It is not believed; the device kept waiting.
	ErrBadReplyMAC = errors.New("device: reply MAC does not verify")
	// ErrUnresolved: a purchase got no genuine reply and its reversal was not
	// acknowledged before the context ended; its effect at the gateway is unknown.
	ErrUnresolved = errors.New("device: purchase unanswered and reversal not acknowledged")
	// ErrTooManyPending: PendingMax requests are already waiting for replies.
	ErrTooManyPending = errors.New("device: too many requests awaiting replies")
	// ErrTxnInFlight: another request with the same txn id is awaiting its reply.
	ErrTxnInFlight = errors.New("device: txn id already awaiting a reply")
	// ErrNotConnected: Connect has not succeeded or Close was called.
	ErrNotConnected = errors.New("device: not connected")
	// ErrConfig: the Config is unusable.
	ErrConfig = errors.New("device: bad config")
)

// Defaults and bounds, with their units in the name where they have one.
const (
	DefaultReplyTimeout   = 3 * time.Second
	DefaultBackoffBase    = 100 * time.Millisecond
	DefaultBackoffCap     = 30 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultKeepAlive      = 30 * time.Second
	// DefaultPendingMax bounds the waiters map: requests awaiting a reply.
	DefaultPendingMax = 64
	// waiterDepth bounds the replies buffered for one waiter; more copies
	// (QoS 1 redeliveries) are counted as unknown and dropped.
	waiterDepth = 4
	// configTopicsMax bounds the retained config payloads kept (terminal and group).
	configTopicsMax = 2
	// PaidMax bounds the distinct paid notices a stall terminal keeps.
	PaidMax = 10_000
)

// Config describes one terminal. Flags and environment are read by main only.
type Config struct {
	TID string
	// ClientID is the MQTT client id; "" = TID, as real terminals use.
	// Fleets sharing one broker under different topic roots set their own,
	// or the broker hands one's session to the other.
	ClientID string
	Key      []byte // terminal MAC key: terminals.DeriveKey(master, tid, ver)
	Broker   string // e.g. tcp://127.0.0.1:1883
	Username string // optional broker credentials
	Password string
	Topics   terminals.Topics
	Group    string // terminal group whose retained config to follow; "" = none

	// DenyKey is the config-signing key Kcfg. When set the terminal is a
	// bus reader that follows the bus group's retained deny list (deny.go).
	DenyKey []byte

	Store    Store    // txn counter; nil = a MemStore starting at 0
	Observer Observer // nil = outcomes are not reported

	ReplyTimeout time.Duration // per attempt; 0 = DefaultReplyTimeout
	// Retries is how many times a request is resent (identical bytes) after
	// a reply timeout or a retry-later fault code before giving up; 0 = none.
	// Reversals ignore it: they repeat until acknowledged or ctx ends.
	Retries        int
	BackoffBase    time.Duration // reconnect and busy backoff base; 0 = default
	BackoffCap     time.Duration // full-jitter cap; 0 = DefaultBackoffCap
	ConnectTimeout time.Duration
	KeepAlive      time.Duration
	PendingMax     int              // 0 = DefaultPendingMax
	Now            func() time.Time // 0 = time.Now; stamps "ts"
}

// Stats are the device's counters since New.
type Stats struct {
	Published        uint64 // request publishes, retries included
	Replies          uint64 // genuine replies matched to a waiter
	UnknownReplies   uint64 // genuine replies for no waiting txn (late, redelivered)
	BadReplyMAC      uint64 // replies whose MAC failed
	MalformedReplies uint64 // replies with a good MAC that did not decode
	Timeouts         uint64 // attempts that ended without a reply
	Retries          uint64 // resends of identical bytes
	Reversals        uint64 // reversals acknowledged
	Unresolved       uint64 // purchases left unanswered and unreversed
	Connects         uint64 // successful (re)connections
	ConnectionLost   uint64
	// Notices are genuine unsolicited messages (deposit_low, paid) on the
	// reply topic; they are never taken for a request's reply.
	Notices uint64
	// PaidNotices are the distinct "paid" notices (a stall code paid by a
	// wallet), by txn: a redelivery of one is a notice, not another one.
	PaidNotices uint64
}

type counters struct {
	published, replies, unknown, badMAC, malformed, timeouts, retries,
	reversals, unresolved, connects, lost, notices, paid atomic.Uint64
}

type inbound struct {
	reply terminals.Reply
	raw   []byte
}

type waiter struct {
	keys   []uint64
	ch     chan inbound
	badMAC atomic.Bool
}

// Device is one virtual terminal. Its methods are safe for concurrent use,
// though a real terminal does one transaction at a time.
type Device struct {
	cfg        Config
	replyTopic string
	cfgTopics  []string
	denyTopics [2]string // full, delta; "" when DenyKey is nil
	deny       *DenyList
	client     mqtt.Client

	sealMu sync.Mutex // terminals.Signer is not safe for concurrent use
	sealer *terminals.Signer
	openMu sync.Mutex
	opener *terminals.Signer

	mu      sync.Mutex
	waiters map[uint64]*waiter
	config  map[string][]byte         // retained config by topic, at most configTopicsMax
	paid    map[uint64]terminals.Paid // paid notices by txn, at most PaidMax

	zeroMu sync.Mutex // serializes exchanges whose reply may carry txn 0

	attempt   atomic.Int64 // reconnect attempts since the last connect
	subErr    atomic.Pointer[error]
	readyOnce sync.Once
	ready     chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
	connected atomic.Bool

	c counters
}

// New validates cfg and returns an unconnected Device.
func New(cfg Config) (*Device, error) {
	if !terminals.ValidID(cfg.TID, terminals.MaxTerminalIDLen) {
		return nil, fmt.Errorf("%w: terminal id %q", ErrConfig, cfg.TID)
	}
	if len(cfg.Key) == 0 {
		return nil, fmt.Errorf("%w: %s: empty key", ErrConfig, cfg.TID)
	}
	if cfg.Broker == "" {
		return nil, fmt.Errorf("%w: %s: no broker", ErrConfig, cfg.TID)
	}
	if cfg.Topics.Root == "" {
		cfg.Topics = terminals.DefaultTopics
	}
	if cfg.Store == nil {
		cfg.Store = NewMemStore(0)
	}
	if cfg.ReplyTimeout <= 0 {
		cfg.ReplyTimeout = DefaultReplyTimeout
	}
	if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffCap <= 0 {
		cfg.BackoffCap = DefaultBackoffCap
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.PendingMax <= 0 {
		cfg.PendingMax = DefaultPendingMax
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := &Device{
		cfg:        cfg,
		replyTopic: cfg.Topics.Reply(cfg.TID),
		cfgTopics:  []string{cfg.Topics.Config(cfg.TID)},
		sealer:     terminals.NewSigner(cfg.Key),
		opener:     terminals.NewSigner(cfg.Key),
		waiters:    make(map[uint64]*waiter),
		config:     make(map[string][]byte, configTopicsMax),
		paid:       make(map[uint64]terminals.Paid),
		ready:      make(chan struct{}),
		closed:     make(chan struct{}),
	}
	if cfg.Group != "" {
		d.cfgTopics = append(d.cfgTopics, cfg.Topics.GroupConfig(cfg.Group))
	}
	if len(cfg.DenyKey) > 0 {
		d.deny = NewDenyList()
		d.denyTopics = [2]string{terminals.DenyTopicFull(cfg.Topics), terminals.DenyTopicDelta(cfg.Topics)}
	}
	d.client = mqtt.NewClient(d.options())
	return d, nil
}

// TID is the terminal id.
func (d *Device) TID() string { return d.cfg.TID }

func (d *Device) clientID() string {
	if d.cfg.ClientID != "" {
		return d.cfg.ClientID
	}
	return d.cfg.TID
}

func (d *Device) options() *mqtt.ClientOptions {
	status := d.cfg.Topics.Status(d.cfg.TID)
	o := mqtt.NewClientOptions().
		AddBroker(d.cfg.Broker).
		SetClientID(d.clientID()).
		// A clean session. docs/protocol.md lets terminals keep a persistent
		// session, but paho.mqtt.golang v1.5.1 races when it resends stored
		// in-flight messages on reconnect (upstream issue #703, seen here
		// under the race detector). A virtual terminal does not need the
		// broker's queue: it retries with the same txn id and gets the stored
		// reply, which is the end-to-end rule the protocol relies on anyway.
		SetCleanSession(true).
		SetUsername(d.cfg.Username).
		SetPassword(d.cfg.Password).
		SetKeepAlive(d.cfg.KeepAlive).
		SetConnectTimeout(d.cfg.ConnectTimeout).
		SetWill(status, "offline", 1, true).
		SetAutoReconnect(true).
		// paho's own reconnect backoff is plain doubling without jitter; make
		// it negligible and wait full-jitter in OnReconnecting instead.
		SetMaxReconnectInterval(time.Millisecond).
		SetConnectRetry(false).
		// We subscribe in OnConnect ourselves, so a broker that lost its
		// state (restart without persistence) still gets the subscription.
		SetResumeSubs(false).
		SetOrderMatters(true).
		SetDefaultPublishHandler(d.onMessage).
		SetOnConnectHandler(d.onConnect).
		SetConnectionLostHandler(func(mqtt.Client, error) {
			d.connected.Store(false)
			d.c.lost.Add(1)
		}).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) {
			n := d.attempt.Add(1) - 1
			sleepCtx(d.closed, fullJitter(d.cfg.BackoffBase, d.cfg.BackoffCap, int(n)))
		})
	return o
}

// onConnect runs in its own goroutine after every (re)connection.
func (d *Device) onConnect(c mqtt.Client) {
	d.attempt.Store(0)
	d.c.connects.Add(1)
	var err error
	subs := map[string]byte{d.replyTopic: 1}
	for _, t := range d.cfgTopics {
		subs[t] = 1
	}
	if d.deny != nil {
		subs[d.denyTopics[0]], subs[d.denyTopics[1]] = 1, 1
	}
	tok := c.SubscribeMultiple(subs, d.onMessage)
	if !tok.WaitTimeout(d.cfg.ConnectTimeout) {
		err = fmt.Errorf("device %s: subscribe timed out", d.cfg.TID)
	} else if tok.Error() != nil {
		err = fmt.Errorf("device %s: subscribe: %w", d.cfg.TID, tok.Error())
	}
	if err == nil {
		ptok := c.Publish(d.cfg.Topics.Status(d.cfg.TID), 1, true, "online")
		if !ptok.WaitTimeout(d.cfg.ConnectTimeout) {
			err = fmt.Errorf("device %s: publish online timed out", d.cfg.TID)
		} else if ptok.Error() != nil {
			err = fmt.Errorf("device %s: publish online: %w", d.cfg.TID, ptok.Error())
		}
	}
	if err != nil {
		d.subErr.Store(&err)
	} else {
		d.connected.Store(true)
	}
	d.readyOnce.Do(func() { close(d.ready) })
}

// Connect dials the broker, retrying with full-jitter backoff until ctx ends,
// and returns once the reply subscription is in place and "online" is
// published. AutoReconnect keeps the session up afterwards.
func (d *Device) Connect(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		tok := d.client.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return fmt.Errorf("device %s: connect: %w", d.cfg.TID, ctx.Err())
		}
		if tok.Error() == nil {
			break
		}
		if !sleepCtx(ctx.Done(), fullJitter(d.cfg.BackoffBase, d.cfg.BackoffCap, attempt)) {
			return fmt.Errorf("device %s: connect: %v: %w", d.cfg.TID, tok.Error(), ctx.Err())
		}
	}
	select {
	case <-d.ready:
	case <-ctx.Done():
		return fmt.Errorf("device %s: subscribe: %w", d.cfg.TID, ctx.Err())
	}
	if p := d.subErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Close publishes "offline" (a clean disconnect does not fire the will) and
// disconnects. Waiting requests end with their context or timeout.
func (d *Device) Close() {
	d.closeOnce.Do(func() {
		close(d.closed)
		if d.client.IsConnected() {
			tok := d.client.Publish(d.cfg.Topics.Status(d.cfg.TID), 1, true, "offline")
			tok.WaitTimeout(time.Second)
		}
		d.connected.Store(false)
		d.client.Disconnect(250)
	})
}

// Connected reports whether the session is up.
func (d *Device) Connected() bool { return d.connected.Load() && d.client.IsConnectionOpen() }

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	return Stats{
		Published: d.c.published.Load(), Replies: d.c.replies.Load(),
		UnknownReplies: d.c.unknown.Load(), BadReplyMAC: d.c.badMAC.Load(),
		MalformedReplies: d.c.malformed.Load(), Timeouts: d.c.timeouts.Load(),
		Retries: d.c.retries.Load(), Reversals: d.c.reversals.Load(),
		Unresolved: d.c.unresolved.Load(), Connects: d.c.connects.Load(),
		ConnectionLost: d.c.lost.Load(), Notices: d.c.notices.Load(),
		PaidNotices: d.c.paid.Load(),
	}
}

// Paid returns the distinct "paid" notices received (a stall terminal's
// wallet payments), in no particular order.
func (d *Device) Paid() []terminals.Paid {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]terminals.Paid, 0, len(d.paid))
	for _, p := range d.paid {
		out = append(out, p)
	}
	return out
}

// Deny is the deny list the reader holds; nil unless Config.DenyKey is set.
func (d *Device) Deny() *DenyList { return d.deny }

// Config returns the last retained config payload received on topic (the
// terminal's or its group's config topic), nil if none.
func (d *Device) Config(topic string) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]byte(nil), d.config[topic]...)
}

// onMessage routes every inbound publish. It runs on paho's router goroutine
// and must be quick: paho acknowledges a QoS 1 message after it returns.
func (d *Device) onMessage(_ mqtt.Client, m mqtt.Message) {
	topic := m.Topic()
	if topic == d.replyTopic {
		d.onReply(m.Payload())
		return
	}
	if d.deny != nil && (topic == d.denyTopics[0] || topic == d.denyTopics[1]) {
		_ = d.deny.Receive(d.cfg.DenyKey, m.Payload()) // a refused message is counted and dropped
		return
	}
	for _, t := range d.cfgTopics {
		if topic == t && len(m.Payload()) <= terminals.MaxPayload {
			d.mu.Lock()
			d.config[t] = append([]byte(nil), m.Payload()...)
			d.mu.Unlock()
			return
		}
	}
}

func (d *Device) onReply(payload []byte) {
	raw := append([]byte(nil), payload...)
	d.openMu.Lock()
	body, err := d.opener.Open(raw)
	d.openMu.Unlock()
	if err != nil {
		d.c.badMAC.Add(1)
		// The txn id of an unauthenticated reply is only a hint: it marks the
		// waiter so that its caller learns a forged or broken reply came; the
		// reply itself is never believed.
		if w := d.lookup(peekTxn(raw)); w != nil {
			w.badMAC.Store(true)
		}
		return
	}
	rep, err := terminals.DecodeReply(body)
	if err != nil {
		// Not a reply: a "paid" notice (a wallet paid one of the stall's
		// codes) has a key a reply has not.
		if p, perr := terminals.DecodePaid(body); perr == nil && p.TID == d.cfg.TID {
			d.onPaid(p)
			return
		}
	}
	if err != nil || rep.TID != d.cfg.TID {
		d.c.malformed.Add(1)
		return
	}
	if rep.Type == terminals.ReplyDepositLow {
		// Follows a capture's reply under the capture's txn id: a notice,
		// not an answer; a repeat of the capture must still get its reply.
		d.c.notices.Add(1)
		return
	}
	w := d.lookup(rep.Txn)
	if w == nil {
		d.c.unknown.Add(1)
		return
	}
	select {
	case w.ch <- inbound{reply: *rep, raw: raw}:
	default:
		d.c.unknown.Add(1)
	}
}

// onPaid records a paid notice; a redelivery (QoS 1) of one already
// received counts as a notice only.
func (d *Device) onPaid(p *terminals.Paid) {
	d.c.notices.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, seen := d.paid[p.Txn]; seen || len(d.paid) >= PaidMax {
		return
	}
	d.paid[p.Txn] = *p
	d.c.paid.Add(1)
}

// peekTxn reads "txn" from an unauthenticated frame, 0 if it cannot.
func peekTxn(payload []byte) uint64 {
	body, _, err := terminals.Split(payload)
	if err != nil {
		return 0
	}
	var v struct {
		Txn uint64 `json:"txn"`
	}
	if json.Unmarshal(body, &v) != nil {
		return 0
	}
	return v.Txn
}

func (d *Device) lookup(txn uint64) *waiter {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiters[txn]
}

func (d *Device) register(keys ...uint64) (*waiter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.waiters)+len(keys) > d.cfg.PendingMax {
		return nil, fmt.Errorf("device %s: %w (%d)", d.cfg.TID, ErrTooManyPending, d.cfg.PendingMax)
	}
	for _, k := range keys {
		if _, busy := d.waiters[k]; busy {
			return nil, fmt.Errorf("device %s txn %d: %w", d.cfg.TID, k, ErrTxnInFlight)
		}
	}
	w := &waiter{keys: keys, ch: make(chan inbound, waiterDepth)}
	for _, k := range keys {
		d.waiters[k] = w
	}
	return w, nil
}

func (d *Device) unregister(w *waiter) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range w.keys {
		if d.waiters[k] == w {
			delete(d.waiters, k)
		}
	}
}

// roundTrip publishes payload once and waits up to timeout for a genuine
// reply delivered to w.
func (d *Device) roundTrip(ctx context.Context, w *waiter, payload []byte, timeout time.Duration) (inbound, error) {
	select {
	case <-d.closed:
		return inbound{}, ErrNotConnected
	default:
	}
	tok := d.client.Publish(d.cfg.Topics.Request(d.cfg.TID), 1, false, payload)
	d.c.published.Add(1)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	pubDone := tok.Done()
	var pubErr error
	for {
		select {
		case in := <-w.ch:
			d.c.replies.Add(1)
			return in, nil
		case <-pubDone:
			pubDone = nil
			// A failed publish is not retried at once: the attempt still
			// waits out its timeout so that retries stay spaced.
			pubErr = tok.Error()
		case <-timer.C:
			d.c.timeouts.Add(1)
			if pubErr != nil {
				return inbound{}, fmt.Errorf("%w (publish: %v)", ErrTimeout, pubErr)
			}
			return inbound{}, ErrTimeout
		case <-ctx.Done():
			return inbound{}, ctx.Err()
		case <-d.closed:
			return inbound{}, ErrNotConnected
		}
	}
}
