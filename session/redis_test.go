package session

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestRedisStorePrefixesKeys(t *testing.T) {
	s, srv := redisStore(t)
	ctx := t.Context()
	if err := s.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock(ctx, "l", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock(ctx)
	keys, err := srv.Client(t).Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	if want := []string{"authgate:k", "authgate:l"}; !slices.Equal(keys, want) {
		t.Fatalf("keys in Redis: got %q, want %q", keys, want)
	}
}

func TestRedisStoreScriptCacheFlushed(t *testing.T) {
	s, srv := redisStore(t)
	ctx := t.Context()
	if err := s.Set(ctx, "k", []byte("a"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CompareAndSwap(ctx, "k", []byte("a"), []byte("b"), time.Minute); !ok || err != nil {
		t.Fatalf("CompareAndSwap: got %v, %v, want true, nil", ok, err)
	}
	// A Redis restart or failover forgets cached scripts: EVALSHA answers
	// NOSCRIPT and the store must fall back to EVAL.
	if err := srv.Client(t).ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.CompareAndSwap(ctx, "k", []byte("b"), []byte("c"), time.Minute); !ok || err != nil {
		t.Fatalf("CompareAndSwap after SCRIPT FLUSH: got %v, %v, want true, nil", ok, err)
	}
}

// TestRedisStoreDownIsUnavailable pins fail-closed behaviour: Redis down must
// never read as "no session" (which would clear the cookie and log the user
// out) nor as success.
func TestRedisStoreDownIsUnavailable(t *testing.T) {
	s, srv := redisStore(t)
	ctx := t.Context()
	if err := s.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	ops := []struct {
		name string
		fn   func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, "k"); return err }},
		{"Set", func() error { return s.Set(ctx, "k", []byte("v"), time.Minute) }},
		{"CompareAndSwap", func() error {
			_, err := s.CompareAndSwap(ctx, "k", []byte("v"), []byte("w"), time.Minute)
			return err
		}},
		{"Take", func() error { _, err := s.Take(ctx, "k"); return err }},
		{"Delete", func() error { return s.Delete(ctx, "k") }},
		{"Lock", func() error { _, err := s.Lock(ctx, "l", time.Minute); return err }},
		{"Ping", func() error { return s.Ping(ctx) }},
	}
	for _, op := range ops {
		err := op.fn()
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrLocked) {
			t.Errorf("%s with Redis down: got %v, want ErrUnavailable only", op.name, err)
		}
	}
	srv.Restart()
	waitFor(t, func() bool { return s.Ping(ctx) == nil })
	if _, err := s.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after restart of a non-persistent Redis: got %v, want ErrNotFound", err)
	}
}

// waitFor polls cond for up to 5s; a client may need a moment to drop the
// connections of a dead server.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
