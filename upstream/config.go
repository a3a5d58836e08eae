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

// Client authentication methods at the authorization server (RFC 6749
// §2.3.1, OpenID Connect Core §9, RFC 7523 §2.2, RFC 8705 §2), the values
// of Config.ClientAuth.
const (
	// ClientSecretBasic sends client_id and client_secret, each
	// form-urlencoded, in an HTTP Basic Authorization header.
	ClientSecretBasic = "client_secret_basic"
	// ClientSecretPost sends client_id and client_secret in the form.
	ClientSecretPost = "client_secret_post"
	// PrivateKeyJWT sends a JWT client assertion, signed with
	// private_key_file or read from client_assertion_file.
	PrivateKeyJWT = "private_key_jwt"
	// TLSClientAuth presents a client certificate in the TLS handshake and
	// sends client_id in the form.
	TLSClientAuth = "tls_client_auth"
	// ClientAuthNone is a public client: client_id in the form, no
	// credential (PKCE protects the code).
	ClientAuthNone = "none"
)

// clientAuthMethods are the valid values of Config.ClientAuth.
var clientAuthMethods = []string{ClientSecretBasic, ClientSecretPost, PrivateKeyJWT, TLSClientAuth, ClientAuthNone}

// Audiences of signed client assertions, the values of
// Config.ClientAssertionAudience.
const (
	// AssertionAudienceIssuer is the issuer identifier.
	AssertionAudienceIssuer = "issuer"
	// AssertionAudienceTokenEndpoint is the token endpoint URL.
	AssertionAudienceTokenEndpoint = "token_endpoint"
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
	// ClientSecret is the client secret of client_secret_basic and
	// client_secret_post, required with them and refused with the other
	// methods.
	ClientSecret Secret `yaml:"client_secret"`
	// ClientAuth is how the client authenticates on every call to the
	// authorization server (code exchange, refresh, revocation,
	// introspection, client credentials): client_secret_basic,
	// client_secret_post, private_key_jwt (RFC 7523 §2.2, with
	// private_key_file or client_assertion_file), tls_client_auth
	// (RFC 8705 §2, with tls_client_cert_file and tls_client_key_file) or
	// none (a public client). Default: client_secret_basic when
	// client_secret is set, else none; a client_secret_basic or
	// client_secret_post without client_secret is an error.
	ClientAuth string `yaml:"client_auth"`
	// PrivateKeyFile is the PEM private key (PKCS#8, PKCS#1 RSA or SEC1
	// EC; unencrypted) that signs the client assertions of
	// private_key_jwt: RSA of at least 2048 bits, or EC P-256. It is read
	// once, at start-up. Each assertion has iss and sub set to client_id,
	// aud (see client_assertion_audience), a random jti, iat, and an exp
	// 60s later.
	PrivateKeyFile string `yaml:"private_key_file"`
	// PrivateKeyID is the "kid" header of the signed assertions. Default:
	// the RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key.
	PrivateKeyID string `yaml:"private_key_id"`
	// PrivateKeyAlgorithm is the JWS algorithm of the signed assertions:
	// RS256 or PS256 with an RSA key, ES256 with a P-256 key. Default:
	// RS256 for RSA, ES256 for EC.
	PrivateKeyAlgorithm string `yaml:"private_key_algorithm"`
	// ClientAssertionAudience is the "aud" of the signed assertions, on
	// every call: "issuer" (the issuer identifier, the default when issuer
	// is set, as RFC 7523bis requires) or "token_endpoint" (the token
	// endpoint URL, as OpenID Connect Core §9 reads; the default without
	// issuer).
	ClientAssertionAudience string `yaml:"client_assertion_audience"`
	// ClientAssertionFile is, instead of private_key_file, a file holding
	// a ready client assertion (a JWT, e.g. a Kubernetes projected
	// service-account token for workload identity federation), sent as
	// is. It is checked at start-up and re-read whenever its size,
	// modification time or inode changes (the path is stat'ed on each
	// call); whoever rotates it must replace it atomically, as Kubernetes'
	// symlink swap does.
	ClientAssertionFile string `yaml:"client_assertion_file"`
	// TLSClientCertFile is the PEM client certificate (leaf first, then
	// any intermediates) of tls_client_auth, presented on every TLS
	// connection to the authorization server. Re-read when it or
	// TLSClientKeyFile changes; a pair that does not load keeps the last
	// good one in use. With Deps.HTTPClient set, see Deps.
	TLSClientCertFile string `yaml:"tls_client_cert_file"`
	// TLSClientKeyFile is the PEM private key of TLSClientCertFile.
	TLSClientKeyFile string `yaml:"tls_client_key_file"`
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
	// FrontChannelLogout accepts OpenID Connect Front-Channel Logout from
	// this server: GET <prefix>/frontchannel_logout?iss=&sid= ends the
	// sessions of that login session (register the URL as the client's
	// frontchannel_logout_uri, with frontchannel_logout_session_required).
	// The request carries no proof but the sid, which every client of the
	// server sees: enable it only for servers without back-channel logout.
	// Default false: such requests are refused.
	FrontChannelLogout bool `yaml:"frontchannel_logout"`
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
		// An unset method with no secret is a public client, as before
		// client_auth had other values; a secret method named explicitly
		// without a secret is an error (Validate), not a silent downgrade.
		c.ClientAuth = ClientSecretBasic
		if c.ClientSecret.IsZero() {
			c.ClientAuth = ClientAuthNone
		}
	}
	if c.ClientAssertionAudience == "" && c.ClientAuth == PrivateKeyJWT && c.PrivateKeyFile != "" {
		c.ClientAssertionAudience = AssertionAudienceIssuer
		if c.Issuer == "" {
			c.ClientAssertionAudience = AssertionAudienceTokenEndpoint
		}
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

// Validate reports every problem in c, each prefixed with its key. It reads
// the files client authentication names (private_key_file,
// client_assertion_file, tls_client_cert_file, tls_client_key_file), so
// that one that is missing or does not parse fails at start-up; no error
// shows their contents.
func (c *Config) Validate() error {
	_, err := c.check()
	return err
}

// check validates c and returns its client authentication, built from the
// files it names; nil when there is any error.
func (c *Config) check() (clientAuth, error) {
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
	auth, authErrs := newClientAuth(c)
	errs = append(errs, authErrs...)
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
			bad("authorization_params."+k, "is set by the gateway (%s) and cannot be configured; remove it", why)
		} else if k == "" || strings.ContainsAny(k, "&=#?") {
			bad("authorization_params", "%q is not a parameter name", k)
		}
	}
	for _, m := range [...]struct{ key, val string }{{"claims.user", c.Claims.User}, {"claims.email", c.Claims.Email}, {"claims.groups", c.Claims.Groups}} {
		if v := m.val; strings.HasPrefix(v, ".") || strings.HasSuffix(v, ".") || strings.Contains(v, "..") {
			bad(m.key, "%q is not a claim name or a dot-separated path such as realm_access.roles", v)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return auth, nil
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
