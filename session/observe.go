package session

import (
	"context"
	"errors"
	"time"
)

// Observer is told of every call to a Store (metrics).
type Observer interface {
	// ObserveStore reports a call of op ("get", "set",
	// "compare_and_swap", "take", "delete", "lock", "unlock", "incr",
	// "count", "ping", "publish") that took d; failed means the store
	// itself failed (ErrUnavailable), not a miss or a held lock.
	ObserveStore(op string, d time.Duration, failed bool)
}

// Observe returns store with every call reported to o. The result is a
// Broadcaster when store is one (the invalidation channel's publishes are
// reported too), so the session cache works through it as before.
func Observe(store Store, o Observer) Store {
	os := observedStore{store: store, o: o}
	if b, ok := store.(Broadcaster); ok {
		return &observedBroadcaster{observedStore: os, b: b}
	}
	return &os
}

type observedStore struct {
	store Store
	o     Observer
}

// done reports a call of op that started at start and ended with err.
func (s *observedStore) done(op string, start time.Time, err error) {
	s.o.ObserveStore(op, time.Since(start), errors.Is(err, ErrUnavailable))
}

func (s *observedStore) Get(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	v, err := s.store.Get(ctx, key)
	s.done("get", start, err)
	return v, err
}

func (s *observedStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := s.store.Set(ctx, key, value, ttl)
	s.done("set", start, err)
	return err
}

func (s *observedStore) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	start := time.Now()
	ok, err := s.store.CompareAndSwap(ctx, key, old, new, ttl)
	s.done("compare_and_swap", start, err)
	return ok, err
}

func (s *observedStore) Take(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	v, err := s.store.Take(ctx, key)
	s.done("take", start, err)
	return v, err
}

func (s *observedStore) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.store.Delete(ctx, key)
	s.done("delete", start, err)
	return err
}

func (s *observedStore) Lock(ctx context.Context, key string, ttl time.Duration) (func(context.Context) error, error) {
	start := time.Now()
	unlock, err := s.store.Lock(ctx, key, ttl)
	s.done("lock", start, err)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		start := time.Now()
		err := unlock(ctx)
		s.done("unlock", start, err)
		return err
	}, nil
}

func (s *observedStore) Incr(ctx context.Context, key string, window time.Duration) (int64, time.Duration, error) {
	start := time.Now()
	n, left, err := s.store.Incr(ctx, key, window)
	s.done("incr", start, err)
	return n, left, err
}

func (s *observedStore) Count(ctx context.Context, key string) (int64, time.Duration, error) {
	start := time.Now()
	n, left, err := s.store.Count(ctx, key)
	s.done("count", start, err)
	return n, left, err
}

func (s *observedStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.store.Ping(ctx)
	s.done("ping", start, err)
	return err
}

// observedBroadcaster is an observed store that carries invalidations.
type observedBroadcaster struct {
	observedStore
	b Broadcaster
}

func (s *observedBroadcaster) PublishInvalidation(ctx context.Context, key string) error {
	start := time.Now()
	err := s.b.PublishInvalidation(ctx, key)
	s.done("publish", start, err)
	return err
}

func (s *observedBroadcaster) Invalidations(ctx context.Context, onKey func(string), onState func(bool)) {
	s.b.Invalidations(ctx, onKey, onState)
}

var (
	_ Store       = (*observedStore)(nil)
	_ Broadcaster = (*observedBroadcaster)(nil)
)
