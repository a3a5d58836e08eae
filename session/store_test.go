package session_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/session/redistest"
	"github.com/authgate/authgate/session/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) session.Store {
		return session.NewMemoryStore(time.Now, 0)
	})
}

func TestRedisStoreConformance(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	storetest.Run(t, func(t *testing.T) session.Store {
		// One server, one key space per subtest.
		return session.NewRedisStore(c, "test:"+t.Name()+":")
	})
}

// clock is a settable clock for the memory store's expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestMemoryStoreFull(t *testing.T) {
	ctx := t.Context()
	clk := &clock{t: time.Unix(1e9, 0)}
	s := session.NewMemoryStore(clk.now, 2)
	for _, k := range []string{"a", "b"} {
		if err := s.Set(ctx, k, []byte("v"), time.Minute); err != nil {
			t.Fatalf("Set(%q): %v", k, err)
		}
	}
	err := s.Set(ctx, "c", []byte("v"), time.Minute)
	if !errors.Is(err, session.ErrUnavailable) || !strings.Contains(err.Error(), "full") {
		t.Fatalf("Set of a third key into a store of 2: got %v, want ErrUnavailable saying full", err)
	}
	if _, err := s.Lock(ctx, "l", time.Minute); !errors.Is(err, session.ErrUnavailable) {
		t.Fatalf("Lock in a full store: got %v, want ErrUnavailable (not a lock we do not hold)", err)
	}
	if err := s.Set(ctx, "a", []byte("v2"), time.Minute); err != nil {
		t.Fatalf("overwriting an existing key in a full store: %v", err)
	}
	clk.advance(2 * time.Minute) // everything expires: room again, without a sweeper goroutine
	if err := s.Set(ctx, "c", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Set after expiry freed the store: %v", err)
	}
	if got := s.Len(); got != 1 {
		t.Fatalf("Len: got %d, want 1", got)
	}
}

func TestMemoryStoreSweepsExpired(t *testing.T) {
	ctx := t.Context()
	clk := &clock{t: time.Unix(1e9, 0)}
	s := session.NewMemoryStore(clk.now, 0)
	for i := range 1000 {
		ttl := time.Duration(i%10+1) * time.Second
		if err := s.Set(ctx, string(rune('A'+i%26))+strings.Repeat("x", i), []byte("v"), ttl); err != nil {
			t.Fatal(err)
		}
	}
	clk.advance(5 * time.Second)
	if got, want := s.Len(), 500; got != want {
		t.Fatalf("Len after half the entries expired: got %d, want %d", got, want)
	}
	clk.advance(time.Hour)
	if got := s.Len(); got != 0 {
		t.Fatalf("Len after all expired: got %d, want 0", got)
	}
}
