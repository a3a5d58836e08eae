package session

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/authgate/authgate/upstream"
)

// Defaults applied by Config.SetDefaults.
const (
	DefaultStore              = "memory"
	DefaultKeyPrefix          = "authgate:"
	DefaultRedisTimeout       = 2 * time.Second
	DefaultCookieName         = "_authgate"
	DefaultIdleTimeout        = 30 * time.Minute
	DefaultMaxLifetime        = 12 * time.Hour
	DefaultRefreshLockTimeout = 20 * time.Second
	DefaultLoginTimeout       = 10 * time.Minute
	DefaultCacheTTL           = time.Second
	DefaultCacheEntries       = 1000
)

// minSecretBytes is the least entropy a cookie secret must carry.
const minSecretBytes = 32

// secretHint ends every complaint about a cookie secret.
const secretHint = "must be base64 of at least 32 random bytes (generate one with: openssl rand -base64 32)"

// Config is the "session" section of the gateway's configuration. A zero
// duration or empty string means the default named on the field.
type Config struct {
	// Store is "memory" (the default: one replica, sessions lost on restart)
	// or "redis" (shared by every replica).
	Store string `yaml:"store"`
	// Redis configures the Redis store; used only when Store is "redis".
	Redis RedisConfig `yaml:"redis"`
	// Cookie configures the session and login-binding cookies.
	Cookie CookieConfig `yaml:"cookie"`
	// IdleTimeout ends a session not used for this long. Default 30m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxLifetime ends a session this long after login however active it is;
	// it is also the session cookie's MaxAge. Default 12h.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// RefreshLockTimeout is how long one token refresh may hold the
	// per-session lock, and how long other requests wait for it. Default 20s;
	// at least 1s.
	RefreshLockTimeout time.Duration `yaml:"refresh_lock_timeout"`
	// LoginTimeout is the lifetime of a pending login: its state record and
	// the browser-binding cookie. Default 10m.
	LoginTimeout time.Duration `yaml:"login_timeout"`
	// Cache keeps recently used sessions decrypted in process.
	Cache CacheConfig `yaml:"cache"`
}

// CacheConfig configures the in-process session cache. With the Redis
// store, replicas drop their copies through a Redis pub/sub channel as soon
// as a session is signed out, refreshed or deleted anywhere, and a replica
// whose subscription is down does not use its cache.
type CacheConfig struct {
	// TTL is how long a cached session is used without reading the store:
	// it bounds what a lost invalidation (a failed publish, a record
	// deleted in Redis behind the gateway's back) could leave, so above 1s
	// such a session may outlive SECURITY.md 45's second. Default 1s, at
	// most 1m; negative turns the cache off.
	TTL time.Duration `yaml:"ttl"`
	// MaxEntries bounds the cache: each entry holds a session twice (the
	// decoded fields and the record, for the compare-and-swap), about
	// 6 KiB with typical JWTs. Default 1000.
	MaxEntries int `yaml:"max_entries"`
}

// CookieConfig configures the cookies the gateway sets.
type CookieConfig struct {
	// Name is the session cookie's base name (the proxy may add the
	// "__Host-" prefix). Default "_authgate".
	Name string `yaml:"name"`
	// Secret keys the cookies: base64 (standard or URL alphabet, padded or
	// not) of at least 32 random bytes. Required.
	Secret upstream.Secret `yaml:"secret"`
	// PreviousSecrets still decode cookies issued under them, for rotation:
	// put the old secret here and a new one in Secret.
	PreviousSecrets []upstream.Secret `yaml:"previous_secrets"`
	// Secure sets the Secure attribute. Default (nil) true; false only for
	// plain-http development.
	Secure *bool `yaml:"secure"`
	// Domain is the cookie's Domain attribute; empty means host-only (and the
	// "__Host-" prefix).
	Domain string `yaml:"domain"`
}

// SetDefaults fills every zero field with its default.
func (c *Config) SetDefaults() {
	if c.Store == "" {
		c.Store = DefaultStore
	}
	if c.Redis.KeyPrefix == "" {
		c.Redis.KeyPrefix = DefaultKeyPrefix
	}
	if c.Redis.Timeout == 0 {
		c.Redis.Timeout = DefaultRedisTimeout
	}
	if c.Cookie.Name == "" {
		c.Cookie.Name = DefaultCookieName
	}
	if c.Cookie.Secure == nil {
		secure := true
		c.Cookie.Secure = &secure
	}
	setDuration(&c.IdleTimeout, DefaultIdleTimeout)
	setDuration(&c.MaxLifetime, DefaultMaxLifetime)
	setDuration(&c.RefreshLockTimeout, DefaultRefreshLockTimeout)
	setDuration(&c.LoginTimeout, DefaultLoginTimeout)
	setDuration(&c.Cache.TTL, DefaultCacheTTL)
	if c.Cache.MaxEntries == 0 {
		c.Cache.MaxEntries = DefaultCacheEntries
	}
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// IsSecure reports whether cookies carry the Secure attribute (true unless
// Secure is explicitly false).
func (c CookieConfig) IsSecure() bool { return c.Secure == nil || *c.Secure }

// Validate reports every problem in c, each message starting with the key
// path relative to this section ("cookie.secret: ..."), joined with
// errors.Join. Zero values are accepted as "default". No message contains a
// secret.
func (c *Config) Validate() error {
	var errs []error
	switch c.Store {
	case "", "memory":
	case "redis":
		errs = append(errs, c.Redis.validate()...)
	default:
		errs = append(errs, fmt.Errorf("store: must be \"memory\" or \"redis\", got %q", c.Store))
	}
	errs = append(errs, c.Cookie.validate()...)
	errs = append(errs, c.validateDurations()...)
	return errors.Join(errs...)
}

// validateDurations checks the timeouts.
func (c *Config) validateDurations() []error {
	var errs []error
	for _, d := range []struct {
		key string
		val time.Duration
		min time.Duration
	}{
		{"idle_timeout", c.IdleTimeout, time.Second},
		{"max_lifetime", c.MaxLifetime, time.Second},
		{"refresh_lock_timeout", c.RefreshLockTimeout, time.Second},
		{"login_timeout", c.LoginTimeout, time.Second},
	} {
		if d.val != 0 && d.val < d.min {
			errs = append(errs, fmt.Errorf("%s: must be at least %s, got %s", d.key, d.min, d.val))
		}
	}
	if c.Cache.TTL > time.Minute {
		errs = append(errs, fmt.Errorf("cache.ttl: must be at most 1m (it bounds how long a lost invalidation keeps a signed-out session usable), got %s", c.Cache.TTL))
	}
	if c.Cache.MaxEntries < 0 || c.Cache.MaxEntries > 1_000_000 {
		errs = append(errs, fmt.Errorf("cache.max_entries: must be between 1 and 1000000, got %d", c.Cache.MaxEntries))
	}
	return errs
}

// validate checks the cookie settings.
func (c *CookieConfig) validate() []error {
	var errs []error
	if !isCookieName(c.Name) && c.Name != "" {
		errs = append(errs, fmt.Errorf("cookie.name: %q is not a valid cookie name (letters, digits and !#$%%&'*+-.^_`|~ only)", c.Name))
	}
	if strings.ContainsAny(c.Domain, " \t;,\"\\") {
		errs = append(errs, fmt.Errorf("cookie.domain: %q is not a valid domain", c.Domain))
	}
	if c.Secret.IsZero() {
		errs = append(errs, errors.New("cookie.secret: required; "+secretHint))
	} else if _, err := decodeSecret(c.Secret); err != nil {
		errs = append(errs, fmt.Errorf("cookie.secret: %w", err))
	}
	for i, s := range c.PreviousSecrets {
		if _, err := decodeSecret(s); err != nil {
			errs = append(errs, fmt.Errorf("cookie.previous_secrets[%d]: %w", i, err))
		}
	}
	return errs
}

// isCookieName reports whether name is an RFC 6265 token.
func isCookieName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0:
		default:
			return false
		}
	}
	return true
}

// decodeSecret decodes a cookie secret: base64 in the standard or URL
// alphabet, padded or not, surrounding white space ignored. Its errors never
// contain the secret or any part of it.
func decodeSecret(s upstream.Secret) ([]byte, error) {
	text := strings.TrimRight(strings.TrimSpace(s.Reveal()), "=")
	b, err := base64.RawStdEncoding.DecodeString(text)
	if err != nil {
		b, err = base64.RawURLEncoding.DecodeString(text)
	}
	if err != nil {
		return nil, errors.New("not base64; " + secretHint)
	}
	if len(b) < minSecretBytes {
		return nil, fmt.Errorf("decodes to %d bytes; %s", len(b), secretHint)
	}
	if distinctBytes(b) < 16 {
		// 32 random bytes show ~30 distinct values; fewer than 16 means a
		// repeated or hand-typed pattern, not randomness.
		return nil, errors.New("looks like a pattern, not random bytes; " + secretHint)
	}
	return b, nil
}

// distinctBytes counts the different byte values in b.
func distinctBytes(b []byte) int {
	var seen [256]bool
	n := 0
	for _, c := range b {
		if !seen[c] {
			seen[c] = true
			n++
		}
	}
	return n
}
