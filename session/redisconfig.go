package session

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/authgate/authgate/upstream"
)

// RedisConfig locates Redis: one server (URL), a master found through
// Redis Sentinel (Sentinel) or a Redis Cluster (Cluster). Exactly one of
// the three is set when the store is redis. Whichever it is, every
// command goes to a master: the compare-and-swap and the refresh lock
// must read their own writes, which a replica may not have yet.
type RedisConfig struct {
	// URL is a single server: a redis://, rediss:// (TLS) or unix:// URL,
	// for example "redis://:password@127.0.0.1:6379/0", or
	// "rediss://authgate:password@redis.internal:6380/0" for an ACL user.
	// Empty when Sentinel or Cluster is set.
	URL string `yaml:"url"`
	// Sentinel finds the master through Redis Sentinel and follows its
	// failovers. Nil: not used.
	Sentinel *SentinelConfig `yaml:"sentinel"`
	// Cluster is a Redis Cluster. Nil: not used.
	Cluster *ClusterConfig `yaml:"cluster"`
	// TLS configures TLS to Redis (and to the sentinels).
	TLS RedisTLSConfig `yaml:"tls"`
	// KeyPrefix is prepended to every key the gateway writes, and to its
	// pub/sub channel. Default "authgate:". With cluster it must not
	// contain a hash tag ({...}), which would put every key on one node.
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds each dial, read and write. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
}

// SentinelConfig is a master monitored by Redis Sentinel.
type SentinelConfig struct {
	// MasterName is the name the sentinels monitor the master under (the
	// <name> of their "sentinel monitor <name> ..."). Required.
	MasterName string `yaml:"master_name"`
	// Addrs are host:port addresses of sentinels; at least one, and the
	// client learns the others from it. Three or more for a quorum.
	Addrs []string `yaml:"addrs"`
	// Username is the ACL user on the master and replicas. Empty: the
	// default user (password alone, as with requirepass).
	Username string `yaml:"username"`
	// Password authenticates to the master and replicas. Empty: none.
	Password upstream.Secret `yaml:"password"`
	// SentinelUsername is the ACL user on the sentinels. Empty: the
	// default user.
	SentinelUsername string `yaml:"sentinel_username"`
	// SentinelPassword authenticates to the sentinels (their own
	// requirepass, or the password of SentinelUsername). Empty: none.
	SentinelPassword upstream.Secret `yaml:"sentinel_password"`
}

// ClusterConfig is a Redis Cluster.
type ClusterConfig struct {
	// Addrs are host:port addresses of cluster nodes, at least one: the
	// client learns the others and the slots from them.
	Addrs []string `yaml:"addrs"`
	// Username is the ACL user on every node. Empty: the default user.
	Username string `yaml:"username"`
	// Password authenticates to every node. Empty: none.
	Password upstream.Secret `yaml:"password"`
}

// RedisTLSConfig configures TLS to Redis.
type RedisTLSConfig struct {
	// Enabled turns TLS on for sentinel and cluster (the sentinels and
	// every node alike). Default false. With url, the scheme decides:
	// rediss:// is TLS.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM file of the CA certificates that sign the servers'
	// certificates, trusted instead of the system's roots. Empty: the
	// system's roots.
	CAFile string `yaml:"ca_file"`
}

// validate checks the Redis settings of a redis store; every message
// starts with its key path under the session section ("redis.url: ...").
// It reads tls.ca_file.
func (r *RedisConfig) validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("redis."+key+": "+format, args...))
	}
	if r.Timeout < 0 {
		bad("timeout", "must not be negative, got %s", r.Timeout)
	}
	var forms []string
	if r.URL != "" {
		forms = append(forms, "url")
	}
	if r.Sentinel != nil {
		forms = append(forms, "sentinel")
	}
	if r.Cluster != nil {
		forms = append(forms, "cluster")
	}
	switch len(forms) {
	case 0:
		bad("url", `required when store is "redis" (for example redis://127.0.0.1:6379/0), or sentinel or cluster instead`)
	case 1:
	default:
		for _, f := range forms[1:] {
			bad(f, "set together with %s: give exactly one of url, sentinel and cluster", forms[0])
		}
	}
	if r.URL != "" {
		if _, err := parseRedisURL(r.URL); err != nil {
			bad("url", "%w", err)
		}
	}
	if s := r.Sentinel; s != nil {
		if s.MasterName == "" {
			bad("sentinel.master_name", "required: the name the sentinels monitor the master under")
		}
		errs = append(errs, checkAddrs("redis.sentinel.addrs", s.Addrs, "the sentinels, for example [\"10.0.0.1:26379\"]")...)
		if s.Username != "" && s.Password.IsZero() {
			bad("sentinel.username", "set without sentinel.password (an ACL user authenticates with both)")
		}
		if s.SentinelUsername != "" && s.SentinelPassword.IsZero() {
			bad("sentinel.sentinel_username", "set without sentinel.sentinel_password (an ACL user authenticates with both)")
		}
	}
	if c := r.Cluster; c != nil {
		errs = append(errs, checkAddrs("redis.cluster.addrs", c.Addrs, "cluster nodes, for example [\"10.0.0.1:6379\"]")...)
		if c.Username != "" && c.Password.IsZero() {
			bad("cluster.username", "set without cluster.password (an ACL user authenticates with both)")
		}
		if strings.ContainsAny(r.KeyPrefix, "{}") {
			bad("key_prefix", "must not contain { or } with cluster: a hash tag in the prefix would put every key in one slot, on one node")
		}
	}
	if r.TLS.Enabled && r.URL != "" {
		bad("tls.enabled", "with url, TLS is chosen by the scheme: use a rediss:// url")
	}
	if r.TLS.CAFile != "" {
		if !r.usesTLS() && !r.TLS.Enabled {
			bad("tls.ca_file", "set, but TLS is off (a rediss:// url, or tls.enabled with sentinel or cluster, turns it on)")
		} else if _, err := r.TLS.roots(); err != nil {
			bad("tls.ca_file", "%w", err)
		}
	}
	return errs
}

// usesTLS reports whether connections to Redis use TLS.
func (r *RedisConfig) usesTLS() bool {
	if r.URL != "" {
		return strings.HasPrefix(r.URL, "rediss:")
	}
	return r.TLS.Enabled
}

// checkAddrs checks a list of host:port addresses under key.
func checkAddrs(key string, addrs []string, example string) []error {
	if len(addrs) == 0 {
		return []error{fmt.Errorf("%s: at least one host:port (%s)", key, example)}
	}
	var errs []error
	seen := map[string]int{}
	for i, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		n, perr := strconv.Atoi(port)
		switch {
		case err != nil || host == "" || perr != nil || n < 1 || n > 65535:
			errs = append(errs, fmt.Errorf("%s[%d]: %q is not a host:port", key, i, a))
		case seen[a] > 0:
			errs = append(errs, fmt.Errorf("%s[%d]: %q is listed twice (also at [%d])", key, i, a, seen[a]-1))
		default:
			seen[a] = i + 1
		}
	}
	return errs
}

// roots reads CAFile; nil when it is empty.
func (t RedisTLSConfig) roots() (*x509.CertPool, error) {
	if t.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read it: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", t.CAFile)
	}
	return pool, nil
}

// tlsConfig is the TLS configuration of sentinel and cluster
// connections: nil when TLS is off. The server name is each node's
// address, as dialled.
func (r *RedisConfig) tlsConfig() (*tls.Config, error) {
	if !r.TLS.Enabled {
		return nil, nil
	}
	roots, err := r.TLS.roots()
	if err != nil {
		return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
}

// parseRedisURL parses a Redis URL. Its errors never quote the URL, which may
// carry a password.
func parseRedisURL(raw string) (*redis.Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
	default:
		return nil, fmt.Errorf("scheme must be redis, rediss or unix, got %q", u.Scheme)
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		msg := err.Error()
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "[redacted]")
		}
		return nil, errors.New(msg)
	}
	return opts, nil
}
