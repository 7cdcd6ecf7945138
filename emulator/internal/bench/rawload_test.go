package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"scenepay/terminals"
)

// testBroker is the machine's Mosquitto; tests use unique topic roots.
const testBroker = "127.0.0.1:1883"

func needBroker(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", testBroker, time.Second)
	if err != nil {
		t.Skipf("no Mosquitto at %s: %v", testBroker, err)
	}
	c.Close()
}

// uniqueTopics is a topic scheme no other test run shares.
func uniqueTopics() terminals.Topics {
	return terminals.Topics{Root: "benchtest-" + randHex(6) + "/v1", Group: "g" + randHex(6)}
}

// TestRawFleetAgainstMosquitto runs the raw client through the echo
// responder on the real broker, one terminal per connection and several per
// connection, with one writer and two: every request is answered, sampled,
// PUBACKed, and two windows in a row do not see each other's replies.
func TestRawFleetAgainstMosquitto(t *testing.T) {
	needBroker(t)
	for _, c := range []struct{ perConn, writers int }{{1, 1}, {3, 1}, {1, 2}} {
		perConn := c.perConn
		t.Run(fmt.Sprintf("per-conn-%d-writers-%d", perConn, c.writers), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			topics := uniqueTopics()
			echo, err := StartEcho(ctx, "tcp://"+testBroker, "", "", topics, 2)
			if err != nil {
				t.Fatal(err)
			}
			defer echo.Close()
			master := make([]byte, terminals.KeyLen)
			rand.Read(master)
			prefix := "RT" + randHex(3) + "-"
			f, err := ConnectRawFleet(ctx, RawConfig{Addr: testBroker, Topics: topics, PerConn: perConn, Writers: c.writers,
				TID: func(i int) string { return fmt.Sprintf("%s%d", prefix, i) }}, master, 7, 1000)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Client() != LoadRaw {
				t.Errorf("client %q", f.Client())
			}
			if got, want := len(f.raw.shards), min(c.writers, runtime.GOMAXPROCS(0)); got != want {
				t.Errorf("%d writers, want %d", got, want)
			}
			var sentBefore int64
			for round := range 2 {
				// 400/s for 500 ms: requests due at 0, 2.5, ..., 497.5 ms.
				w := f.Run(ctx, 400, 100*time.Millisecond, 500*time.Millisecond, 5*time.Second, false)
				if err := f.Err(); err != nil {
					t.Fatal(err)
				}
				if w.Sent != 200 || w.OK != 200 || w.Failures() != 0 || w.Stray != 0 {
					t.Errorf("round %d: sent %d ok %d failures %d stray %d, want 200 answered", round, w.Sent, w.OK, w.Failures(), w.Stray)
				}
				// Requests due from 100 ms on are sampled: 160 of 200.
				if w.Samples != 160 || w.P50 <= 0 || w.P99 < w.P50 || w.Max < w.P99 || w.Max > 5*time.Second {
					t.Errorf("round %d: samples %d p50 %v p99 %v max %v", round, w.Samples, w.P50, w.P99, w.Max)
				}
				sentBefore += w.Sent
			}
			if got := echo.Echoed(); got != sentBefore {
				t.Errorf("echo answered %d, fleet sent %d", got, sentBefore)
			}
			// The broker acknowledges every PUBLISH (a lost PUBACK would be
			// a codec or packet-id defect).
			deadline := time.Now().Add(5 * time.Second)
			for f.raw.Unacked() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := f.raw.Unacked(); n != 0 {
				t.Errorf("%d PUBLISHes never acknowledged", n)
			}
		})
	}
}

// TestRawFleetSendsSignedFrames reads the raw client's requests as the
// gateway would: each is a frame whose MAC verifies under the terminal's
// derived key and whose body is a valid purchase of that terminal.
func TestRawFleetSendsSignedFrames(t *testing.T) {
	needBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topics := uniqueTopics()
	var (
		mu   sync.Mutex
		msgs = map[string][][]byte{}
	)
	o := mqtt.NewClientOptions().AddBroker("tcp://" + testBroker).SetClientID("obs-" + randHex(6)).SetCleanSession(true)
	obs := mqtt.NewClient(o)
	if err := wait(ctx, obs.Connect()); err != nil {
		t.Fatal(err)
	}
	defer obs.Disconnect(50)
	err := wait(ctx, obs.Subscribe(topics.RequestFilter(), 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		msgs[m.Topic()] = append(msgs[m.Topic()], m.Payload())
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	master := make([]byte, terminals.KeyLen)
	rand.Read(master)
	prefix := "RS" + randHex(3) + "-"
	tid := func(i int) string { return fmt.Sprintf("%s%d", prefix, i) }
	f, err := ConnectRawFleet(ctx, RawConfig{Addr: testBroker, Topics: topics, PerConn: 2, TID: tid}, master, 3, 5000)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// No responder: every request times out, which is not what is checked.
	f.Run(ctx, 60, 0, 200*time.Millisecond, 300*time.Millisecond, false)
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for i := range 3 {
		id := tid(i)
		got := msgs[topics.Request(id)]
		total += len(got)
		if len(got) == 0 {
			t.Errorf("%s sent nothing", id)
		}
		key := terminals.DeriveKey(master, id, 1)
		for _, payload := range got {
			body, err := terminals.Open(key, payload)
			if err != nil {
				t.Fatalf("%s: frame does not open: %v: %q", id, err, payload)
			}
			r, err := terminals.DecodeRequest(body)
			if err != nil {
				t.Fatalf("%s: %v: %s", id, err, body)
			}
			if err := r.Validate(); err != nil || r.TID != id || r.Amt != purchaseFen || r.Txn <= 5000 {
				t.Errorf("%s: request %+v (validate: %v)", id, r, err)
			}
		}
	}
	if total != 12 { // 60/s for 200 ms
		t.Errorf("observed %d requests, want 12", total)
	}
}

// TestRawFleetAcknowledgesWhileIdle sends a terminal more QoS 1 replies
// than the broker lets be in flight unacknowledged (Mosquitto's default
// max_inflight_messages is 20) while the terminal sends nothing: all arrive
// only if held PUBACKs leave on their own after the ack delay.
func TestRawFleetAcknowledgesWhileIdle(t *testing.T) {
	needBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topics := uniqueTopics()
	master := make([]byte, terminals.KeyLen)
	rand.Read(master)
	tid := "RA" + randHex(3)
	f, err := ConnectRawFleet(ctx, RawConfig{Addr: testBroker, Topics: topics, AckDelay: 20 * time.Millisecond,
		TID: func(int) string { return tid }}, master, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o := mqtt.NewClientOptions().AddBroker("tcp://" + testBroker).SetClientID("pub-" + randHex(6)).SetCleanSession(true)
	pub := mqtt.NewClient(o)
	if err := wait(ctx, pub.Connect()); err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(50)
	const n = 60
	for i := range n {
		if err := wait(ctx, pub.Publish(topics.Reply(tid), 1, false, fmt.Sprintf(`{"txn":%d}`, i+1))); err != nil {
			t.Fatal(err)
		}
	}
	tm := f.terms[0]
	deadline := time.Now().Add(10 * time.Second)
	for {
		tm.mu.Lock()
		got := tm.stray // replies for no pending request
		tm.mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d replies arrived", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := f.Err(); err != nil {
		t.Fatal(err)
	}
}
