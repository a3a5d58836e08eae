package upstream

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Client authentication methods at the token endpoint (RFC 6749 §2.3.1,
// OpenID Connect Core §9).
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
)

// Config describes one authorization server and this gateway's registration
// with it. It is the `upstream:` section of the configuration file.
type Config struct {
	// Issuer is the authorization server's issuer identifier. When set, the
	// endpoints are discovered from /.well-known/openid-configuration (with
	// the RFC 8414 /.well-known/oauth-authorization-server as fallback) and
	// ID tokens must carry exactly this "iss" (a trailing "/" included, as
	// at Auth0). Required when Scopes contain "openid".
	Issuer string `yaml:"issuer"`
	// AuthorizationEndpoint overrides the discovered authorize URL. Required
	// when Issuer is empty.
	AuthorizationEndpoint string `yaml:"authorization_endpoint"`
	// TokenEndpoint overrides the discovered token URL. Required when Issuer
	// is empty.
	TokenEndpoint string `yaml:"token_endpoint"`
	// JWKSURI overrides the discovered JSON Web Key Set URL.
	JWKSURI string `yaml:"jwks_uri"`
	// UserinfoEndpoint overrides the discovered userinfo URL. When known, it
	// is called after login so that claims only it returns (often groups)
	// reach the session.
	UserinfoEndpoint string `yaml:"userinfo_endpoint"`
	// EndSessionEndpoint overrides the discovered RP-initiated logout URL.
	EndSessionEndpoint string `yaml:"end_session_endpoint"`
	// RevocationEndpoint overrides the discovered RFC 7009 revocation URL.
	RevocationEndpoint string `yaml:"revocation_endpoint"`
	// IntrospectionEndpoint overrides the discovered RFC 7662 token
	// introspection URL, used to validate opaque caller tokens.
	IntrospectionEndpoint string `yaml:"introspection_endpoint"`

	// ClientID is this gateway's client identifier. Required.
	ClientID string `yaml:"client_id"`
	// ClientSecret is the client secret; empty for a public client.
	ClientSecret Secret `yaml:"client_secret"`
	// ClientAuth is how the client authenticates at the token endpoint:
	// "client_secret_basic" (the default) or "client_secret_post".
	ClientAuth string `yaml:"client_auth"`
	// Scopes are requested at the authorize endpoint. Default: openid, email,
	// profile.
	Scopes []string `yaml:"scopes"`
	// IDTokenAlgorithms is the allow-list of JWS algorithms for ID tokens.
	// Default: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512,
	// EdDSA. "none" and the HMAC algorithms are always refused.
	IDTokenAlgorithms []string `yaml:"id_token_algorithms"`
	// Timeout bounds every call to the authorization server. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// ClockSkew is the leeway for exp, nbf and iat checks. Default 30s.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// AllowInsecureHTTP permits plain-http endpoints on hosts other than
	// loopback. Development only; default false.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
	// AuthorizationParams are extra parameters sent with every
	// authorization request, e.g. {prompt: consent} for servers that
	// issue a refresh token only then (oidc-provider), {access_type:
	// offline} (Google), audience or acr_values. The parameters the
	// gateway sets itself (state, nonce, PKCE, redirect_uri, ...) are
	// refused. A silent re-authentication sends prompt=none instead of any
	// prompt given here. Default none.
	AuthorizationParams map[string]string `yaml:"authorization_params"`
	// Claims says which claims name the user, the email address and the
	// groups. Default: sub, email, groups.
	Claims ClaimMapping `yaml:"claims"`
}

// ClaimMapping names the claims an Identity's User, Email and Groups come
// from: a claim name, or a dot-separated path into nested objects such as
// "realm_access.roles" (a claim whose own name contains dots, like
// "https://example.com/roles", is found first).
type ClaimMapping struct {
	// User is the claim that names the user in X-Forwarded-User and
	// /oauth2/userinfo: sub (the default), email, preferred_username, name
	// or any other. When a token lacks it, sub is used (with a warning,
	// once).
	User string `yaml:"user"`
	// Email is the claim holding the user's e-mail address. Default email.
	// Email rules also need the "email_verified" claim to be true.
	Email string `yaml:"email"`
	// Groups is the claim listing the user's groups: groups (the
	// default), roles, realm_access.roles, ... A list of strings, or one
	// string.
	Groups string `yaml:"groups"`
}

// reservedAuthorizationParams are set by the gateway on every authorization
// request; configuring them would break the flow or its defences.
var reservedAuthorizationParams = map[string]string{
	"state":                 "the gateway's CSRF defence",
	"nonce":                 "the gateway's ID token binding",
	"code_challenge":        "PKCE, sent by the gateway",
	"code_challenge_method": "PKCE, always S256",
	"redirect_uri":          "built from public_url",
	"response_type":         "set by the route's grant",
	"response_mode":         "set by the route's grant",
	"client_id":             "use upstream.client_id",
	"scope":                 "use upstream.scopes",
}

// defaultAlgorithms are the asymmetric JWS algorithms golang-jwt verifies.
var defaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// SetDefaults fills the zero fields that have a default.
func (c *Config) SetDefaults() {
	if c.ClientAuth == "" {
		c.ClientAuth = ClientSecretBasic
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{"openid", "email", "profile"}
	}
	if len(c.IDTokenAlgorithms) == 0 {
		c.IDTokenAlgorithms = slices.Clone(defaultAlgorithms)
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = 30 * time.Second
	}
	if c.Claims.User == "" {
		c.Claims.User = "sub"
	}
	if c.Claims.Email == "" {
		c.Claims.Email = "email"
	}
	if c.Claims.Groups == "" {
		c.Claims.Groups = "groups"
	}
}

// Validate reports every problem in c, each prefixed with its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if c.Issuer == "" && (c.AuthorizationEndpoint == "" || c.TokenEndpoint == "") {
		bad("issuer", "required (or set both authorization_endpoint and token_endpoint)")
	}
	if c.Issuer == "" && slices.Contains(c.Scopes, "openid") {
		bad("issuer", "required when scopes contain \"openid\" (ID tokens are checked against it)")
	}
	for _, u := range []struct{ key, val string }{
		{"issuer", c.Issuer},
		{"authorization_endpoint", c.AuthorizationEndpoint},
		{"token_endpoint", c.TokenEndpoint},
		{"jwks_uri", c.JWKSURI},
		{"userinfo_endpoint", c.UserinfoEndpoint},
		{"end_session_endpoint", c.EndSessionEndpoint},
		{"revocation_endpoint", c.RevocationEndpoint},
		{"introspection_endpoint", c.IntrospectionEndpoint},
	} {
		if u.val == "" {
			continue
		}
		if err := checkEndpoint(u.val, c.AllowInsecureHTTP); err != nil {
			bad(u.key, "%v", err)
		}
	}
	if c.ClientID == "" {
		bad("client_id", "required: the client id registered at the authorization server")
	}
	if c.ClientAuth != ClientSecretBasic && c.ClientAuth != ClientSecretPost {
		bad("client_auth", "must be %q or %q, got %q", ClientSecretBasic, ClientSecretPost, c.ClientAuth)
	}
	for i, alg := range c.IDTokenAlgorithms {
		if !slices.Contains(defaultAlgorithms, alg) {
			bad(fmt.Sprintf("id_token_algorithms[%d]", i), "%q is not allowed (use one of %s)", alg, strings.Join(defaultAlgorithms, ", "))
		}
	}
	if c.Timeout < 0 {
		bad("timeout", "must not be negative")
	}
	if c.ClockSkew < 0 || c.ClockSkew > 5*time.Minute {
		bad("clock_skew", "must be between 0 and 5m")
	}
	for _, k := range slices.Sorted(maps.Keys(c.AuthorizationParams)) {
		if why, ok := reservedAuthorizationParams[strings.ToLower(k)]; ok {
			bad("authorization_params."+k, "is set by the gateway (%s) and cannot be configured", why)
		} else if k == "" || strings.ContainsAny(k, "&=#?") {
			bad("authorization_params", "%q is not a parameter name", k)
		}
	}
	for _, m := range [...]struct{ key, val string }{{"claims.user", c.Claims.User}, {"claims.email", c.Claims.Email}, {"claims.groups", c.Claims.Groups}} {
		if v := m.val; strings.HasPrefix(v, ".") || strings.HasSuffix(v, ".") || strings.Contains(v, "..") {
			bad(m.key, "%q is not a claim name or a dot-separated path such as realm_access.roles", v)
		}
	}
	return errors.Join(errs...)
}

// checkEndpoint accepts absolute https URLs, and http URLs on loopback hosts
// or when insecure is set.
func checkEndpoint(raw string, insecure bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return errors.New("not an absolute http(s) URL")
	}
	if u.Fragment != "" || u.User != nil {
		return errors.New("must not contain a fragment or user info")
	}
	if u.Scheme == "http" && !insecure && !isLoopback(u.Hostname()) {
		return errors.New("plain http is only allowed for loopback hosts (set upstream.allow_insecure_http: true for development)")
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
