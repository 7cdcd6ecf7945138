package ingress

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"scenepay/internal/mqttclient"
	"scenepay/internal/mqttwire"
	"scenepay/terminals"
)

// Every message to one terminal goes out on one connection, so a reply and
// the notice after it cannot overtake each other; different terminals spread.
func TestTopicConnIsStablePerTopicAndSpreads(t *testing.T) {
	used := map[int]bool{}
	for i := 0; i < 64; i++ {
		topic := "scp/v1/t/K-" + string(rune('A'+i%26)) + string(rune('a'+i/26)) + "/resp"
		c := topicConn(topic, 4)
		if c < 0 || c >= 4 || topicConn(topic, 4) != c {
			t.Fatalf("%s: connection %d not stable or out of range", topic, c)
		}
		used[c] = true
	}
	if len(used) < 3 {
		t.Fatalf("64 terminals used only %d of 4 connections", len(used))
	}
	if topicConn("x", 1) != 0 {
		t.Fatal("one connection")
	}
}

// fakeBroker is a scripted MQTT 3.1.1 server for one test: it accepts
// connections and hands each to the test as a fakeSession.
type fakeBroker struct {
	ln       net.Listener
	sessions chan *fakeSession
}

type fakeSession struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func newFakeBroker(t *testing.T) *fakeBroker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{ln: ln, sessions: make(chan *fakeSession, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.sessions <- &fakeSession{t: t, c: c, r: bufio.NewReader(c)}
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return b
}

func (b *fakeBroker) url() string { return "tcp://" + b.ln.Addr().String() }

func (b *fakeBroker) accept() *fakeSession {
	select {
	case s := <-b.sessions:
		s.t.Cleanup(func() { s.c.Close() })
		return s
	case <-time.After(10 * time.Second):
		panic("no connection to the fake broker within 10s")
	}
}

// read reads one packet: its first byte and its body.
func (s *fakeSession) read() (byte, []byte) {
	s.t.Helper()
	s.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, err := s.r.ReadByte()
	if err != nil {
		s.t.Fatalf("fake broker read: %v", err)
	}
	n, mul := 0, 1
	for {
		d, err := s.r.ReadByte()
		if err != nil {
			s.t.Fatalf("fake broker read: %v", err)
		}
		n += int(d&0x7f) * mul
		if d&0x80 == 0 {
			break
		}
		mul *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(s.r, body); err != nil {
		s.t.Fatalf("fake broker read: %v", err)
	}
	return h, body
}

// expect reads packets, skipping PINGREQs, until one of type typ.
func (s *fakeSession) expect(typ byte) []byte {
	s.t.Helper()
	for {
		h, body := s.read()
		if h>>4 == mqttwire.TypePingreq {
			s.write([]byte{mqttwire.TypePingresp << 4, 0})
			continue
		}
		if h>>4 != typ {
			s.t.Fatalf("fake broker got packet type %d (%#x), want %d", h>>4, h, typ)
		}
		return mqttwire.Frame(h, body)
	}
}

// bodyOf is a frame's body (after the fixed header and remaining length).
func bodyOf(frame []byte) []byte {
	i := 1
	for frame[i]&0x80 != 0 {
		i++
	}
	return frame[i+1:]
}

func (s *fakeSession) write(b []byte) {
	s.t.Helper()
	if _, err := s.c.Write(b); err != nil {
		s.t.Fatalf("fake broker write: %v", err)
	}
}

func mqttStr(b []byte) (string, []byte) {
	n := int(binary.BigEndian.Uint16(b))
	return string(b[2 : 2+n]), b[2+n:]
}

// handshake answers CONNECT with code and, if accepted, every SUBSCRIBE of
// filters with SUBACK granted QoS 1. It returns the client id.
func (s *fakeSession) handshake(code byte, filters int) string {
	s.t.Helper()
	p := bodyOf(s.expect(mqttwire.TypeConnect))
	proto, rest := mqttStr(p)
	if proto != "MQTT" || rest[0] != 4 || rest[1]&0x02 == 0 {
		s.t.Fatalf("CONNECT protocol %q level %d flags %#x: want MQTT 3.1.1, clean session", proto, rest[0], rest[1])
	}
	if ka := binary.BigEndian.Uint16(rest[2:]); ka != uint16(mqttclient.KeepAlive/time.Second) {
		s.t.Fatalf("keep-alive %d", ka)
	}
	id, _ := mqttStr(rest[4:])
	s.write([]byte{mqttwire.TypeConnack << 4, 2, 0, code})
	for range filters {
		p := s.expect(mqttwire.TypeSubscribe)
		if p[0] != 0x82 {
			s.t.Fatalf("SUBSCRIBE first byte %#x", p[0])
		}
		b := bodyOf(p)
		s.write([]byte{mqttwire.TypeSuback << 4, 3, b[0], b[1], 1})
	}
	return id
}

// publish sends a QoS 1 PUBLISH to the client.
func (s *fakeSession) publish(topic string, id uint16, payload string) {
	s.write(append(mqttwire.AppendPublishHeader(nil, topic, id, false, len(payload)), payload...))
}

type got struct {
	mu   sync.Mutex
	msgs []string
	ch   chan struct{}
}

func (g *got) handler(topic string, payload []byte) {
	g.mu.Lock()
	g.msgs = append(g.msgs, topic+" "+string(payload))
	g.mu.Unlock()
	g.ch <- struct{}{}
}

func (g *got) wait(t *testing.T, want string) {
	t.Helper()
	select {
	case <-g.ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("handler not called for %q", want)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if last := g.msgs[len(g.msgs)-1]; last != want {
		t.Fatalf("handler got %q, want %q", last, want)
	}
}

// One connection's whole life against a scripted broker: CONNECT with the
// configured identity, both subscriptions, a request handed to the handler
// and acknowledged with its packet id, a status message to the status
// handler, a reply published at QoS 1, a retained publication that waits
// for its PUBACK, and after the broker drops the connection a new session
// that subscribes again and runs the OnConnected hook.
func TestConnSessionAgainstScriptedBroker(t *testing.T) {
	b := newFakeBroker(t)
	topics := terminals.DefaultTopics
	req, status := &got{ch: make(chan struct{}, 4)}, &got{ch: make(chan struct{}, 4)}
	var hooks atomic.Int32
	hooked := make(chan struct{}, 4)
	startErr := make(chan error, 1)
	var in *Ingress
	go func() {
		var err error
		in, err = Start(Config{BrokerURL: b.url(), ClientID: "gw-test", Username: "u", Password: "p", Conns: 1,
			Topics: topics, ConnectTimeout: 10 * time.Second, StatusHandler: status.handler}, req.handler)
		startErr <- err
	}()
	s := b.accept()
	if id := s.handshake(0, 2); id != "gw-test-0" {
		t.Fatalf("client id %q", id)
	}
	if err := <-startErr; err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	in.OnConnected(func() { hooks.Add(1); hooked <- struct{}{} })

	s.publish(topics.Request("T-1"), 7, "hello")
	req.wait(t, topics.Request("T-1")+" hello")
	if p := s.expect(mqttwire.TypePuback); !bytes.Equal(p, []byte{0x40, 2, 0, 7}) {
		t.Fatalf("PUBACK % x, want for id 7", p)
	}
	s.publish(topics.Status("T-1"), 8, "online")
	status.wait(t, topics.Status("T-1")+" online")
	s.expect(mqttwire.TypePuback)

	in.Publish(topics.Reply("T-1"), []byte("answer"))
	p := s.expect(mqttwire.TypePublish)
	q, n, err := mqttwire.Parse(p)
	if err != nil || n != len(p) || q.QoS() != 1 || q.Retain() || string(q.Topic) != topics.Reply("T-1") || string(q.Payload) != "answer" {
		t.Fatalf("reply decodes as %+v (err %v)", q, err)
	}
	s.write(mqttwire.AppendPuback(nil, q.ID))

	done := make(chan error, 1)
	go func() { done <- in.PublishRetained(topics.Config("T-1"), []byte("cfg")) }()
	p = s.expect(mqttwire.TypePublish)
	q, _, _ = mqttwire.Parse(p)
	if !q.Retain() || string(q.Payload) != "cfg" {
		t.Fatalf("retained publication decodes as %+v", q)
	}
	select {
	case err := <-done:
		t.Fatalf("PublishRetained returned %v before its PUBACK", err)
	case <-time.After(50 * time.Millisecond):
	}
	s.write(mqttwire.AppendPuback(nil, q.ID))
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The broker goes away; the connection comes back and subscribes again.
	s.c.Close()
	s2 := b.accept()
	s2.handshake(0, 2)
	select {
	case <-hooked:
	case <-time.After(10 * time.Second):
		t.Fatal("OnConnected hook not called after the reconnect")
	}
	s2.publish(topics.Request("T-2"), 1, "again")
	req.wait(t, topics.Request("T-2")+" again")
	if err := in.Connected(); err != nil {
		t.Fatal(err)
	}
}

// A refused login fails Start within its timeout, naming the reason.
func TestStartReportsRefusedLogin(t *testing.T) {
	b := newFakeBroker(t)
	go func() {
		for {
			select {
			case s := <-b.sessions:
				s.handshake(4, 0)
			case <-time.After(3 * time.Second):
				return
			}
		}
	}()
	_, err := Start(Config{BrokerURL: b.url(), ClientID: "gw", Conns: 1, Topics: terminals.DefaultTopics,
		ConnectTimeout: 2 * time.Second}, func(string, []byte) {})
	if err == nil || !strings.Contains(err.Error(), "bad user name or password") {
		t.Fatalf("Start: %v, want the refusal reason", err)
	}
}

// Nothing listening: Start fails within its timeout with a clear message.
func TestStartFailsWithoutBroker(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	t0 := time.Now()
	_, err := Start(Config{BrokerURL: "tcp://" + addr, ClientID: "gw", Conns: 2, Topics: terminals.DefaultTopics,
		ConnectTimeout: time.Second}, func(string, []byte) {})
	if err == nil || !strings.Contains(err.Error(), "is the broker running") {
		t.Fatalf("Start: %v", err)
	}
	if d := time.Since(t0); d > 20*time.Second {
		t.Fatalf("Start took %v to give up", d)
	}
	if _, err := Start(Config{BrokerURL: "ws://h:1/mqtt", Topics: terminals.DefaultTopics}, nil); err == nil {
		t.Fatal("a websocket URL was accepted")
	}
}
