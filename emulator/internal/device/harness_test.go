package device

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"scenepay/internal/mochistop"
	"scenepay/terminals"
)

// broker is an in-process mochi-mqtt broker on a free loopback port.
type broker struct {
	addr string
	srv  *mochi.Server
	once sync.Once
}

// stop closes the broker once (mochi's Close is not idempotent), through
// mochistop: mochi's own Close can hang when a device connects or leaves
// during it (seen here: a device reconnecting while a test's cleanup
// stopped the broker hung the package for 8 minutes).
func (b *broker) stop() { b.once.Do(func() { mochistop.Close(b.srv) }) }

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func startBroker(t testing.TB, addr string) *broker {
	t.Helper()
	srv := mochi.New(&mochi.Options{
		InlineClient: false,
		Logger:       slog.New(slog.NewTextHandler(discard{}, nil)),
	})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	if err := mochistop.AddListener(srv, listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	// Serve binds asynchronously; wait until the port answers.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker did not listen on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b := &broker{addr: addr, srv: srv}
	t.Cleanup(b.stop)
	return b
}

// allowAll lets every client connect and use every topic. It mirrors mochi's
// hooks/auth.AllowHook, whose package pulls in a YAML dependency this
// module does not list.
type allowAll struct{ mochi.HookBase }

func (h *allowAll) ID() string { return "allow-all" }

func (h *allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

func (h *allowAll) OnACLCheck(*mochi.Client, string, bool) bool { return true }

func (b *broker) url() string { return "tcp://" + b.addr }

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

var testMaster = []byte("0123456789abcdef0123456789abcdef")

func testKey(tid string) []byte { return terminals.DeriveKey(testMaster, tid, 1) }

// received is one request as the responder saw it.
type received struct {
	payload []byte
	req     *terminals.Request // nil when the MAC or body failed
	code    terminals.Code     // frame/MAC/decode failure code, "" if fine
}

// decision is the responder's answer to a request: drop it (no reply),
// or reply with code, optionally signing under a wrong key.
type decision struct {
	drop     bool
	code     terminals.Code
	wrongKey bool
	bal      *int64
	amt      *int64 // reply "amt"
	out      string // reply "out" (offline_upload)
	// notice: a signed deposit_low under the request's txn id is published
	// before the reply, so a device that took it for the answer would show.
	notice bool
}

// responder is a tiny gateway stand-in: it verifies frames and MACs like the
// gateway's check order and answers signed replies decided by fn.
type responder struct {
	t      testing.TB
	topics terminals.Topics
	client mqtt.Client

	mu  sync.Mutex
	got []received
	fn  func(r received) decision
}

func startResponder(t testing.TB, brokerURL string, topics terminals.Topics, fn func(received) decision) *responder {
	t.Helper()
	r := &responder{t: t, topics: topics, fn: fn}
	id := make([]byte, 6)
	rand.Read(id)
	opts := mqtt.NewClientOptions().AddBroker(brokerURL).
		SetClientID("resp-" + hex.EncodeToString(id)).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(200 * time.Millisecond).
		SetOnConnectHandler(func(c mqtt.Client) {
			c.Subscribe(topics.RequestFilter(), 1, r.handle).Wait()
		})
	r.client = mqtt.NewClient(opts)
	if tok := r.client.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("responder connect: %v", tok.Error())
	}
	// The subscription is made in OnConnect; wait for it with a probe.
	time.Sleep(100 * time.Millisecond)
	t.Cleanup(func() { r.client.Disconnect(100) })
	return r
}

func (r *responder) handle(c mqtt.Client, m mqtt.Message) {
	tid, ok := r.topics.TerminalFromTopic(m.Topic())
	if !ok {
		return
	}
	p := append([]byte(nil), m.Payload()...)
	rec := received{payload: p}
	key := testKey(tid)
	var txn uint64
	body, err := terminals.Open(key, p)
	if err != nil {
		rec.code = err.(*terminals.Error).Code
	} else {
		req, err := terminals.DecodeRequest(body)
		if err != nil {
			rec.code = err.(*terminals.Error).Code
		} else {
			rec.req = req
			txn = req.Txn
		}
	}
	r.mu.Lock()
	r.got = append(r.got, rec)
	fn := r.fn
	r.mu.Unlock()
	var dec decision
	if rec.code != "" {
		dec = decision{code: rec.code}
	} else {
		dec = fn(rec)
	}
	if dec.drop {
		return
	}
	typ := terminals.TypePurchase
	if rec.req != nil {
		typ = rec.req.Type
	}
	rep := terminals.Reply{V: 1, Type: typ, TID: tid, Txn: txn, Code: dec.code, Bal: dec.bal, Amt: dec.amt, Out: dec.out, GTS: time.Now().UnixMilli()}
	if dec.notice {
		n := terminals.Reply{V: 1, Type: terminals.ReplyDepositLow, TID: tid, Txn: txn, Code: terminals.CodeApproved, Amt: dec.amt, GTS: rep.GTS}
		c.Publish(r.topics.Reply(tid), 1, false, terminals.Seal(key, n.AppendJSON(nil))).Wait()
	}
	if dec.code == terminals.CodeApproved && rec.req != nil {
		rep.Auth = "A" + strconv.FormatUint(txn, 10)
	}
	if dec.wrongKey {
		key = testKey(tid + "x")
	}
	c.Publish(r.topics.Reply(tid), 1, false, terminals.Seal(key, rep.AppendJSON(nil)))
}

func (r *responder) received() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func (r *responder) setFn(fn func(received) decision) {
	r.mu.Lock()
	r.fn = fn
	r.mu.Unlock()
}

func approveAll(received) decision { return decision{code: terminals.CodeApproved} }

func uniqueRoot(prefix string) terminals.Topics {
	b := make([]byte, 6)
	rand.Read(b)
	return terminals.Topics{Root: prefix + hex.EncodeToString(b) + "/scp/v1", Group: "g"}
}

// outcomes collects observed outcomes.
type outcomes struct {
	mu  sync.Mutex
	all []Outcome
}

func (o *outcomes) Observe(x Outcome) {
	o.mu.Lock()
	o.all = append(o.all, x)
	o.mu.Unlock()
}

func (o *outcomes) list() []Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Outcome(nil), o.all...)
}
