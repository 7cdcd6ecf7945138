package store

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
)

// PoolConnsMax bounds the PostgreSQL connections one store opens.
const PoolConnsMax = 4

// connPool is a small bounded pool of pgx connections. pgxpool would do
// this, but it needs github.com/jackc/puddle/v2, which the module does not
// list; ingest holds one connection per call and queries are short, so a
// channel of idle connections is enough.
type connPool struct {
	cfg   *pgx.ConnConfig
	setup func(context.Context, *pgx.Conn) error // run once per new connection
	idle  chan *pgx.Conn                         // at most PoolConnsMax
	slots chan struct{}                          // one token per open connection

	mu     sync.Mutex
	closed bool
}

func newConnPool(cfg *pgx.ConnConfig, setup func(context.Context, *pgx.Conn) error) *connPool {
	return &connPool{cfg: cfg, setup: setup, idle: make(chan *pgx.Conn, PoolConnsMax), slots: make(chan struct{}, PoolConnsMax)}
}

func (p *connPool) acquire(ctx context.Context) (*pgx.Conn, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("settlement store: closed")
	}
	select {
	case c := <-p.idle:
		return c, nil
	default:
	}
	select {
	case c := <-p.idle:
		return c, nil
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c, err := pgx.ConnectConfig(ctx, p.cfg)
	if err == nil && p.setup != nil {
		if err = p.setup(ctx, c); err != nil {
			c.Close(context.Background())
		}
	}
	if err != nil {
		<-p.slots
		return nil, fmt.Errorf("settlement store: connect: %w", err)
	}
	return c, nil
}

// release returns c to the pool, or closes it if it is broken, inside a
// transaction, or the pool is closed.
func (p *connPool) release(c *pgx.Conn) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed || c.IsClosed() || c.PgConn().TxStatus() != 'I' {
		c.Close(context.Background())
		<-p.slots
		return
	}
	p.idle <- c // never blocks: at most PoolConnsMax connections exist
}

func (p *connPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for {
		select {
		case c := <-p.idle:
			c.Close(context.Background())
			<-p.slots
		default:
			return
		}
	}
}
