package session

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/authgate/authgate/upstream"
)

func TestConfigValidate(t *testing.T) {
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(i*37 + 11) // 32 distinct bytes
	}
	std := base64.StdEncoding.EncodeToString(raw)
	url := base64.RawURLEncoding.EncodeToString(append(raw, 0xfb, 0xff, 0xfe)) // uses - and _
	short := base64.StdEncoding.EncodeToString(raw[:16])
	pattern := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("ab"), 20))
	const notB64 = "this is not base64 at all!!! but it is long enough"
	caFile := writeCAFile(t)
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		mutate  func(c *Config)
		wantErr []string // substrings, each the start of one joined error line
	}{
		{"valid std padded", func(c *Config) {}, nil},
		{"valid url unpadded", func(c *Config) { c.Cookie.Secret = upstream.Secret(url) }, nil},
		{"valid with newline", func(c *Config) { c.Cookie.Secret = upstream.Secret(std + "\n") }, nil},
		{"valid redis", func(c *Config) { c.Store = "redis"; c.Redis.URL = "rediss://:pw@redis.internal:6380/2" }, nil},
		{"valid unset store", func(c *Config) { c.Store = "" }, nil},
		{"missing secret", func(c *Config) { c.Cookie.Secret = "" },
			[]string{"cookie.secret: required; must be base64 of at least 32 random bytes (generate one with: openssl rand -base64 32)"}},
		{"short secret", func(c *Config) { c.Cookie.Secret = upstream.Secret(short) },
			[]string{"cookie.secret: decodes to 16 bytes; must be base64 of at least 32 random bytes"}},
		{"non-base64 secret", func(c *Config) { c.Cookie.Secret = notB64 },
			[]string{"cookie.secret: not base64; must be base64"}},
		{"patterned secret", func(c *Config) { c.Cookie.Secret = upstream.Secret(pattern) },
			[]string{"cookie.secret: looks like a pattern"}},
		{"bad previous secret", func(c *Config) {
			c.Cookie.PreviousSecrets = []upstream.Secret{upstream.Secret(std), upstream.Secret(short)}
		},
			[]string{"cookie.previous_secrets[1]: decodes to 16 bytes"}},
		{"bad store", func(c *Config) { c.Store = "mongo" },
			[]string{`store: must be "memory" or "redis", got "mongo"`}},
		{"redis without url", func(c *Config) { c.Store = "redis" },
			[]string{`redis.url: required when store is "redis"`}},
		{"redis bad scheme", func(c *Config) { c.Store = "redis"; c.Redis.URL = "http://u:hunter2@host/" },
			[]string{`redis.url: scheme must be redis, rediss or unix, got "http"`}},
		{"redis bad db", func(c *Config) { c.Store = "redis"; c.Redis.URL = "redis://:hunter2@host/notanumber" },
			[]string{`redis.url: redis: invalid database number`}},
		{"redis unparsable", func(c *Config) { c.Store = "redis"; c.Redis.URL = "redis://:hunter2@host:port:x/\x7f" },
			[]string{`redis.url: not a valid URL`}},
		{"valid sentinel", func(c *Config) {
			c.Store = "redis"
			c.Redis.Sentinel = &SentinelConfig{MasterName: "mymaster", Addrs: []string{"10.0.0.1:26379", "[::1]:26379"},
				Username: "authgate", Password: "hunter2", SentinelPassword: "hunter2"}
		}, nil},
		{"valid cluster with TLS", func(c *Config) {
			c.Store = "redis"
			c.Redis.Cluster = &ClusterConfig{Addrs: []string{"redis-0.redis:6379"}, Username: "authgate", Password: "hunter2"}
			c.Redis.TLS = RedisTLSConfig{Enabled: true, CAFile: caFile}
		}, nil},
		{"valid rediss with a CA", func(c *Config) { c.Store = "redis"; c.Redis.URL = "rediss://h:6380"; c.Redis.TLS.CAFile = caFile }, nil},
		{"memory store ignores redis", func(c *Config) { c.Redis.URL = "redis://h"; c.Redis.Cluster = &ClusterConfig{} }, nil},
		{"url and cluster", func(c *Config) {
			c.Store = "redis"
			c.Redis.URL = "redis://h"
			c.Redis.Cluster = &ClusterConfig{Addrs: []string{"h:6379"}}
		}, []string{"redis.cluster: set together with url: give exactly one of url, sentinel and cluster"}},
		{"all three", func(c *Config) {
			c.Store = "redis"
			c.Redis.URL = "redis://h"
			c.Redis.Sentinel = &SentinelConfig{MasterName: "m", Addrs: []string{"h:26379"}}
			c.Redis.Cluster = &ClusterConfig{Addrs: []string{"h:6379"}}
		}, []string{"redis.sentinel: set together with url", "redis.cluster: set together with url"}},
		{"empty sentinel", func(c *Config) { c.Store = "redis"; c.Redis.Sentinel = &SentinelConfig{} },
			[]string{"redis.sentinel.master_name: required", "redis.sentinel.addrs: at least one host:port"}},
		{"bad sentinel addrs", func(c *Config) {
			c.Store = "redis"
			c.Redis.Sentinel = &SentinelConfig{MasterName: "m", Addrs: []string{"h:26379", "10.0.0.2", ":26379", "h:0", "h:x", "h:26379"}}
		}, []string{`redis.sentinel.addrs[1]: "10.0.0.2" is not a host:port`, `redis.sentinel.addrs[2]: ":26379" is not a host:port`,
			`redis.sentinel.addrs[3]: "h:0" is not a host:port`, `redis.sentinel.addrs[4]: "h:x" is not a host:port`,
			`redis.sentinel.addrs[5]: "h:26379" is listed twice (also at [0])`}},
		{"ACL users without passwords", func(c *Config) {
			c.Store = "redis"
			c.Redis.Sentinel = &SentinelConfig{MasterName: "m", Addrs: []string{"h:26379"}, Username: "u", SentinelUsername: "s"}
		}, []string{"redis.sentinel.username: set without sentinel.password", "redis.sentinel.sentinel_username: set without sentinel.sentinel_password"}},
		{"empty cluster", func(c *Config) { c.Store = "redis"; c.Redis.Cluster = &ClusterConfig{Username: "u"} },
			[]string{"redis.cluster.addrs: at least one host:port", "redis.cluster.username: set without cluster.password"}},
		{"cluster key prefix with a hash tag", func(c *Config) {
			c.Store = "redis"
			c.Redis.Cluster = &ClusterConfig{Addrs: []string{"h:6379"}}
			c.Redis.KeyPrefix = "{authgate}:"
		}, []string{"redis.key_prefix: must not contain { or } with cluster"}},
		{"tls.enabled with url", func(c *Config) { c.Store = "redis"; c.Redis.URL = "redis://h"; c.Redis.TLS.Enabled = true },
			[]string{"redis.tls.enabled: with url, TLS is chosen by the scheme: use a rediss:// url"}},
		{"ca_file without TLS", func(c *Config) {
			c.Store = "redis"
			c.Redis.Cluster = &ClusterConfig{Addrs: []string{"h:6379"}}
			c.Redis.TLS.CAFile = caFile
		}, []string{"redis.tls.ca_file: set, but TLS is off"}},
		{"ca_file missing", func(c *Config) {
			c.Store = "redis"
			c.Redis.URL = "rediss://h"
			c.Redis.TLS.CAFile = "/nonexistent/ca.pem"
		},
			[]string{"redis.tls.ca_file: cannot read it: open /nonexistent/ca.pem"}},
		{"ca_file not PEM", func(c *Config) { c.Store = "redis"; c.Redis.URL = "rediss://h"; c.Redis.TLS.CAFile = notPEM },
			[]string{"redis.tls.ca_file: " + notPEM + " holds no PEM certificate"}},
		{"bad cookie name", func(c *Config) { c.Cookie.Name = "my cookie;" },
			[]string{`cookie.name: "my cookie;" is not a valid cookie name`}},
		{"too short timeouts", func(c *Config) { c.IdleTimeout = -time.Minute; c.RefreshLockTimeout = time.Millisecond },
			[]string{"idle_timeout: must be at least 1s, got -1m0s", "refresh_lock_timeout: must be at least 1s, got 1ms"}},
		{"several at once", func(c *Config) { c.Store = "mongo"; c.Cookie.Secret = upstream.Secret(short) },
			[]string{`store: must be`, "cookie.secret: decodes to 16 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Cookie: CookieConfig{Secret: upstream.Secret(std)}}
			tt.mutate(&c)
			err := c.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: got nil, want %q", tt.wantErr)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.wantErr) {
				t.Fatalf("Validate: got %d errors %q, want %d", len(lines), lines, len(tt.wantErr))
			}
			for i, want := range tt.wantErr {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("error %d: got %q, want prefix %q", i, lines[i], want)
				}
			}
			// No message may quote a secret: the cookie secrets or a
			// password inside the Redis URL.
			for _, secret := range []string{std, url, short, pattern, notB64, "hunter2", std[:12], short[:12]} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains secret material %q", err, secret)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.SetDefaults()
	if c.Store != "memory" || c.Redis.KeyPrefix != "authgate:" || c.Redis.Timeout != 2*time.Second ||
		c.Cookie.Name != "_authgate" || !c.Cookie.IsSecure() || c.IdleTimeout != 30*time.Minute ||
		c.MaxLifetime != 12*time.Hour || c.RefreshLockTimeout != 20*time.Second || c.LoginTimeout != 10*time.Minute {
		t.Fatalf("SetDefaults: got %+v", c)
	}
	off := false
	c = Config{Cookie: CookieConfig{Secure: &off}, IdleTimeout: time.Minute}
	c.SetDefaults()
	if c.Cookie.IsSecure() || c.IdleTimeout != time.Minute {
		t.Fatalf("SetDefaults overrode explicit values: secure %v, idle %s", c.Cookie.IsSecure(), c.IdleTimeout)
	}
	if !(CookieConfig{}).IsSecure() {
		t.Fatal("IsSecure of an unset Secure: got false, want true")
	}
}

func TestConfigYAML(t *testing.T) {
	const doc = `
store: redis
redis: { url: "redis://127.0.0.1:6379/0", key_prefix: "ag:", timeout: 500ms }
cookie:
  name: sess
  secret: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
  previous_secrets: ["b2xk"]
  secure: false
  domain: example.com
idle_timeout: 15m
max_lifetime: 8h
refresh_lock_timeout: 10s
login_timeout: 5m
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if c.Store != "redis" || c.Redis.Timeout != 500*time.Millisecond || c.Redis.KeyPrefix != "ag:" ||
		c.Cookie.Name != "sess" || c.Cookie.Secret.Reveal() != "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==" ||
		len(c.Cookie.PreviousSecrets) != 1 || c.Cookie.IsSecure() || c.Cookie.Domain != "example.com" ||
		c.IdleTimeout != 15*time.Minute || c.MaxLifetime != 8*time.Hour ||
		c.RefreshLockTimeout != 10*time.Second || c.LoginTimeout != 5*time.Minute {
		t.Fatalf("decoded: got %+v", c)
	}
}

func TestOpenStore(t *testing.T) {
	cfg := Config{}
	s, closeFn, err := OpenStore(cfg, nil)
	if err != nil {
		t.Fatalf("OpenStore(memory): %v", err)
	}
	if _, ok := s.(*MemoryStore); !ok {
		t.Fatalf("OpenStore(default): got %T, want *MemoryStore", s)
	}
	_ = closeFn()

	_, srv := redisStore(t)
	rs, closeFn, err := OpenStore(Config{Store: "redis", Redis: RedisConfig{URL: srv.URL}}, nil)
	if err != nil {
		t.Fatalf("OpenStore(redis): %v", err)
	}
	defer closeFn()
	if err := rs.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if _, _, err := OpenStore(Config{Store: "redis"}, nil); err == nil || !strings.HasPrefix(err.Error(), "session: redis.url:") {
		t.Fatalf("OpenStore(redis without url): got %v, want a redis.url error", err)
	}
}

func TestConfigPrintsNoSecret(t *testing.T) {
	c := Config{Cookie: CookieConfig{Secret: "SECRET-CANARY", PreviousSecrets: []upstream.Secret{"OLD-CANARY"}}}
	c.Store = "redis"
	c.Redis.Sentinel = &SentinelConfig{Password: "REDIS-CANARY", SentinelPassword: "SENTINEL-CANARY"}
	c.Redis.Cluster = &ClusterConfig{Password: "CLUSTER-CANARY"}
	for _, out := range []string{fmt.Sprintf("%v %+v %#v", c, c, c), fmt.Sprintf("%+v %+v", *c.Redis.Sentinel, *c.Redis.Cluster), fmt.Sprint(c.Validate())} {
		if strings.Contains(out, "CANARY") {
			t.Fatalf("printed config: got %s, want secrets redacted", out)
		}
	}
}

// writeCAFile writes a self-signed CA certificate as PEM and returns its
// path.
func writeCAFile(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
