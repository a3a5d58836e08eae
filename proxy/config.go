package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/authgate/authgate/upstream"
)

// ForwardAuth configures Prefix + "/auth", the endpoint an ingress (nginx
// auth_request, ingress-nginx auth-url, Traefik forwardAuth, Caddy
// forward_auth) asks before each request: 202 with the identity and the
// access token, 401 without a session, 403 when the policy refuses.
type ForwardAuth struct {
	// Enabled serves the endpoint; it needs TrustedProxies, the addresses
	// of the proxies that ask (everyone else gets 401), because a 202
	// carries the access token. Default false: the endpoint does not exist.
	Enabled bool `yaml:"enabled"`
	// PassAccessToken adds X-Auth-Request-Access-Token to a 202 (the
	// Authorization: Bearer header is always there). Default true.
	PassAccessToken *bool `yaml:"pass_access_token"`
	// Redirect answers a navigation without a session with a 302 to the
	// gateway's sign-in instead of 401: for proxies that hand the answer
	// to the browser (Traefik, Caddy). A request may ask for either with
	// ?redirect=true or ?redirect=false. Default false (nginx, whose
	// error_page turns the 401 into the sign-in).
	Redirect bool `yaml:"redirect"`
}

// Grant names, as written in a route's `grant` key.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantImplicit          = "implicit"
)

// grants are the grants this version implements.
var grants = []string{GrantAuthorizationCode, GrantClientCredentials, GrantPassword, GrantImplicit}

// Config is the HTTP front's part of the configuration file (its top level).
type Config struct {
	// Listen is the address to serve on. Default ":4180".
	Listen string `yaml:"listen"`
	// PublicURL is the external base URL of the gateway, e.g.
	// "https://app.example.com". Required. The OAuth redirect URI is
	// PublicURL + Prefix + "/callback"; it never comes from request headers.
	PublicURL string `yaml:"public_url"`
	// Prefix is the path under which the gateway's own endpoints live.
	// Default "/oauth2".
	Prefix string `yaml:"prefix"`
	// AllowedRedirectDomains lists the hosts, besides PublicURL's, that a
	// post-login or post-logout redirect may go to: "app.example.com"
	// (exact) or ".example.com" (any subdomain of example.com). Default none.
	AllowedRedirectDomains []string `yaml:"allowed_redirect_domains"`
	// TrustedProxies lists the proxies in front of the gateway (CIDRs such
	// as "10.0.0.0/8", or single addresses). Only from them are
	// X-Forwarded-For, -Host and -Proto believed: the client address (rate
	// limits, logs) is then the right-most X-Forwarded-For entry that is not
	// a trusted proxy, and the backend receives the chain. Default none: the
	// client is the TCP peer and client-sent X-Forwarded-* are dropped.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// AccessLog logs one line per request (method, path without query,
	// status, duration, route). Default true.
	AccessLog *bool `yaml:"access_log"`
	// IntrospectionCacheTTL caps how long an introspection answer about a
	// caller's opaque token is reused (in process and, shared by the
	// replicas, in the store); never past the token's expiry. Default 60s.
	IntrospectionCacheTTL time.Duration `yaml:"introspection_cache_ttl"`
	// Password configures the routes with grant: password.
	Password Password `yaml:"password"`
	// ForwardAuth configures the forward-auth endpoint Prefix + "/auth".
	ForwardAuth ForwardAuth `yaml:"forward_auth"`
	// Limits bounds what clients may send.
	Limits Limits `yaml:"limits"`
	// Admin configures the operators' API on the metrics listener.
	Admin Admin `yaml:"admin"`
	// Routes are matched in order; the first match wins. At least one.
	Routes []Route `yaml:"routes"`
}

// Limits bounds client input and slow clients.
type Limits struct {
	// ReadHeaderTimeout bounds reading request headers. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes caps the request header size. Default 64 KiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxCookies caps the number of cookies in one request. Default 200.
	MaxCookies int `yaml:"max_cookies"`
	// BackendResponseTimeout bounds the wait for a backend's response
	// headers (not the body: downloads and streams may take longer); past
	// it the client gets a 504 page. Default 60s; -1s turns it off (long
	// polling that answers later than any bound).
	BackendResponseTimeout time.Duration `yaml:"backend_response_timeout"`
	// EndpointBodyTimeout bounds reading the whole body of a request to
	// the gateway's own endpoints (sign-in form, sign-out, callback form
	// posts, back-channel logout), from the end of its headers: a client
	// that sends it slower gets 408 and the connection closes, so a
	// trickled body cannot hold connections open. Default 10s.
	EndpointBodyTimeout time.Duration `yaml:"endpoint_body_timeout"`
	// UploadTimeout bounds reading the body of a request proxied to a
	// backend (an upload), from the end of its headers; past it the client
	// gets 408. Websocket connections are not bound. Default 0: off
	// (uploads may take as long as they take).
	UploadTimeout time.Duration `yaml:"upload_timeout"`
	// LoginsPerMinute caps, per client address and replica, the logins
	// started (each is a pending state in the store) and, separately, the
	// callbacks answered; a burst of this many, then this many per minute.
	// IPv6 addresses count per /64. Over it: 429 with Retry-After.
	// Default 120; -1 turns the limit off.
	LoginsPerMinute int `yaml:"logins_per_minute"`
}

// Password configures the resource owner password credentials routes
// (RFC 6749 §4.3): the login form, HTTP Basic translation and the
// brute-force throttle, which every replica sharing the session store
// shares.
type Password struct {
	// BasicCacheTTL caps how long the token a client's HTTP Basic
	// credentials were exchanged for is reused (never past its expiry): a
	// password changed at the server takes effect within it. Default 5m.
	BasicCacheTTL time.Duration `yaml:"basic_cache_ttl"`
	// MaxFailuresPerUser is how many failed sign-ins one account may have
	// within FailureWindow before every attempt, the right password
	// included, gets 429. Default 10; -1 off.
	MaxFailuresPerUser int `yaml:"max_failures_per_user"`
	// MaxFailuresPerAddress is the same per client address (see
	// trusted_proxies). Default 30; -1 off.
	MaxFailuresPerAddress int `yaml:"max_failures_per_address"`
	// FailureWindow is how long failures count. Default 15m.
	FailureWindow time.Duration `yaml:"failure_window"`
}

// Route protects one backend.
type Route struct {
	// Name names the route in metrics (the route label) and the access
	// log: 1 to 64 letters, digits, "-", "_" and ".", starting with a
	// letter, unique among the routes. Default: the route's index in
	// routes ("0", "1", ...).
	Name string `yaml:"name"`
	// Match selects the requests of this route.
	Match Match `yaml:"match"`
	// Backend is the protected application's base URL, e.g.
	// "http://127.0.0.1:8080". Required.
	Backend string `yaml:"backend"`
	// Grant is how requests are authenticated: "authorization_code"
	// (browser login), "implicit" (browser login for servers that allow
	// only the implicit grant; discouraged, RFC 9700 §2.1.2), "password" (the gateway's login form and HTTP Basic,
	// exchanged at the token endpoint: RFC 6749 §4.3, discouraged by RFC
	// 9700, for servers that offer nothing else) or "client_credentials"
	// (no caller credentials: the gateway injects its own token). Required.
	Grant string `yaml:"grant"`
	// Upstream names the authorization server of this route's grant: a
	// key of the top-level `upstreams:` map. Default: the `upstream:`
	// section. A route accepts only the sessions its own upstream issued,
	// and a user may hold a session at each upstream at once (a cookie
	// per upstream).
	Upstream string `yaml:"upstream"`
	// Scopes are requested for a client_credentials route's token.
	// Default none.
	Scopes []string `yaml:"scopes"`
	// Audience is sent as "audience" with a client_credentials request when
	// set, and is the "aud" a caller token must contain on this route.
	Audience string `yaml:"audience"`
	// Resource is the RFC 8707 resource indicator of a client_credentials
	// request when set; without Audience, also the "aud" a caller token
	// must contain.
	Resource string `yaml:"resource"`
	// ClientID names another client at the same authorization server for
	// this route's client_credentials token (one gateway, several service
	// identities). Default: upstream.client_id.
	ClientID string `yaml:"client_id"`
	// ClientSecret is ClientID's secret.
	ClientSecret upstream.Secret `yaml:"client_secret"`
	// AcceptBearer lets a caller bring its own access token in
	// "Authorization: Bearer" instead of a session (any grant): a JWT is
	// validated against the server's keys, an opaque token by
	// introspection; it must name Audience (else Resource, else the client
	// id). A valid token goes to the backend as is; an invalid one gets
	// 401. Default false: a caller's Authorization is replaced.
	AcceptBearer bool `yaml:"accept_bearer"`
	// Allow restricts which authenticated users may pass. Empty: everyone
	// the authorization server authenticates.
	Allow Allow `yaml:"allow"`
	// PublicPaths are path prefixes served without authentication (and with
	// no identity headers), matched against the normalised path.
	PublicPaths []string `yaml:"public_paths"`
	// IdentityHeaders sends X-Forwarded-User, -Email, -Preferred-Username
	// and -Groups to the backend. Default true.
	IdentityHeaders *bool `yaml:"identity_headers"`
	// PassHostHeader forwards the client's Host header to the backend
	// instead of the backend URL's host. Default true.
	PassHostHeader *bool `yaml:"pass_host_header"`
	// AllowCrossSiteWrites lets POST, PUT, PATCH and DELETE from other sites
	// through with the session cookie. Default false: such requests get 403
	// (a CSRF defence for backends that have none).
	AllowCrossSiteWrites bool `yaml:"allow_cross_site_writes"`
}

// Match selects requests by host and path prefix.
type Match struct {
	// Host is the exact Host header to match (port ignored); empty: any.
	Host string `yaml:"host"`
	// PathPrefix is the path prefix to match; default "/". A prefix ending
	// in "/" matches below it; one without also matches itself exactly.
	PathPrefix string `yaml:"path_prefix"`
}

// Allow is a route's access policy. A user passes when (Emails or
// EmailDomains is empty, or the verified email is listed or in a listed
// domain) and (Groups is empty, or the user is in one of them).
type Allow struct {
	// Emails are exact addresses (case-insensitive), verified only.
	Emails []string `yaml:"emails"`
	// EmailDomains are domains whose verified addresses pass; "*" any.
	EmailDomains []string `yaml:"email_domains"`
	// Groups: membership in any one of them passes.
	Groups []string `yaml:"groups"`
}

// on reads an optional boolean with its default.
func on(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// SetDefaults fills the zero fields that have a default.
func (c *Config) SetDefaults() {
	if c.Listen == "" {
		c.Listen = ":4180"
	}
	if c.Prefix == "" {
		c.Prefix = "/oauth2"
	}
	c.Prefix = strings.TrimSuffix(c.Prefix, "/")
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	if c.IntrospectionCacheTTL == 0 {
		c.IntrospectionCacheTTL = time.Minute
	}
	pw := &c.Password
	if pw.BasicCacheTTL == 0 {
		pw.BasicCacheTTL = 5 * time.Minute
	}
	if pw.MaxFailuresPerUser == 0 {
		pw.MaxFailuresPerUser = 10
	}
	if pw.MaxFailuresPerAddress == 0 {
		pw.MaxFailuresPerAddress = 30
	}
	if pw.FailureWindow == 0 {
		pw.FailureWindow = 15 * time.Minute
	}
	l := &c.Limits
	if l.ReadHeaderTimeout == 0 {
		l.ReadHeaderTimeout = 10 * time.Second
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = 120 * time.Second
	}
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = 64 << 10
	}
	if l.MaxCookies == 0 {
		l.MaxCookies = 200
	}
	if l.BackendResponseTimeout == 0 {
		l.BackendResponseTimeout = 60 * time.Second
	}
	if l.LoginsPerMinute == 0 {
		l.LoginsPerMinute = 120
	}
	if l.EndpointBodyTimeout == 0 {
		l.EndpointBodyTimeout = 10 * time.Second
	}
	for i := range c.Routes {
		if c.Routes[i].Match.PathPrefix == "" {
			c.Routes[i].Match.PathPrefix = "/"
		}
	}
}

// Validate reports every problem in c, each prefixed with its key path.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "not a host:port address (e.g. \":4180\")")
	}
	if c.PublicURL == "" {
		bad("public_url", "required: the external base URL of the gateway, e.g. https://app.example.com")
	} else if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		bad("public_url", "not an absolute http(s) URL such as https://app.example.com")
	} else if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		bad("public_url", "must not contain a query, fragment or user info")
	} else if u.Path != "" {
		bad("public_url", "must not have a path (the gateway's endpoints live at %s on the host); use %s", c.Prefix, u.Scheme+"://"+u.Host)
	}
	if !strings.HasPrefix(c.Prefix, "/") || strings.ContainsAny(c.Prefix, "?#") {
		bad("prefix", "must be an absolute path such as /oauth2")
	}
	for i, d := range c.AllowedRedirectDomains {
		if d == "" || strings.ContainsAny(d, "/:@\\ ") {
			bad(fmt.Sprintf("allowed_redirect_domains[%d]", i), "must be a host name such as app.example.com or .example.com")
		}
	}
	if _, err := parseTrustedProxies(c.TrustedProxies); err != nil {
		errs = append(errs, err)
	}
	if c.ForwardAuth.Enabled && len(c.TrustedProxies) == 0 {
		bad("forward_auth.enabled", "needs trusted_proxies: the addresses of the ingress or proxy that asks %s/auth (e.g. [\"10.0.0.0/8\"], or [\"127.0.0.1\"] for nginx on this host), since its answers carry access tokens", c.Prefix)
	}
	if t := c.Limits.BackendResponseTimeout; t < 0 && t != -time.Second {
		bad("limits.backend_response_timeout", "must be positive, or -1s for no limit")
	}
	if c.Password.BasicCacheTTL < time.Second || c.Password.BasicCacheTTL > time.Hour {
		bad("password.basic_cache_ttl", "must be between 1s and 1h")
	}
	if c.Password.FailureWindow < 0 {
		bad("password.failure_window", "must be positive")
	}
	if c.Password.MaxFailuresPerUser < -1 || c.Password.MaxFailuresPerAddress < -1 {
		bad("password", "max_failures_per_user and max_failures_per_address must be positive, or -1 for no limit")
	}
	if c.IntrospectionCacheTTL < time.Second || c.IntrospectionCacheTTL > time.Hour {
		bad("introspection_cache_ttl", "must be between 1s and 1h")
	}
	if c.Limits.EndpointBodyTimeout < 0 {
		bad("limits.endpoint_body_timeout", "must be positive")
	}
	if c.Limits.UploadTimeout < 0 {
		bad("limits.upload_timeout", "must be positive, or 0 for no limit")
	}
	if c.Limits.LoginsPerMinute < -1 {
		bad("limits.logins_per_minute", "must be positive, or -1 for no limit")
	}
	if c.Limits.MaxHeaderBytes < 4096 {
		bad("limits.max_header_bytes", "must be at least 4096")
	}
	if err := c.Admin.validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.Routes) == 0 {
		bad("routes", "at least one route is required")
	}
	names := map[string]int{}
	for i, r := range c.Routes {
		if err := r.validate(); err != nil {
			errs = append(errs, prefixErrors(fmt.Sprintf("routes[%d].", i), err))
		}
		if j, dup := names[r.Name]; dup && r.Name != "" {
			bad(fmt.Sprintf("routes[%d].name", i), "%q is already the name of routes[%d]: names must be unique", r.Name, j)
		}
		names[r.Name] = i
	}
	return errors.Join(errs...)
}

func (r *Route) validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if r.Name != "" && !validRouteName(r.Name) {
		bad("name", "must be 1 to 64 letters, digits, '-', '_' or '.', starting with a letter (it is a metrics label)")
	}
	if r.Backend == "" {
		bad("backend", "required: the URL of the application to protect, e.g. http://127.0.0.1:8080")
	} else if u, err := url.Parse(r.Backend); err != nil || u.Hostname() == "" {
		bad("backend", "not an absolute URL; write it with scheme and host, e.g. http://127.0.0.1:8080")
	} else if u.Scheme != "http" && u.Scheme != "https" {
		bad("backend", "scheme %q not supported; use http:// or https://", u.Scheme)
	} else if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		bad("backend", "must not contain a query, fragment or user info")
	}
	switch {
	case slices.Contains(grants, r.Grant):
	case r.Grant == "":
		bad("grant", "required: one of %s", strings.Join(grants, ", "))
	default:
		bad("grant", "unknown grant %q; use one of %s", r.Grant, strings.Join(grants, ", "))
	}
	if r.Grant != GrantClientCredentials {
		if len(r.Scopes) > 0 {
			bad("scopes", "only for client_credentials routes (a login asks for upstream.scopes)")
		}
		if r.ClientID != "" || !r.ClientSecret.IsZero() {
			bad("client_id", "only for client_credentials routes (logins use upstream.client_id)")
		}
	}
	if r.Upstream != "" {
		if err := ValidUpstreamName(r.Upstream); err != nil {
			bad("upstream", "%v", err)
		}
	}
	if !r.ClientSecret.IsZero() && r.ClientID == "" {
		bad("client_secret", "needs client_id: set routes[i].client_id to the client it belongs to, or remove it")
	}
	if r.ClientID != "" && r.ClientSecret.IsZero() {
		bad("client_secret", "required with client_id: the route's client authenticates with its secret")
	}
	if r.Grant == GrantClientCredentials && !r.AcceptBearer && (len(r.Allow.Emails) > 0 || len(r.Allow.EmailDomains) > 0 || len(r.Allow.Groups) > 0) {
		bad("allow", "a client_credentials route has no user to check; allow rules apply only to caller tokens (set accept_bearer: true) or remove them")
	}
	if r.Grant != GrantClientCredentials && !r.AcceptBearer && (r.Audience != "" || r.Resource != "") {
		bad("audience", "audience and resource apply to client_credentials routes and to caller tokens (accept_bearer: true); remove them or set accept_bearer")
	}
	for _, f := range [...]struct{ key, val string }{{"audience", r.Audience}, {"resource", r.Resource}} {
		if strings.ContainsAny(f.val, " \t\r\n") {
			bad(f.key, "must be a single URI or identifier, without spaces")
		}
	}
	if r.Resource != "" {
		if u, err := url.Parse(r.Resource); err != nil || !u.IsAbs() || u.Fragment != "" {
			bad("resource", "must be an absolute URI without a fragment (RFC 8707 §2)")
		}
	}
	if !strings.HasPrefix(r.Match.PathPrefix, "/") {
		bad("match.path_prefix", "must start with /")
	} else if cleanPath(r.Match.PathPrefix) != strings.TrimSuffix(r.Match.PathPrefix, "/") && r.Match.PathPrefix != "/" {
		bad("match.path_prefix", "must be a clean path (no //, . or .. segments)")
	}
	if strings.ContainsAny(r.Match.Host, "/ @") {
		bad("match.host", "must be a host name")
	} else if h := r.Match.Host; strings.Contains(h, ":") && !strings.HasPrefix(h, "[") || strings.Contains(h, "]:") {
		bad("match.host", "must be a host name without a port (the port is ignored when matching)")
	}
	for i, p := range r.PublicPaths {
		if !strings.HasPrefix(p, "/") || (p != "/" && cleanPath(p) != strings.TrimSuffix(p, "/")) {
			bad(fmt.Sprintf("public_paths[%d]", i), "must be a clean absolute path such as /static/")
		}
	}
	for i, e := range r.Allow.Emails {
		if strings.Count(e, "@") != 1 {
			bad(fmt.Sprintf("allow.emails[%d]", i), "not an email address")
		}
	}
	for i, d := range r.Allow.EmailDomains {
		if d == "" || strings.Contains(d, "@") {
			bad(fmt.Sprintf("allow.email_domains[%d]", i), "must be a domain such as example.com (or *)")
		}
	}
	return errors.Join(errs...)
}

// validRouteName reports a name fit for a metrics label: bounded, plain,
// never an index ("0") nor one of the gateway's own labels ("_health").
func validRouteName(n string) bool {
	if len(n) > 64 || n == "" || !('a' <= n[0] && n[0] <= 'z' || 'A' <= n[0] && n[0] <= 'Z') {
		return false
	}
	for i := 0; i < len(n); i++ {
		switch c := n[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// prefixErrors puts prefix before each joined error's message.
func prefixErrors(prefix string, err error) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			errs = append(errs, fmt.Errorf("%s%w", prefix, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s%w", prefix, err)
}

// cleanPath normalises an URL path for matching: dot-segments resolved,
// repeated slashes collapsed, no trailing slash (except for "/").
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	return path.Clean(p)
}
