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
// neither is over its limit. It counts nothing: call it before asking the
// authorization server, so that even the right password is refused while
// the lock lasts (else the throttle would be a password oracle).
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

// Fail records a failed attempt for user from addr.
func (t *Throttle) Fail(ctx context.Context, user, addr string) error {
	for _, k := range [...]string{t.userKey(user), t.addrKey(addr)} {
		if _, _, err := t.store.Incr(ctx, k, t.window); err != nil {
			return fmt.Errorf("session: throttle: %w", err)
		}
	}
	return nil
}

// Succeed forgets user's failures (not the address's: one success must not
// reopen an address that tries many accounts).
func (t *Throttle) Succeed(ctx context.Context, user string) error {
	if err := t.store.Delete(ctx, t.userKey(user)); err != nil {
		return fmt.Errorf("session: throttle: %w", err)
	}
	return nil
}
