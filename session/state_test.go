package session

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testState = "s7Yk2Qm9VbXo3LzP0aFhWc1RtN8uJ4eD" // 32 chars

func TestStateSaveTake(t *testing.T) {
	clk := newFakeClock()
	m := newManager(t, testConfig(t), NewMemoryStore(clk.Now, 0), clk.Now)
	ctx := t.Context()
	b, _ := NewBinding()
	in := &LoginState{Verifier: "verifier-123", Nonce: "nonce-456", RedirectTo: "/app?x=1", Route: "main"}
	in.BindTo(b)
	if err := m.SaveState(ctx, testState, in); err != nil {
		t.Fatalf("SaveState: %v", err)
	}
	if !in.CreatedAt.Equal(clk.Now()) {
		t.Fatalf("SaveState: CreatedAt got %v, want now", in.CreatedAt)
	}
	got, err := m.TakeState(ctx, testState)
	if err != nil {
		t.Fatalf("TakeState: %v", err)
	}
	if got.Verifier.Reveal() != "verifier-123" || got.Nonce.Reveal() != "nonce-456" || got.RedirectTo != "/app?x=1" ||
		got.Route != "main" || !got.CreatedAt.Equal(in.CreatedAt) || got.Binding != in.Binding {
		t.Fatalf("TakeState: got %+v, want %+v", got, in)
	}
	if !got.BoundTo(b) {
		t.Fatal("BoundTo(the browser's binding): got false, want true")
	}
	// Login CSRF: the attacker's state replayed in the victim's browser,
	// which carries a different binding cookie (SECURITY.md §6).
	other, _ := NewBinding()
	if got.BoundTo(other) {
		t.Fatal("BoundTo(another browser's binding): got true, want false")
	}
	if (&LoginState{}).BoundTo(b) {
		t.Fatal("BoundTo on an unbound state: got true, want false")
	}
	// Replayed callback: the state is single use.
	if _, err := m.TakeState(ctx, testState); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second TakeState: got %v, want ErrNotFound", err)
	}
}

func TestStateRefused(t *testing.T) {
	clk := newFakeClock()
	cfg := testConfig(t)
	// The store expires on real time, so the expiry case below is the
	// manager's own check against its clock.
	store := NewMemoryStore(time.Now, 0)
	m := newManager(t, cfg, store, clk.Now)
	ctx := t.Context()
	save := func(state string) {
		t.Helper()
		if err := m.SaveState(ctx, state, &LoginState{Verifier: "v"}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("unknown state", func(t *testing.T) {
		if _, err := m.TakeState(ctx, "unknown-state-0123456789abc"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	})
	t.Run("expired (login_timeout+1s)", func(t *testing.T) {
		state := testState + "exp"
		save(state)
		clk.Advance(cfg.LoginTimeout + time.Second)
		if _, err := m.TakeState(ctx, state); !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
	})
	t.Run("short state", func(t *testing.T) {
		if err := m.SaveState(ctx, "short", &LoginState{}); err == nil {
			t.Fatal("SaveState(5 chars): got nil, want an error")
		}
		if _, err := m.TakeState(ctx, "short"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("TakeState(5 chars): got %v, want ErrNotFound", err)
		}
	})
	t.Run("record under another state's key", func(t *testing.T) {
		a, b := testState+"-a", testState+"-b"
		save(a)
		rec, err := store.Take(ctx, stateKey(a))
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Set(ctx, stateKey(b), rec, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := m.TakeState(ctx, b); !errors.Is(err, ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound (sealed under a's key)", err)
		}
	})
}

// TestStateTakeConcurrent pins a replayed callback raced in parallel (for
// example by two replicas): exactly one Take wins.
func TestStateTakeConcurrent(t *testing.T) {
	store, _ := redisStore(t)
	replicas := []*Manager{}
	cfg := testConfig(t)
	for range 2 {
		replicas = append(replicas, newManager(t, cfg, store, nil))
	}
	ctx := t.Context()
	if err := replicas[0].SaveState(ctx, testState, &LoginState{Verifier: "v"}); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int64
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := replicas[i%2].TakeState(context.WithoutCancel(ctx), testState); err == nil {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d concurrent TakeState calls succeeded, want exactly 1", wins.Load())
	}
}
