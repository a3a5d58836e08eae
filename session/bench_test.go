package session

import (
	"testing"
	"time"
)

// The per-request hot path of the session package: decode the session
// cookie and load the session. Compare the variants with benchstat:
//
//	go test ./session -run '^$' -bench 'Load|DecodeTicket' -benchmem -count 6

// BenchmarkLoad: memory store, cache hit (the common case).
func BenchmarkLoad(b *testing.B) { benchLoad(b, NewMemoryStore(nil, 0), true) }

// BenchmarkLoadUncached: memory store, every load decrypts and decodes.
func BenchmarkLoadUncached(b *testing.B) { benchLoad(b, NewMemoryStore(nil, 0), false) }

// BenchmarkLoadRedis: Redis, cache hit (subscribed to invalidations).
func BenchmarkLoadRedis(b *testing.B) {
	store, _ := redisStore(b)
	benchLoad(b, store, true)
}

// BenchmarkLoadRedisUncached: Redis, a GET round trip per load.
func BenchmarkLoadRedisUncached(b *testing.B) {
	store, _ := redisStore(b)
	benchLoad(b, store, false)
}

func benchLoad(b *testing.B, store Store, cached bool) {
	cfg := testConfig(b)
	if !cached {
		cfg.Cache.TTL = -1
	}
	m := newManager(b, cfg, store, nil)
	b.Cleanup(m.Close)
	if cached {
		for !m.CacheInUse() {
			time.Sleep(time.Millisecond) // subscribing
		}
	}
	ctx := b.Context()
	tk, err := m.Create(ctx, testSession())
	if err != nil {
		b.Fatal(err)
	}
	cookie, err := m.EncodeTicket(tk)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		tk, err := m.DecodeTicket(cookie)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := m.Load(ctx, tk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeTicket isolates the cookie half (securecookie), without
// the ticket cache.
func BenchmarkDecodeTicket(b *testing.B) {
	cfg := testConfig(b)
	cfg.Cache.TTL = -1
	m := newManager(b, cfg, NewMemoryStore(nil, 0), nil)
	tk, _ := NewTicket()
	cookie, _ := m.EncodeTicket(tk)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.DecodeTicket(cookie); err != nil {
			b.Fatal(err)
		}
	}
}
