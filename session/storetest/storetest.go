// Package storetest is the conformance suite every session.Store must pass.
// It uses real time with short TTLs (a few hundred milliseconds), so a store
// under test must measure expiry with the real clock.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/session"
)

// ttl is the short lifetime of expiry tests; wait is how long they sleep to
// see it pass.
const (
	ttl  = 300 * time.Millisecond
	wait = 450 * time.Millisecond
	long = time.Minute
)

// Run checks that stores made by newStore behave as session.Store requires.
// newStore is called once per subtest and must return an empty store (or one
// whose keys do not collide with other subtests'). Subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s session.Store)
	}{
		{"GetMissing", testGetMissing},
		{"SetGet", testSetGet},
		{"SetOverwrites", testSetOverwrites},
		{"SetRejectsNonPositiveTTL", testSetRejectsNonPositiveTTL},
		{"TTLExpiry", testTTLExpiry},
		{"CompareAndSwap", testCompareAndSwap},
		{"CompareAndSwapSetsTTL", testCompareAndSwapSetsTTL},
		{"TakeSingleUse", testTakeSingleUse},
		{"TakeConcurrent", testTakeConcurrent},
		{"Delete", testDelete},
		{"LockExclusive", testLockExclusive},
		{"LockConcurrent", testLockConcurrent},
		{"LockExpiry", testLockExpiry},
		{"StaleUnlockKeepsNewOwner", testStaleUnlock},
		{"Counter", testCounter},
		{"CounterConcurrent", testCounterConcurrent},
		{"Ping", testPing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

func testGetMissing(t *testing.T, s session.Store) {
	if _, err := s.Get(t.Context(), "missing"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get(missing): got %v, want ErrNotFound", err)
	}
}

func testSetGet(t *testing.T, s session.Store) {
	ctx := t.Context()
	value := []byte("v\x00\xff binary")
	mustSet(t, s, "k", value, long)
	value[0] = 'X' // the store must have kept its own copy
	got := mustGet(t, s, "k")
	if want := []byte("v\x00\xff binary"); !bytes.Equal(got, want) {
		t.Fatalf("Get: got %q, want %q", got, want)
	}
	got[0] = 'Y' // and hand out copies
	if again := mustGet(t, s, "k"); again[0] != 'v' {
		t.Fatalf("Get after mutating a returned value: got %q, want it unchanged", again)
	}
	if _, err := s.Get(ctx, "k2"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get(other key): got %v, want ErrNotFound", err)
	}
}

func testSetOverwrites(t *testing.T, s session.Store) {
	mustSet(t, s, "k", []byte("one"), long)
	mustSet(t, s, "k", []byte("two"), long)
	if got := mustGet(t, s, "k"); string(got) != "two" {
		t.Fatalf("Get after overwrite: got %q, want %q", got, "two")
	}
}

func testSetRejectsNonPositiveTTL(t *testing.T, s session.Store) {
	for _, d := range []time.Duration{0, -time.Second} {
		if err := s.Set(t.Context(), "k", []byte("v"), d); err == nil {
			t.Errorf("Set(ttl=%s): got nil error, want one (a record must expire)", d)
		}
	}
	if _, err := s.Get(t.Context(), "k"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get after refused Set: got %v, want ErrNotFound", err)
	}
}

func testTTLExpiry(t *testing.T, s session.Store) {
	mustSet(t, s, "short", []byte("v"), ttl)
	mustSet(t, s, "long", []byte("v"), long)
	mustGet(t, s, "short")
	time.Sleep(wait)
	if _, err := s.Get(t.Context(), "short"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get after ttl: got %v, want ErrNotFound", err)
	}
	mustGet(t, s, "long")
}

func testCompareAndSwap(t *testing.T, s session.Store) {
	ctx := t.Context()
	mustSet(t, s, "k", []byte("old"), long)
	tests := []struct {
		name     string
		key      string
		old, new string
		want     bool
		wantVal  string // "" means the key must be absent
	}{
		{"mismatch", "k", "other", "new", false, "old"},
		{"match", "k", "old", "new", true, "new"},
		{"stale after swap", "k", "old", "newer", false, "new"},
		{"gone", "absent", "old", "new", false, ""},
	}
	for _, tt := range tests {
		ok, err := s.CompareAndSwap(ctx, tt.key, []byte(tt.old), []byte(tt.new), long)
		if err != nil {
			t.Fatalf("%s: CompareAndSwap: %v", tt.name, err)
		}
		if ok != tt.want {
			t.Errorf("%s: CompareAndSwap: got %v, want %v", tt.name, ok, tt.want)
		}
		got, err := s.Get(ctx, tt.key)
		switch {
		case tt.wantVal == "" && !errors.Is(err, session.ErrNotFound):
			t.Errorf("%s: Get: got %q, %v, want ErrNotFound (CAS must not create)", tt.name, got, err)
		case tt.wantVal != "" && string(got) != tt.wantVal:
			t.Errorf("%s: Get: got %q, %v, want %q", tt.name, got, err, tt.wantVal)
		}
	}
}

func testCompareAndSwapSetsTTL(t *testing.T, s session.Store) {
	mustSet(t, s, "k", []byte("old"), long)
	ok, err := s.CompareAndSwap(t.Context(), "k", []byte("old"), []byte("new"), ttl)
	if err != nil || !ok {
		t.Fatalf("CompareAndSwap: got %v, %v, want true, nil", ok, err)
	}
	time.Sleep(wait)
	if _, err := s.Get(t.Context(), "k"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get after the swapped-in ttl: got %v, want ErrNotFound", err)
	}
}

func testTakeSingleUse(t *testing.T, s session.Store) {
	ctx := t.Context()
	mustSet(t, s, "k", []byte("v"), long)
	got, err := s.Take(ctx, "k")
	if err != nil || string(got) != "v" {
		t.Fatalf("first Take: got %q, %v, want %q, nil", got, err, "v")
	}
	if got, err := s.Take(ctx, "k"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("second Take: got %q, %v, want ErrNotFound", got, err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get after Take: got %v, want ErrNotFound", err)
	}
}

// testTakeConcurrent pins the replay of a login state: of N racing
// callbacks carrying the same state, exactly one may win.
func testTakeConcurrent(t *testing.T, s session.Store) {
	const n = 20
	for round := range 5 {
		mustSet(t, s, "k", []byte("v"), long)
		wins := race(t, n, func(ctx context.Context) error {
			_, err := s.Take(ctx, "k")
			return err
		}, session.ErrNotFound)
		if wins != 1 {
			t.Fatalf("round %d: %d of %d concurrent Takes succeeded, want exactly 1", round, wins, n)
		}
	}
}

func testDelete(t *testing.T, s session.Store) {
	ctx := t.Context()
	mustSet(t, s, "k", []byte("v"), long)
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get after Delete: got %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete(absent): got %v, want nil", err)
	}
}

func testLockExclusive(t *testing.T, s session.Store) {
	ctx := t.Context()
	unlock := mustLock(t, s, "lock", long)
	if _, err := s.Lock(ctx, "lock", long); !errors.Is(err, session.ErrLocked) {
		t.Fatalf("second Lock: got %v, want ErrLocked", err)
	}
	other := mustLock(t, s, "other", long) // locks are per key
	if err := other(ctx); err != nil {
		t.Fatalf("unlock other: %v", err)
	}
	if err := unlock(ctx); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	again := mustLock(t, s, "lock", long)
	if err := unlock(ctx); err != nil { // a second unlock of the old holder is harmless...
		t.Fatalf("repeated unlock: %v", err)
	}
	if _, err := s.Lock(ctx, "lock", long); !errors.Is(err, session.ErrLocked) {
		t.Fatalf("Lock after the old holder unlocked twice: got %v, want ErrLocked", err) // ...and frees nothing
	}
	_ = again(ctx)
}

func testLockConcurrent(t *testing.T, s session.Store) {
	const n = 20
	wins := race(t, n, func(ctx context.Context) error {
		_, err := s.Lock(ctx, "lock", long)
		return err
	}, session.ErrLocked)
	if wins != 1 {
		t.Fatalf("%d of %d concurrent Locks succeeded, want exactly 1", wins, n)
	}
}

func testLockExpiry(t *testing.T, s session.Store) {
	mustLock(t, s, "lock", ttl)
	time.Sleep(wait)
	mustLock(t, s, "lock", long)
}

// testStaleUnlock pins the classic distributed-lock bug: a holder whose lock
// expired must not release the lock of whoever took it next.
func testStaleUnlock(t *testing.T, s session.Store) {
	ctx := t.Context()
	stale := mustLock(t, s, "lock", ttl)
	time.Sleep(wait)
	mustLock(t, s, "lock", long)
	if err := stale(ctx); err != nil {
		t.Fatalf("stale unlock: %v", err)
	}
	if _, err := s.Lock(ctx, "lock", long); !errors.Is(err, session.ErrLocked) {
		t.Fatalf("Lock after a stale unlock: got %v, want ErrLocked (new owner's lock deleted)", err)
	}
}

func testPing(t *testing.T, s session.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// race runs fn on n goroutines released together and returns how many
// succeeded; every failure must be lose.
func race(t *testing.T, n int, fn func(context.Context) error, lose error) int {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		wins  int
		start = make(chan struct{})
		errs  []error
	)
	for range n {
		wg.Go(func() {
			<-start
			err := fn(t.Context())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, lose):
				errs = append(errs, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("unexpected errors: %v", errors.Join(errs...))
	}
	return wins
}

func mustSet(t *testing.T, s session.Store, key string, value []byte, ttl time.Duration) {
	t.Helper()
	if err := s.Set(t.Context(), key, value, ttl); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, s session.Store, key string) []byte {
	t.Helper()
	v, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

func mustLock(t *testing.T, s session.Store, key string, ttl time.Duration) func(context.Context) error {
	t.Helper()
	unlock, err := s.Lock(t.Context(), key, ttl)
	if err != nil {
		t.Fatalf("Lock(%q): %v", key, err)
	}
	return unlock
}

func testCounter(t *testing.T, s session.Store) {
	ctx := t.Context()
	if n, left, err := s.Count(ctx, "ctr"); err != nil || n != 0 || left != 0 {
		t.Fatalf("Count(absent): got %d, %v, %v; want 0, 0, nil", n, left, err)
	}
	if _, _, err := s.Incr(ctx, "ctr", 0); err == nil {
		t.Errorf("Incr with window 0: got nil error, want one")
	}
	for want := int64(1); want <= 3; want++ {
		n, left, err := s.Incr(ctx, "ctr", ttl)
		if err != nil || n != want || left <= 0 || left > ttl {
			t.Fatalf("Incr #%d: got %d, %v, %v; want %d and a lifetime within %v", want, n, left, err, want, ttl)
		}
	}
	if n, left, err := s.Count(ctx, "ctr"); err != nil || n != 3 || left <= 0 {
		t.Fatalf("Count: got %d, %v, %v; want 3 and a lifetime", n, left, err)
	}
	// A fixed window: later increments do not extend it.
	time.Sleep(wait)
	if n, _, err := s.Count(ctx, "ctr"); err != nil || n != 0 {
		t.Errorf("Count after the window: got %d, %v; want 0", n, err)
	}
	if n, _, err := s.Incr(ctx, "ctr", ttl); err != nil || n != 1 {
		t.Errorf("Incr after the window: got %d, %v; want a new counter at 1", n, err)
	}
	if err := s.Delete(ctx, "ctr"); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := s.Count(ctx, "ctr"); n != 0 {
		t.Errorf("Count after Delete: got %d, want 0", n)
	}
}

func testCounterConcurrent(t *testing.T, s session.Store) {
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.Incr(t.Context(), "ctr-c", long); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got, _, err := s.Count(t.Context(), "ctr-c"); err != nil || got != n {
		t.Errorf("Count after %d concurrent Incr: got %d, %v", n, got, err)
	}
}
