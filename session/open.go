package session

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/redis/go-redis/v9"
)

// OpenStore builds the store cfg names: a MemoryStore measuring expiry with
// now, or a RedisStore on a client built from cfg.Redis (each dial, read and
// write bounded by cfg.Redis.Timeout, one retry, context deadlines honoured,
// so a dead server costs at most about two timeouts per call).
// close releases the store's resources. It does not contact Redis: a server
// that is down at start-up shows up as ErrUnavailable (and in /readyz), and
// the gateway recovers when it returns.
func OpenStore(cfg Config, now func() time.Time) (Store, func() error, error) {
	cfg.SetDefaults()
	switch cfg.Store {
	case "memory":
		return NewMemoryStore(now, 0), func() error { return nil }, nil
	case "redis":
		if errs := cfg.Redis.validate(); len(errs) > 0 {
			return nil, nil, fmt.Errorf("session: %w", errors.Join(errs...))
		}
		opts, err := parseRedisURL(cfg.Redis.URL)
		if err != nil {
			return nil, nil, fmt.Errorf("session: redis.url: %w", err)
		}
		opts.DialTimeout = cfg.Redis.Timeout
		opts.ReadTimeout = cfg.Redis.Timeout
		opts.WriteTimeout = cfg.Redis.Timeout
		opts.ContextTimeoutEnabled = true
		opts.MaxRetries = 1
		// One dial attempt per try: go-redis's default of 5 would multiply a
		// dead server's latency (5 × DialTimeout × 2 tries) before the 503.
		opts.DialerRetries = 1
		if opts.PoolSize == 0 {
			opts.PoolSize = 10 * runtime.GOMAXPROCS(0)
		}
		c := redis.NewClient(opts)
		return NewRedisStore(c, cfg.Redis.KeyPrefix), c.Close, nil
	default:
		return nil, nil, fmt.Errorf("session: store: must be \"memory\" or \"redis\", got %q", cfg.Store)
	}
}
