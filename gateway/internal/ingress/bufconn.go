package ingress

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

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// Write coalescing of the MQTT connections. Paho writes every packet
// (each reply PUBLISH, each PUBACK) with its own write system call and
// reads each packet's fixed header byte, remaining length and body with
// separate unbuffered reads; under load that is most of the ingress's
// system calls. bufConn buffers both directions without changing what goes
// on the wire or its order.
const (
	// bufReadBytes is the read buffer: many small packets per read.
	bufReadBytes = 32 << 10
	// bufFlushBytes: a Write that leaves at least this much buffered
	// flushes at once (and waits for it: back-pressure on paho's writer).
	bufFlushBytes = 16 << 10
	// bufWriteTimeout bounds one flush (the deadline paho sets on the
	// connection applies to its Write, which only buffers).
	bufWriteTimeout = 5 * time.Second
)

// errBufConnClosed is returned by Write and Flush after Close.
var errBufConnClosed = errors.New("ingress: connection closed")

// bufConn is a net.Conn with a read buffer and coalesced writes: Write
// appends to a buffer and wakes the connection's flusher goroutine, which
// writes everything buffered in one write; packets written while that
// write is in the kernel go out together in the next. So a lone packet
// leaves at once (no timer: Go's timers below a millisecond fire after
// about one when the process is idle, which would add a millisecond to
// every reply), and under load the writes coalesce by themselves. A Write
// that leaves flushBytes or more buffered flushes itself, and Flush and
// Close flush too. Bytes leave in the order they were written. A failed flush closes the connection (paho's reader then sees
// the loss and reconnects) and its error is returned by the next Write
// or Flush. Read deadlines pass through; write deadlines are the
// connection's own (writeTimeout per flush).
type bufConn struct {
	net.Conn
	r *bufio.Reader

	flushBytes   int
	writeTimeout time.Duration
	kick         chan struct{} // wakes the flusher; nil: no flusher
	done         chan struct{} // closed by Close: the flusher returns

	wmu   sync.Mutex // serializes writes to Conn, taken before mu
	mu    sync.Mutex // guards the fields below
	buf   []byte     // written, not yet flushed
	spare []byte     // the other buffer, swapped in while buf is written
	err   error      // first flush error, or errBufConnClosed

	closeOnce sync.Once
}

// newBufConn wraps c. Without a flusher (flusher false) bytes leave only
// by size, Flush and Close.
func newBufConn(c net.Conn, flushBytes int, writeTimeout time.Duration, flusher bool) *bufConn {
	b := &bufConn{Conn: c, r: bufio.NewReaderSize(c, bufReadBytes), flushBytes: flushBytes,
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

// Write buffers p. It returns the error of an earlier failed flush, if any.
func (b *bufConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	b.buf = append(b.buf, p...)
	full := len(b.buf) >= b.flushBytes
	b.mu.Unlock()
	if full {
		if err := b.Flush(); err != nil {
			return 0, err
		}
	} else if b.kick != nil {
		select {
		case b.kick <- struct{}{}:
		default: // the flusher is awake already and takes these bytes too
		}
	}
	return len(p), nil
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
		b.Conn.Close() // paho's reader sees the loss and reconnects
	}
	return err
}

// Close flushes what is buffered (paho's DISCONNECT among it) and closes
// the connection.
func (b *bufConn) Close() error {
	ferr := b.Flush()
	b.mu.Lock()
	if b.err == nil {
		b.err = errBufConnClosed
	}
	b.mu.Unlock()
	b.closeOnce.Do(func() { close(b.done) })
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

// openBuffered is paho's connection function for tcp, mqtt, unix and the
// TLS schemes: it dials as paho v1.5.1 does (openConnection in its
// netconn.go, the proxy from the environment included) and wraps the
// connection, the TLS connection for TLS, in a bufConn.
func openBuffered(u *url.URL, o paho.ClientOptions) (net.Conn, error) {
	d := o.Dialer
	if d == nil {
		d = &net.Dialer{Timeout: 30 * time.Second}
	}
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
		if os.Getenv("all_proxy") == "" {
			c, err = tls.DialWithDialer(d, "tcp", u.Host, o.TLSConfig)
			break
		}
		var raw net.Conn
		if raw, err = proxy.FromEnvironment().Dial("tcp", u.Host); err != nil {
			return nil, err
		}
		tc := tls.Client(raw, o.TLSConfig)
		if err = tc.Handshake(); err != nil {
			raw.Close()
			return nil, err
		}
		c = tc
	default:
		return nil, errors.New("ingress: unsupported broker scheme " + u.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return newBufConn(c, bufFlushBytes, bufWriteTimeout, true), nil
}

// bufferedScheme reports whether openBuffered handles the broker URL's
// scheme; other schemes (websockets) keep paho's own connection.
func bufferedScheme(brokerURL string) bool {
	u, err := url.Parse(brokerURL)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "mqtt", "tcp", "unix", "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		return true
	}
	return false
}
