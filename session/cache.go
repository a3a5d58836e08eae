package session

import (
	"context"
	"crypto/subtle"
	"sync"
	"sync/atomic"
	"time"
)

// The session cache keeps recently loaded sessions decrypted in process,
// so a request whose session was read a moment ago costs no store round
// trip, decryption or decoding. It stays coherent across replicas through
// the store's invalidation channel (Broadcaster): every write that changes
// a session's tokens or identity, and every delete, tells all replicas to
// drop their copy; while a replica is not subscribed (starting, a Redis
// blip, a reconnect) it does not use its cache at all, so a missed
// invalidation can never keep a session alive (SECURITY.md 45). Entries
// live at most the cache TTL, which also bounds what a failed publish can
// leave behind.

// Broadcaster is implemented by stores shared between processes: it
// carries invalidations between the replicas' session caches.
type Broadcaster interface {
	// PublishInvalidation tells every subscribed process that the record
	// under key changed or is gone.
	PublishInvalidation(ctx context.Context, key string) error
	// Invalidations delivers invalidated keys to onKey until ctx ends,
	// and calls onState(true) once the subscription is established and
	// onState(false) whenever it is lost (it re-subscribes by itself).
	Invalidations(ctx context.Context, onKey func(key string), onState func(up bool))
}

// cacheShards spreads the cache's locks and generations.
const cacheShards = 64

type sessionCache struct {
	ttl   time.Duration
	max   int // per shard
	now   func() time.Time
	up    atomic.Bool // the invalidation channel works (always, for a store of one process)
	shard [cacheShards]cacheShard
	// tickets remembers cookie values that decoded, so a repeated cookie
	// costs a map lookup instead of securecookie's HMAC and AES (about a
	// tenth of the gateway's CPU per request). Only values that decoded
	// are kept, for at most the cache TTL.
	tickets [cacheShards]ticketShard
}

type ticketShard struct {
	mu      sync.RWMutex
	entries map[string]ticketEntry
}

type ticketEntry struct {
	t       Ticket
	expires time.Time
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[string]*cacheEntry
	// gen is bumped by every invalidation of a key of this shard: a read
	// that began under another value is not cached (it may predate the
	// change announced). Per shard, so that the fleet's invalidations of
	// other sessions rarely cancel a fill.
	gen atomic.Uint64
}

// cacheEntry is a decrypted session. sess is never handed out: callers get
// copies, since they go on to change theirs (Touch sets LastSeen).
type cacheEntry struct {
	key     [32]byte // the ticket's key: the id alone must not get the session
	sess    Session
	ver     Version
	expires time.Time
}

func newSessionCache(ttl time.Duration, maxEntries int, now func() time.Time, shared bool) *sessionCache {
	c := &sessionCache{ttl: ttl, max: max(1, maxEntries/cacheShards), now: now}
	for i := range c.shard {
		c.shard[i].entries = make(map[string]*cacheEntry)
		c.tickets[i].entries = make(map[string]ticketEntry)
	}
	c.up.Store(!shared) // a shared store's channel is down until subscribed
	return c
}

func (c *sessionCache) shardOf(key string) *cacheShard {
	return &c.shard[spread(key)%cacheShards]
}

// spread hashes a few characters of a key: storage keys and cookie values
// end in base64 of a hash or MAC already. Any length is fine (an
// invalidation's payload is whatever Redis delivered).
func spread(key string) uint {
	var h uint = 2166136261
	for i := max(0, len(key)-6); i < len(key); i++ {
		h = (h ^ uint(key[i])) * 16777619
	}
	return h
}

// get returns a copy of the cached session under key when t's key matches.
func (c *sessionCache) get(key string, t *Ticket) (*Session, Version, bool) {
	if c == nil || !c.up.Load() {
		return nil, Version{}, false
	}
	sh := c.shardOf(key)
	sh.mu.RLock()
	e := sh.entries[key]
	sh.mu.RUnlock()
	if e == nil || !c.now().Before(e.expires) || subtle.ConstantTimeCompare(e.key[:], t.key[:]) != 1 {
		return nil, Version{}, false
	}
	s := e.sess
	return &s, e.ver, true
}

// generation is read before a store read of key whose result may be
// cached.
func (c *sessionCache) generation(key string) uint64 {
	if c == nil {
		return 0
	}
	return c.shardOf(key).gen.Load()
}

// put caches a copy of s at version v, unless an invalidation arrived since
// gen was read (the read may predate the change it announced) or the
// channel is down.
func (c *sessionCache) put(key string, t *Ticket, s *Session, v Version, gen uint64) {
	if c == nil || !c.up.Load() {
		return
	}
	e := &cacheEntry{key: t.key, sess: *s, ver: v.digestOnly(), expires: c.now().Add(c.ttl)}
	e.sess.derived = &derivedValue{}
	sh := c.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen.Load() != gen {
		return
	}
	if len(sh.entries) >= c.max {
		if _, ok := sh.entries[key]; !ok {
			evictOne(sh.entries, c.now(), func(e *cacheEntry) time.Time { return e.expires })
		}
	}
	sh.entries[key] = e
}

// evictOne makes room in a full map in constant time: of a few entries
// (map order is random), an expired one, else the first.
func evictOne[E any](m map[string]E, now time.Time, expires func(E) time.Time) {
	victim, n := "", 0
	for k, e := range m {
		if victim == "" {
			victim = k
		}
		if !now.Before(expires(e)) {
			victim = k
			break
		}
		if n++; n == 8 {
			break
		}
	}
	delete(m, victim)
}

// invalidate drops key.
func (c *sessionCache) invalidate(key string) {
	if c == nil {
		return
	}
	sh := c.shardOf(key)
	sh.mu.Lock()
	sh.gen.Add(1)
	delete(sh.entries, key)
	sh.mu.Unlock()
}

// setUp records the channel's state; either change empties the cache
// (entries from before a gap may have missed an invalidation).
func (c *sessionCache) setUp(up bool) {
	for i := range c.shard {
		sh := &c.shard[i]
		sh.mu.Lock()
		sh.gen.Add(1)
		clear(sh.entries)
		sh.mu.Unlock()
	}
	c.up.Store(up)
}

// ticket returns the ticket a cookie value decoded to recently.
func (c *sessionCache) ticket(value string) (Ticket, bool) {
	if c == nil {
		return Ticket{}, false
	}
	sh := c.ticketShard(value)
	sh.mu.RLock()
	e, ok := sh.entries[value]
	sh.mu.RUnlock()
	if !ok || !c.now().Before(e.expires) {
		return Ticket{}, false
	}
	return e.t, true
}

// putTicket remembers that value decoded to t.
func (c *sessionCache) putTicket(value string, t Ticket) {
	if c == nil {
		return
	}
	sh := c.ticketShard(value)
	now := c.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.entries) >= c.max {
		evictOne(sh.entries, now, func(e ticketEntry) time.Time { return e.expires })
	}
	sh.entries[value] = ticketEntry{t: t, expires: now.Add(c.ttl)}
}

func (c *sessionCache) ticketShard(value string) *ticketShard {
	return &c.tickets[spread(value)%cacheShards]
}
