package session

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/redis/go-redis/v9"
)

// OpenStore builds the store cfg names: a MemoryStore measuring expiry with
// now, or a RedisStore on a client built from cfg.Redis (see
// newRedisClient). close releases the store's resources. It does not
// contact Redis: a server that is down at start-up shows up as
// ErrUnavailable (and in /readyz), and the gateway recovers when it
// returns.
func OpenStore(cfg Config, now func() time.Time) (Store, func() error, error) {
	cfg.SetDefaults()
	switch cfg.Store {
	case "memory":
		return NewMemoryStore(now, 0), func() error { return nil }, nil
	case "redis":
		if errs := cfg.Redis.validate(); len(errs) > 0 {
			return nil, nil, fmt.Errorf("session: %w", errors.Join(errs...))
		}
		c, err := newRedisClient(cfg.Redis)
		if err != nil {
			return nil, nil, fmt.Errorf("session: %w", err)
		}
		return NewRedisStore(c, cfg.Redis.KeyPrefix), c.Close, nil
	default:
		return nil, nil, fmt.Errorf("session: store: must be \"memory\" or \"redis\", got %q", cfg.Store)
	}
}

// newRedisClient builds the client r describes: redis.NewClient for a URL,
// redis.NewFailoverClient for Sentinel, redis.NewClusterClient for Cluster.
// Each gets the same bounds, so a dead server costs at most about two
// timeouts per call before the 503: every dial, read and write within
// r.Timeout, context deadlines honoured, two tries per command (one retry)
// of one dial attempt each (go-redis's default of 5 would multiply a dead
// server's latency: 5 × DialTimeout × 2 tries), and a pool of 10
// connections per CPU per server.
//
// No read goes to a replica (no ReplicaOnly, ReadOnly, RouteByLatency or
// RouteRandomly): replication is asynchronous, and the refresh lock, the
// compare-and-swap and a login's state must see the write just made.
func newRedisClient(r RedisConfig) (redis.UniversalClient, error) {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = DefaultRedisTimeout
	}
	pool := 10 * runtime.GOMAXPROCS(0)
	tlsConfig, err := r.tlsConfig()
	if err != nil {
		return nil, err
	}
	switch {
	case r.Sentinel != nil:
		s := r.Sentinel
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       s.MasterName,
			SentinelAddrs:    s.Addrs,
			Username:         s.Username,
			Password:         s.Password.Reveal(),
			SentinelUsername: s.SentinelUsername,
			SentinelPassword: s.SentinelPassword.Reveal(),
			TLSConfig:        tlsConfig,
			// The sentinels are asked for the master at every dial, so
			// the retry after a failover's broken connection reaches
			// the new master.
			DialTimeout:           timeout,
			ReadTimeout:           timeout,
			WriteTimeout:          timeout,
			ContextTimeoutEnabled: true,
			MaxRetries:            1,
			DialerRetries:         1,
			PoolSize:              pool,
		}), nil
	case r.Cluster != nil:
		c := r.Cluster
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:     c.Addrs,
			Username:  c.Username,
			Password:  c.Password.Reveal(),
			TLSConfig: tlsConfig,
			// The cluster client retries itself, a MOVED or ASK
			// redirect being one of its tries: two tries in all, and
			// none more by the node clients underneath.
			MaxRedirects:          1,
			MaxRetries:            -1,
			DialTimeout:           timeout,
			ReadTimeout:           timeout,
			WriteTimeout:          timeout,
			ContextTimeoutEnabled: true,
			DialerRetries:         1,
			PoolSize:              pool,
		}), nil
	default:
		opts, err := parseRedisURL(r.URL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		if opts.TLSConfig != nil {
			if opts.TLSConfig.RootCAs, err = r.TLS.roots(); err != nil {
				return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
			}
		}
		opts.DialTimeout = timeout
		opts.ReadTimeout = timeout
		opts.WriteTimeout = timeout
		opts.ContextTimeoutEnabled = true
		opts.MaxRetries = 1
		opts.DialerRetries = 1
		if opts.PoolSize == 0 {
			opts.PoolSize = pool
		}
		return redis.NewClient(opts), nil
	}
}
