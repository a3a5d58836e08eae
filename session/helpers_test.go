package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/session/redistest"
	"github.com/authgate/authgate/upstream"
)

// fakeClock is a settable clock for the idle and absolute timeouts.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newSecret returns a fresh cookie secret as configured: base64 of 32 bytes.
func newSecret(t testing.TB) upstream.Secret {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return upstream.Secret(base64.StdEncoding.EncodeToString(b))
}

// testConfig returns a defaulted config with a fresh secret.
func testConfig(t testing.TB) Config {
	cfg := Config{Cookie: CookieConfig{Secret: newSecret(t)}}
	cfg.SetDefaults()
	return cfg
}

func newManager(t testing.TB, cfg Config, store Store, now func() time.Time) *Manager {
	t.Helper()
	m, err := NewManager(cfg, store, now)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	return m
}

// redisStore starts a private Redis and returns a store on it.
func redisStore(t testing.TB) (*RedisStore, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	return NewRedisStore(srv.Client(t), "authgate:"), srv
}

// testSession returns a session carrying every field, with canary tokens.
func testSession() *Session {
	return &Session{
		Subject:           "user-1",
		Email:             "ada@example.com",
		Name:              "Ada Lovelace",
		PreferredUsername: "ada",
		EmailVerified:     true,
		Groups:            []string{"admins", "staff"},
		Claims:            json.RawMessage(`{"level":3,"tenant":"t1"}`),
		Token: upstream.Token{
			AccessToken:  "CANARY-ACCESS-7f3a",
			TokenType:    "Bearer",
			RefreshToken: "CANARY-REFRESH-9c1e",
			IDToken:      "CANARY-IDTOKEN-42b0",
			Expiry:       time.Date(2030, 1, 2, 4, 0, 0, 0, time.UTC),
			Scope:        "openid email",
		},
	}
}

// countingStore counts the calls that reach a Store.
type countingStore struct {
	Store
	gets, writes atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, key string) ([]byte, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

func (c *countingStore) Set(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	c.writes.Add(1)
	return c.Store.Set(ctx, key, v, ttl)
}

func (c *countingStore) CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error) {
	c.writes.Add(1)
	return c.Store.CompareAndSwap(ctx, key, old, new, ttl)
}

func (c *countingStore) Delete(ctx context.Context, key string) error {
	c.writes.Add(1)
	return c.Store.Delete(ctx, key)
}
