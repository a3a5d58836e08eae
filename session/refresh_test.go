package session

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream"
)

// needsOld reports whether a session still has the pre-refresh access token.
func needsOld(s *Session) bool { return s.Token.AccessToken.Reveal() == "AT-old" }

func oldToken() upstream.Token {
	return upstream.Token{AccessToken: "AT-old", RefreshToken: "RT-old", TokenType: "Bearer", Expiry: time.Now().Add(time.Second)}
}

// renewer is a token endpoint stand-in that counts its calls and refuses a
// refresh token it has already rotated out, as a server with refresh-token
// rotation does (RFC 9700 §4.14.2).
type renewer struct {
	delay time.Duration
	calls atomic.Int64
	mu    sync.Mutex
	spent map[string]bool
}

func (r *renewer) renew(ctx context.Context, old upstream.Token) (upstream.Token, error) {
	r.calls.Add(1)
	r.mu.Lock()
	if r.spent == nil {
		r.spent = map[string]bool{}
	}
	replay := r.spent[old.RefreshToken.Reveal()]
	r.spent[old.RefreshToken.Reveal()] = true
	r.mu.Unlock()
	if replay {
		return upstream.Token{}, &grantError{"invalid_grant"}
	}
	select {
	case <-time.After(r.delay):
	case <-ctx.Done():
		return upstream.Token{}, ctx.Err()
	}
	return upstream.Token{AccessToken: "AT-new", RefreshToken: "RT-new", TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}, nil
}

// grantError stands in for the token endpoint's structured error.
type grantError struct{ code string }

func (e *grantError) Error() string { return "oauth2: " + e.code }

// TestRefreshOnceAcrossReplicas pins SECURITY.md §31: 50 parallel requests
// at expiry, spread over two gateway replicas sharing Redis, cause exactly
// one refresh, all 50 succeed with the new token, and the rotated refresh
// token is what is stored.
func TestRefreshOnceAcrossReplicas(t *testing.T) {
	_, srv := redisStore(t)
	cfg := testConfig(t)
	replicas := []*Manager{
		newManager(t, cfg, NewRedisStore(srv.Client(t), "authgate:"), nil),
		newManager(t, cfg, NewRedisStore(srv.Client(t), "authgate:"), nil),
	}
	ctx := t.Context()
	s := testSession()
	s.Token = oldToken()
	tk, err := replicas[0].Create(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	cookie, _ := replicas[0].EncodeTicket(tk)

	r := &renewer{delay: 200 * time.Millisecond}
	const n = 50
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
		toks  = make([]string, n)
	)
	for i := range n {
		wg.Go(func() {
			m := replicas[i%2]
			tk, err := m.DecodeTicket(cookie)
			if err != nil {
				errs[i] = err
				return
			}
			<-start
			s, v, err := m.Refresh(ctx, tk, needsOld, r.renew)
			if err != nil {
				errs[i] = err
				return
			}
			toks[i] = s.Token.AccessToken.Reveal()
			errs[i] = m.Touch(ctx, tk, s, v) // callers mutate their copy: must not race
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || toks[i] != "AT-new" {
			t.Errorf("request %d: got %q, %v, want AT-new, nil", i, toks[i], errs[i])
		}
	}
	if got := r.calls.Load(); got != 1 {
		t.Fatalf("renew called %d times, want exactly 1", got)
	}
	for _, m := range replicas {
		got, _, err := m.Load(ctx, tk)
		if err != nil {
			t.Fatal(err)
		}
		if got.Token.RefreshToken.Reveal() != "RT-new" || got.Token.AccessToken.Reveal() != "AT-new" {
			t.Fatalf("stored token: got %q/%q, want AT-new/RT-new", got.Token.AccessToken.Reveal(), got.Token.RefreshToken.Reveal())
		}
	}
	if _, err := replicas[1].Store().Get(ctx, tk.lockKey()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refresh lock after the refresh: got %v, want released", err)
	}
}

// TestRefreshTouchRace pins the lost-update bug: a Touch that read the
// session before the refresh wrote must never put the old token back.
func TestRefreshTouchRace(t *testing.T) {
	ctx := t.Context()
	t.Run("touch lands during renew", func(t *testing.T) {
		clk := newFakeClock()
		m := newManager(t, testConfig(t), NewMemoryStore(nil, 0), clk.Now)
		s := testSession()
		s.Token = oldToken()
		tk, _ := m.Create(ctx, s)
		r := &renewer{}
		renew := func(ctx context.Context, old upstream.Token) (upstream.Token, error) {
			// While the token endpoint works, a request touches the session:
			// the refresh's write now conflicts and must re-apply its token.
			clk.Advance(5 * time.Minute)
			s, v, err := m.Load(ctx, tk)
			if err != nil {
				return upstream.Token{}, err
			}
			if err := m.Touch(ctx, tk, s, v); err != nil {
				return upstream.Token{}, err
			}
			return r.renew(ctx, old)
		}
		got, _, err := m.Refresh(ctx, tk, needsOld, renew)
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		stored, _, _ := m.Load(ctx, tk)
		for _, s := range []*Session{got, stored} {
			if s.Token.AccessToken.Reveal() != "AT-new" || s.Token.RefreshToken.Reveal() != "RT-new" {
				t.Errorf("token: got %q/%q, want AT-new/RT-new", s.Token.AccessToken.Reveal(), s.Token.RefreshToken.Reveal())
			}
			if !s.LastSeen.Equal(clk.Now()) {
				t.Errorf("LastSeen: got %v, want the Touch's %v kept", s.LastSeen, clk.Now())
			}
		}
		if r.calls.Load() != 1 {
			t.Errorf("renew called %d times, want 1", r.calls.Load())
		}
	})
	t.Run("stale touch after refresh", func(t *testing.T) {
		clk := newFakeClock()
		m := newManager(t, testConfig(t), NewMemoryStore(nil, 0), clk.Now)
		s := testSession()
		s.Token = oldToken()
		tk, _ := m.Create(ctx, s)
		stale, sv, _ := m.Load(ctx, tk)
		if _, _, err := m.Refresh(ctx, tk, needsOld, (&renewer{}).renew); err != nil {
			t.Fatal(err)
		}
		clk.Advance(5 * time.Minute)
		if err := m.Touch(ctx, tk, stale, sv); err != nil {
			t.Fatalf("stale Touch: %v", err)
		}
		if got, _, _ := m.Load(ctx, tk); got.Token.AccessToken.Reveal() != "AT-new" {
			t.Fatalf("after a stale Touch: got %q, want AT-new", got.Token.AccessToken.Reveal())
		}
	})
	t.Run("concurrent touches on redis", func(t *testing.T) {
		store, _ := redisStore(t)
		clk := newFakeClock()
		m := newManager(t, testConfig(t), store, clk.Now)
		s := testSession()
		s.Token = oldToken()
		tk, _ := m.Create(ctx, s)
		done := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				// At most 4×100 minutes: well inside the 12h lifetime.
				for range 100 {
					select {
					case <-done:
						return
					case <-time.After(2 * time.Millisecond):
					}
					clk.Advance(time.Minute)
					if s, v, err := m.Load(ctx, tk); err == nil {
						_ = m.Touch(ctx, tk, s, v)
					}
				}
			})
		}
		r := &renewer{delay: 50 * time.Millisecond}
		_, _, err := m.Refresh(ctx, tk, needsOld, r.renew)
		close(done)
		wg.Wait()
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		got, _, err := m.Load(ctx, tk)
		if err != nil {
			t.Fatal(err)
		}
		if got.Token.AccessToken.Reveal() != "AT-new" || got.Token.RefreshToken.Reveal() != "RT-new" || r.calls.Load() != 1 {
			t.Fatalf("after racing touches: got %q/%q and %d renewals, want AT-new/RT-new and 1",
				got.Token.AccessToken.Reveal(), got.Token.RefreshToken.Reveal(), r.calls.Load())
		}
	})
}

func TestRefreshRenewError(t *testing.T) {
	ctx := t.Context()
	store, _ := redisStore(t)
	m := newManager(t, testConfig(t), store, nil)
	s := testSession()
	s.Token = oldToken()
	tk, _ := m.Create(ctx, s)
	renew := func(context.Context, upstream.Token) (upstream.Token, error) {
		return upstream.Token{}, &grantError{"invalid_grant"}
	}
	_, _, err := m.Refresh(ctx, tk, needsOld, renew)
	var ge *grantError
	if !errors.As(err, &ge) || ge.code != "invalid_grant" {
		t.Fatalf("Refresh: got %v, want the renew error (invalid_grant) reachable with errors.As", err)
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
		t.Fatalf("Refresh: got %v, want the renew error, not a store error", err)
	}
	unlock, err := store.Lock(ctx, tk.lockKey(), time.Minute)
	if err != nil {
		t.Fatalf("Lock after a failed refresh: got %v, want the lock released", err)
	}
	_ = unlock(ctx)
	if got, _, _ := m.Load(ctx, tk); got.Token.AccessToken.Reveal() != "AT-old" {
		t.Fatalf("token after a failed refresh: got %q, want AT-old unchanged", got.Token.AccessToken.Reveal())
	}
}

func TestRefreshNotNeeded(t *testing.T) {
	ctx := t.Context()
	store := &countingStore{Store: NewMemoryStore(nil, 0)}
	m := newManager(t, testConfig(t), store, nil)
	tk, _ := m.Create(ctx, testSession())
	before := store.writes.Load()
	r := &renewer{}
	got, _, err := m.Refresh(ctx, tk, func(*Session) bool { return false }, r.renew)
	if err != nil || got.Subject != "user-1" {
		t.Fatalf("Refresh: got %v, %v, want the session", got, err)
	}
	if r.calls.Load() != 0 || store.writes.Load() != before {
		t.Fatalf("Refresh of a fresh session: %d renewals, %d session writes, want 0 and 0", r.calls.Load(), store.writes.Load()-before)
	}
	if _, _, err := m.Refresh(ctx, Ticket{}, needsOld, r.renew); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Refresh(zero ticket): got %v, want ErrNotFound", err)
	}
}

// TestRefreshWaitsForHolder plays the loser whose lock is held by another
// replica: it adopts that replica's token and never calls renew.
func TestRefreshWaitsForHolder(t *testing.T) {
	ctx := t.Context()
	store, _ := redisStore(t)
	m := newManager(t, testConfig(t), store, nil)
	s := testSession()
	s.Token = oldToken()
	tk, _ := m.Create(ctx, s)
	unlock, err := store.Lock(ctx, tk.lockKey(), time.Minute) // the other replica
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(150 * time.Millisecond)
		s, v, err := m.Load(ctx, tk)
		if err == nil {
			s.Token = upstream.Token{AccessToken: "AT-other", RefreshToken: "RT-other"}
			_, _ = m.Replace(ctx, tk, s, v)
		}
		_ = unlock(ctx)
	}()
	r := &renewer{}
	got, _, err := m.Refresh(ctx, tk, needsOld, r.renew)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if got.Token.AccessToken.Reveal() != "AT-other" || r.calls.Load() != 0 {
		t.Fatalf("Refresh: got %q with %d renewals, want AT-other and 0", got.Token.AccessToken.Reveal(), r.calls.Load())
	}
}

// TestRefreshTakesOverFromFailedHolder: the holder released the lock
// without writing a token, so a waiter takes the lock and renews.
func TestRefreshTakesOverFromFailedHolder(t *testing.T) {
	ctx := t.Context()
	store, _ := redisStore(t)
	m := newManager(t, testConfig(t), store, nil)
	s := testSession()
	s.Token = oldToken()
	tk, _ := m.Create(ctx, s)
	unlock, _ := store.Lock(ctx, tk.lockKey(), time.Minute)
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = unlock(ctx)
	}()
	r := &renewer{}
	got, _, err := m.Refresh(ctx, tk, needsOld, r.renew)
	if err != nil || got.Token.AccessToken.Reveal() != "AT-new" || r.calls.Load() != 1 {
		t.Fatalf("Refresh: got %v, %v with %d renewals, want AT-new and 1", got, err, r.calls.Load())
	}
}

// TestRefreshGivesUp: a holder that never finishes makes waiters fail with
// ErrUnavailable after RefreshLockTimeout, without renewing.
func TestRefreshGivesUp(t *testing.T) {
	ctx := t.Context()
	store, _ := redisStore(t)
	cfg := testConfig(t)
	cfg.RefreshLockTimeout = time.Second
	m := newManager(t, cfg, store, nil)
	s := testSession()
	s.Token = oldToken()
	tk, _ := m.Create(ctx, s)
	if _, err := store.Lock(ctx, tk.lockKey(), time.Minute); err != nil {
		t.Fatal(err)
	}
	r := &renewer{}
	start := time.Now()
	_, _, err := m.Refresh(ctx, tk, needsOld, r.renew)
	if !errors.Is(err, ErrUnavailable) || r.calls.Load() != 0 {
		t.Fatalf("Refresh: got %v with %d renewals, want ErrUnavailable and 0", err, r.calls.Load())
	}
	if d := time.Since(start); d < time.Second || d > 3*time.Second {
		t.Fatalf("Refresh gave up after %s, want about 1s", d)
	}
}

// TestRefreshRenewDeadline pins the peers' classic bug: renew must finish
// before the lock can expire, or a second replica could take the lock and
// spend a refresh token that is being rotated out.
func TestRefreshRenewDeadline(t *testing.T) {
	ctx := t.Context()
	cfg := testConfig(t)
	cfg.RefreshLockTimeout = 2 * time.Second
	m := newManager(t, cfg, NewMemoryStore(nil, 0), nil)
	s := testSession()
	s.Token = oldToken()
	tk, _ := m.Create(ctx, s)
	start := time.Now()
	var deadline time.Time
	renew := func(ctx context.Context, _ upstream.Token) (upstream.Token, error) {
		deadline, _ = ctx.Deadline()
		<-ctx.Done() // a hanging token endpoint
		return upstream.Token{}, ctx.Err()
	}
	_, _, err := m.Refresh(ctx, tk, needsOld, renew)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Refresh with a hanging renew: got %v, want DeadlineExceeded", err)
	}
	if deadline.IsZero() || deadline.After(start.Add(cfg.RefreshLockTimeout*3/4+100*time.Millisecond)) {
		t.Fatalf("renew deadline: got %v after start, want at most 3/4 of the %s lock", deadline.Sub(start), cfg.RefreshLockTimeout)
	}
	if _, err := m.Store().Get(ctx, tk.lockKey()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lock after a timed-out renew: got %v, want released", err)
	}
}

// TestRefreshCallerCancelled: a caller that gives up returns at once; the
// shared refresh goes on for the others.
func TestRefreshCallerCancelled(t *testing.T) {
	m := newManager(t, testConfig(t), NewMemoryStore(nil, 0), nil)
	s := testSession()
	s.Token = oldToken()
	tk, _ := m.Create(t.Context(), s)
	r := &renewer{delay: 300 * time.Millisecond}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	other := make(chan error, 1)
	go func() {
		time.Sleep(10 * time.Millisecond)
		_, _, err := m.Refresh(t.Context(), tk, needsOld, r.renew)
		other <- err
	}()
	if _, _, err := m.Refresh(ctx, tk, needsOld, r.renew); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled Refresh: got %v, want DeadlineExceeded", err)
	}
	if err := <-other; err != nil {
		t.Fatalf("the other caller's Refresh: got %v, want success despite the first caller leaving", err)
	}
	if r.calls.Load() != 1 {
		t.Fatalf("renew called %d times, want 1", r.calls.Load())
	}
}

// TestRefreshRenewPanics: a panicking renew must not crash the gateway
// (singleflight re-panics on its own goroutine) and must release the lock.
func TestRefreshRenewPanics(t *testing.T) {
	ctx := t.Context()
	m := newManager(t, testConfig(t), NewMemoryStore(nil, 0), nil)
	s := testSession()
	s.Token = oldToken()
	tk, _ := m.Create(ctx, s)
	renew := func(context.Context, upstream.Token) (upstream.Token, error) { panic("boom") }
	if _, _, err := m.Refresh(ctx, tk, needsOld, renew); err == nil {
		t.Fatal("Refresh with a panicking renew: got nil error, want one")
	}
	if _, err := m.Store().Get(ctx, tk.lockKey()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lock after a panicking renew: got %v, want released", err)
	}
}

// TestRefreshTakesOverFromCrashedHolder: a replica died holding the lock;
// once its lock expires a waiter renews, instead of giving up.
func TestRefreshTakesOverFromCrashedHolder(t *testing.T) {
	ctx := t.Context()
	store, _ := redisStore(t)
	cfg := testConfig(t)
	cfg.RefreshLockTimeout = time.Second
	m := newManager(t, cfg, store, nil)
	s := testSession()
	s.Token = oldToken()
	tk, _ := m.Create(ctx, s)
	if _, err := store.Lock(ctx, tk.lockKey(), cfg.RefreshLockTimeout); err != nil { // never unlocked
		t.Fatal(err)
	}
	r := &renewer{}
	got, _, err := m.Refresh(ctx, tk, needsOld, r.renew)
	if err != nil || got.Token.AccessToken.Reveal() != "AT-new" || r.calls.Load() != 1 {
		t.Fatalf("Refresh: got %v with %d renewals, want AT-new and 1", err, r.calls.Load())
	}
}
