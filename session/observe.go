package session

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
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
	return wrap(observedStore{store: store, o: o})
}

// Trace returns store with every call made for a traced request (its
// context carries a recording span) traced as a client span of tp:
// "session.store.get" and so on, with the operation and, for Redis, the
// database system; never a key (a hash of a session id) or a value.
// Calls outside a traced request (health probes, the start-up ping, the
// invalidation channel) make no span: they would be traces of their own,
// one per probe. With tp nil it returns store itself, at no cost. The
// result is a Broadcaster when store is one.
func Trace(store Store, tp trace.TracerProvider) Store {
	if tp == nil {
		return store
	}
	s := observedStore{store: store, tracer: tp.Tracer(tracerName)}
	if _, ok := store.(*RedisStore); ok {
		s.system = semconv.DBSystemNameRedis
	}
	return wrap(s)
}

// tracerName is the instrumentation scope of the store's spans.
const tracerName = "github.com/authgate/authgate/session"

func wrap(os observedStore) Store {
	if b, ok := os.store.(Broadcaster); ok {
		return &observedBroadcaster{observedStore: os, b: b}
	}
	return &os
}

// observedStore reports each call to its Observer, or traces it: Observe
// and Trace each make one.
type observedStore struct {
	store Store
	o     Observer
	// tracer makes the calls' spans; system is the store's
	// db.system.name (unset: none).
	tracer trace.Tracer
	system attribute.KeyValue
}

// call is a store call under way.
type call struct {
	op    string
	start time.Time
	span  trace.Span // nil: untraced
}

// begin starts a call of op made with ctx.
func (s *observedStore) begin(ctx context.Context, op string) call {
	c := call{op: op}
	if s.o != nil {
		c.start = time.Now()
	}
	if s.tracer != nil && trace.SpanFromContext(ctx).IsRecording() {
		attrs := make([]attribute.KeyValue, 1, 2)
		attrs[0] = semconv.DBOperationName(op)
		if s.system.Valid() {
			attrs = append(attrs, s.system)
		}
		_, c.span = s.tracer.Start(ctx, storeSpanName(op), trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	}
	return c
}

// done ends call c with err: failed means the store itself failed
// (ErrUnavailable), not a miss or a held lock.
func (s *observedStore) done(c call, err error) {
	failed := errors.Is(err, ErrUnavailable)
	if s.o != nil {
		s.o.ObserveStore(c.op, time.Since(c.start), failed)
	}
	if c.span != nil {
		if failed {
			c.span.SetAttributes(semconv.ErrorTypeKey.String("unavailable"))
			c.span.SetStatus(codes.Error, "")
		}
		c.span.End()
	}
}

// storeSpanName names the span of op (constants: no allocation).
func storeSpanName(op string) string {
	switch op {
	case "get":
		return "session.store.get"
	case "set":
		return "session.store.set"
	case "compare_and_swap":
		return "session.store.compare_and_swap"
	case "take":
		return "session.store.take"
	case "delete":
		return "session.store.delete"
	case "lock":
		return "session.store.lock"
	case "unlock":
		return "session.store.unlock"
	case "incr":
		return "session.store.incr"
	case "count":
		return "session.store.count"
	case "ping":
		return "session.store.ping"
	case "publish":
		return "session.store.publish"
	}
	return "session.store"
}

func (s *observedStore) Get(ctx context.Context, key string) ([]byte, error) {
	c := s.begin(ctx, "get")
	v, err := s.store.Get(ctx, key)
	s.done(c, err)
	return v, err
}

func (s *observedStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	c := s.begin(ctx, "set")
	err := s.store.Set(ctx, key, value, ttl)
	s.done(c, err)
	return err
}

func (s *observedStore) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	c := s.begin(ctx, "compare_and_swap")
	ok, err := s.store.CompareAndSwap(ctx, key, old, new, ttl)
	s.done(c, err)
	return ok, err
}

func (s *observedStore) Take(ctx context.Context, key string) ([]byte, error) {
	c := s.begin(ctx, "take")
	v, err := s.store.Take(ctx, key)
	s.done(c, err)
	return v, err
}

func (s *observedStore) Delete(ctx context.Context, key string) error {
	c := s.begin(ctx, "delete")
	err := s.store.Delete(ctx, key)
	s.done(c, err)
	return err
}

func (s *observedStore) Lock(ctx context.Context, key string, ttl time.Duration) (func(context.Context) error, error) {
	c := s.begin(ctx, "lock")
	unlock, err := s.store.Lock(ctx, key, ttl)
	s.done(c, err)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		c := s.begin(ctx, "unlock")
		err := unlock(ctx)
		s.done(c, err)
		return err
	}, nil
}

func (s *observedStore) Incr(ctx context.Context, key string, window time.Duration) (int64, time.Duration, error) {
	c := s.begin(ctx, "incr")
	n, left, err := s.store.Incr(ctx, key, window)
	s.done(c, err)
	return n, left, err
}

func (s *observedStore) Count(ctx context.Context, key string) (int64, time.Duration, error) {
	c := s.begin(ctx, "count")
	n, left, err := s.store.Count(ctx, key)
	s.done(c, err)
	return n, left, err
}

func (s *observedStore) Ping(ctx context.Context) error {
	c := s.begin(ctx, "ping")
	err := s.store.Ping(ctx)
	s.done(c, err)
	return err
}

// observedBroadcaster is an observed store that carries invalidations.
type observedBroadcaster struct {
	observedStore
	b Broadcaster
}

func (s *observedBroadcaster) PublishInvalidation(ctx context.Context, key string) error {
	c := s.begin(ctx, "publish")
	err := s.b.PublishInvalidation(ctx, key)
	s.done(c, err)
	return err
}

func (s *observedBroadcaster) Invalidations(ctx context.Context, onKey func(string), onState func(bool)) {
	s.b.Invalidations(ctx, onKey, onState)
}

var (
	_ Store       = (*observedStore)(nil)
	_ Broadcaster = (*observedBroadcaster)(nil)
)
