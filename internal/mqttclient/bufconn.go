package mqttclient

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/net/proxy"
)

// Write coalescing of the MQTT connections: every packet the gateway sends
// (each reply PUBLISH, each PUBACK) is appended to the connection's buffer
// and the connection's flusher writes what has gathered with one system
// call; reads fill a large buffer with one system call for many packets.
const (
	// bufReadBytes is the read buffer: many small packets per read.
	bufReadBytes = 32 << 10
	// bufMaxBytes bounds what one connection holds unsent: past it a
	// Write is refused (errBufFull) instead of blocking its caller, which
	// may be the journal's committer publishing replies. A refused reply
	// is a lost publication: the terminal retries and gets the stored one.
	bufMaxBytes = 8 << 20
	// bufWriteTimeout bounds one flush.
	bufWriteTimeout = 5 * time.Second
)

// errBufFull is returned by Write when bufMaxBytes are already unsent.
var errBufFull = errors.New("mqtt: connection write buffer full")

// errBufConnClosed is returned by Write and Flush after Close.
var errBufConnClosed = errors.New("mqtt: connection closed")

// bufConn is a net.Conn with a read buffer and coalesced writes: Write
// appends to a buffer and wakes the connection's flusher goroutine, which
// writes everything buffered in one write; packets written while that
// write is in the kernel go out together in the next. So a lone packet
// leaves at once (no timer: Go's timers below a millisecond fire after
// about one when the process is idle, which would add a millisecond to
// every reply), and under load the writes coalesce by themselves. A Write
// never waits for the network: past maxBytes unsent it is refused
// (errBufFull). Flush and Close write what is buffered. Bytes leave in the
// order they were written. A failed flush closes the connection (the
// reader then sees the loss and reconnects) and its error is returned by
// the next Write or Flush. Read deadlines pass through; write deadlines
// are the connection's own (writeTimeout per flush).
type bufConn struct {
	net.Conn
	r *bufio.Reader

	maxBytes     int
	writeTimeout time.Duration
	kick         chan struct{} // wakes the flusher; nil: no flusher
	done         chan struct{} // closed by Close: the flusher returns

	wmu   sync.Mutex // serializes writes to Conn, taken before mu
	mu    sync.Mutex // guards the fields below
	buf   []byte     // written, not yet flushed
	spare []byte     // the other buffer, swapped in while buf is written
	err   error      // first flush error, or errBufConnClosed
	lazy  bool       // bytes of writeLazy wait in buf, and lazyTimer runs

	// lazyTimer wakes the flusher lazyDelay after bytes of writeLazy came
	// into an otherwise idle buffer; nil: writeLazy is write2.
	lazyTimer *time.Timer
	lazyDelay time.Duration

	closeOnce sync.Once
}

// newBufConn wraps c, holding at most maxBytes unsent. Without a flusher
// (flusher false) bytes leave only by Flush and Close.
func newBufConn(c net.Conn, maxBytes int, writeTimeout time.Duration, flusher bool) *bufConn {
	b := &bufConn{Conn: c, r: bufio.NewReaderSize(c, bufReadBytes), maxBytes: maxBytes,
		writeTimeout: writeTimeout, done: make(chan struct{})}
	if flusher {
		b.kick = make(chan struct{}, 1)
		go b.flusher()
	}
	return b
}

// flusher writes what is buffered whenever a Write wakes it.
func (b *bufConn) flusher() {
	for {
		select {
		case <-b.done:
			return
		case <-b.kick:
		}
		// Let the writer that woke us add what it has ready: one yield,
		// no wait.
		runtime.Gosched()
		if b.Flush() != nil {
			return
		}
	}
}

// Read reads from the buffer, refilling it with one read of the connection.
func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// Write buffers p. It returns the error of an earlier failed flush, if any,
// and errBufFull (p not taken) when maxBytes would be exceeded.
func (b *bufConn) Write(p []byte) (int, error) {
	if err := b.write2(p, nil); err != nil {
		return 0, err
	}
	return len(p), nil
}

// write2 buffers a then c as one unit (a packet's header and payload):
// both or neither.
func (b *bufConn) write2(a, c []byte) error {
	if err := b.add(a, c, false); err != nil {
		return err
	}
	b.wake()
	return nil
}

// setLazyDelay makes writeLazy hold its bytes for up to d (d > 0, and the
// connection has a flusher).
func (b *bufConn) setLazyDelay(d time.Duration) {
	if d <= 0 || b.kick == nil {
		return
	}
	b.lazyDelay = d
	b.lazyTimer = time.AfterFunc(time.Hour, b.wake)
	b.lazyTimer.Stop()
}

// writeLazy buffers p without waking the flusher: p leaves with the next
// flush that a write2 causes, or lazyDelay after the first held bytes at
// the latest. The PUBACKs the gateway owes the broker go this way: under
// load they ride with the replies instead of costing a write (and a broker
// read) of their own per read.
func (b *bufConn) writeLazy(p []byte) error {
	if b.lazyTimer == nil {
		return b.write2(p, nil)
	}
	return b.add(p, nil, true)
}

// add appends a and c to the buffer, both or neither. A lazy add into a
// buffer holding no lazy bytes starts the lazy timer.
func (b *bufConn) add(a, c []byte, lazy bool) error {
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return err
	}
	if len(b.buf)+len(a)+len(c) > b.maxBytes {
		b.mu.Unlock()
		return errBufFull
	}
	b.buf = append(append(b.buf, a...), c...)
	arm := lazy && !b.lazy
	if arm {
		b.lazy = true
		b.lazyTimer.Reset(b.lazyDelay)
	}
	b.mu.Unlock()
	return nil
}

// wake wakes the flusher.
func (b *bufConn) wake() {
	if b.kick != nil {
		select {
		case b.kick <- struct{}{}:
		default: // the flusher is awake already and takes these bytes too
		}
	}
}

// Flush writes what is buffered. It returns the first flush error.
func (b *bufConn) Flush() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.mu.Lock()
	if b.err != nil || len(b.buf) == 0 {
		err := b.err
		b.mu.Unlock()
		return err
	}
	out := b.buf
	b.buf, b.spare = b.spare[:0], nil
	if b.lazy { // the held bytes leave now; a late tick finds nothing to write
		b.lazy = false
		b.lazyTimer.Stop()
	}
	b.mu.Unlock()

	// Writes into the other buffer go on while this one is written.
	var err error
	if err = b.Conn.SetWriteDeadline(time.Now().Add(b.writeTimeout)); err == nil {
		_, err = b.Conn.Write(out)
	}

	b.mu.Lock()
	b.spare = out[:0]
	if err != nil && b.err == nil {
		b.err = err
	}
	err = b.err
	b.mu.Unlock()
	if err != nil {
		b.Conn.Close() // the reader sees the loss and reconnects
	}
	return err
}

// Close flushes what is buffered (a DISCONNECT among it) and closes
// the connection.
func (b *bufConn) Close() error {
	ferr := b.Flush()
	b.mu.Lock()
	if b.err == nil {
		b.err = errBufConnClosed
	}
	b.mu.Unlock()
	b.closeOnce.Do(func() {
		close(b.done)
		if b.lazyTimer != nil {
			b.lazyTimer.Stop()
		}
	})
	cerr := b.Conn.Close()
	if ferr != nil && !errors.Is(ferr, errBufConnClosed) {
		return ferr
	}
	return cerr
}

// SetDeadline sets the read deadline only (see SetWriteDeadline).
func (b *bufConn) SetDeadline(t time.Time) error { return b.Conn.SetReadDeadline(t) }

// SetWriteDeadline does nothing: Write only buffers, and every flush has a
// deadline of its own.
func (b *bufConn) SetWriteDeadline(time.Time) error { return nil }

// dialBroker connects to the broker URL's host: tcp, mqtt and unix
// schemes in the clear, ssl, tls, mqtts, mqtt+ssl and tcps with TLS
// (tlsConf, or the system roots and the URL's host name when nil), through
// the proxy from the environment as paho does, and wraps the connection in
// a bufConn with its flusher.
func dialBroker(u *url.URL, tlsConf *tls.Config, timeout time.Duration) (*bufConn, error) {
	d := &net.Dialer{Timeout: timeout}
	var (
		c   net.Conn
		err error
	)
	switch u.Scheme {
	case "mqtt", "tcp":
		c, err = proxy.FromEnvironmentUsing(d).Dial("tcp", u.Host)
	case "unix":
		addr := u.Host
		if addr == "" {
			addr = u.Path
		}
		c, err = d.Dial("unix", addr)
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		if tlsConf == nil {
			tlsConf = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
		}
		if os.Getenv("all_proxy") == "" {
			c, err = tls.DialWithDialer(d, "tcp", u.Host, tlsConf)
			break
		}
		var raw net.Conn
		if raw, err = proxy.FromEnvironment().Dial("tcp", u.Host); err != nil {
			return nil, err
		}
		tc := tls.Client(raw, tlsConf)
		tc.SetDeadline(time.Now().Add(timeout))
		if err = tc.Handshake(); err != nil {
			raw.Close()
			return nil, err
		}
		tc.SetDeadline(time.Time{})
		c = tc
	default:
		return nil, errors.New("mqtt: unsupported broker scheme " + u.Scheme + " (tcp, mqtt, unix, ssl, tls, mqtts, mqtt+ssl, tcps)")
	}
	if err != nil {
		return nil, err
	}
	return newBufConn(c, bufMaxBytes, bufWriteTimeout, true), nil
}

// ParseURL parses and checks a broker URL.
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "mqtt", "tcp", "unix", "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		return u, nil
	}
	return nil, errors.New("mqtt: unsupported broker scheme " + u.Scheme + " (tcp, mqtt, unix, ssl, tls, mqtts, mqtt+ssl, tcps)")
}
