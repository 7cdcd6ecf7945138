package handoff

import (
	"context"
	"sync"

	settle "scenepay/settlement/handoff"
	"scenepay/settlement/store"
)

// Lazy returns a store that opens itself with open on first use and again
// after a failed open, so that a gateway started while the settlement
// database is down still starts, authorizes, and hands off once the
// database answers (a store that opens only at start would have to either
// refuse to start or run without a handoff).
func Lazy(open func(ctx context.Context) (store.Store, error)) *LazyStore {
	return &LazyStore{open: open}
}

// LazyStore is the Store returned by Lazy; Close closes the opened store.
type LazyStore struct {
	open func(ctx context.Context) (store.Store, error)
	mu   sync.Mutex
	st   store.Store
}

func (l *LazyStore) get(ctx context.Context) (store.Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st != nil {
		return l.st, nil
	}
	st, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	l.st = st
	return st, nil
}

func (l *LazyStore) Ingest(ctx context.Context, b *settle.Batch) (store.IngestResult, error) {
	st, err := l.get(ctx)
	if err != nil {
		return store.IngestResult{}, err
	}
	return st.Ingest(ctx, b)
}

func (l *LazyStore) HighWater(ctx context.Context, source string) (uint64, error) {
	st, err := l.get(ctx)
	if err != nil {
		return 0, err
	}
	return st.HighWater(ctx, source)
}

func (l *LazyStore) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st == nil {
		return nil
	}
	return l.st.Close()
}
