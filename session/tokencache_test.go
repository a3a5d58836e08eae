package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream"
)

// tokenServer is a fake token endpoint for the machine token cache: it
// counts calls and can fail or be slow.
type tokenServer struct {
	clock *fakeClock
	calls atomic.Int32
	delay time.Duration
	fail  atomic.Bool
	ttl   time.Duration
}

func (s *tokenServer) fetch(ctx context.Context) (*upstream.Token, error) {
	n := s.calls.Add(1)
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	if s.fail.Load() {
		return nil, fmt.Errorf("%w: token endpoint down", upstream.ErrUnavailable)
	}
	now := s.clock.Now()
	return &upstream.Token{AccessToken: upstream.Secret(fmt.Sprintf("machine-token-canary-%d", n)), TokenType: "Bearer", Issued: now, Expiry: now.Add(s.ttl)}, nil
}

// machineFleet is n gateways' token caches over one store, one key.
func machineFleet(t *testing.T, store Store, clock *fakeClock, srv *tokenServer, n int) []*MachineToken {
	t.Helper()
	cfg := testConfig(t)
	var out []*MachineToken
	for range n {
		tc, err := newManager(t, cfg, store, clock.Now).NewTokenCache(nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tc.Machine(MachineKey{Issuer: "https://idp", ClientID: "svc", Scopes: []string{"orders.read"}}, srv.fetch))
	}
	return out
}

// TestMachineTokenOneFetchForTheFleet: a cold start of 1,000 concurrent
// requests on two gateways sharing Redis costs one token request
// (the peers' once-per-replica bug), and all get the same token.
func TestMachineTokenOneFetchForTheFleet(t *testing.T) {
	store, _ := redisStore(t)
	clock := newFakeClock()
	srv := &tokenServer{clock: clock, ttl: time.Hour, delay: 100 * time.Millisecond}
	fleet := machineFleet(t, store, clock, srv, 2)
	var wg sync.WaitGroup
	tokens := make(chan upstream.Secret, 1000)
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := fleet[i%2].Get(context.Background())
			if err != nil {
				t.Errorf("Get: %v", err)
				return
			}
			tokens <- s.Token.AccessToken
		}()
	}
	wg.Wait()
	close(tokens)
	if n := srv.calls.Load(); n != 1 {
		t.Errorf("token endpoint calls: %d, want 1", n)
	}
	seen := map[upstream.Secret]int{}
	for tok := range tokens {
		seen[tok]++
	}
	if len(seen) != 1 {
		t.Errorf("distinct tokens handed out: %d, want 1", len(seen))
	}
	// Redis holds only ciphertext under a keyed hash (SECURITY.md 44).
	keys, _ := store.c.Keys(context.Background(), "*").Result()
	for _, k := range keys {
		v, _ := store.c.Get(context.Background(), k).Result()
		if strings.Contains(v, "canary") || strings.Contains(k, "svc") || strings.Contains(k, "orders") {
			t.Errorf("Redis holds %q = %q: a token or its key in clear", k, v)
		}
	}
}

// TestMachineTokenRenewsAheadInTheBackground: past the renewal point a
// request gets the current token at once while one renewal runs; the next
// requests get the new token; none ever gets an expired one.
func TestMachineTokenRenewsAheadInTheBackground(t *testing.T) {
	clock := newFakeClock()
	srv := &tokenServer{clock: clock, ttl: 10 * time.Minute}
	mt := machineFleet(t, NewMemoryStore(clock.Now, 0), clock, srv, 1)[0]
	first, err := mt.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// min(30 s, 10% of 10 min) before expiry, jittered up to 45 s.
	clock.Advance(10*time.Minute - 20*time.Second)
	srv.delay = 200 * time.Millisecond
	start := time.Now()
	s, err := mt.Get(context.Background())
	if err != nil || s.Token.AccessToken != first.Token.AccessToken {
		t.Fatalf("Get in the renewal window: %v, %v; want the current token at once", s, err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Get in the renewal window waited %v for the token endpoint", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, _ := mt.Get(context.Background())
		if s != nil && s.Token.AccessToken != first.Token.AccessToken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no renewed token after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.calls.Load(); n != 2 {
		t.Errorf("token endpoint calls: %d, want 2 (one fetch, one renewal)", n)
	}
}

// TestMachineTokenServerDown: with a valid token nothing fails; without
// one the error comes at once during the back-off, and the cache
// recovers by itself when the server is back.
func TestMachineTokenServerDown(t *testing.T) {
	clock := newFakeClock()
	srv := &tokenServer{clock: clock, ttl: 10 * time.Minute}
	mt := machineFleet(t, NewMemoryStore(clock.Now, 0), clock, srv, 1)[0]
	if _, err := mt.Get(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.fail.Store(true)
	clock.Advance(9*time.Minute + 40*time.Second) // in the renewal window: renewals fail
	for range 50 {
		if _, err := mt.Get(context.Background()); err != nil {
			t.Fatalf("Get with a valid cached token while the server is down: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	// The clock stands still, so the back-off never ends: one attempt.
	if n := srv.calls.Load(); n != 2 {
		t.Errorf("token endpoint calls from 50 requests in the renewal window while it fails: %d, want 2 (the fetch, one renewal)", n)
	}
	clock.Advance(2 * time.Minute) // expired
	if _, err := mt.Get(context.Background()); !errors.Is(err, upstream.ErrUnavailable) {
		t.Fatalf("Get without a usable token: %v, want the token endpoint's error", err)
	}
	calls := srv.calls.Load()
	for range 20 {
		if _, err := mt.Get(context.Background()); err == nil {
			t.Fatal("Get succeeded while the server is down")
		}
	}
	if got := srv.calls.Load() - calls; got != 0 {
		t.Errorf("token endpoint calls during the back-off: %d, want 0", got)
	}
	srv.fail.Store(false)
	clock.Advance(backoffMax)
	if s, err := mt.Get(context.Background()); err != nil || s.Token.AccessToken == "" {
		t.Errorf("Get after the server is back: %v, want a token", err)
	}
}

// TestMachineTokenInvalidateOnce: a burst of backend invalid_token answers
// for one token causes one new fetch; a stale token's 401 none.
func TestMachineTokenInvalidateOnce(t *testing.T) {
	store, _ := redisStore(t)
	clock := newFakeClock()
	srv := &tokenServer{clock: clock, ttl: time.Hour}
	mt := machineFleet(t, store, clock, srv, 1)[0]
	first, _ := mt.Get(context.Background())
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mt.Invalidate(context.Background(), first.Token.AccessToken)
			if s, err := mt.Get(context.Background()); err != nil || s.Token.AccessToken == first.Token.AccessToken {
				t.Errorf("Get after the invalidation: %v, %v; want a new token", s, err)
			}
		}()
	}
	wg.Wait()
	if n := srv.calls.Load(); n != 2 {
		t.Errorf("token endpoint calls after a burst of 50 invalidations: %d, want 2", n)
	}
	mt.Invalidate(context.Background(), first.Token.AccessToken) // late 401 of the old token
	mt.Get(context.Background())
	if n := srv.calls.Load(); n != 2 {
		t.Errorf("a stale token's invalidation caused a fetch: %d calls, want 2", n)
	}
}

// TestCallerCacheBoundedAndExpiring: entries end at their time; the table
// never outgrows its bound; keys depend on the audience.
func TestCallerCacheBoundedAndExpiring(t *testing.T) {
	clock := newFakeClock()
	tc, err := newManager(t, testConfig(t), NewMemoryStore(clock.Now, 0), clock.Now).NewTokenCache(nil)
	if err != nil {
		t.Fatal(err)
	}
	k := tc.CallerKey("tok", "aud-a")
	if k == tc.CallerKey("tok", "aud-b") {
		t.Error("the same token for two audiences shares a cache key")
	}
	tc.PutCaller(k, &Session{Subject: "x"}, clock.Now().Add(time.Minute))
	if s, ok := tc.Caller(k); !ok || s.Subject != "x" {
		t.Fatalf("Caller: %v %v, want the entry", s, ok)
	}
	clock.Advance(time.Minute)
	if _, ok := tc.Caller(k); ok {
		t.Error("Caller returned an entry past its time")
	}
	for i := range callerEntries * 2 {
		tc.PutCaller(tc.CallerKey(fmt.Sprint(i), ""), nil, clock.Now().Add(time.Minute))
	}
	if n := len(tc.callers); n > callerEntries {
		t.Errorf("caller cache holds %d entries, bound %d", n, callerEntries)
	}
}

// TestMachineTokenStoreDown: with Redis down the token is still fetched
// (per replica, unshared): a store blip does not stop service-to-service
// calls the token endpoint can serve.
func TestMachineTokenStoreDown(t *testing.T) {
	store, srv := redisStore(t)
	clock := newFakeClock()
	ts := &tokenServer{clock: clock, ttl: time.Hour}
	mt := machineFleet(t, store, clock, ts, 1)[0]
	srv.Stop()
	s, err := mt.Get(context.Background())
	if err != nil || s.Token.AccessToken == "" {
		t.Fatalf("Get with Redis down: %v, want a token from the token endpoint", err)
	}
}
