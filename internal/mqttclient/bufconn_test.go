package mqttclient

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"scenepay/internal/mqttwire"
)

// fakeConn records every Write (one per system call of a real connection)
// and serves reads from a fixed stream, counting the calls.
type fakeConn struct {
	mu        sync.Mutex
	writes    [][]byte
	wrote     chan struct{} // signalled after a Write
	writeErr  error
	closed    bool
	deadlines int
	in        io.Reader
	reads     int
}

func newFakeConn(in []byte) *fakeConn {
	return &fakeConn{wrote: make(chan struct{}, 1), in: bytes.NewReader(in)}
}

func (f *fakeConn) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, net.ErrClosed
	}
	if f.writeErr != nil {
		return 0, f.writeErr
	}
	f.writes = append(f.writes, append([]byte(nil), p...))
	select {
	case f.wrote <- struct{}{}:
	default: // a wake-up is pending already
	}
	return len(p), nil
}

func (f *fakeConn) Read(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.in.Read(p)
}

func (f *fakeConn) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeConn) SetWriteDeadline(time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deadlines++
	return nil
}

func (f *fakeConn) LocalAddr() net.Addr               { return nil }
func (f *fakeConn) RemoteAddr() net.Addr              { return nil }
func (f *fakeConn) SetDeadline(t time.Time) error     { return nil }
func (f *fakeConn) SetReadDeadline(t time.Time) error { return nil }
func (f *fakeConn) snapshot() (writes [][]byte, closed bool, deadlines int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.writes...), f.closed, f.deadlines
}

func joined(ws [][]byte) []byte { return bytes.Join(ws, nil) }

// awaitWrite waits for the next Write to f, failing with what if none
// comes within 10 s.
func (f *fakeConn) awaitWrite(t *testing.T, what string) {
	t.Helper()
	select {
	case <-f.wrote:
	case <-time.After(10 * time.Second):
		t.Fatal(what)
	}
}

// Writes never send by themselves without a flusher, and never block:
// past the bound a Write is refused whole (errBufFull) and the connection
// stays usable; Flush sends everything in one write, in order, with a
// write deadline.
func TestBufConnBoundsUnsentBytes(t *testing.T) {
	f := newFakeConn(nil)
	b := newBufConn(f, 100, time.Second, false)
	defer b.Close()
	if n, err := b.Write(bytes.Repeat([]byte("a"), 60)); n != 60 || err != nil {
		t.Fatal(n, err)
	}
	if n, err := b.Write(bytes.Repeat([]byte("b"), 60)); n != 0 || !errors.Is(err, errBufFull) {
		t.Fatalf("write past the bound: n=%d err=%v", n, err)
	}
	if err := b.write2([]byte("hh"), bytes.Repeat([]byte("c"), 39)); !errors.Is(err, errBufFull) {
		t.Fatalf("header and payload past the bound: %v", err)
	}
	if err := b.write2([]byte("hh"), bytes.Repeat([]byte("c"), 38)); err != nil {
		t.Fatal(err)
	}
	if ws, _, _ := f.snapshot(); len(ws) != 0 {
		t.Fatalf("bytes left without a flusher or Flush: %d writes", len(ws))
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	ws, _, dl := f.snapshot()
	if len(ws) != 1 || string(ws[0]) != strings.Repeat("a", 60)+"hh"+strings.Repeat("c", 38) {
		t.Fatalf("want one write of 100 bytes in order, got %q", ws)
	}
	if dl == 0 {
		t.Fatal("the flush set no write deadline on the connection")
	}
}

// Without a size flush, Flush or Close, the flusher woken by a Write sends
// what was buffered.
func TestBufConnFlusherSends(t *testing.T) {
	f := newFakeConn(nil)
	b := newBufConn(f, 1<<20, time.Second, true)
	defer b.Close()
	for i := range 3 {
		if _, err := b.Write([]byte{byte('x' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	got := []byte{}
	for len(got) < 3 {
		f.awaitWrite(t, fmt.Sprintf("buffered bytes never flushed by the flusher (have %q)", got))
		ws, _, _ := f.snapshot()
		got = joined(ws)
	}
	if string(got) != "xyz" {
		t.Fatalf("got %q", got)
	}
	// A later write wakes the flusher again.
	if _, err := b.Write([]byte("!")); err != nil {
		t.Fatal(err)
	}
	f.awaitWrite(t, "a write after a flush was never flushed")
	if ws, _, _ := f.snapshot(); string(joined(ws)) != "xyz!" {
		t.Fatalf("got %q", joined(ws))
	}
}

// Lazy bytes (the PUBACKs owed to the broker) wait for the next write that
// wakes the flusher and leave with it in one write; alone, they leave when
// the lazy delay has passed.
func TestBufConnLazyBytesRideWithTheNextWrite(t *testing.T) {
	f := newFakeConn(nil)
	b := newBufConn(f, 1<<20, time.Second, true)
	defer b.Close()
	const delay = 300 * time.Millisecond
	b.setLazyDelay(delay)
	if err := b.writeLazy([]byte("a")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(delay / 6) // the flusher would have sent a woken write long since
	if ws, _, _ := f.snapshot(); len(ws) != 0 {
		t.Fatalf("lazy bytes left alone at once: %q", ws)
	}
	if err := b.write2([]byte("R"), nil); err != nil {
		t.Fatal(err)
	}
	f.awaitWrite(t, "the woken write never left")
	if ws, _, _ := f.snapshot(); len(ws) != 1 || string(ws[0]) != "aR" {
		t.Fatalf("writes %q, want one write \"aR\"", ws)
	}

	// Alone, lazy bytes leave after the delay.
	start := time.Now()
	if err := b.writeLazy([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := b.writeLazy([]byte("c")); err != nil {
		t.Fatal(err)
	}
	f.awaitWrite(t, "lazy bytes never left on their own")
	if waited := time.Since(start); waited < delay {
		t.Fatalf("lazy bytes left after %v, before their delay %v", waited, delay)
	}
	if ws, _, _ := f.snapshot(); len(ws) != 2 || string(ws[1]) != "bc" {
		t.Fatalf("writes %q, want \"bc\" as the second", ws)
	}

	// Without a delay a lazy write is a plain one.
	g := newFakeConn(nil)
	p := newBufConn(g, 1<<20, time.Second, true)
	defer p.Close()
	if err := p.writeLazy([]byte("z")); err != nil {
		t.Fatal(err)
	}
	g.awaitWrite(t, "a lazy write without a delay was not sent")
}

// Concurrent writers (the reader's PUBACKs, replies from the committer)
// and the flusher never
// reorder or lose a writer's bytes: each packet arrives whole and in its
// writer's order.
func TestBufConnKeepsOrder(t *testing.T) {
	f := newFakeConn(nil)
	b := newBufConn(f, 1<<20, time.Second, true)
	const writers, per = 4, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if _, err := fmt.Fprintf(b, "<%d:%06d>", w, i); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ws, closed, _ := f.snapshot()
	if !closed {
		t.Fatal("Close left the connection open")
	}
	next := make([]int, writers)
	rest := joined(ws)
	for len(rest) > 0 {
		var w, i int
		if _, err := fmt.Sscanf(string(rest[:10]), "<%d:%06d>", &w, &i); err != nil {
			t.Fatalf("torn packet at %q: %v", rest[:10], err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: got packet %d, want %d", w, i, next[w])
		}
		next[w]++
		rest = rest[10:]
	}
	for w, n := range next {
		if n != per {
			t.Fatalf("writer %d: %d of %d packets arrived", w, n, per)
		}
	}
	if len(ws) >= writers*per {
		t.Fatalf("%d packets took %d writes: nothing was coalesced", writers*per, len(ws))
	}
}

// A failed flush closes the connection and its error is returned by the
// next Write and Flush; nothing is written after it.
func TestBufConnWriteErrorClosesAndSticks(t *testing.T) {
	f := newFakeConn(nil)
	boom := errors.New("broken pipe")
	f.writeErr = boom
	b := newBufConn(f, 1<<20, time.Second, false)
	if _, err := b.Write([]byte("lost")); err != nil {
		t.Fatalf("a buffered write failed before any flush: %v", err)
	}
	if err := b.Flush(); !errors.Is(err, boom) {
		t.Fatalf("Flush: %v, want %v", err, boom)
	}
	if _, closed, _ := f.snapshot(); !closed {
		t.Fatal("a failed flush left the connection open (the reader would not see the loss)")
	}
	if _, err := b.Write([]byte("more")); !errors.Is(err, boom) {
		t.Fatalf("Write after a failed flush: %v, want %v", err, boom)
	}
	if err := b.Flush(); !errors.Is(err, boom) {
		t.Fatalf("second Flush: %v", err)
	}
	if err := b.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close: %v, want the flush error", err)
	}
	if ws, _, _ := f.snapshot(); len(ws) != 0 {
		t.Fatalf("written after the error: %q", ws)
	}
}

// Close sends what is buffered (the DISCONNECT) before closing; a
// Write after Close fails.
func TestBufConnCloseFlushes(t *testing.T) {
	f := newFakeConn(nil)
	b := newBufConn(f, 1<<20, time.Second, false)
	if _, err := b.Write(mqttwire.AppendDisconnect(nil)); err != nil {
		t.Fatal(err)
	}
	if ws, _, _ := f.snapshot(); len(ws) != 0 {
		t.Fatal("flushed before Close")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ws, closed, _ := f.snapshot()
	if len(ws) != 1 || !bytes.Equal(ws[0], []byte{0xe0, 0}) || !closed {
		t.Fatalf("Close: writes %x, closed %v; want the DISCONNECT then closed", ws, closed)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, errBufConnClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if err := b.SetWriteDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
}

// The connection's packet reader on a bufConn reads many packets per read
// of the connection, each packet whole and in order.
func TestBufConnReadsPacketsInBulk(t *testing.T) {
	var stream bytes.Buffer
	const n = 200
	for i := range n {
		payload := fmt.Sprintf(`{"n":%d}`, i)
		stream.Write(append(mqttwire.AppendPublishHeader(nil, "scp/v1/t/K1/req", uint16(i+1), false, len(payload)), payload...))
	}
	f := newFakeConn(stream.Bytes())
	b := newBufConn(f, 1<<20, time.Second, false)
	defer b.Close()
	rd := &reader{buf: make([]byte, readBufBytes)}
	for i := range n {
		p, err := rd.next(b)
		if err != nil {
			t.Fatal(i, err)
		}
		if p.ID != uint16(i+1) || string(p.Payload) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("packet %d: id %d payload %q", i, p.ID, p.Payload)
		}
	}
	if _, err := rd.next(b); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last packet: %v", err)
	}
	f.mu.Lock()
	reads := f.reads
	f.mu.Unlock()
	if reads >= n {
		t.Fatalf("%d packets took %d reads of the connection", n, reads)
	}
}

// dialBroker dials the plain schemes and wraps the connection; a TCP
// connection carries bytes both ways through it.
func TestDialBrokerTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go echoOnce(ln)
	u, _ := url.Parse("tcp://" + ln.Addr().String())
	c, err := dialBroker(u, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "ping")
	for _, s := range []string{"tcp://h:1", "mqtt://h:1", "ssl://h:1", "tls://h:1", "mqtts://h:1", "unix:///tmp/s"} {
		if _, err := ParseURL(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"ws://h:1/mqtt", "wss://h:1/mqtt", "::bad"} {
		if _, err := ParseURL(s); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
}

// A TLS broker URL gets the TLS connection (with the given configuration)
// wrapped in a bufConn: bytes go both ways encrypted.
func TestDialBrokerTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	defer srv.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: srv.TLS.Certificates})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go echoOnce(ln)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	u, _ := url.Parse("ssl://" + ln.Addr().String())
	c, err := dialBroker(u, &tls.Config{RootCAs: roots, ServerName: "example.com"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.Conn.(*tls.Conn); !ok {
		t.Fatalf("ssl:// connection %T is not TLS", c.Conn)
	}
	roundTrip(t, c, "secret")
	// Without a configuration the system roots are used: this server's
	// certificate is not among them.
	if c, err := dialBroker(u, nil, 5*time.Second); err == nil {
		c.Close()
		t.Fatal("an unknown certificate was accepted with the default configuration")
	}
}

// echoOnce accepts one connection and echoes what it reads.
func echoOnce(ln net.Listener) {
	c, err := ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	io.Copy(c, c)
}

// roundTrip writes msg through c (its flusher sends it) and reads it back
// from the echo server.
func roundTrip(t *testing.T, c *bufConn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo %q %v (the flusher should have sent the write)", got, err)
	}
}
