package session_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/session/redistest"
	"github.com/authgate/authgate/session/storetest"
)

// recorder is a session.Observer that remembers what it was told.
type recorder struct {
	mu     sync.Mutex
	calls  map[string]int
	failed map[string]int
}

func newRecorder() *recorder { return &recorder{calls: map[string]int{}, failed: map[string]int{}} }

func (r *recorder) ObserveStore(op string, d time.Duration, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d < 0 {
		panic("negative duration")
	}
	r.calls[op]++
	if failed {
		r.failed[op]++
	}
}

func (r *recorder) counts(op string) (calls, failed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[op], r.failed[op]
}

// TestObservedStoreConformance: the observed store is still a Store in
// every respect (the conformance suite through it), and every operation
// the suite makes is reported, none as a failure.
func TestObservedStoreConformance(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	rec := newRecorder()
	t.Run("suite", func(t *testing.T) { // returns when its parallel subtests have
		storetest.Run(t, func(t *testing.T) session.Store {
			return session.Observe(session.NewRedisStore(c, "test:"+t.Name()+":"), rec)
		})
	})
	for _, op := range []string{"get", "set", "compare_and_swap", "take", "delete", "lock", "unlock", "incr", "count"} {
		if n, failed := rec.counts(op); n == 0 || failed != 0 {
			t.Errorf("%s: %d calls reported, %d failed; want some, none failed", op, n, failed)
		}
	}
}

// TestObservedStoreFailures: a store that fails is reported as failed; a
// miss and a held lock are not failures; a Redis store stays a
// Broadcaster through the wrapper (the session cache needs it), and its
// publishes are reported.
func TestObservedStoreFailures(t *testing.T) {
	srv := redistest.Start(t)
	rec := newRecorder()
	store, closeStore, err := session.OpenStore(session.Config{Store: "redis", Redis: session.RedisConfig{URL: srv.URL, Timeout: 300 * time.Millisecond}}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeStore() })
	obs := session.Observe(store, rec)
	ctx := context.Background()
	if _, err := obs.Get(ctx, "absent"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("get absent: got %v, want ErrNotFound", err)
	}
	unlock, err := obs.Lock(ctx, "l", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Lock(ctx, "l", time.Minute); !errors.Is(err, session.ErrLocked) {
		t.Fatalf("second lock: got %v, want ErrLocked", err)
	}
	unlock(ctx)
	b, ok := obs.(session.Broadcaster)
	if !ok {
		t.Fatal("the observed Redis store is no Broadcaster: the session cache would be off")
	}
	if err := b.PublishInvalidation(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"get", "lock", "unlock", "publish"} {
		if n, failed := rec.counts(op); n == 0 || failed != 0 {
			t.Errorf("%s: %d calls, %d failed; want some, none failed", op, n, failed)
		}
	}
	srv.Stop()
	if _, err := obs.Get(ctx, "k"); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("get with Redis down: got %v, want ErrUnavailable", err)
	}
	if _, failed := rec.counts("get"); failed != 1 {
		t.Errorf("get with Redis down: %d failures reported, want 1", failed)
	}
	if _, ok := session.Observe(session.NewMemoryStore(time.Now, 0), rec).(session.Broadcaster); ok {
		t.Error("the observed memory store claims to broadcast")
	}
}

// TestTracedStore: a traced store is still a Store in every respect (the
// conformance suite through it, under Observe as authgate serve stacks
// them) and a Broadcaster over Redis; a call made within a recording span
// is a child span named by its operation, failed when the store failed
// and not for a miss; a call outside any span (a health probe) makes
// none; with no provider the store comes back unwrapped.
func TestTracedStore(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Run("suite", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) session.Store {
			return session.Observe(session.Trace(session.NewRedisStore(c, "test:"+t.Name()+":"), tp), newRecorder())
		})
	})
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("calls outside any span made %d spans, want none", n)
	}
	store, closeStore, err := session.OpenStore(session.Config{Store: "redis", Redis: session.RedisConfig{URL: srv.URL, Timeout: 300 * time.Millisecond}}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeStore() })
	traced := session.Trace(store, tp)
	if _, ok := traced.(session.Broadcaster); !ok {
		t.Fatal("the traced Redis store is no Broadcaster: the session cache would be off")
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	if _, err := traced.Get(ctx, "absent-canary-key"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("get absent: %v", err)
	}
	srv.Stop()
	if _, err := traced.Get(ctx, "k"); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("get with Redis down: %v", err)
	}
	parent.End()
	var gets []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "session.store.get" {
			gets = append(gets, s)
		}
	}
	if len(gets) != 2 {
		t.Fatalf("got %d session.store.get spans, want 2", len(gets))
	}
	for i, s := range gets {
		want := []attribute.KeyValue{attribute.String("db.operation.name", "get"), attribute.String("db.system.name", "redis")}
		if i == 1 {
			want = append(want, attribute.String("error.type", "unavailable"))
		}
		if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanKind() != trace.SpanKindClient || !slices.Equal(s.Attributes(), want) {
			t.Errorf("get span %d: parent %v kind %v attributes %v, want a client child of the request with %v", i, s.Parent().SpanID(), s.SpanKind(), s.Attributes(), want)
		}
		if failed := s.Status().Code == codes.Error; failed != (i == 1) {
			t.Errorf("get span %d: status %v", i, s.Status())
		}
	}
	mem := session.NewMemoryStore(time.Now, 0)
	if session.Trace(mem, nil) != session.Store(mem) {
		t.Error("Trace with no provider wrapped the store")
	}
}
