// Package proxy is authgate's HTTP front: route matching, the reserved
// /oauth2/ endpoints, an authenticator per route, header rules, the pages,
// and the reverse proxy to the backends.
package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/authgate/authgate/metrics"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// Deps are the Server's collaborators.
type Deps struct {
	// Upstream is the default authorization server's client (the
	// `upstream:` section): the routes that name no other use it.
	// Required.
	Upstream *upstream.Client
	// Upstreams are the further authorization servers by name (the
	// `upstreams:` map), for the routes whose `upstream` key names them.
	// Nil: none.
	Upstreams map[string]*upstream.Client
	// Sessions stores sessions and pending logins. Required.
	Sessions *session.Manager
	// Logger receives the error and event logs; New wraps its handler
	// with NewLogHandler (request ids). Nil: discards.
	Logger *slog.Logger
	// AccessLog receives the access log (Config.AccessLog), one whole line
	// per Write, in slog.TextHandler's format, or slog.JSONHandler's with
	// AccessLogJSON: the process log's. A line is written when Logger is
	// enabled at its level (info; warn for a 5xx). It must be safe for
	// concurrent use (an *os.File is; Logger may write to it too). Nil: no
	// access log.
	AccessLog io.Writer
	// AccessLogJSON writes the access log as JSON objects.
	AccessLogJSON bool
	// Metrics counts requests and authentication outcomes. Nil: a
	// registry of its own that nothing serves.
	Metrics *metrics.Metrics
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// Transport carries requests to the backends. Nil: NewTransport() with
	// Limits.BackendResponseTimeout.
	Transport http.RoundTripper
	// TracerProvider traces requests (tracing.go): a server span per
	// request, child spans for the session load, the token refresh and
	// the backend call, and the W3C trace context sent to the backend.
	// Give the same provider to the upstream clients and the session
	// store (session.Trace) for their spans. Nil: no tracing, at no cost
	// to the hot path.
	TracerProvider trace.TracerProvider
}

// Server is the gateway's http.Handler. Create it with New.
type Server struct {
	cfg      Config
	public   *url.URL
	routes   []*route
	sessions *session.Manager
	log      *slog.Logger
	now      func() time.Time
	cookies  cookieNames
	// providers are the authorization servers browser sessions come from,
	// the default first.
	providers []*provider
	// endpoints is Prefix + "/", precomputed for the hot path.
	endpoints string
	// authEndpoint is the forward-auth endpoint, Prefix + "/auth".
	authEndpoint string
	// refreshBefore is how long before expiry access tokens are renewed.
	refreshBefore time.Duration
	trusted       trustedProxies
	// loginLimit and callbackLimit bound logins per client address
	// (SECURITY.md 40); nil when off.
	loginLimit, callbackLimit *limiter
	// tokens caches machine tokens and validated caller tokens.
	tokens               *session.TokenCache
	introspectionWarning sync.Once
	introspections       singleflight.Group
	// throttle counts failed password sign-ins across the fleet.
	throttle *session.Throttle
	// refusalWarned holds the token endpoint's configuration refusals of
	// the password grant already logged (once per code).
	refusalWarned sync.Map

	metrics *metrics.Metrics
	// tracer makes the requests' spans; nil when tracing is off.
	tracer trace.Tracer
	// accessOut receives the access log (nil: off), in JSON with
	// accessJSON.
	accessOut  io.Writer
	accessJSON bool
	// unmatched, health and endpointMetrics count the requests of no
	// route, of /healthz and /readyz, and of each of the gateway's
	// endpoints.
	unmatched, health *metrics.Route
	endpointMetrics   map[string]endpointStats
	// draining is set by Drain: /readyz fails, the rest is served.
	draining atomic.Bool
}

// cookieNames are the effective names of the gateway's cookies.
type cookieNames struct {
	session, binding string
	secure           bool
	domain           string

	// signedOut marks a browser that just signed out (signedout.go).
	signedOut string
}

// route is a configured route, ready to serve.
type route struct {
	index   int
	cfg     Route
	backend *url.URL
	proxy   *httputil.ReverseProxy
	auth    authenticator
	public  []string // public path prefixes (validated clean)
	// up is the authorization server client of this route's grant: its
	// provider's, or another client id's at the same server.
	up *upstream.Client
	// provider is the authorization server the route's sessions come
	// from, with their cookie.
	provider *provider
	// audience is what a caller token must be for on this route: the
	// route's audience, else its resource, else the client id.
	audience string
	// callerScope keys the caller tokens validated for this route: the
	// audience and the server, so a token one server vouched for is not
	// taken on another server's route from the cache.
	callerScope string
	// machine is the client credentials authenticator; nil on other grants.
	machine *clientCreds

	// label names the route in metrics and the access log: its name,
	// else its index.
	label   string
	metrics *metrics.Route
}

// authenticator establishes who is calling a route; each grant has one.
type authenticator interface {
	// authenticate returns the caller's session. ok=false means it wrote
	// the response itself (a login redirect or a 401).
	authenticate(w http.ResponseWriter, r *http.Request, rt *route) (s *session.Session, ok bool, err error)
}

// New builds the Server; cfg gets its defaults and is validated.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Sessions == nil || deps.Upstream == nil {
		return nil, errors.New("proxy: Sessions and Upstream are required")
	}
	s := &Server{
		cfg:           cfg,
		sessions:      deps.Sessions,
		log:           deps.Logger,
		now:           deps.Now,
		refreshBefore: time.Minute,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.observe(cfg, deps)
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if s.tokens, err = deps.Sessions.NewTokenCache(s.log); err != nil {
		return nil, err
	}
	pw := cfg.Password
	if s.throttle, err = deps.Sessions.NewThrottle(pw.MaxFailuresPerUser, pw.MaxFailuresPerAddress, pw.FailureWindow); err != nil {
		return nil, err
	}
	s.trusted, _ = parseTrustedProxies(cfg.TrustedProxies) // validated above
	s.loginLimit = newLimiter(cfg.Limits.LoginsPerMinute, s.now)
	s.callbackLimit = newLimiter(cfg.Limits.LoginsPerMinute, s.now)
	s.endpoints = cfg.Prefix + "/"
	s.authEndpoint = cfg.Prefix + "/auth"
	s.public, _ = url.Parse(cfg.PublicURL)
	sc := deps.Sessions.Config().Cookie
	s.cookies = cookieNames{session: sc.Name, binding: sc.Name + "_csrf", signedOut: sc.Name + "_signed_out", secure: sc.IsSecure(), domain: sc.Domain}
	if s.cookies.secure && sc.Domain == "" {
		// The __Host- prefix makes browsers refuse the cookie unless it is
		// Secure, host-only and Path=/ (RFC 6265bis §4.1.3.2).
		s.cookies.session = "__Host-" + s.cookies.session
		s.cookies.binding = "__Host-" + s.cookies.binding
		s.cookies.signedOut = "__Host-" + s.cookies.signedOut
	}
	for i, rc := range cfg.Routes {
		if rc.Grant == GrantImplicit {
			s.log.Warn("route uses the implicit grant, which RFC 9700 §2.1.2 says clients should not use: the tokens pass through the browser. Switch to authorization_code as soon as the authorization server allows it", "route", i)
		}
	}
	if s.public.Scheme == "https" && !s.cookies.secure {
		s.log.Warn("session.cookie.secure is false although public_url is https")
	}
	transport := deps.Transport
	if transport == nil {
		t := NewTransport()
		if d := cfg.Limits.BackendResponseTimeout; d > 0 {
			t.ResponseHeaderTimeout = d
		}
		transport = t
	}
	if s.tracer != nil {
		transport = &tracedTransport{next: transport, tracer: s.tracer}
	}
	if s.providers, err = newProviders(deps.Upstream, deps.Upstreams, s.cookies.session); err != nil {
		return nil, err
	}
	for i, rc := range cfg.Routes {
		p := s.provider(rc.Upstream)
		if p == nil {
			return nil, fmt.Errorf("routes[%d].upstream: no upstream named %q (defined under upstreams: %s)", i, rc.Upstream, upstreamNames(deps.Upstreams))
		}
		rt, err := s.newRoute(i, rc, p, transport)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		s.routes = append(s.routes, rt)
	}
	return s, nil
}

func (s *Server) newRoute(i int, rc Route, p *provider, transport http.RoundTripper) (*route, error) {
	backend, err := url.Parse(rc.Backend)
	if err != nil {
		return nil, err
	}
	up := p.up
	if rc.ClientID != "" {
		if up, err = up.ForClient(rc.ClientID, rc.ClientSecret); err != nil {
			return nil, fmt.Errorf("client_id: %w", err)
		}
	}
	rt := &route{index: i, label: cmp.Or(rc.Name, strconv.Itoa(i)), cfg: rc, backend: backend, public: rc.PublicPaths, up: up, provider: p}
	rt.metrics = s.metrics.Route(rt.label, rc.Grant)
	rt.audience = cmp.Or(rc.Audience, rc.Resource, up.Config().ClientID)
	rt.callerScope = rt.audience + "\x00" + serverID(up.Config())
	switch rc.Grant {
	case GrantImplicit:
		if !slices.Contains(up.Config().Scopes, "openid") {
			// Without an ID token nothing binds the access token to this
			// login: anyone's token from any client would sign in.
			return nil, fmt.Errorf("grant: implicit needs scope openid in %s.scopes (its ID token, nonce and at_hash bind the access token to this login)", p.section())
		}
		rt.auth = &codeFlow{s: s}
	case GrantAuthorizationCode, GrantPassword:
		// A password route's sessions live as the code flow's do; only its
		// challenge (the login form) and HTTP Basic differ.
		rt.auth = &codeFlow{s: s}
	case GrantClientCredentials:
		if rt.machine, err = s.newClientCreds(rt); err != nil {
			return nil, err
		}
		rt.auth = rt.machine
	default:
		return nil, fmt.Errorf("grant %q not supported", rc.Grant)
	}
	rt.proxy = s.newReverseProxy(rt, transport)
	return rt, nil
}

// HTTPServer returns an http.Server for this handler with the configured
// limits (SECURITY.md 38).
func (s *Server) HTTPServer() *http.Server {
	l := s.cfg.Limits
	return &http.Server{
		Addr:              s.cfg.Listen,
		Handler:           s,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// serve routes one request: the gateway's endpoints, then the route's
// authenticator, policy and the backend.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	x := exchangeOf(r)
	if p == s.authEndpoint && s.cfg.ForwardAuth.Enabled {
		e := s.endpointMetrics["/auth"]
		x.route, x.label = e.metrics, e.label // until gate names the route
		s.forwardAuth(w, r)                   // before any check that could answer other than 202/401/403
		return
	}
	if countCookies(r.Header) > s.cfg.Limits.MaxCookies {
		s.fail(w, r, &pageError{status: http.StatusRequestHeaderFieldsTooLarge, title: "Too many cookies",
			message: "Your browser sent too many cookies. Clear the cookies of this site and try again."})
		return
	}
	if strings.HasPrefix(p, s.endpoints) {
		name := p[len(s.cfg.Prefix):]
		e, ok := s.endpointMetrics[name]
		if !ok {
			e = s.endpointMetrics["/other"]
		}
		x.route, x.label = e.metrics, e.label
		s.serveEndpoint(w, r, name)
		return
	}
	switch p {
	case "/healthz", "/readyz":
		x.route, x.label = s.health, "_health"
		s.serveHealth(w, r)
		return
	}
	rt, sess, ok := s.gate(w, r)
	if !ok {
		return
	}
	r = s.boundUpload(w, r)
	x.sess = sess // nil on a public path
	rt.proxy.ServeHTTP(w, r)
}

// gate decides a request for a route: the route and public path, caller
// credentials, the cross-site check, the route's authenticator and its
// policy. ok=false means it answered the request itself; a nil session
// with ok means a public path. The proxied path and forward-auth share it,
// so both decide alike.
func (s *Server) gate(w http.ResponseWriter, r *http.Request) (*route, *session.Session, bool) {
	rt, public, err := s.resolve(r)
	if err != nil {
		s.fail(w, r, err)
		return nil, nil, false
	}
	x := exchangeOf(r)
	x.route, x.label = rt.metrics, rt.label
	var callerToken, basicUser, basicPass string
	var basic bool
	if !public {
		// Read before the strip below removes Authorization.
		if rt.cfg.AcceptBearer {
			callerToken = callerBearer(r.Header)
		}
		if rt.cfg.Grant == GrantPassword && callerToken == "" {
			basicUser, basicPass, basic = basicCredentials(r.Header.Get("Authorization"))
		}
	}
	trusted := s.trusted.fromTrustedProxy(r)
	stripIdentityHeaders(r.Header, trusted)
	if !trusted {
		dropTraceContext(r.Header)
	}
	if up := r.Header.Get("Upgrade"); up != "" && !strings.EqualFold(up, "websocket") {
		r.Header.Del("Upgrade") // h2c and other upgrades are not proxied (SECURITY.md 28)
	}
	if public {
		return rt, nil, true
	}
	// Before authentication: a refused request costs no session load or
	// refresh.
	if !rt.cfg.AllowCrossSiteWrites && s.crossSiteWrite(r) {
		s.fail(w, r, errCrossSite)
		return nil, nil, false
	}
	var sess *session.Session
	var ok bool
	switch {
	case callerToken != "":
		sess, ok, err = s.authenticateBearer(w, r, rt, callerToken)
	case basic:
		sess, ok, err = s.basic(w, r, rt, basicUser, basicPass)
	default:
		sess, ok, err = rt.auth.authenticate(w, r, rt)
	}
	if err != nil {
		s.fail(w, r, err)
		return nil, nil, false
	}
	if !ok {
		return nil, nil, false
	}
	x.user = sess.UserName()
	if !rt.cfg.Allow.permits(sess) {
		s.forbidden(w, r, rt, sess, callerToken == "" && !basic && rt.cfg.Grant != GrantClientCredentials)
		return nil, nil, false
	}
	return rt, sess, true
}

// match returns the first route for host and path, the path prefixes
// compared case-insensitively when fold is set.
func (s *Server) match(host, path string, fold bool) *route {
	host = hostname(host)
	for _, rt := range s.routes {
		if rt.cfg.Match.Host != "" && !strings.EqualFold(rt.cfg.Match.Host, host) {
			continue
		}
		if pathHasPrefixFold(path, rt.cfg.Match.PathPrefix, fold) {
			return rt
		}
	}
	return nil
}

// hostname is a Host header without its port: "[::1]:8080" is "[::1]".
func hostname(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[:i+1]
		}
		return host
	}
	if h, _, ok := strings.Cut(host, ":"); ok {
		return h
	}
	return host
}

// pathHasPrefix matches "/app/" against "/app/x" and "/app", and "/app"
// against "/app" and "/app/x" but not "/apple".
func pathHasPrefix(path, prefix string) bool { return pathHasPrefixFold(path, prefix, false) }

func pathHasPrefixFold(path, prefix string, fold bool) bool {
	if prefix == "/" {
		return true
	}
	p := strings.TrimSuffix(prefix, "/")
	if len(path) < len(p) || len(path) > len(p) && path[len(p)] != '/' {
		return false
	}
	if fold {
		return strings.EqualFold(path[:len(p)], p)
	}
	return path[:len(p)] == p
}

func (rt *route) isPublic(clean string) bool {
	for _, p := range rt.public {
		if pathHasPrefix(clean, p) {
			return true
		}
	}
	return false
}

// crossSiteWrite reports an unsafe method, or a websocket handshake (which
// rides the session cookie like a POST: cross-site websocket hijacking),
// sent from another site (SECURITY.md 18): browsers mark it with
// Sec-Fetch-Site or Origin.
func (s *Server) crossSiteWrite(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		// A handshake is known by its key too: nginx drops Upgrade from
		// the forward-auth subrequest.
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") && r.Header.Get("Sec-Websocket-Key") == "" {
			return false
		}
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return false
	case "cross-site":
		return true
	case "same-site":
		// Another host of the same site: one login covers the sites that
		// share the cookie domain, so a sibling host's page is as foreign
		// as another site's (SameSite=Lax does not stop it). The origin
		// decides.
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false // not a browser, or an old one on a same-origin form
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return true // "null" and garbage
	}
	return !strings.EqualFold(u.Host, r.Host) && !strings.EqualFold(u.Host, s.public.Host)
}
