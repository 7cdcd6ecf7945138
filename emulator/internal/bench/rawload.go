package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"scenepay/internal/mqttwire"
	"scenepay/terminals"
)

// Raw load client bounds.
const (
	// rawReadBuf is a connection's first read buffer; it grows (up to
	// mqttwire.PacketMax) only for a packet that does not fit.
	rawReadBuf = 8 << 10
	// rawWriteBuf is a connection's write buffer, flushed once per tick.
	rawWriteBuf = 16 << 10
	// rawDialers is how many connections are set up at a time.
	rawDialers = 32
	// DefaultLoadTick is the raw client's default write-coalescing period.
	// Short: with one connection per terminal a tick rarely finds two
	// requests for one connection, and on the 2-core development machine
	// (200 terminals, 3,818/s) 100 us cost the same CPU per transaction as
	// 1 ms while 1 ms added about 0.5-0.8 ms to every p50 (each request
	// waits for its tick, and latency counts from the scheduled time).
	// Larger ticks pay off with several terminals per connection.
	DefaultLoadTick = 100 * time.Microsecond
	// DefaultAckDelay is how long the raw client may hold a PUBACK for a
	// reply to send it with the connection's next request. It is longer
	// than a terminal's interval between requests at the rates that load
	// the machine (200 terminals at 1,000/s and more: 200 ms or less), so
	// there nearly every PUBACK rides with a request.
	DefaultAckDelay = 200 * time.Millisecond
)

// Load client names (Options.LoadClient).
const (
	LoadRaw  = "raw"
	LoadPaho = "paho"
)

// RawConfig configures the raw load client.
type RawConfig struct {
	Addr   string // broker host:port
	Topics terminals.Topics
	// PerConn is the terminals sharing one connection. 1 is the real
	// shape: one anonymous connection per terminal with client id =
	// terminal id, as the deployed ACL (%c lines) requires. More than one
	// needs a login that may use every terminal's topics, which the ACL
	// grants only to the gateway user (User, Password).
	PerConn        int
	User, Password string
	// Tick is the write-coalescing period: each scheduler goroutine wakes
	// at most once per tick and flushes every connection it wrote to.
	Tick time.Duration
	// AckDelay bounds how long a PUBACK for a reply waits in the write
	// buffer for the connection's next request to carry it: a connection
	// that sends nothing meanwhile flushes it alone. Holding it does not
	// touch the measured path (the reply is timed when read; the broker
	// keeps sending while fewer than max_inflight_messages are unacked)
	// and saves a write and a wake-up per transaction.
	AckDelay time.Duration
	// Writers is the number of scheduler goroutines (0 = 1; at most
	// GOMAXPROCS and the number of connections), each owning the writes
	// of a share of the connections.
	Writers int
	// TID names terminal i; nil means TerminalID (the provisioned fleet).
	TID func(i int) string
}

// rawNet is the raw client's machinery behind a Fleet: RawConfig.Writers
// scheduler goroutines (one by default) that own the connections' writes,
// and one reader goroutine per connection.
//
// Writes: a scheduler wakes when its next request is due (never more than
// once per tick), appends every request due by then, each a signed frame in
// a QoS 1 PUBLISH, to its connection's bufio.Writer, and flushes each
// connection it touched once. PUBACKs for replies are appended by the
// readers and leave with the connection's next flush, at the latest
// AckDelay later, so one write system call carries whatever a connection
// has to say.
//
// Reads: the reader parses packets in place from its buffer; a PUBLISH is
// matched to its terminal by topic and its latency taken from the time the
// read returned to the request's scheduled send time.
type rawNet struct {
	terms     []*term
	conns     []*rawConn
	shards    []*rawShard
	termShard []int // terminal index -> shard index
	cfg       RawConfig

	shardWG  sync.WaitGroup
	readerWG sync.WaitGroup
	closing  atomic.Bool
	once     sync.Once
	errMu    sync.Mutex
	err      error
}

// rawConn is one MQTT connection and the terminals that use it.
type rawConn struct {
	nc      net.Conn
	terms   []*term
	byTopic map[string]*term // reply topic -> terminal, when several share it
	shard   *rawShard
	unacked atomic.Int64 // PUBLISHes sent and not yet PUBACKed

	wmu      sync.Mutex // guards w, nextID, queued, ackQueue
	w        *bufio.Writer
	nextID   uint16
	queued   bool // in shard.dirty
	ackQueue bool // in shard.acks
}

// rawShard is one scheduler goroutine and the connections it writes.
type rawShard struct {
	idx      int
	tick     time.Duration
	ackDelay time.Duration
	ack      chan struct{} // a reader queued the first PUBACK of a round
	win      chan *rawWindow
	quit     chan struct{}
	mu       sync.Mutex // guards dirty, acks, acksFrom
	dirty    []*rawConn // connections with requests buffered
	acks     []*rawConn // connections with PUBACKs buffered
	acksFrom time.Time  // when acks became non-empty
	spare    []*rawConn
	// scratch of the scheduler goroutine
	body, sealed, hdr []byte
}

// rawWindow is one open-loop schedule: request j is due at start + j*gap
// and belongs to terminal j mod len(terms).
type rawWindow struct {
	ctx   context.Context
	start time.Time
	gap   float64 // ns
	total int64
	wg    sync.WaitGroup
}

func (w *rawWindow) due(j int64) time.Time {
	return w.start.Add(time.Duration(float64(j) * w.gap))
}

// ConnectRawFleet connects n terminals with the raw client. Each connection
// subscribes to its terminals' reply topics before anything is sent.
func ConnectRawFleet(ctx context.Context, cfg RawConfig, master []byte, n int, txnBase uint64) (*Fleet, error) {
	if cfg.PerConn <= 0 {
		cfg.PerConn = 1
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultLoadTick
	}
	if cfg.AckDelay <= 0 {
		cfg.AckDelay = DefaultAckDelay
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 1
	}
	if cfg.TID == nil {
		cfg.TID = TerminalID
	}
	f := &Fleet{terms: newTerms(cfg.Topics, master, n, txnBase, cfg.TID)}
	rn := &rawNet{terms: f.terms, cfg: cfg, termShard: make([]int, n)}
	f.raw = rn
	nConns := (n + cfg.PerConn - 1) / cfg.PerConn
	nShards := max(1, min(nConns, cfg.Writers, runtime.GOMAXPROCS(0)))
	for s := range nShards {
		rn.shards = append(rn.shards, &rawShard{idx: s, tick: cfg.Tick, ackDelay: cfg.AckDelay, ack: make(chan struct{}, 1),
			win: make(chan *rawWindow), quit: make(chan struct{})})
	}
	// Terminal i uses connection i mod nConns, so the uniform arrival
	// sequence (request j to terminal j mod n) spreads over connections and
	// schedulers evenly.
	for c := range nConns {
		rn.conns = append(rn.conns, &rawConn{shard: rn.shards[c%nShards]})
	}
	for i, t := range f.terms {
		c := rn.conns[i%nConns]
		t.rc = c
		c.terms = append(c.terms, t)
		rn.termShard[i] = c.shard.idx
	}
	for _, c := range rn.conns {
		if len(c.terms) > 1 {
			c.byTopic = make(map[string]*term, len(c.terms))
			for _, t := range c.terms {
				c.byTopic[t.reply] = t
			}
		}
	}
	errs := make([]error, nConns)
	var wg sync.WaitGroup
	sem := make(chan struct{}, rawDialers)
	for ci, c := range rn.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			id := c.terms[0].tid
			if cfg.PerConn > 1 {
				id = fmt.Sprintf("scenepay-load-%d-%s", ci, randHex(4))
			}
			errs[ci] = rn.dial(ctx, c, id)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.Close()
		return nil, err
	}
	for _, s := range rn.shards {
		rn.shardWG.Add(1)
		go s.loop(rn)
	}
	return f, nil
}

// dial connects c as clientID, subscribes its terminals' reply topics and
// starts its reader.
func (rn *rawNet) dial(ctx context.Context, c *rawConn, clientID string) error {
	d := net.Dialer{Timeout: connectTimeout}
	nc, err := d.DialContext(ctx, "tcp", rn.cfg.Addr)
	if err != nil {
		return fmt.Errorf("bench: raw connect %s: %w", clientID, err)
	}
	user, pass := "", ""
	if rn.cfg.PerConn > 1 {
		user, pass = rn.cfg.User, rn.cfg.Password
	}
	filters := make([]string, len(c.terms))
	for i, t := range c.terms {
		filters[i] = t.reply
	}
	out := mqttwire.AppendConnect(nil, clientID, user, pass, 0)
	out = mqttwire.AppendSubscribe(out, 1, filters...)
	nc.SetDeadline(time.Now().Add(connectTimeout))
	if _, err := nc.Write(out); err != nil {
		nc.Close()
		return fmt.Errorf("bench: raw connect %s: %w", clientID, err)
	}
	buf := make([]byte, rawReadBuf)
	r, w := 0, 0
	connacked, subacked := false, false
	for !subacked {
		m, err := nc.Read(buf[w:])
		if err != nil {
			nc.Close()
			return fmt.Errorf("bench: raw connect %s: %w", clientID, err)
		}
		w += m
		for !subacked {
			p, k, err := mqttwire.Parse(buf[r:w])
			if err == nil && k == 0 && w == len(buf) {
				err = errors.New("handshake larger than the read buffer")
			}
			if err != nil {
				nc.Close()
				return fmt.Errorf("bench: raw connect %s: %w", clientID, err)
			}
			if k == 0 {
				break
			}
			r += k
			switch {
			case p.Type == mqttwire.TypeConnack && !connacked:
				if p.Code != 0 {
					nc.Close()
					return fmt.Errorf("bench: raw connect %s: CONNACK return code %d", clientID, p.Code)
				}
				connacked = true
			case p.Type == mqttwire.TypeSuback && connacked && p.ID == 1:
				if len(p.Payload) != len(filters) {
					nc.Close()
					return fmt.Errorf("bench: raw subscribe %s: %d codes for %d filters", clientID, len(p.Payload), len(filters))
				}
				for _, g := range p.Payload {
					if g > 2 {
						nc.Close()
						return fmt.Errorf("bench: raw subscribe %s refused (0x%02x)", clientID, g)
					}
				}
				subacked = true
			default:
				nc.Close()
				return fmt.Errorf("bench: raw connect %s: unexpected packet type %d", clientID, p.Type)
			}
		}
	}
	nc.SetDeadline(time.Time{})
	c.nc = nc
	c.w = bufio.NewWriterSize(nc, rawWriteBuf)
	c.nextID = 1
	rn.readerWG.Add(1)
	go rn.read(c, buf, r, w)
	return nil
}

// fail records the first error of the raw machinery (a broken load
// connection invalidates the figures).
func (rn *rawNet) fail(err error) {
	if rn.closing.Load() {
		return
	}
	rn.errMu.Lock()
	if rn.err == nil {
		rn.err = err
	}
	rn.errMu.Unlock()
}

// Err is the first error of the raw machinery, if any.
func (rn *rawNet) Err() error {
	rn.errMu.Lock()
	defer rn.errMu.Unlock()
	return rn.err
}

// read is c's reader goroutine; buf[r:w] holds bytes already read.
func (rn *rawNet) read(c *rawConn, buf []byte, r, w int) {
	defer rn.readerWG.Done()
	var acks []byte
	for {
		if r == w {
			r, w = 0, 0
		}
		if w == len(buf) {
			if r > 0 {
				w = copy(buf, buf[r:w])
				r = 0
			} else {
				// One packet larger than the buffer (parsePacket bounds it).
				buf = append(buf, make([]byte, len(buf))...)
			}
		}
		m, err := c.nc.Read(buf[w:])
		if err != nil {
			rn.fail(fmt.Errorf("bench: raw read: %w", err))
			return
		}
		w += m
		now := time.Now().UnixNano()
		acks = acks[:0]
		for {
			p, k, err := mqttwire.Parse(buf[r:w])
			if err != nil {
				rn.fail(fmt.Errorf("bench: raw read: %w", err))
				c.nc.Close()
				return
			}
			if k == 0 {
				break
			}
			r += k
			switch p.Type {
			case mqttwire.TypePublish:
				if t := c.termFor(p.Topic); t != nil {
					t.onPayload(p.Payload, now)
				}
				if p.QoS() == 1 {
					acks = mqttwire.AppendPuback(acks, p.ID)
				}
			case mqttwire.TypePuback:
				c.unacked.Add(-1)
			}
		}
		if len(acks) > 0 {
			c.wmu.Lock()
			c.w.Write(acks)
			first := c.queueAck()
			c.wmu.Unlock()
			if first {
				select {
				case c.shard.ack <- struct{}{}:
				default:
				}
			}
		}
	}
}

// termFor is the terminal whose reply topic is topic (nil if none).
func (c *rawConn) termFor(topic []byte) *term {
	if c.byTopic == nil {
		if t := c.terms[0]; string(topic) == t.reply {
			return t
		}
		return nil
	}
	return c.byTopic[string(topic)]
}

// markDirty puts c on its shard's flush list; c.wmu is held.
func (c *rawConn) markDirty() {
	if c.queued {
		return
	}
	c.queued = true
	s := c.shard
	s.mu.Lock()
	s.dirty = append(s.dirty, c)
	s.mu.Unlock()
}

// queueAck puts c on its shard's PUBACK list; c.wmu is held. It reports
// whether the list was empty (the scheduler then needs to know when to
// flush it).
func (c *rawConn) queueAck() (first bool) {
	if c.ackQueue {
		return false
	}
	c.ackQueue = true
	s := c.shard
	s.mu.Lock()
	if first = len(s.acks) == 0; first {
		s.acksFrom = time.Now()
	}
	s.acks = append(s.acks, c)
	s.mu.Unlock()
	return first
}

// loop is the scheduler goroutine of shard s.
func (s *rawShard) loop(rn *rawNet) {
	defer rn.shardWG.Done()
	n := int64(len(rn.terms))
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var (
		w         *rawWindow
		j         int64
		lastFlush time.Time
	)
	for {
		now := time.Now()
		if w != nil && w.ctx.Err() != nil {
			w.wg.Done()
			w = nil
		}
		if w != nil {
			nowMs := now.UnixMilli()
			for ; j < w.total; j++ {
				due := w.due(j)
				if due.After(now) {
					break
				}
				if i := j % n; rn.termShard[i] == s.idx {
					s.emit(rn, rn.terms[i], due, nowMs)
				}
			}
		}
		acksDue := s.flush(rn, now)
		lastFlush = now
		var next time.Time
		if w != nil {
			for j < w.total && rn.termShard[j%n] != s.idx {
				j++
			}
			if j >= w.total {
				w.wg.Done()
				w = nil
			} else {
				next = w.due(j)
			}
		}
		if !acksDue.IsZero() && (next.IsZero() || acksDue.Before(next)) {
			next = acksDue
		}
		if !next.IsZero() {
			if earliest := lastFlush.Add(s.tick); next.Before(earliest) {
				next = earliest
			}
			timer.Reset(max(0, time.Until(next)))
		}
		var done <-chan struct{}
		if w != nil {
			done = w.ctx.Done()
		}
		select {
		case <-timer.C:
		case <-done:
		case <-s.ack:
			// A reader queued the first PUBACK since the last flush of
			// PUBACKs: go round to set the timer for it.
		case nw := <-s.win:
			w, j = nw, 0
		case <-s.quit:
			timer.Stop()
			if w != nil {
				w.wg.Done()
			}
			return
		}
		timer.Stop()
	}
}

// emit writes one purchase of t due at due into its connection's buffer.
func (s *rawShard) emit(rn *rawNet, t *term, due time.Time, nowMs int64) {
	t.mu.Lock()
	if len(t.pending) >= pendingMax {
		t.overflow++
		t.mu.Unlock()
		return
	}
	t.txn++
	txn := t.txn
	t.pending[txn] = due.UnixNano()
	t.mu.Unlock()
	s.body = t.body(s.body[:0], txn, nowMs)
	s.sealed = t.signer.Seal(s.sealed[:0], s.body)
	c := t.rc
	c.wmu.Lock()
	id := c.nextID
	if c.nextID++; c.nextID == 0 {
		c.nextID = 1
	}
	s.hdr = mqttwire.AppendPublishHeader(s.hdr[:0], t.req, id, false, len(s.sealed))
	c.w.Write(s.hdr)
	c.w.Write(s.sealed)
	c.unacked.Add(1)
	c.markDirty()
	c.wmu.Unlock()
}

// flush writes out every connection of s with requests buffered (their
// PUBACKs go with them), and every connection with PUBACKs buffered once
// the oldest has waited ackDelay. It returns when the PUBACKs left
// buffered are due (zero: none).
func (s *rawShard) flush(rn *rawNet, now time.Time) (acksDue time.Time) {
	s.mu.Lock()
	list := s.dirty
	s.dirty, s.spare = s.spare[:0], nil
	var acks []*rawConn
	if len(s.acks) > 0 {
		if due := s.acksFrom.Add(s.ackDelay); now.Before(due) {
			acksDue = due
		} else {
			acks, s.acks = s.acks, nil
		}
	}
	s.mu.Unlock()
	for _, c := range list {
		c.wmu.Lock()
		c.queued = false
		if err := c.w.Flush(); err != nil {
			rn.fail(fmt.Errorf("bench: raw write: %w", err))
		}
		c.wmu.Unlock()
	}
	for _, c := range acks {
		c.wmu.Lock()
		c.ackQueue = false
		if err := c.w.Flush(); err != nil { // no system call if already empty
			rn.fail(fmt.Errorf("bench: raw write: %w", err))
		}
		c.wmu.Unlock()
	}
	s.mu.Lock()
	s.spare = list[:0]
	if len(s.acks) == 0 && acks != nil {
		s.acks = acks[:0]
	}
	s.mu.Unlock()
	return acksDue
}

// run offers the window's requests and returns when every scheduler has
// sent its share (or ctx ended).
func (rn *rawNet) run(ctx context.Context, start, end time.Time, rate float64) {
	gap := float64(time.Second) / rate
	total := int64(math.Ceil(float64(end.Sub(start)) / gap))
	w := &rawWindow{ctx: ctx, start: start, gap: gap, total: total}
	for total > 0 && !w.due(w.total-1).Before(end) {
		w.total--
	}
	w.wg.Add(len(rn.shards))
	for _, s := range rn.shards {
		s.win <- w
	}
	w.wg.Wait()
}

// Unacked is the PUBLISHes the broker has not acknowledged yet.
func (rn *rawNet) Unacked() int64 {
	var n int64
	for _, c := range rn.conns {
		n += c.unacked.Load()
	}
	return n
}

// close stops the schedulers, disconnects and waits for the readers.
func (rn *rawNet) close() {
	rn.once.Do(func() {
		rn.closing.Store(true)
		for _, s := range rn.shards {
			close(s.quit)
		}
		rn.shardWG.Wait()
		for _, c := range rn.conns {
			if c.nc == nil {
				continue
			}
			c.wmu.Lock()
			c.w.Write(mqttwire.AppendDisconnect(nil))
			c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			c.w.Flush()
			c.wmu.Unlock()
			c.nc.Close()
		}
		rn.readerWG.Wait()
	})
}
