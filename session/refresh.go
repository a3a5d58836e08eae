package session

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/authgate/authgate/upstream"
)

// Refresh tuning.
const (
	// pollInterval is how often a request waiting for another process's
	// refresh re-reads the session (±20% jitter).
	pollInterval = 25 * time.Millisecond
	// writeTries bounds how often a refreshed token is re-applied after
	// losing the compare-and-swap to a concurrent write (a Touch).
	writeTries = 10
	// unlockTimeout bounds the unlock, which runs even if the caller left.
	unlockTimeout = 2 * time.Second
)

// Refresh renews the tokens of t's session at most once across every process
// sharing the store, and returns the session as it stands afterwards.
//
// needs reports whether a freshly read session still needs renewal. renew
// calls the token endpoint with the session's current token and returns the
// token to store (the caller merges, for example keeping the old refresh
// token when the server returned none); it is called at most once per
// Refresh, with a context that expires before the refresh lock does, so the
// lock cannot lapse mid-refresh and let a second process spend a refresh
// token that has been rotated out (RFC 9700 §4.14.2).
//
// Concurrent calls for one ticket in this process share one result. Across
// processes, one caller takes the per-session lock and renews; the others
// re-read the session until it no longer needs renewal and adopt the
// winner's tokens, or take the lock themselves if the winner gave up.
//
// A renew error is returned wrapped (errors.As finds the token endpoint's
// error) after releasing the lock; store failures wrap ErrUnavailable; a
// session that vanished is ErrNotFound.
func (m *Manager) Refresh(ctx context.Context, t Ticket, needs func(*Session) bool, renew func(ctx context.Context, old upstream.Token) (upstream.Token, error)) (*Session, Version, error) {
	if t.IsZero() {
		return nil, Version{}, ErrNotFound
	}
	// Keyed by the whole ticket, not only its id, so that a caller holding a
	// wrong key can never be handed another caller's session.
	flight := string(t.id[:]) + string(t.key[:])
	ch := m.refresh.DoChan(flight, func() (_ any, err error) {
		// A panic in needs or renew would otherwise crash the process:
		// DoChan re-panics on a goroutine of its own, out of reach of
		// net/http's recovery. The value is not printed, as it may hold a
		// token.
		defer func() {
			if recover() != nil {
				err = errors.New("session: refresh: panic in needs or renew")
			}
		}()
		// Shared by every waiter: it must not die with the first caller's
		// request, but it is bounded (two lock periods: wait, then renew).
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*m.cfg.RefreshLockTimeout+unlockTimeout)
		defer cancel()
		v, err := m.refreshShared(wctx, &t, needs, renew)
		return v, err
	})
	var r singleflight.Result
	select {
	case <-ctx.Done():
		return nil, Version{}, fmt.Errorf("session: refresh: %w", ctx.Err())
	case r = <-ch:
	}
	if r.Err != nil {
		return nil, Version{}, r.Err
	}
	// Each caller gets its own copy: callers go on to mutate their session
	// (Touch), and the shared result is immutable ciphertext.
	v := r.Val.(Version)
	s, err := m.open(&t, t.storageKey(), v.raw)
	if err != nil {
		return nil, Version{}, ErrNotFound
	}
	return s, v, nil
}

// refreshShared is the body of one collapsed Refresh: take the lock and
// renew, or wait for whoever holds it.
func (m *Manager) refreshShared(ctx context.Context, t *Ticket, needs func(*Session) bool, renew func(context.Context, upstream.Token) (upstream.Token, error)) (Version, error) {
	lockKey := t.lockKey()
	// A holder took the lock before our first attempt failed, so once
	// RefreshLockTimeout (plus a little for clock and network) has passed,
	// the lock is free unless someone holds it anew: a last attempt then
	// either takes over from a crashed holder or gives up.
	giveUp := time.Now().Add(m.cfg.RefreshLockTimeout + 2*pollInterval)
	for {
		acquired := time.Now() // real time, like the lock's TTL
		unlock, err := m.store.Lock(ctx, lockKey, m.cfg.RefreshLockTimeout)
		if err == nil {
			return m.refreshLocked(ctx, t, needs, renew, acquired, unlock)
		}
		if !errors.Is(err, ErrLocked) {
			return Version{}, fmt.Errorf("session: refresh: %w", err)
		}
		if time.Now().After(giveUp) {
			// The lock is held, again or still, and no usable token has
			// appeared: transient, so 503 and keep the cookie.
			return Version{}, fmt.Errorf("%w: refresh: timed out waiting for a concurrent refresh", ErrUnavailable)
		}
		// Someone else is refreshing: wait for their result.
		if err := sleep(ctx, jitter(pollInterval)); err != nil {
			return Version{}, fmt.Errorf("session: refresh: %w", err)
		}
		s, v, err := m.loadStored(ctx, t, t.storageKey())
		if err != nil {
			return Version{}, err
		}
		if !needs(s) {
			return v, nil
		}
		// Still needs renewal: try the lock again. It is free only once the
		// holder released it (or it expired) without writing a usable
		// token, and then we renew ourselves.
	}
}

// refreshLocked renews t's session while holding its refresh lock, which was
// acquired at the given time.
func (m *Manager) refreshLocked(ctx context.Context, t *Ticket, needs func(*Session) bool, renew func(context.Context, upstream.Token) (upstream.Token, error), acquired time.Time, unlock func(context.Context) error) (Version, error) {
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		_ = unlock(uctx) // on failure the lock simply expires
	}()
	// Re-read under the lock: the previous holder may have just written.
	s, v, err := m.loadStored(ctx, t, t.storageKey())
	if err != nil {
		return Version{}, err
	}
	if !needs(s) {
		return v, nil
	}
	// Leave a quarter of the lock period (≥1s with the minimum timeout) for
	// the write after renew, so the lock outlives the whole refresh.
	rctx, cancel := context.WithDeadline(ctx, acquired.Add(m.cfg.RefreshLockTimeout-m.cfg.RefreshLockTimeout/4))
	tok, err := renew(rctx, s.Token)
	cancel()
	if err != nil {
		return Version{}, fmt.Errorf("session: refresh: %w", err)
	}
	// Write while the lock is surely ours: once it lapses, another replica
	// could renew with the refresh token we just spent.
	wctx, cancel := context.WithDeadline(ctx, acquired.Add(m.cfg.RefreshLockTimeout-m.cfg.RefreshLockTimeout/16))
	defer cancel()
	var werr error
	for range writeTries {
		s.Token = tok
		nv, err := m.Replace(wctx, *t, s, v)
		if err == nil {
			return nv, nil
		}
		if !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFound) {
			return Version{}, fmt.Errorf("session: refresh: store new token: %w", err)
		}
		werr = err
		// A concurrent write (a Touch) won, or our copy's LastSeen went
		// stale while renew ran: re-apply the same token to the current
		// record, never renew again (the old refresh token is spent).
		if s, v, err = m.loadStored(wctx, t, t.storageKey()); err != nil {
			return Version{}, err
		}
	}
	return Version{}, fmt.Errorf("session: refresh: store new token: %w", werr)
}

// jitter returns d ±20%.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + rand.N(2*d/5+1)
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}
