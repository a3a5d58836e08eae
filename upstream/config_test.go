package upstream_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream"
)

func TestConfigSetDefaults(t *testing.T) {
	var cfg upstream.Config
	cfg.Issuer = "https://idp.example.com/"
	cfg.SetDefaults()

	// No secret: a public client. With one: client_secret_basic.
	if got, want := cfg.ClientAuth, upstream.ClientAuthNone; got != want {
		t.Errorf("ClientAuth without client_secret: got %q, want %q", got, want)
	}
	withSecret := upstream.Config{ClientSecret: "s"}
	withSecret.SetDefaults()
	if got, want := withSecret.ClientAuth, upstream.ClientSecretBasic; got != want {
		t.Errorf("ClientAuth with client_secret: got %q, want %q", got, want)
	}
	if got, want := cfg.Scopes, []string{"openid", "email", "profile"}; !slices.Equal(got, want) {
		t.Errorf("Scopes: got %q, want %q", got, want)
	}
	wantAlgs := []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
	if got := cfg.IDTokenAlgorithms; !slices.Equal(got, wantAlgs) {
		t.Errorf("IDTokenAlgorithms: got %q, want %q", got, wantAlgs)
	}
	for _, alg := range cfg.IDTokenAlgorithms {
		if alg == "none" || strings.HasPrefix(alg, "HS") {
			t.Errorf("IDTokenAlgorithms: default contains %q", alg)
		}
	}
	if got, want := cfg.Timeout, 10*time.Second; got != want {
		t.Errorf("Timeout: got %v, want %v", got, want)
	}
	if got, want := cfg.ClockSkew, 30*time.Second; got != want {
		t.Errorf("ClockSkew: got %v, want %v", got, want)
	}
	if got, want := cfg.Issuer, "https://idp.example.com/"; got != want {
		t.Errorf("Issuer: got %q, want %q (kept as written: iss is compared exactly)", got, want)
	}

	// Explicit values survive, and the default slice is not shared.
	set := upstream.Config{ClientAuth: upstream.ClientSecretPost, Scopes: []string{"email"}, IDTokenAlgorithms: []string{"ES256"}, Timeout: time.Second, ClockSkew: time.Minute}
	set.SetDefaults()
	if set.ClientAuth != upstream.ClientSecretPost || !slices.Equal(set.Scopes, []string{"email"}) ||
		!slices.Equal(set.IDTokenAlgorithms, []string{"ES256"}) || set.Timeout != time.Second || set.ClockSkew != time.Minute {
		t.Errorf("SetDefaults overwrote explicit values: got %+v", set)
	}
	cfg.IDTokenAlgorithms[0] = "changed"
	var again upstream.Config
	again.SetDefaults()
	if again.IDTokenAlgorithms[0] != "RS256" {
		t.Errorf("SetDefaults shares its default algorithm slice: got %q, want RS256", again.IDTokenAlgorithms[0])
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() upstream.Config {
		return upstream.Config{Issuer: "https://idp.example.com", ClientID: "gw", ClientSecret: "s"}
	}
	tests := []struct {
		name    string
		edit    func(*upstream.Config)
		wantKey string // "" means valid
	}{
		{"valid", func(*upstream.Config) {}, ""},
		{"loopback http issuer", func(c *upstream.Config) { c.Issuer = "http://127.0.0.1:9000" }, ""},
		{"localhost http issuer", func(c *upstream.Config) { c.Issuer = "http://localhost:9000" }, ""},
		{"ipv6 loopback http issuer", func(c *upstream.Config) { c.Issuer = "http://[::1]:9000" }, ""},
		{"http allowed when insecure", func(c *upstream.Config) {
			c.Issuer = "http://idp.internal"
			c.AllowInsecureHTTP = true
		}, ""},
		{"explicit endpoints without issuer, no openid", func(c *upstream.Config) {
			c.Issuer = ""
			c.Scopes = []string{"profile"}
			c.AuthorizationEndpoint = "https://idp.example.com/authorize"
			c.TokenEndpoint = "https://idp.example.com/token"
		}, ""},
		{"missing client_id", func(c *upstream.Config) { c.ClientID = "" }, "client_id"},
		{"no issuer and no endpoints", func(c *upstream.Config) {
			c.Issuer = ""
			c.Scopes = []string{"profile"}
		}, "issuer"},
		{"no issuer and only the authorization endpoint", func(c *upstream.Config) {
			c.Issuer = ""
			c.Scopes = []string{"profile"}
			c.AuthorizationEndpoint = "https://idp.example.com/authorize"
		}, "issuer"},
		{"openid without issuer", func(c *upstream.Config) {
			c.Issuer = ""
			c.AuthorizationEndpoint = "https://idp.example.com/authorize"
			c.TokenEndpoint = "https://idp.example.com/token"
		}, "issuer"},
		{"http non-loopback issuer", func(c *upstream.Config) { c.Issuer = "http://idp.example.com" }, "issuer"},
		{"http non-loopback token endpoint", func(c *upstream.Config) { c.TokenEndpoint = "http://idp.example.com/token" }, "token_endpoint"},
		{"http non-loopback authorization endpoint", func(c *upstream.Config) {
			c.AuthorizationEndpoint = "http://idp.example.com/authorize"
		}, "authorization_endpoint"},
		{"http non-loopback jwks_uri", func(c *upstream.Config) { c.JWKSURI = "http://idp.example.com/jwks" }, "jwks_uri"},
		{"http non-loopback userinfo", func(c *upstream.Config) { c.UserinfoEndpoint = "http://idp.example.com/me" }, "userinfo_endpoint"},
		{"http non-loopback end_session", func(c *upstream.Config) { c.EndSessionEndpoint = "http://idp.example.com/out" }, "end_session_endpoint"},
		{"http non-loopback revocation", func(c *upstream.Config) { c.RevocationEndpoint = "http://idp.example.com/rev" }, "revocation_endpoint"},
		{"loopback look-alike host", func(c *upstream.Config) { c.Issuer = "http://127.0.0.1.evil.com" }, "issuer"},
		{"relative issuer", func(c *upstream.Config) { c.Issuer = "/idp" }, "issuer"},
		{"issuer with user info", func(c *upstream.Config) { c.Issuer = "https://user:pw@idp.example.com" }, "issuer"},
		{"issuer with fragment", func(c *upstream.Config) { c.Issuer = "https://idp.example.com#x" }, "issuer"},
		{"javascript token endpoint", func(c *upstream.Config) { c.TokenEndpoint = "javascript:alert(1)" }, "token_endpoint"},
		{"bad client_auth", func(c *upstream.Config) { c.ClientAuth = "client_secret_jwt" }, "client_auth"},
		{"alg none", func(c *upstream.Config) { c.IDTokenAlgorithms = []string{"none"} }, "id_token_algorithms"},
		{"alg HS256", func(c *upstream.Config) { c.IDTokenAlgorithms = []string{"RS256", "HS256"} }, "id_token_algorithms"},
		{"alg lowercase rs256", func(c *upstream.Config) { c.IDTokenAlgorithms = []string{"rs256"} }, "id_token_algorithms"},
		{"negative timeout", func(c *upstream.Config) { c.Timeout = -time.Second }, "timeout"},
		{"negative clock_skew", func(c *upstream.Config) { c.ClockSkew = -time.Second }, "clock_skew"},
		{"clock_skew above 5m", func(c *upstream.Config) { c.ClockSkew = 5*time.Minute + time.Second }, "clock_skew"},
		{"authorization_params", func(c *upstream.Config) {
			c.AuthorizationParams = map[string]string{"prompt": "consent", "access_type": "offline", "audience": "api"}
		}, ""},
		{"claim paths", func(c *upstream.Config) {
			c.Claims = upstream.ClaimMapping{User: "email", Groups: "realm_access.roles", Email: "https://example.com/email"}
		}, ""},
		{"claim path with an empty segment", func(c *upstream.Config) { c.Claims.Groups = "realm_access..roles" }, "claims.groups"},
		{"claim path ending in a dot", func(c *upstream.Config) { c.Claims.User = "profile." }, "claims.user"},
	}
	// The parameters the gateway sets itself are refused, in any case.
	for _, p := range []string{"state", "nonce", "code_challenge", "code_challenge_method", "redirect_uri", "response_type", "client_id", "scope", "response_mode"} {
		tests = append(tests, struct {
			name    string
			edit    func(*upstream.Config)
			wantKey string
		}{"reserved authorization param " + p, func(c *upstream.Config) {
			c.AuthorizationParams = map[string]string{"prompt": "consent", p: "x"}
		}, "authorization_params." + p})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.edit(&cfg)
			cfg.SetDefaults()
			err := cfg.Validate()
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				if _, err := upstream.New(cfg, upstream.Deps{HTTPClient: noNetwork(t)}); err != nil {
					t.Errorf("New: got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: got nil, want an error for %s", tt.wantKey)
			}
			found := false
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !startsWithKey(line) {
					t.Errorf("error line %q does not start with a configuration key", line)
				}
				if strings.HasPrefix(line, tt.wantKey) {
					found = true
				}
			}
			if !found {
				t.Errorf("Validate: got %q, want a line starting with %q", err, tt.wantKey)
			}
			// New validates too, and refuses the same configuration.
			if _, err := upstream.New(cfg, upstream.Deps{HTTPClient: noNetwork(t)}); err == nil {
				t.Errorf("New: got nil error, want one for %s", tt.wantKey)
			}
		})
	}
}

// startsWithKey reports whether an error line is "key: ..." or
// "key[i]: ..." with a snake_case key.
func startsWithKey(line string) bool {
	key, _, ok := strings.Cut(line, ": ")
	if !ok || key == "" {
		return false
	}
	key, _, _ = strings.Cut(key, "[")
	for _, r := range key {
		if (r < 'a' || r > 'z') && r != '_' && r != '.' {
			return false
		}
	}
	return true
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	cfg := upstream.Config{ClientAuth: "bogus", IDTokenAlgorithms: []string{"none"}, ClockSkew: time.Hour}
	cfg.SetDefaults()
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate: got nil, want errors")
	}
	for _, key := range []string{"issuer", "client_id", "client_auth", "id_token_algorithms[0]", "clock_skew"} {
		if !strings.Contains(err.Error(), "\n"+key+": ") && !strings.HasPrefix(err.Error(), key+": ") {
			t.Errorf("Validate: got %q, want a line for %s", err, key)
		}
	}
}
