// Package mqttclient owns the project's lean MQTT 3.1.1 client connection:
// a supervisor goroutine dials (tcp, unix or TLS), logs in with a clean
// session, subscribes its filters at QoS 1, then reads until the connection
// fails and starts again after a jittered backoff. Its reader decodes many
// packets from one read and calls the handler itself: no goroutine per
// message and no hop between the socket and the handler, which must
// therefore not block. Every packet sent goes through the connection's
// buffer (bufconn.go) and is written by its flusher, many packets per
// system call; a publication never waits for the network (a full buffer or
// a connection that is down refuses it). QoS 1 publications get packet ids
// not awaiting their PUBACK; a caller may wait for a PUBACK. Sessions are
// clean: nothing is resent after a reconnect. The wire codec is
// internal/mqttwire.
//
// The gateway's ingress uses it for every connection (see that package for
// why not paho), and the end-to-end benchmark's bare echo responder uses it
// too, so that the two arms of the benchmark share one MQTT client.
package mqttclient

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"scenepay/internal/mqttwire"
)

// Session timing of one connection.
const (
	KeepAlive   = 20 * time.Second // CONNECT keep-alive; a PINGREQ goes out this often
	pingTimeout = 5 * time.Second  // past KeepAlive+pingTimeout without a read, the connection is dead
	ackTimeout  = 10 * time.Second // CONNACK, SUBACK, and a retained publication's PUBACK
	backoffMin  = 250 * time.Millisecond
	backoffMax  = 5 * time.Second
	// readBufBytes holds at least two packets of the largest size, so that
	// moving a partial packet to the front always leaves room for the rest.
	readBufBytes = 2*mqttwire.PacketMax + 64<<10
)

// Errors of publications.
var (
	ErrNotConnected = errors.New("mqtt: not connected")
	ErrIDsExhausted = errors.New("mqtt: every packet id awaits its PUBACK")
	ErrConnLost     = errors.New("mqtt: connection lost before the acknowledgement")
	ErrBufFull      = errBufFull
	ErrClosed       = errors.New("mqtt: connection closed")
)

// Config of a connection.
type Config struct {
	BrokerURL string      // tcp://host:port, mqtt://, unix://, or ssl://, tls://, mqtts://, mqtt+ssl://, tcps:// for TLS
	TLS       *tls.Config // for the TLS schemes; nil: the system roots and the URL's host name
	ClientID  string
	Username  string
	Password  string
	Filters   []string // subscribed at QoS 1 on every (re)connect
	// ConnectTimeout bounds a dial and the wait for CONNACK and SUBACK
	// (default 10s).
	ConnectTimeout time.Duration
	Logger         *slog.Logger
	// Handler gets every PUBLISH received, on the connection's reader
	// goroutine; it owns topic and payload and must not block.
	Handler func(topic string, payload []byte)
	// OnUp, if set, is called when a session is up (CONNACK accepted),
	// OnDown when it ends; from the supervisor goroutine.
	OnUp, OnDown func()
	// AckDelay is how long the PUBACKs owed for received messages may wait
	// to leave with the connection's next publication (0: they leave with
	// one write per read). The broker counts them against its in-flight
	// window (Mosquitto's max_inflight_messages) until they arrive.
	AckDelay time.Duration
}

// DefaultAckDelay is the gateway's default Config.AckDelay (its flag
// -mqtt-ack-delay), which the benchmark's echo responder uses too.
const DefaultAckDelay = 2 * time.Millisecond

// Conn is one MQTT connection and its supervisor goroutine.
type Conn struct {
	cfg  Config
	url  *url.URL
	log  *slog.Logger
	stop chan struct{} // closed by Close
	shut sync.Once

	mu    sync.Mutex
	bc    *bufConn                // nil while down
	cur   *bufConn                // the current session's connection, up or not (Close closes it)
	next  uint16                  // the last packet id handed out
	busy  [1 << 16 / 64]uint64    // packet ids awaiting their PUBACK or SUBACK
	nbusy int                     // bits set in busy
	waits map[uint16]chan<- error // acks someone waits for (SUBSCRIBE, retained PUBLISH)
	subs  map[uint16]string       // filter of each SUBSCRIBE awaiting its SUBACK
	last  atomic.Pointer[error]   // the last connection failure, for Start's error
	recv  atomic.Int64            // unix nanoseconds of the last read
	ready chan struct{}           // closed when the first session is up and subscribed
	once  sync.Once               // closes ready
	done  chan struct{}           // closed when run returns
}

// Start checks cfg and starts the connection's supervisor; it returns at
// once. Ready tells when the first session is up and subscribed.
func Start(cfg Config) (*Conn, error) {
	u, err := ParseURL(cfg.BrokerURL)
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Handler == nil {
		cfg.Handler = func(string, []byte) {}
	}
	c := &Conn{cfg: cfg, url: u, log: cfg.Logger, stop: make(chan struct{}),
		ready: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c, nil
}

// Ready is closed when the first session is up and every filter is
// subscribed.
func (c *Conn) Ready() <-chan struct{} { return c.ready }

// Err is the last session's failure (nil before any).
func (c *Conn) Err() error {
	if e := c.last.Load(); e != nil {
		return *e
	}
	return nil
}

func (c *Conn) closed() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// Close sends DISCONNECT on a session that is up, lets what is buffered go
// out, closes the connection and waits (at most ackTimeout) for the
// supervisor to return.
func (c *Conn) Close() {
	c.shut.Do(func() { close(c.stop) })
	c.mu.Lock()
	up, cur := c.bc, c.cur
	c.mu.Unlock()
	if up != nil {
		up.write2(mqttwire.AppendDisconnect(nil), nil)
	}
	if cur != nil {
		cur.Close()
	}
	select {
	case <-c.done:
	case <-time.After(ackTimeout):
		c.log.Warn("MQTT connection did not stop", "client", c.cfg.ClientID)
	}
}

// run is the supervisor: sessions, one after another, until Close.
func (c *Conn) run() {
	defer close(c.done)
	fails := 0
	for {
		if c.closed() {
			return
		}
		up, err := c.session()
		if c.closed() {
			return
		}
		c.last.Store(&err)
		if up {
			fails = 0
			c.log.Warn("MQTT connection lost; reconnecting", "client", c.cfg.ClientID, "err", err)
		} else {
			c.log.Debug("MQTT connect failed", "client", c.cfg.ClientID, "err", err)
		}
		// Equal jitter: half the step fixed, half random, the step doubling
		// from backoffMin to backoffMax while attempts fail.
		d := backoffMax
		if fails < 5 {
			d = min(backoffMax, backoffMin<<fails)
		}
		fails++
		d = d/2 + rand.N(d/2+1)
		select {
		case <-c.stop:
			return
		case <-time.After(d):
		}
	}
}

// session dials, logs in and subscribes, then reads until the connection
// fails. up reports whether the connection came up (CONNACK accepted).
func (c *Conn) session() (up bool, err error) {
	bc, err := dialBroker(c.url, c.cfg.TLS, c.cfg.ConnectTimeout)
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", c.url.Host, err)
	}
	bc.setLazyDelay(c.cfg.AckDelay)
	defer bc.Close()
	c.mu.Lock()
	c.cur = bc
	c.mu.Unlock()
	if c.closed() {
		return false, ErrClosed
	}
	if err := bc.write2(mqttwire.AppendConnect(nil, c.cfg.ClientID, c.cfg.Username, c.cfg.Password, uint16(KeepAlive/time.Second)), nil); err != nil {
		return false, err
	}
	rd := &reader{buf: make([]byte, readBufBytes)}
	bc.Conn.SetReadDeadline(time.Now().Add(ackTimeout))
	p, err := rd.next(bc)
	if err != nil {
		return false, fmt.Errorf("waiting for CONNACK: %w", err)
	}
	if p.Type != mqttwire.TypeConnack {
		return false, fmt.Errorf("first packet of type %d, not CONNACK", p.Type)
	}
	if p.Code != 0 {
		return false, fmt.Errorf("broker refused the connection: %s", connackReason(p.Code))
	}
	bc.Conn.SetReadDeadline(time.Time{})
	c.recv.Store(time.Now().UnixNano())

	// Up: publications may use the connection from here on.
	c.mu.Lock()
	c.bc = bc
	c.mu.Unlock()
	if c.cfg.OnUp != nil {
		c.cfg.OnUp()
	}
	defer func() {
		c.down(bc)
		if c.cfg.OnDown != nil {
			c.cfg.OnDown()
		}
	}()

	// Subscribe on every connect: a broker that lost our session (restart
	// without persistence) must get the subscriptions again.
	acks := make(chan error, len(c.cfg.Filters))
	for _, f := range c.cfg.Filters {
		if err := c.subscribe(bc, f, acks); err != nil {
			return true, err
		}
	}
	stop := make(chan struct{})
	defer close(stop)
	go c.keepAlive(bc, stop)
	go c.awaitSubscribed(acks, stop)
	return true, c.readLoop(bc, rd)
}

// subscribe sends a SUBSCRIBE of filter; its SUBACK's outcome goes to acks.
func (c *Conn) subscribe(bc *bufConn, filter string, acks chan<- error) error {
	c.mu.Lock()
	id, ok := c.takeIDLocked()
	if !ok {
		c.mu.Unlock()
		return ErrIDsExhausted
	}
	if c.waits == nil {
		c.waits = map[uint16]chan<- error{}
		c.subs = map[uint16]string{}
	}
	c.waits[id], c.subs[id] = acks, filter
	c.mu.Unlock()
	return bc.write2(mqttwire.AppendSubscribe(nil, id, filter), nil)
}

// awaitSubscribed logs refused subscriptions and marks the connection
// ready once every filter is subscribed.
func (c *Conn) awaitSubscribed(acks <-chan error, stop <-chan struct{}) {
	timeout := time.NewTimer(ackTimeout)
	defer timeout.Stop()
	ok := true
	for range c.cfg.Filters {
		select {
		case err := <-acks:
			if err != nil {
				ok = false
				c.log.Error("subscribe failed", "client", c.cfg.ClientID, "err", err)
			}
		case <-timeout.C:
			c.log.Error("no SUBACK", "client", c.cfg.ClientID, "within", ackTimeout)
			return
		case <-stop:
			return
		}
	}
	if ok {
		c.once.Do(func() { close(c.ready) })
	}
}

// keepAlive sends a PINGREQ every KeepAlive and closes the connection when
// nothing was read for KeepAlive+pingTimeout (the reader then returns).
func (c *Conn) keepAlive(bc *bufConn, stop <-chan struct{}) {
	t := time.NewTicker(KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, c.recv.Load())) > KeepAlive+pingTimeout {
			c.log.Warn("MQTT broker silent; closing the connection", "client", c.cfg.ClientID, "silent_for", KeepAlive+pingTimeout)
			bc.Conn.Close()
			return
		}
		bc.write2(mqttwire.AppendPingreq(nil), nil)
	}
}

// down ends a session: the connection is no longer used, and every ack
// still awaited is failed (a clean session: the broker forgets them too;
// a reply lost this way is sent again when the terminal retries).
func (c *Conn) down(bc *bufConn) {
	c.mu.Lock()
	if c.bc == bc {
		c.bc = nil
	}
	c.busy = [len(c.busy)]uint64{}
	c.nbusy = 0
	waits := c.waits
	c.waits, c.subs = nil, nil
	c.mu.Unlock()
	for _, w := range waits {
		select {
		case w <- ErrConnLost:
		default:
		}
	}
}

// readLoop reads and handles packets until the connection fails. The
// PUBACKs of the packets one read brought are buffered together, when no
// complete packet is left to handle: one buffer append per read, not per
// message. With AckDelay they wait for the next publication (writeLazy);
// without, they wake the flusher.
func (c *Conn) readLoop(bc *bufConn, rd *reader) error {
	var acks []byte
	for {
		if len(acks) > 0 && !rd.ready() {
			if err := bc.writeLazy(acks); err != nil {
				return err
			}
			acks = acks[:0]
		}
		p, err := rd.next(bc)
		if err != nil {
			return err
		}
		c.recv.Store(time.Now().UnixNano())
		switch p.Type {
		case mqttwire.TypePublish:
			if p.QoS() > 1 {
				return errors.New("PUBLISH at QoS 2 (subscriptions are at QoS 1)")
			}
			// The handler gets its own copies: it may keep them.
			c.cfg.Handler(string(p.Topic), append([]byte(nil), p.Payload...))
			if p.QoS() == 1 {
				acks = mqttwire.AppendPuback(acks, p.ID)
			}
		case mqttwire.TypePuback:
			c.acked(p.ID, nil)
		case mqttwire.TypeSuback:
			var err error
			if p.Code&0x80 != 0 {
				err = errors.New("refused by the broker (ACL?)")
			}
			c.acked(p.ID, err)
		case mqttwire.TypePingresp:
		default:
			return fmt.Errorf("unexpected packet type %d", p.Type)
		}
	}
}

// acked frees packet id and tells its waiter, if any.
func (c *Conn) acked(id uint16, err error) {
	c.mu.Lock()
	if c.busy[id/64]&(1<<(id%64)) != 0 {
		c.busy[id/64] &^= 1 << (id % 64)
		c.nbusy--
	}
	w, ok := c.waits[id]
	filter := c.subs[id]
	if ok {
		delete(c.waits, id)
		delete(c.subs, id)
	}
	c.mu.Unlock()
	if ok {
		if err != nil && filter != "" {
			err = fmt.Errorf("subscribe %s: %w", filter, err)
		}
		select {
		case w <- err:
		default:
		}
	}
}

// takeIDLocked hands out a packet id not awaiting an ack.
func (c *Conn) takeIDLocked() (uint16, bool) {
	if c.nbusy >= 1<<16-1 {
		return 0, false
	}
	for {
		c.next++
		if c.next == 0 {
			c.next = 1
		}
		id := c.next
		if c.busy[id/64]&(1<<(id%64)) == 0 {
			c.busy[id/64] |= 1 << (id % 64)
			c.nbusy++
			return id, true
		}
	}
}

// Publish sends a QoS 1 PUBLISH without waiting for the network; when
// wait is not nil, its PUBACK's outcome (nil, or ErrConnLost) is sent there
// (give it room for one value). It fails with ErrNotConnected while the
// connection is down, ErrBufFull when too much is unsent, ErrIDsExhausted
// when every packet id awaits its PUBACK.
func (c *Conn) Publish(topic string, payload []byte, retain bool, wait chan<- error) error {
	c.mu.Lock()
	bc := c.bc
	if bc == nil {
		c.mu.Unlock()
		return ErrNotConnected
	}
	id, ok := c.takeIDLocked()
	if !ok {
		c.mu.Unlock()
		return ErrIDsExhausted
	}
	if wait != nil {
		if c.waits == nil {
			c.waits = map[uint16]chan<- error{}
			c.subs = map[uint16]string{}
		}
		c.waits[id] = wait
	}
	c.mu.Unlock()
	var hdr [96]byte
	err := bc.write2(mqttwire.AppendPublishHeader(hdr[:0], topic, id, retain, len(payload)), payload)
	if err != nil {
		c.acked(id, nil) // never sent: free the id (and drop the waiter)
	}
	return err
}

// reader splits a connection's byte stream into packets; the packets it
// returns alias its buffer until the next call.
type reader struct {
	buf  []byte
	r, w int
	// The parse of buf[r:w] that ready made, kept for next (ready runs
	// before every next in the read loop: one parse per packet, not two).
	peeked bool
	peekP  mqttwire.Packet
	peekN  int
	peekE  error
}

// ready reports whether a complete packet is buffered (next will not read).
func (rd *reader) ready() bool {
	if !rd.peeked {
		rd.peekP, rd.peekN, rd.peekE = mqttwire.Parse(rd.buf[rd.r:rd.w])
		rd.peeked = true
	}
	return rd.peekN > 0 || rd.peekE != nil
}

func (rd *reader) next(bc *bufConn) (mqttwire.Packet, error) {
	for {
		rd.ready()
		p, n, err := rd.peekP, rd.peekN, rd.peekE
		rd.peeked = false
		if err != nil {
			return p, err
		}
		if n > 0 {
			rd.r += n
			return p, nil
		}
		if rd.r == rd.w {
			rd.r, rd.w = 0, 0
		} else if len(rd.buf)-rd.w < mqttwire.PacketMax+8 {
			rd.w = copy(rd.buf, rd.buf[rd.r:rd.w])
			rd.r = 0
		}
		k, err := bc.Read(rd.buf[rd.w:])
		rd.w += k
		if err != nil && k == 0 {
			return p, err
		}
	}
}

// connackReason names a CONNACK return code (MQTT 3.1.1, 3.2.2.3).
func connackReason(code byte) string {
	switch code {
	case 1:
		return "unacceptable protocol version"
	case 2:
		return "client identifier rejected"
	case 3:
		return "server unavailable"
	case 4:
		return "bad user name or password"
	case 5:
		return "not authorized"
	}
	return "return code " + strconv.Itoa(int(code))
}
