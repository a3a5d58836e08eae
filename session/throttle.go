package session

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"
)

// throttleLabel derives the throttle's keyed-hash key from the cookie secret.
const throttleLabel = "authgate throttle key v1"

// Throttle counts failed sign-ins per account and per client address in the
// store, so that every replica sharing it sees the same counts (SECURITY.md
// 35). Accounts and addresses are stored only as keyed hashes. It is safe
// for concurrent use.
type Throttle struct {
	store           Store
	key             []byte
	perUser, perAdr int64
	window          time.Duration
}

// NewThrottle returns a throttle over m's store: past perUser failures for
// one account, or perAddress from one address, within window, Check
// refuses. A limit of 0 or less is off.
func (m *Manager) NewThrottle(perUser, perAddress int, window time.Duration) (*Throttle, error) {
	if window <= 0 {
		return nil, errors.New("session: throttle window must be positive")
	}
	secrets, err := cookieSecrets(m.cfg.Cookie)
	if err != nil {
		return nil, err
	}
	key, err := hkdf.Key(sha256.New, secrets[0], nil, throttleLabel, 32)
	if err != nil {
		return nil, err
	}
	return &Throttle{store: m.store, key: key, perUser: int64(perUser), perAdr: int64(perAddress), window: window}, nil
}

func (t *Throttle) userKey(user string) string {
	return t.storeKey("tu:", strings.ToLower(strings.TrimSpace(user)))
}

func (t *Throttle) addrKey(addr string) string { return t.storeKey("ta:", addr) }

func (t *Throttle) storeKey(prefix, v string) string {
	h := hmac.New(sha256.New, t.key)
	h.Write([]byte(v))
	var sum [32]byte
	h.Sum(sum[:0])
	return storageKey(prefix, sum)
}

// Check reports how long user or addr must wait before trying again: 0 when
// neither is over its limit. It counts nothing: it guards credentials the
// gateway already holds (a cached Basic login), which must not answer
// while the account or address is locked either (else the lock would tell
// the right password from a wrong one).
func (t *Throttle) Check(ctx context.Context, user, addr string) (time.Duration, error) {
	var wait time.Duration
	for _, c := range [...]struct {
		key   string
		limit int64
	}{{t.userKey(user), t.perUser}, {t.addrKey(addr), t.perAdr}} {
		if c.limit <= 0 {
			continue
		}
		n, left, err := t.store.Count(ctx, c.key)
		if err != nil {
			return 0, fmt.Errorf("session: throttle: %w", err)
		}
		if n >= c.limit {
			wait = max(wait, left, time.Second)
		}
	}
	return wait, nil
}

// Begin admits one attempt for user from addr before the authorization
// server is asked, and reports how long to wait instead when the account
// or the address is over its limit. The account's attempt is counted now,
// atomically, so that parallel attempts cannot all slip past the limit
// before any of them fails; Succeed forgets it. An attempt that ends in
// neither (the server down) stays counted: the throttle fails closed.
func (t *Throttle) Begin(ctx context.Context, user, addr string) (time.Duration, error) {
	if t.perAdr > 0 {
		n, left, err := t.store.Count(ctx, t.addrKey(addr))
		if err != nil {
			return 0, fmt.Errorf("session: throttle: %w", err)
		}
		if n >= t.perAdr {
			return max(left, time.Second), nil
		}
	}
	if t.perUser > 0 {
		n, left, err := t.store.Incr(ctx, t.userKey(user), t.window)
		if err != nil {
			return 0, fmt.Errorf("session: throttle: %w", err)
		}
		if n > t.perUser {
			return max(left, time.Second), nil
		}
	}
	return 0, nil
}

// Fail records that the attempt Begin admitted failed: it counts against
// the address (the account's count already holds it).
func (t *Throttle) Fail(ctx context.Context, addr string) error {
	if _, _, err := t.store.Incr(ctx, t.addrKey(addr), t.window); err != nil {
		return fmt.Errorf("session: throttle: %w", err)
	}
	return nil
}

// Succeed forgets user's attempts (not the address's failures: one
// success must not reopen an address that tries many accounts).
func (t *Throttle) Succeed(ctx context.Context, user string) error {
	if err := t.store.Delete(ctx, t.userKey(user)); err != nil {
		return fmt.Errorf("session: throttle: %w", err)
	}
	return nil
}
