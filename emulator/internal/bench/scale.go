package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"scenepay/internal/mqttwire"
	"scenepay/terminals"
)

// Scale probe bounds.
const (
	// ScaleConnsMax bounds the connections one probe opens.
	ScaleConnsMax = 60_000
	// scaleDialers is how many connections are set up at a time.
	scaleDialers = 64
	// scaleStepTimeout bounds one connection's dial, CONNACK and SUBACK.
	scaleStepTimeout = 10 * time.Second
)

// ScaleResult is what the connection-scale probe reached.
type ScaleResult struct {
	Target    int           `json:"target"`
	Connected int           `json:"connected"` // CONNACK and SUBACK received
	Alive     int           `json:"alive"`     // answered PINGREQ after all were up
	FileLimit uint64        `json:"file_limit"`
	Took      time.Duration `json:"-"`
	FirstErr  string        `json:"first_error,omitempty"`
}

// rawTerminal connects like a terminal at its least: MQTT 3.1.1 CONNECT
// (clean session, keep-alive 0 so the broker never times it out) and a QoS 1
// SUBSCRIBE to its reply topic, over a bare net.Conn with no goroutine and
// no buffers of its own. That is what lets one process hold 10,000+.
func rawTerminal(ctx context.Context, addr, tid string, topics terminals.Topics) (net.Conn, error) {
	d := net.Dialer{Timeout: scaleStepTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(scaleStepTimeout))
	var connect []byte
	connect = mqttwire.AppendString(connect, "MQTT")
	connect = append(connect, 4, 0x02, 0, 0) // level 4, clean session, keep-alive 0
	connect = mqttwire.AppendString(connect, tid)
	sub := []byte{0, 1} // packet id 1
	sub = mqttwire.AppendString(sub, topics.Reply(tid))
	sub = append(sub, 1)
	if _, err := c.Write(append(mqttwire.Frame(0x10, connect), mqttwire.Frame(0x82, sub)...)); err != nil {
		c.Close()
		return nil, err
	}
	var ack [9]byte // CONNACK (4) + SUBACK (5)
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		c.Close()
		return nil, err
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("connack refused: % x", ack[:4])
	}
	if ack[4] != 0x90 || ack[8] > 2 {
		c.Close()
		return nil, fmt.Errorf("subscribe refused: % x", ack[4:])
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// Scale opens target raw terminal connections to addr, holds them all at
// once, then checks each is still served (PINGREQ -> PINGRESP) and closes
// them. It stops early at deadline or when connections fail, and reports
// how many it reached.
func Scale(ctx context.Context, addr string, topics terminals.Topics, target int, limit uint64, deadline time.Duration) ScaleResult {
	target = min(target, ScaleConnsMax)
	res := ScaleResult{Target: target, FileLimit: limit}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	conns := make([]net.Conn, target)
	var (
		next     atomic.Int64
		failures atomic.Int64
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	for range scaleDialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && failures.Load() < 100 {
				i := int(next.Add(1)) - 1
				if i >= target {
					return
				}
				c, err := rawTerminal(ctx, addr, fmt.Sprintf("SCALE-%05d", i+1), topics)
				if err != nil {
					failures.Add(1)
					errOnce.Do(func() { res.FirstErr = err.Error() })
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			res.Connected++
		}
	}
	// Every connection is open now; ask each to prove the broker still
	// serves it.
	var alive atomic.Int64
	jobs := make(chan net.Conn)
	for range scaleDialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range jobs {
				c.SetDeadline(time.Now().Add(scaleStepTimeout))
				var r [2]byte
				if _, err := c.Write([]byte{0xc0, 0}); err == nil {
					if _, err := io.ReadFull(c, r[:]); err == nil && r[0] == 0xd0 {
						alive.Add(1)
					}
				}
			}
		}()
	}
	for _, c := range conns {
		if c != nil {
			jobs <- c
		}
	}
	close(jobs)
	wg.Wait()
	res.Alive = int(alive.Load())
	for _, c := range conns {
		if c != nil {
			c.Write([]byte{0xe0, 0}) // DISCONNECT
			c.Close()
		}
	}
	res.Took = time.Since(start)
	if res.FirstErr == "" && ctx.Err() != nil && res.Connected < target {
		res.FirstErr = errors.New("deadline reached").Error()
	}
	return res
}
