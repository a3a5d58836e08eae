package session

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/singleflight"
)

// Version identifies the stored state of a session as Load read it; Replace
// and Touch write only if the session is still in that state. It is opaque.
//
// A session from the cache has a Version of digest only: the record
// itself would add a third to each entry's memory. A write from it reads
// the record again and compares digests first, one more store call, which
// only Touch makes (at most once per TouchInterval).
type Version struct {
	raw    []byte            // the stored ciphertext as read; nil when digestOnly
	sum    [sha256.Size]byte // of raw, when digestOnly
	digest bool              // only sum is known
}

// digestOnly returns v without its record.
func (v Version) digestOnly() Version {
	if v.digest {
		return v
	}
	return Version{sum: sha256.Sum256(v.raw), digest: true}
}

// Manager creates, loads, updates and refreshes sessions in a Store and
// encodes the cookies that point at them. It is safe for concurrent use.
type Manager struct {
	cfg      Config
	store    Store
	now      func() time.Time
	tickets  codec
	bindings codec
	refresh  singleflight.Group
	// cache holds recently loaded sessions (nil when off); bcast carries
	// its invalidations to the other replicas (nil for a store of one
	// process).
	cache *sessionCache
	bcast Broadcaster
	// idx finds sessions by user and by the server's session id.
	idx    *sessionIndex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager returns a Manager keeping sessions in store. cfg should have been
// defaulted and validated by the caller; zero fields still get their defaults
// and the cookie secrets are checked again. now is the clock the idle and
// absolute timeouts are measured against (nil means time.Now).
func NewManager(cfg Config, store Store, now func() time.Time) (*Manager, error) {
	if store == nil {
		return nil, errors.New("session: nil store")
	}
	if now == nil {
		now = time.Now
	}
	cfg.SetDefaults()
	if err := errors.Join(append(cfg.Cookie.validate(), cfg.validateDurations()...)...); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	secrets, err := cookieSecrets(cfg.Cookie)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	m := &Manager{cfg: cfg, store: store, now: now}
	if m.tickets, err = newCodec(cfg.Cookie.Name, cfg.MaxLifetime, secrets); err != nil {
		return nil, err
	}
	if m.bindings, err = newCodec(cfg.Cookie.Name+bindingSuffix, cfg.LoginTimeout, secrets); err != nil {
		return nil, err
	}
	if m.idx, err = newSessionIndex(secrets); err != nil {
		return nil, err
	}
	m.bcast, _ = store.(Broadcaster)
	if cfg.Cache.TTL > 0 {
		m.cache = newSessionCache(cfg.Cache.TTL, cfg.Cache.MaxEntries, now, m.bcast != nil)
	}
	// Every replica publishes its writes (announce); it subscribes only to
	// keep a cache of its own.
	if m.bcast != nil && m.cache != nil {
		ctx, cancel := context.WithCancel(context.Background())
		m.cancel, m.done = cancel, make(chan struct{})
		go func() {
			defer close(m.done)
			m.bcast.Invalidations(ctx, m.cache.invalidate, m.cache.setUp)
		}()
	}
	return m, nil
}

// CacheInUse reports whether Load may answer from the session cache: it is
// on, and, with a shared store, subscribed to the invalidation channel.
func (m *Manager) CacheInUse() bool { return m.cache != nil && m.cache.up.Load() }

// Close stops the Manager's subscription to the invalidation channel. The
// Manager keeps working, without its cache.
func (m *Manager) Close() {
	if m.cancel != nil {
		m.cancel()
		<-m.done
		m.cache.setUp(false)
	}
}

// Config returns the configuration in effect, defaults applied.
func (m *Manager) Config() Config { return m.cfg }

// Store returns the store sessions live in.
func (m *Manager) Store() Store { return m.store }

// Create stores s under a fresh ticket and returns the ticket: every login
// gets a new one, so a ticket planted before login is worthless (no session
// fixation). A zero CreatedAt or LastSeen is set to now.
func (m *Manager) Create(ctx context.Context, s *Session) (Ticket, error) {
	now := m.now()
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now
	}
	if s.LastSeen.IsZero() {
		s.LastSeen = now
	}
	t, err := NewTicket()
	if err != nil {
		return Ticket{}, err
	}
	ttl, ok := m.ttl(s, now)
	if !ok {
		return Ticket{}, errors.New("session: create: session already past its idle or absolute timeout")
	}
	key := t.storageKey()
	record, err := m.seal(&t, key, s)
	if err != nil {
		return Ticket{}, err
	}
	if err := m.store.Set(ctx, key, record, ttl); err != nil {
		return Ticket{}, fmt.Errorf("session: create: %w", err)
	}
	// A session the index does not list could not be ended by a logout
	// that names its user: it does not begin.
	if err := m.index(ctx, t, s); err != nil {
		_ = m.Delete(ctx, t)
		return Ticket{}, fmt.Errorf("session: create: %w", err)
	}
	return t, nil
}

// Load returns t's session and its Version. It returns ErrNotFound when the
// session is absent, cannot be decrypted with t's key, or has passed its idle
// or absolute timeout (the record is then deleted), and an error wrapping
// ErrUnavailable when the store fails.
func (m *Manager) Load(ctx context.Context, t Ticket) (*Session, Version, error) {
	if t.IsZero() {
		return nil, Version{}, ErrNotFound
	}
	key := t.storageKey()
	if s, v, ok := m.cache.get(key, &t); ok {
		if _, live := m.ttl(s, m.now()); live {
			return s, v, nil
		}
		// Past its idle timeout by the cached LastSeen: another replica
		// may have seen it since, so the store decides.
	}
	gen := m.cache.generation(key)
	s, v, err := m.loadStored(ctx, &t, key)
	if err == nil {
		m.cache.put(key, &t, s, v, gen)
	}
	return s, v, err
}

// loadStored is Load from the store, past the cache: for the refresh,
// which must see other replicas' writes at once.
func (m *Manager) loadStored(ctx context.Context, t *Ticket, key string) (*Session, Version, error) {
	record, err := m.store.Get(ctx, key)
	if err != nil {
		return nil, Version{}, err // ErrNotFound or ErrUnavailable-wrapped, unchanged
	}
	s, err := m.open(t, key, record)
	if err != nil {
		return nil, Version{}, ErrNotFound
	}
	if _, ok := m.ttl(s, m.now()); !ok {
		// Best effort: the store's own TTL removes it anyway, and the answer
		// is "not found" whether or not the delete got through.
		_ = m.store.Delete(ctx, key)
		return nil, Version{}, ErrNotFound
	}
	return s, Version{raw: record}, nil
}

// TouchInterval is how stale LastSeen must be before Touch writes:
// IdleTimeout/20, at most one minute and at least one second.
func (m *Manager) TouchInterval() time.Duration {
	return min(max(m.cfg.IdleTimeout/20, time.Second), time.Minute)
}

// Touch records that s (read by Load with Version v) was just used. It
// writes only when LastSeen is older than TouchInterval, so most requests
// make no store call at all; the write is a compare-and-swap, and losing it
// to a concurrent write (a refresh, another Touch) is not an error: the other
// write wins and keeps its tokens.
func (m *Manager) Touch(ctx context.Context, t Ticket, s *Session, v Version) error {
	now := m.now()
	if now.Sub(s.LastSeen) < m.TouchInterval() {
		return nil
	}
	s.LastSeen = now
	// Only LastSeen changes: the other replicas' copies need not go (their
	// own Touch would lose the compare-and-swap and drop them).
	_, err := m.write(ctx, &t, s, v, now, false)
	if errors.Is(err, ErrConflict) {
		m.cache.invalidate(t.storageKey()) // ours was stale
		return nil
	}
	return err
}

// Replace writes s over t's session if it is still at Version v, and returns
// the new Version. It returns ErrConflict when the session changed or
// vanished since it was read, and ErrNotFound when s has passed its timeouts.
func (m *Manager) Replace(ctx context.Context, t Ticket, s *Session, v Version) (Version, error) {
	return m.write(ctx, &t, s, v, m.now(), true)
}

// Delete removes t's session (sign-out) on every replica: from the store,
// and from every replica's cache. An absent session is not an error.
func (m *Manager) Delete(ctx context.Context, t Ticket) error {
	key := t.storageKey()
	m.cache.invalidate(key)
	err := m.store.Delete(ctx, key)
	m.cache.invalidate(key) // a Load that read the store before the delete
	// Even after an error: the delete may have reached the store.
	m.announce(ctx, key)
	if err != nil {
		return fmt.Errorf("session: delete: %w", err)
	}
	return nil
}

// announce tells the other replicas to drop their copy of key. A failed
// publish is retried in the background for a cache TTL (announcing twice
// is harmless); what it cannot reach expires with the TTL.
func (m *Manager) announce(ctx context.Context, key string) {
	if m.bcast == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if m.bcast.PublishInvalidation(ctx, key) == nil {
		return
	}
	go func() {
		deadline := time.Now().Add(max(m.cfg.Cache.TTL, time.Second))
		for time.Now().Before(deadline) {
			if sleep(ctx, jitter(100*time.Millisecond)) != nil || m.bcast.PublishInvalidation(ctx, key) == nil {
				return
			}
		}
	}()
}

// write seals s and swaps it in for v; publish announces the change to
// the other replicas' caches.
func (m *Manager) write(ctx context.Context, t *Ticket, s *Session, v Version, now time.Time, publish bool) (Version, error) {
	ttl, ok := m.ttl(s, now)
	if !ok {
		return Version{}, ErrNotFound
	}
	key := t.storageKey()
	record, err := m.seal(t, key, s)
	if err != nil {
		return Version{}, err
	}
	old := v.raw
	if v.digest {
		cur, err := m.store.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			return Version{}, ErrConflict // gone since it was read
		}
		if err != nil {
			return Version{}, fmt.Errorf("session: write: %w", err)
		}
		if sha256.Sum256(cur) != v.sum {
			return Version{}, ErrConflict
		}
		old = cur
	}
	gen := m.cache.generation(key)
	if publish {
		m.cache.invalidate(key)
	}
	swapped, err := m.store.CompareAndSwap(ctx, key, old, record, ttl)
	if err != nil {
		if publish {
			m.announce(ctx, key) // the write may have reached the store
		}
		return Version{}, fmt.Errorf("session: write: %w", err)
	}
	if !swapped {
		return Version{}, ErrConflict
	}
	nv := Version{raw: record}
	if publish {
		// A Load that read the old record during the swap must not put it
		// back: it began under the generation this bumps.
		m.cache.invalidate(key)
		gen = m.cache.generation(key)
		m.announce(ctx, key)
	}
	m.cache.put(key, t, s, nv, gen)
	return nv, nil
}

// ttl returns how long s may still live: until the earlier of its idle and
// absolute deadlines. ok is false when either has passed.
func (m *Manager) ttl(s *Session, now time.Time) (time.Duration, bool) {
	ttl := min(s.LastSeen.Add(m.cfg.IdleTimeout).Sub(now), s.CreatedAt.Add(m.cfg.MaxLifetime).Sub(now))
	return ttl, ttl > 0
}

// seal encodes and encrypts s under t's key, bound to key.
func (m *Manager) seal(t *Ticket, key string, s *Session) ([]byte, error) {
	pt, err := marshalSession(s)
	if err != nil {
		return nil, fmt.Errorf("session: encode: %w", err)
	}
	record, err := seal(t.key[:], key, pt)
	if err != nil {
		return nil, fmt.Errorf("session: seal: %w", err)
	}
	return record, nil
}

// open decrypts and decodes a record sealed by seal.
func (m *Manager) open(t *Ticket, key string, record []byte) (*Session, error) {
	pt, err := open(t.key[:], key, record)
	if err != nil {
		return nil, err
	}
	return unmarshalSession(pt)
}
