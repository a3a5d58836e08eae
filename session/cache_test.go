package session

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestCacheSparesTheStore: a session read a moment ago costs no store
// read; another ticket with the same id and a wrong key never gets it.
func TestCacheSparesTheStore(t *testing.T) {
	clock := newFakeClock()
	store := &countingStore{Store: NewMemoryStore(clock.Now, 0)}
	m := newManager(t, testConfig(t), store, clock.Now)
	tk, err := m.Create(context.Background(), testSession())
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		s, _, err := m.Load(context.Background(), tk)
		if err != nil || s.Token.AccessToken != "CANARY-ACCESS-7f3a" {
			t.Fatalf("Load: %v", err)
		}
		s.LastSeen = time.Time{} // callers own their copy
	}
	if n := store.gets.Load(); n != 1 {
		t.Errorf("store reads for 10 loads: %d, want 1", n)
	}
	wrong := tk
	wrong.key[0] ^= 1
	if _, _, err := m.Load(context.Background(), wrong); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load with the right id and a wrong key: %v, want ErrNotFound", err)
	}
	clock.Advance(DefaultCacheTTL)
	m.Load(context.Background(), tk)
	if n := store.gets.Load(); n != 3 {
		t.Errorf("store reads after the cache TTL: %d, want 3 (the wrong key's, and one after expiry)", n)
	}
}

// TestCacheIdleTimeout: a session read only from cache still ends at its
// idle timeout, and reading it still extends it (written once per touch
// interval).
func TestCacheIdleTimeout(t *testing.T) {
	clock := newFakeClock()
	store := &countingStore{Store: NewMemoryStore(clock.Now, 0)}
	cfg := testConfig(t)
	cfg.IdleTimeout = 20 * time.Second
	cfg.Cache.TTL = time.Minute // longer than the idle timeout
	m := newManager(t, cfg, store, clock.Now)
	tk, _ := m.Create(context.Background(), testSession())
	writes := store.writes.Load()
	for range 30 { // 30 s of use, a request a second
		s, v, err := m.Load(context.Background(), tk)
		if err != nil {
			t.Fatalf("in use after %s: %v", clock.Now().Sub(s.CreatedAt), err)
		}
		if err := m.Touch(context.Background(), tk, s, v); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	if n := store.writes.Load() - writes; n != 29 {
		// TouchInterval is 1 s (its minimum) here: one write per request
		// but the first, whose LastSeen is the creation.
		t.Errorf("touch writes: %d, want 29", n)
	}
	clock.Advance(21 * time.Second)
	if _, _, err := m.Load(context.Background(), tk); !errors.Is(err, ErrNotFound) {
		t.Errorf("idle past the timeout, cached: %v, want ErrNotFound", err)
	}
}

func waitUp(t *testing.T, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !m.cache.up.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the invalidation channel did not come up within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// within polls f until it holds or d has passed.
func within(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The coherence of two replicas' caches on Redis (a sign-out, a refresh,
// a killed subscription, the node holding it dying) is tested on every
// deployment at once: redismodes_test.go.

// fakeBroadcaster is a shared store whose channel the test drives.
type fakeBroadcaster struct {
	Store
	ready     chan struct{}
	onState   func(bool)
	failFirst atomic.Int32 // publishes that fail before one succeeds
	published atomic.Int32
}

func (f *fakeBroadcaster) PublishInvalidation(context.Context, string) error {
	if f.failFirst.Add(-1) >= 0 {
		return ErrUnavailable
	}
	f.published.Add(1)
	return nil
}

func (f *fakeBroadcaster) Invalidations(ctx context.Context, _ func(string), onState func(bool)) {
	f.onState = onState
	close(f.ready)
	<-ctx.Done()
}

// TestCacheGapHonoursLostInvalidations: an invalidation lost while the
// channel was down (the record deleted elsewhere, no message) cannot keep
// the session alive: the cache is not used until the channel is back, and
// is empty then.
func TestCacheGapHonoursLostInvalidations(t *testing.T) {
	clock := newFakeClock()
	mem := NewMemoryStore(clock.Now, 0)
	fb := &fakeBroadcaster{Store: mem, ready: make(chan struct{})}
	cfg := testConfig(t)
	cfg.Cache.TTL = time.Minute
	m := newManager(t, cfg, fb, clock.Now)
	t.Cleanup(m.Close)
	<-fb.ready
	ctx := context.Background()
	tk, _ := m.Create(ctx, testSession())
	m.Load(ctx, tk)
	if m.cache.len() != 0 {
		t.Fatal("cached before the channel was up")
	}
	fb.onState(true)
	m.Load(ctx, tk)
	if m.cache.len() != 1 {
		t.Fatal("not cached with the channel up")
	}
	fb.onState(false)
	_ = mem.Delete(ctx, tk.storageKey()) // another replica's sign-out; its message is lost
	if _, _, err := m.Load(ctx, tk); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load while the channel is down after a lost sign-out: %v, want ErrNotFound", err)
	}
	fb.onState(true)
	if _, _, err := m.Load(ctx, tk); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load once the channel is back: %v, want ErrNotFound", err)
	}
}

// TestCacheFailedPublishRetried: a sign-out whose publish fails is
// published again, within the cache TTL.
func TestCacheFailedPublishRetried(t *testing.T) {
	fb := &fakeBroadcaster{Store: NewMemoryStore(nil, 0), ready: make(chan struct{})}
	fb.failFirst.Store(3)
	m := newManager(t, testConfig(t), fb, nil)
	t.Cleanup(m.Close)
	<-fb.ready
	tk, _ := m.Create(context.Background(), testSession())
	if err := m.Delete(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	if !within(DefaultCacheTTL, func() bool { return fb.published.Load() == 1 }) {
		t.Errorf("the invalidation was not published within the cache TTL after 3 failures")
	}
}

// TestCacheNoStaleFill: a read that started before an invalidation does
// not put its (possibly older) result in the cache.
func TestCacheNoStaleFill(t *testing.T) {
	c := newSessionCache(time.Minute, 100, time.Now, false)
	var tk Ticket
	gen := c.generation("s:xyz-key")
	c.invalidate("s:xyz-key")
	c.put("s:xyz-key", &tk, testSession(), Version{}, gen)
	if _, _, ok := c.get("s:xyz-key", &tk); ok {
		t.Error("a read from before the invalidation was cached")
	}
	c.put("s:xyz-key", &tk, testSession(), Version{}, c.generation("s:xyz-key"))
	if _, _, ok := c.get("s:xyz-key", &tk); !ok {
		t.Error("a fresh read was not cached")
	}
}

// TestCacheBounded: the cache never outgrows max_entries.
func TestCacheBounded(t *testing.T) {
	c := newSessionCache(time.Minute, 160, time.Now, false)
	for range 5000 {
		tk, _ := NewTicket()
		c.put(tk.storageKey(), &tk, testSession(), Version{}, c.generation(tk.storageKey()))
		c.putTicket("cookie-"+tk.storageKey(), tk)
	}
	if n := c.len(); n > 160 {
		t.Errorf("entries: %d, want at most 160", n)
	}
	n := 0
	for i := range c.tickets {
		n += len(c.tickets[i].entries)
	}
	if n > 160 {
		t.Errorf("ticket entries: %d, want at most 160", n)
	}
}

// TestCacheOddInvalidations: whatever arrives on the channel (an operator's
// PUBLISH, another application's) neither crashes nor misroutes.
func TestCacheOddInvalidations(t *testing.T) {
	c := newSessionCache(time.Minute, 160, time.Now, false)
	for _, k := range []string{"", "a", "ab", "s:", "\xff\xfe"} {
		c.invalidate(k)
		c.putTicket(k, Ticket{})
		c.ticket(k)
	}
	rs, srv := redisStore(t)
	cfg := testConfig(t)
	m := newManager(t, cfg, rs, nil)
	t.Cleanup(m.Close)
	waitUp(t, m)
	pub := srv.Client(t)
	for _, p := range []string{"", "a", "ab", strings.Repeat("s:", 10000)} {
		if err := pub.Publish(context.Background(), "authgate:invalidate", p).Err(); err != nil {
			t.Fatal(err)
		}
	}
	tk, _ := m.Create(context.Background(), testSession())
	if !within(time.Second, func() bool { _, _, err := m.Load(context.Background(), tk); return err == nil && m.cache.len() == 1 }) {
		t.Error("the cache does not work after odd messages")
	}
}

// TestCacheRefreshNotUndone: a Load that read the old record while a
// refresh swapped in the new one does not put the old one back.
func TestCacheRefreshNotUndone(t *testing.T) {
	clock := newFakeClock()
	cfg := testConfig(t)
	cfg.Cache.TTL = time.Minute
	m := newManager(t, cfg, NewMemoryStore(clock.Now, 0), clock.Now)
	ctx := context.Background()
	tk, _ := m.Create(ctx, testSession())
	key := tk.storageKey()
	old, oldV, _ := m.loadStored(ctx, &tk, key)
	gen := m.cache.generation(key) // the Load began here
	s := *old
	s.Token.AccessToken = "CANARY-ACCESS-NEW"
	if _, err := m.Replace(ctx, tk, &s, oldV); err != nil {
		t.Fatal(err)
	}
	m.cache.put(key, &tk, old, oldV, gen) // ...and finishes now
	got, _, err := m.Load(ctx, tk)
	if err != nil || got.Token.AccessToken != "CANARY-ACCESS-NEW" {
		t.Errorf("after the refresh the cache serves %v (%v), want the new token", got.Token.AccessToken, err)
	}
}

// len counts the entries (tests).
func (c *sessionCache) len() int {
	n := 0
	for i := range c.shard {
		c.shard[i].mu.RLock()
		n += len(c.shard[i].entries)
		c.shard[i].mu.RUnlock()
	}
	return n
}

// TestTouchFromCache: a session served from the cache carries only its
// record's digest. Its Touch reads the record again: unchanged, the touch
// is written; changed by another replica meanwhile (an invalidation not
// yet arrived), the other's write stands and the stale copy goes.
func TestTouchFromCache(t *testing.T) {
	clk := newFakeClock()
	mem := NewMemoryStore(clk.Now, 0)
	store := &countingStore{Store: mem}
	cfg := testConfig(t)
	cfg.IdleTimeout, cfg.Cache.TTL = 30*time.Minute, time.Second // a touch interval of 1m; the margins below are 0.5 s
	m := newManager(t, cfg, store, clk.Now)
	other := newManager(t, cfg, mem, clk.Now) // another replica, on the same store
	ctx := t.Context()
	tk, err := m.Create(ctx, testSession())
	if err != nil {
		t.Fatal(err)
	}
	// cached reads the session so that it comes from the cache and needs
	// a touch: read from the store shortly before the touch interval
	// ends, then again from the cache just after.
	cached := func() (*Session, Version) {
		t.Helper()
		clk.Advance(m.TouchInterval() - 500*time.Millisecond)
		if _, v, err := m.Load(ctx, tk); err != nil || v.digest {
			t.Fatalf("Load from the store: %v (digest only: %t)", err, v.digest)
		}
		clk.Advance(600 * time.Millisecond)
		s, v, err := m.Load(ctx, tk)
		if err != nil || !v.digest || v.raw != nil {
			t.Fatalf("Load from the cache: %v (digest only: %t, record held: %t)", err, v.digest, v.raw != nil)
		}
		return s, v
	}

	s, v := cached()
	gets, writes := store.gets.Load(), store.writes.Load()
	if err := m.Touch(ctx, tk, s, v); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	if g, w := store.gets.Load()-gets, store.writes.Load()-writes; g != 1 || w != 1 {
		t.Errorf("Touch from the cache: %d reads and %d writes, want 1 and 1", g, w)
	}
	if got, _, err := other.Load(ctx, tk); err != nil || !got.LastSeen.Equal(clk.Now()) {
		t.Fatalf("after Touch: LastSeen %v (%v), want %v", got.LastSeen, err, clk.Now())
	}

	s, v = cached()
	theirs, tv, err := other.Load(ctx, tk)
	if err != nil {
		t.Fatal(err)
	}
	theirs.Token.AccessToken = "CANARY-REFRESHED-elsewhere"
	if _, err := other.Replace(ctx, tk, theirs, tv); err != nil {
		t.Fatal(err)
	}
	gets, writes = store.gets.Load(), store.writes.Load()
	if err := m.Touch(ctx, tk, s, v); err != nil {
		t.Fatalf("Touch of a stale copy: %v, want nil (the other write wins)", err)
	}
	if g, w := store.gets.Load()-gets, store.writes.Load()-writes; g != 1 || w != 0 {
		t.Errorf("Touch of a stale copy: %d reads and %d writes, want 1 and 0", g, w)
	}
	for name, mgr := range map[string]*Manager{"the other replica": newManager(t, cfg, mem, clk.Now), "this replica": m} {
		got, _, err := mgr.Load(ctx, tk)
		if err != nil || got.Token.AccessToken != "CANARY-REFRESHED-elsewhere" {
			t.Errorf("%s reads access token %q (%v), want the other replica's", name, got.Token.AccessToken.Reveal(), err)
		}
	}
}
