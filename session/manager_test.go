package session

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestCreateLoadRoundTrip(t *testing.T) {
	clk := newFakeClock()
	m := newManager(t, testConfig(t), NewMemoryStore(clk.Now, 0), clk.Now)
	in := testSession()
	tk, err := m.Create(t.Context(), in)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !in.CreatedAt.Equal(clk.Now()) || !in.LastSeen.Equal(clk.Now()) {
		t.Fatalf("Create: got CreatedAt %v LastSeen %v, want both %v", in.CreatedAt, in.LastSeen, clk.Now())
	}
	got, _, err := m.Load(t.Context(), tk)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, tm := range []struct{ got, want time.Time }{
		{got.CreatedAt, in.CreatedAt}, {got.LastSeen, in.LastSeen}, {got.Token.Expiry, in.Token.Expiry},
	} {
		if !tm.got.Equal(tm.want) {
			t.Errorf("time: got %v, want %v", tm.got, tm.want)
		}
	}
	got.CreatedAt, got.LastSeen, got.Token.Expiry = in.CreatedAt, in.LastSeen, in.Token.Expiry
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("Load: got %+v, want %+v", got, in)
	}
	if got.Token.AccessToken.Reveal() != "CANARY-ACCESS-7f3a" {
		t.Fatal("Load: access token lost (stored redacted?)")
	}
}

// TestCreateFreshTicket pins session fixation (SECURITY.md §14): every login
// gets a ticket nobody could have planted.
func TestCreateFreshTicket(t *testing.T) {
	m := newManager(t, testConfig(t), NewMemoryStore(nil, 0), nil)
	seen := map[Ticket]bool{}
	for range 20 {
		tk, err := m.Create(t.Context(), testSession())
		if err != nil {
			t.Fatal(err)
		}
		if seen[tk] || tk.IsZero() {
			t.Fatal("Create returned a ticket seen before, want a fresh one every time")
		}
		seen[tk] = true
	}
}

// TestTimeoutsEnforcedServerSide runs against Redis, whose TTLs follow real
// time while the manager's clock is fake: only the server-side check can end
// these sessions (SECURITY.md §15).
func TestTimeoutsEnforcedServerSide(t *testing.T) {
	store, _ := redisStore(t)
	cfg := testConfig(t) // idle 30m, absolute 12h
	tests := []struct {
		name    string
		age     time.Duration // CreatedAt before now at Create
		advance time.Duration // clock moves after Create
		want    error
	}{
		{"fresh", 0, 0, nil},
		{"within idle", 0, cfg.IdleTimeout - time.Second, nil},
		{"idle+1s", 0, cfg.IdleTimeout + time.Second, ErrNotFound},
		{"within absolute", cfg.MaxLifetime - 10*time.Second, 9 * time.Second, nil},
		{"absolute+1s while active", cfg.MaxLifetime - 10*time.Second, 11 * time.Second, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			m := newManager(t, cfg, store, clk.Now)
			s := testSession()
			s.CreatedAt = clk.Now().Add(-tt.age)
			tk, err := m.Create(t.Context(), s)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			clk.Advance(tt.advance)
			_, _, err = m.Load(t.Context(), tk)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Load: got %v, want %v", err, tt.want)
			}
			_, err = store.Get(t.Context(), tk.storageKey())
			if tt.want != nil && !errors.Is(err, ErrNotFound) {
				t.Fatalf("record after an expired Load: got %v, want it deleted", err)
			}
			if tt.want == nil && err != nil {
				t.Fatalf("record of a live session: %v", err)
			}
		})
	}
}

// TestStoreTTLBounded: the store forgets a session no later than its idle or
// absolute deadline, whichever is first (SECURITY.md §13).
func TestStoreTTLBounded(t *testing.T) {
	store, srv := redisStore(t)
	rc := srv.Client(t)
	cfg := testConfig(t)
	clk := newFakeClock()
	m := newManager(t, cfg, store, clk.Now)
	tests := []struct {
		name string
		age  time.Duration
		want time.Duration
	}{
		{"fresh: idle timeout", 0, cfg.IdleTimeout},
		{"near the end: remaining lifetime", cfg.MaxLifetime - 10*time.Minute, 10 * time.Minute},
	}
	for _, tt := range tests {
		s := testSession()
		s.CreatedAt = clk.Now().Add(-tt.age)
		tk, err := m.Create(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		ttl, err := rc.PTTL(t.Context(), "authgate:"+tk.storageKey()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl > tt.want || ttl < tt.want-5*time.Second {
			t.Errorf("%s: Redis TTL got %s, want %s", tt.name, ttl, tt.want)
		}
	}
}

func TestTouch(t *testing.T) {
	clk := newFakeClock()
	store := &countingStore{Store: NewMemoryStore(clk.Now, 0)}
	cfg := testConfig(t)
	m := newManager(t, cfg, store, clk.Now)
	if got := m.TouchInterval(); got != time.Minute {
		t.Fatalf("TouchInterval with idle 30m: got %s, want 1m", got)
	}
	ctx := t.Context()
	tk, err := m.Create(ctx, testSession())
	if err != nil {
		t.Fatal(err)
	}
	created := clk.Now()

	steps := []struct {
		advance    time.Duration
		wantWrites int64
		wantSeen   time.Duration // LastSeen in the store, after created
	}{
		{0, 0, 0},
		{59 * time.Second, 0, 0}, // within the interval: not one store call
		{time.Second, 1, time.Minute},
		{30 * time.Second, 0, time.Minute},
		{40 * time.Second, 1, 130 * time.Second},
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		s, v, err := m.Load(ctx, tk)
		if err != nil {
			t.Fatalf("step %d: Load: %v", i, err)
		}
		before := store.writes.Load()
		if err := m.Touch(ctx, tk, s, v); err != nil {
			t.Fatalf("step %d: Touch: %v", i, err)
		}
		if got := store.writes.Load() - before; got != st.wantWrites {
			t.Errorf("step %d: Touch made %d writes, want %d", i, got, st.wantWrites)
		}
		s, _, _ = m.Load(ctx, tk)
		if want := created.Add(st.wantSeen); !s.LastSeen.Equal(want) {
			t.Errorf("step %d: stored LastSeen got %v, want %v", i, s.LastSeen, want)
		}
	}

	// A Touch that loses to a concurrent write is silent and harmless.
	s, v, _ := m.Load(ctx, tk)
	other, ov, _ := m.Load(ctx, tk)
	other.Token.AccessToken = "NEW"
	if _, err := m.Replace(ctx, tk, other, ov); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour / 4)
	if err := m.Touch(ctx, tk, s, v); err != nil {
		t.Fatalf("Touch losing the CAS: got %v, want nil", err)
	}
	if s, _, _ := m.Load(ctx, tk); s.Token.AccessToken.Reveal() != "NEW" {
		t.Fatal("a stale Touch overwrote a newer write")
	}
}

func TestTouchInterval(t *testing.T) {
	tests := []struct{ idle, want time.Duration }{
		{30 * time.Minute, time.Minute},
		{10 * time.Minute, 30 * time.Second},
		{10 * time.Second, time.Second},
		{24 * time.Hour, time.Minute},
	}
	for _, tt := range tests {
		cfg := testConfig(t)
		cfg.IdleTimeout = tt.idle
		if got := newManager(t, cfg, NewMemoryStore(nil, 0), nil).TouchInterval(); got != tt.want {
			t.Errorf("TouchInterval(idle %s): got %s, want %s", tt.idle, got, tt.want)
		}
	}
}

func TestReplace(t *testing.T) {
	m := newManager(t, testConfig(t), NewMemoryStore(nil, 0), nil)
	ctx := t.Context()
	tk, _ := m.Create(ctx, testSession())
	s, v, _ := m.Load(ctx, tk)
	s.Groups = []string{"new"}
	v2, err := m.Replace(ctx, tk, s, v)
	if err != nil {
		t.Fatalf("Replace: %v", err)
	}
	if _, err := m.Replace(ctx, tk, s, v); !errors.Is(err, ErrConflict) {
		t.Fatalf("Replace with a stale version: got %v, want ErrConflict", err)
	}
	if _, err := m.Replace(ctx, tk, s, v2); err != nil {
		t.Fatalf("Replace with the current version: %v", err)
	}
	if _, err := m.Replace(ctx, tk, s, Version{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("Replace with the zero version: got %v, want ErrConflict", err)
	}
	if err := m.Delete(ctx, tk); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Replace(ctx, tk, s, v2); !errors.Is(err, ErrConflict) {
		t.Fatalf("Replace of a deleted session: got %v, want ErrConflict (never resurrect it)", err)
	}
}

func TestDelete(t *testing.T) {
	m := newManager(t, testConfig(t), NewMemoryStore(nil, 0), nil)
	ctx := t.Context()
	tk, _ := m.Create(ctx, testSession())
	if err := m.Delete(ctx, tk); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, err := m.Load(ctx, tk); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Delete: got %v, want ErrNotFound", err)
	}
	if err := m.Delete(ctx, tk); err != nil {
		t.Fatalf("Delete of a deleted session: %v", err)
	}
	if _, _, err := m.Load(ctx, Ticket{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load(zero ticket): got %v, want ErrNotFound", err)
	}
}

// TestStoreDownIsNotLoggedOut pins fail-closed without logout: with Redis
// down every call reports ErrUnavailable (503, keep the cookie), never
// ErrNotFound (which would send the user to log in), and the gateway
// recovers by itself when Redis is back.
func TestStoreDownIsNotLoggedOut(t *testing.T) {
	store, srv := redisStore(t)
	clk := newFakeClock()
	m := newManager(t, testConfig(t), store, clk.Now)
	ctx := t.Context()
	tk, err := m.Create(ctx, testSession())
	if err != nil {
		t.Fatal(err)
	}
	s, v, err := m.Load(ctx, tk)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	clk.Advance(15 * time.Minute) // past the touch interval: Touch must write
	calls := []struct {
		name string
		fn   func() error
	}{
		{"Load", func() error { _, _, err := m.Load(ctx, tk); return err }},
		{"Create", func() error { _, err := m.Create(ctx, testSession()); return err }},
		{"Touch", func() error { return m.Touch(ctx, tk, s, v) }},
		{"Replace", func() error { _, err := m.Replace(ctx, tk, s, v); return err }},
		{"Delete", func() error { return m.Delete(ctx, tk) }},
	}
	for _, c := range calls {
		if err := c.fn(); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
			t.Errorf("%s with Redis down: got %v, want ErrUnavailable and not ErrNotFound", c.name, err)
		}
	}
	srv.Restart()
	waitFor(t, func() bool { return store.Ping(ctx) == nil })
	tk, err = m.Create(ctx, testSession())
	if err != nil {
		t.Fatalf("Create after restart: %v", err)
	}
	if _, _, err := m.Load(ctx, tk); err != nil {
		t.Fatalf("Load after restart: %v", err)
	}
}
