package session

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrNotFound means there is no usable record: it is absent, expired or
	// cannot be decrypted with the key presented.
	ErrNotFound = errors.New("session: not found")
	// ErrLocked means Store.Lock found the lock held by someone else.
	ErrLocked = errors.New("session: locked")
	// ErrUnavailable wraps every failure of the store's backend (Redis down,
	// timeout, memory store full). The gateway answers 503 and keeps the
	// cookie; it must never be mistaken for ErrNotFound.
	ErrUnavailable = errors.New("session store unavailable")
	// ErrConflict means the record changed since it was read (Manager.Replace).
	ErrConflict = errors.New("session: changed concurrently")
	// ErrInvalidCookie means a cookie value failed to decode: tampered,
	// expired, encoded under an unknown key or for another cookie name.
	ErrInvalidCookie = errors.New("session: invalid cookie")
	// ErrLoginEnded means Manager.Create refused a session of a login
	// session the server has already ended (a logout that named its sid
	// came before the login completed).
	ErrLoginEnded = errors.New("session: the server ended this login session")
)

// Store is a key-value store with expiry, the persistence behind a Manager.
// Keys and values are opaque to it; the Manager stores only ciphertext under
// hashed keys. Every ttl must be positive: a record that never expires is
// refused. Backend failures are reported wrapped in ErrUnavailable.
type Store interface {
	// Get returns the value under key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key for ttl, replacing any previous value.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// CompareAndSwap replaces the value under key with new (expiring after
	// ttl) only if it currently equals old. It reports false, without error,
	// when the value changed or is gone.
	CompareAndSwap(ctx context.Context, key string, old, new []byte, ttl time.Duration) (bool, error)
	// Take atomically reads and deletes the value under key, so that exactly
	// one of several concurrent callers gets it; the others get ErrNotFound.
	Take(ctx context.Context, key string) ([]byte, error)
	// Delete removes key; an absent key is not an error.
	Delete(ctx context.Context, key string) error
	// Lock takes the lock named key for at most ttl, or returns ErrLocked if
	// someone holds it. unlock releases it only if it is still ours: once the
	// lock has expired and been taken by another owner, unlock leaves it alone.
	Lock(ctx context.Context, key string, ttl time.Duration) (unlock func(context.Context) error, err error)
	// Incr adds one to the counter named key and returns the new count and
	// how long the counter still lives. A counter is created by its first
	// increment and lives window from then (a fixed window; later
	// increments do not extend it). It shares the key space with values.
	Incr(ctx context.Context, key string, window time.Duration) (n int64, left time.Duration, err error)
	// Count returns the counter named key and how long it still lives;
	// 0 and 0 when there is none.
	Count(ctx context.Context, key string) (n int64, left time.Duration, err error)
	// Ping reports whether the backend answers.
	Ping(ctx context.Context) error
}

var (
	_ Store = (*RedisStore)(nil)
	_ Store = (*MemoryStore)(nil)
)

// errTTL is returned for a zero or negative ttl.
var errTTL = errors.New("session: store ttl must be positive")
