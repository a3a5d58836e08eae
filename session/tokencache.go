package session

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/authgate/authgate/upstream"
)

// Storage key prefixes of the token caches. An entry and its lock are
// separate keys, never touched by one command (see seal.go on cluster
// safety).
const (
	machinePrefix     = "m:"
	machineLockPrefix = "ml:"
	callerPrefix      = "c:"
)

// Labels that derive the caches' keys from the cookie secret.
const (
	cacheHashLabel = "authgate token cache key v1"
	cacheSealLabel = "authgate token cache seal v1"
)

// Token cache tuning.
const (
	// machineLockTTL bounds how long one replica may hold the right to
	// fetch a machine token for the fleet.
	machineLockTTL = 10 * time.Second
	// machineUnknownLifetime is how long a token whose server gave no
	// expires_in is reused before asking again.
	machineUnknownLifetime = 5 * time.Minute
	// machineMargin: a token this close to expiry is not sent any more.
	machineMargin = 2 * time.Second
	// backoffMin and backoffMax bound the wait after a failed fetch.
	backoffMin, backoffMax = time.Second, 30 * time.Second
	// callerEntries bounds the in-process cache of validated caller tokens.
	callerEntries = 10000
)

// TokenCache keeps the credentials the gateway obtains (client credentials
// tokens, one fetch for the whole fleet) and the caller tokens it has
// validated, so that a repeated token costs a map lookup. It honours
// SECURITY.md 44: every key is an HMAC of the credential under a key
// derived from the cookie secret, the store holds only ciphertext, nothing
// is kept past the token's own expiry, and a failed credential is never
// cached as valid. It is safe for concurrent use.
type TokenCache struct {
	store   Store
	now     func() time.Time
	log     *slog.Logger
	sealKey []byte
	macs    sync.Pool // *macState: HMAC-SHA256 under the derived key

	callerMu sync.RWMutex
	callers  map[[32]byte]callerEntry
}

// NewTokenCache returns the token caches of m: they share m's store and
// derive their keys from m's cookie secret.
func (m *Manager) NewTokenCache(log *slog.Logger) (*TokenCache, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	secrets, err := cookieSecrets(m.cfg.Cookie)
	if err != nil {
		return nil, err
	}
	macKey, err := hkdf.Key(sha256.New, secrets[0], nil, cacheHashLabel, 32)
	if err != nil {
		return nil, err
	}
	sealKey, err := hkdf.Key(sha256.New, secrets[0], nil, cacheSealLabel, 32)
	if err != nil {
		return nil, err
	}
	c := &TokenCache{store: m.store, now: m.now, log: log, sealKey: sealKey, callers: map[[32]byte]callerEntry{}}
	c.macs.New = func() any { return &macState{h: hmac.New(sha256.New, macKey)} }
	return c, nil
}

// mac is the keyed hash of parts, separated so that no two lists collide.
// It is on the hot path of every caller token: a pooled hash and buffer,
// no allocation.
func (c *TokenCache) mac(parts ...string) [32]byte {
	m := c.macs.Get().(*macState)
	m.buf = m.buf[:0]
	for _, p := range parts {
		m.buf = append(append(m.buf, p...), 0)
	}
	m.h.Reset()
	m.h.Write(m.buf)
	var sum [32]byte
	m.h.Sum(sum[:0])
	if cap(m.buf) <= 64<<10 {
		c.macs.Put(m)
	}
	return sum
}

// macState is a pooled HMAC and its input buffer.
type macState struct {
	h   hash.Hash
	buf []byte
}

func storageKey(prefix string, sum [32]byte) string {
	return prefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// MachineKey says which machine token: the server, the client and what the
// token is for. Tokens are cached per key (SECURITY.md 37).
type MachineKey struct {
	Issuer, ClientID   string
	Scopes             []string
	Audience, Resource string
}

// MachineToken is the cached client credentials token of one MachineKey.
// Get is the hot path: while the token is fresh it is an atomic load.
type MachineToken struct {
	c        *TokenCache
	key      string // storage key
	lockKey  string
	fetch    func(context.Context) (*upstream.Token, error)
	cur      atomic.Pointer[machineEntry]
	flights  singleflight.Group
	renewing atomic.Bool
	refused  atomic.Pointer[upstream.Secret] // the last token a backend refused: never adopted again

	mu          sync.Mutex
	failedUntil time.Time
	backoff     time.Duration
	lastErr     error
}

// machineEntry is a token in use, with the session that carries it to the
// proxy (shared, read-only) and when to renew it.
type machineEntry struct {
	sess    *Session
	expiry  time.Time // when it must no longer be sent
	renewAt time.Time
}

// Machine returns the cached token for key; fetch obtains a new one from
// the authorization server. Call it once per route at start-up.
func (c *TokenCache) Machine(key MachineKey, fetch func(context.Context) (*upstream.Token, error)) *MachineToken {
	sum := c.mac("machine", key.Issuer, key.ClientID, strings.Join(key.Scopes, " "), key.Audience, key.Resource)
	return &MachineToken{c: c, key: storageKey(machinePrefix, sum), lockKey: storageKey(machineLockPrefix, sum), fetch: fetch}
}

// Get returns a session carrying a valid token (no identity: a machine
// token names no user). A fresh token is returned at once; one past its
// renewal time is still returned while a single background renewal runs;
// only without a usable token does the caller wait for the fetch. After a
// failed fetch, callers without a usable token get the error at once until
// the back-off ends.
func (t *MachineToken) Get(ctx context.Context) (*Session, error) {
	now := t.c.now()
	if e := t.cur.Load(); e != nil && now.Before(e.expiry) {
		if !now.Before(e.renewAt) {
			t.renewInBackground(now)
		}
		return e.sess, nil
	}
	t.mu.Lock()
	failedUntil, lastErr := t.failedUntil, t.lastErr
	t.mu.Unlock()
	if now.Before(failedUntil) {
		return nil, lastErr
	}
	ch := t.flights.DoChan("fetch", func() (any, error) {
		return t.refill(context.WithoutCancel(ctx), true)
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*machineEntry).sess, nil
	}
}

// renewInBackground starts one renewal unless one is running or a failed
// fetch's back-off has not ended.
func (t *MachineToken) renewInBackground(now time.Time) {
	t.mu.Lock()
	backingOff := now.Before(t.failedUntil)
	t.mu.Unlock()
	if backingOff || !t.renewing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer t.renewing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), machineLockTTL)
		defer cancel()
		_, _, _ = t.flights.Do("fetch", func() (any, error) { return t.refill(ctx, false) })
	}()
}

// Invalidate drops tok if it is the cached token (the backend answered
// invalid_token): of a burst of such answers only the first one counts,
// so they cause one new fetch. The 401 itself is the caller's to return.
func (t *MachineToken) Invalidate(ctx context.Context, tok upstream.Secret) {
	e := t.cur.Load()
	if e == nil || e.sess.Token.AccessToken != tok {
		return
	}
	// Refused before it is dropped: a concurrent Get must not adopt it
	// back from the store before the store's copy is deleted.
	t.refused.Store(&tok)
	if !t.cur.CompareAndSwap(e, nil) {
		return
	}
	t.c.log.WarnContext(ctx, "the backend refused the client credentials token; fetching a new one")
	if rec, err := t.c.store.Get(ctx, t.key); err == nil {
		if shared, err := t.c.openToken(t.key, rec); err == nil && shared.AccessToken == tok {
			_ = t.c.store.Delete(ctx, t.key)
		}
	}
}

// refill finds a token newer than the current one: in the store (another
// replica fetched it), else from the server while holding the fleet's
// lock. With wait, it waits for another replica's fetch instead of giving
// up when the lock is held.
func (t *MachineToken) refill(ctx context.Context, wait bool) (*machineEntry, error) {
	if e, ok := t.adopt(ctx); ok {
		return e, nil
	}
	deadline := time.Now().Add(machineLockTTL + time.Second)
	for {
		unlock, err := t.c.store.Lock(ctx, t.lockKey, machineLockTTL)
		if err == nil {
			e, err := t.fetchLocked(ctx)
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
			_ = unlock(uctx)
			cancel()
			return e, err
		}
		if !errors.Is(err, ErrLocked) {
			// The store is down: fetch for this replica alone rather than
			// fail requests the token endpoint could serve.
			t.c.log.WarnContext(ctx, "machine token: the store is unavailable, fetching without the fleet's lock", "error", err.Error())
			return t.fetchLocked(ctx)
		}
		if !wait {
			return t.cur.Load(), nil // another replica renews; adopt it later
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: machine token: timed out waiting for another replica's fetch", ErrUnavailable)
		}
		if err := sleep(ctx, jitter(pollInterval)); err != nil {
			return nil, err
		}
		if e, ok := t.adopt(ctx); ok {
			return e, nil
		}
	}
}

// fetchLocked asks the server for a token, holding the fleet's lock, and
// shares it through the store.
func (t *MachineToken) fetchLocked(ctx context.Context) (*machineEntry, error) {
	if e, ok := t.adopt(ctx); ok {
		return e, nil // written while we waited for the lock
	}
	tok, err := t.fetch(ctx)
	if err != nil {
		return nil, t.failed(err)
	}
	if tok.Expiry.IsZero() {
		tok.Expiry = t.c.now().Add(machineUnknownLifetime)
	}
	e := t.entry(*tok)
	if ttl := tok.Expiry.Sub(t.c.now()); ttl > 0 {
		if rec, err := t.c.sealToken(t.key, tok); err == nil {
			if err := t.c.store.Set(ctx, t.key, rec, ttl); err != nil {
				t.c.log.WarnContext(ctx, "machine token not shared with the other replicas: the store failed", "error", err.Error())
			}
		}
	}
	t.cur.Store(e)
	t.mu.Lock()
	t.failedUntil, t.backoff, t.lastErr = time.Time{}, 0, nil
	t.mu.Unlock()
	return e, nil
}

// adopt takes the store's token when it is usable, newer than ours and not
// yet due for renewal.
func (t *MachineToken) adopt(ctx context.Context) (*machineEntry, bool) {
	rec, err := t.c.store.Get(ctx, t.key)
	if err != nil {
		return nil, false
	}
	tok, err := t.c.openToken(t.key, rec)
	if err != nil {
		return nil, false
	}
	if r := t.refused.Load(); r != nil && *r == tok.AccessToken {
		return nil, false
	}
	now := t.c.now()
	e := t.entry(*tok)
	if cur := t.cur.Load(); !now.Before(e.renewAt) || cur != nil && !tok.Expiry.After(cur.sess.Token.Expiry) {
		return nil, false
	}
	t.cur.Store(e)
	return e, true
}

// entry computes when tok must be renewed: ahead of expiry by min(30 s,
// 10% of its lifetime), jittered by up to half that again so that the
// replicas do not all ask at once (the first writes, the others adopt).
func (t *MachineToken) entry(tok upstream.Token) *machineEntry {
	issued := tok.Issued
	if issued.IsZero() {
		issued = t.c.now()
	}
	skew := min(30*time.Second, tok.Expiry.Sub(issued)/10)
	if skew > 0 {
		skew += rand.N(skew/2 + 1)
	}
	margin := min(machineMargin, tok.Expiry.Sub(issued)/20)
	return &machineEntry{
		sess:    &Session{Token: tok, derived: &derivedValue{}},
		expiry:  tok.Expiry.Add(-margin),
		renewAt: tok.Expiry.Add(-skew),
	}
}

// failed records a failed fetch for the back-off and returns err.
func (t *MachineToken) failed(err error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.backoff = min(max(t.backoff*2, backoffMin), backoffMax)
	t.failedUntil = t.c.now().Add(t.backoff)
	t.lastErr = err
	t.c.log.Warn("client credentials token fetch failed", "retry_in", t.backoff.String(), "error", err.Error())
	return err
}

// sealToken encrypts a token for the store, bound to its key.
func (c *TokenCache) sealToken(key string, tok *upstream.Token) ([]byte, error) {
	pt, err := json.Marshal(wireToken{
		AccessToken: tok.AccessToken.Reveal(),
		TokenType:   tok.TokenType,
		Expiry:      unixNano(tok.Expiry),
		Issued:      unixNano(tok.Issued),
		Scope:       tok.Scope,
	})
	if err != nil {
		return nil, err
	}
	return seal(c.sealKey, key, pt)
}

// openToken decrypts what sealToken wrote.
func (c *TokenCache) openToken(key string, rec []byte) (*upstream.Token, error) {
	pt, err := open(c.sealKey, key, rec)
	if err != nil {
		return nil, err
	}
	var w wireToken
	if err := json.Unmarshal(pt, &w); err != nil || w.AccessToken == "" {
		return nil, errOpen
	}
	return &upstream.Token{AccessToken: upstream.Secret(w.AccessToken), TokenType: w.TokenType,
		Expiry: fromUnixNano(w.Expiry), Issued: fromUnixNano(w.Issued), Scope: w.Scope}, nil
}

// wireToken is the stored form of a machine token.
type wireToken struct {
	AccessToken string `json:"at"`
	TokenType   string `json:"tt,omitempty"`
	Expiry      int64  `json:"ex"`
	Issued      int64  `json:"is,omitempty"`
	Scope       string `json:"sc,omitempty"`
}

// callerEntry is a caller token's validation result: the session it maps
// to, or nil for a token found invalid.
type callerEntry struct {
	sess  *Session
	until time.Time
}

// CallerKey is the cache key of a caller's token: its keyed hash, bound to
// the route's audience (a token valid for one route is not for another).
type CallerKey [32]byte

// CallerKey returns the key under which token's result for audience is
// cached.
func (c *TokenCache) CallerKey(token, audience string) CallerKey {
	return c.mac("caller", audience, token)
}

// Caller returns the cached result for k: the session (nil for a token
// known to be invalid) and whether there was one.
func (c *TokenCache) Caller(k CallerKey) (*Session, bool) {
	c.callerMu.RLock()
	e, ok := c.callers[k]
	c.callerMu.RUnlock()
	if !ok || !c.now().Before(e.until) {
		return nil, false
	}
	return e.sess, true
}

// PutCaller caches a result for k until until (a valid token: at most its
// expiry; an invalid one: a few seconds). The table is bounded: when full,
// a random half goes.
func (c *TokenCache) PutCaller(k CallerKey, s *Session, until time.Time) {
	c.callerMu.Lock()
	defer c.callerMu.Unlock()
	if len(c.callers) >= callerEntries {
		n := 0
		for key := range c.callers {
			delete(c.callers, key)
			if n++; n >= callerEntries/2 {
				break
			}
		}
	}
	if s != nil {
		// A copy of its own, whose derived values the requests share.
		cp := *s
		cp.derived = &derivedValue{}
		s = &cp
	}
	c.callers[k] = callerEntry{sess: s, until: until}
}

// SharedCaller reads a validation result another replica shared
// (introspection answers, so the fleet asks once per token). The session
// holds no access token: the caller has it.
func (c *TokenCache) SharedCaller(ctx context.Context, k CallerKey) (*Session, bool) {
	key := storageKey(callerPrefix, k)
	rec, err := c.store.Get(ctx, key)
	if err != nil {
		return nil, false
	}
	pt, err := open(c.sealKey, key, rec)
	if err != nil {
		return nil, false
	}
	s, err := unmarshalSession(pt)
	if err != nil || !c.now().Before(s.Token.Expiry) {
		return nil, false
	}
	return s, true
}

// ShareCaller stores a valid result for the other replicas until until
// (never past the token's expiry, which s.Token.Expiry must hold).
func (c *TokenCache) ShareCaller(ctx context.Context, k CallerKey, s *Session, until time.Time) {
	ttl := until.Sub(c.now())
	if ttl <= 0 || s.Token.Expiry.IsZero() {
		return
	}
	key := storageKey(callerPrefix, k)
	stored := *s
	stored.Token.AccessToken = "" // the caller brings it; the record needs no copy
	pt, err := marshalSession(&stored)
	if err != nil {
		return
	}
	rec, err := seal(c.sealKey, key, pt)
	if err != nil {
		return
	}
	if err := c.store.Set(ctx, key, rec, ttl); err != nil {
		c.log.DebugContext(ctx, "caller token result not shared: the store failed", "error", err.Error())
	}
}
