package upstreamtest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"html/template"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxBodyBytes bounds every request body the server reads.
const maxBodyBytes = 64 << 10

// Config configures a Server. The zero value is a usable configuration.
type Config struct {
	// Listener is where the server accepts connections. Nil means a fresh
	// listener on 127.0.0.1 with a port chosen by the kernel. The issuer is
	// "http://" + Listener.Addr().String() ("https://" with TLS).
	Listener net.Listener
	// TLS serves HTTPS with httptest's self-signed certificate (valid for
	// 127.0.0.1, ::1 and example.com; trust it with CertPool or use
	// HTTPClient) and asks every client for a certificate without
	// requiring one, as tls_client_auth (RFC 8705 §2) needs. False means
	// plain HTTP.
	TLS bool
	// Clients are the registered OAuth clients. Empty means one client,
	// {ID: "authgate", Secret: "authgate-secret"}, accepting loopback
	// redirect URIs. NewServer panics on a client whose AuthMethod lacks
	// what it needs (a Secret, PublicKey or TLSCertificate; TLS for
	// tls_client_auth).
	Clients []Client
	// Users are the accounts that can sign in. Empty means DefaultUsers().
	// Users[0] is who the non-interactive server signs in without a
	// login_hint.
	Users []User
	// AccessTokenTTL is the lifetime of access tokens. Zero or negative
	// means one hour. SetAccessTokenTTL changes it later.
	AccessTokenTTL time.Duration
	// IDTokenTTL is the lifetime of ID tokens. Zero or negative means one
	// hour.
	IDTokenTTL time.Duration
	// Interactive makes /authorize show an HTML login form, as the demo
	// needs. False means /authorize approves at once, as the user whose
	// username or email is the login_hint parameter, else as Users[0]; a
	// login_hint naming no user is answered with error=access_denied.
	Interactive bool
	// GroupsInUserinfoOnly leaves the "groups" claim out of ID tokens, so it
	// is only available from /userinfo.
	GroupsInUserinfoOnly bool
	// OmitIssParameter leaves `iss` out of authorization responses and
	// advertises authorization_response_iss_parameter_supported=false
	// (RFC 9207).
	OmitIssParameter bool
	// NoRefreshTokens makes the token endpoint issue no refresh token, as
	// many servers do without offline_access or prompt=consent.
	NoRefreshTokens bool
	// RequireIDTokenHint makes the end-session endpoint fail with a 500
	// page when post_logout_redirect_uri comes without id_token_hint, as
	// some servers do.
	RequireIDTokenHint bool
	// OpaqueAccessTokens makes access tokens random strings instead of
	// JWTs, as many servers issue; they work at userinfo, introspection
	// and revocation alike.
	OpaqueAccessTokens bool
	// NoFormPost leaves form_post out of response_modes_supported and
	// answers an authorization request with response_mode=form_post with
	// error=invalid_request, sent the response type's default way, as
	// servers without OAuth 2.0 Form Post Response Mode do. False means
	// form_post is supported, for the code and the implicit flow alike.
	NoFormPost bool
	// Now is the clock for every expiry and issue time. Nil means time.Now.
	Now func() time.Time
}

// Server is a running authorization server. Its methods are safe for
// concurrent use.
type Server struct {
	// URL is the base URL of the server, of the form http://ipaddr:port
	// with no trailing slash. It is also the issuer.
	URL string

	hs                   *httptest.Server
	handler              http.Handler
	pages                *template.Template
	clients              []Client
	users                []User
	idTokenTTL           time.Duration
	interactive          bool
	groupsInUserinfoOnly bool
	omitIss              bool
	noRefreshTokens      bool
	requireIDTokenHint   bool
	opaqueAccess         bool
	noFormPost           bool
	tls                  bool
	now                  func() time.Time
	closing              chan struct{}
	closeOnce            sync.Once

	// sids are the login sessions by subject (SessionIDs).
	sidMu sync.Mutex
	sids  map[string][]string

	mu             sync.Mutex
	keys           []*signingKey // the last one signs
	codes          map[string]*authCode
	refreshTokens  map[string]*grant       // current, unrotated refresh tokens
	accessTokens   map[string]*accessToken // JWTs by jti
	opaqueTokens   map[string]*accessToken // opaque tokens by themselves
	revokedTokens  map[string]bool         // tokens named in a successful /revoke
	usedAssertions map[string]time.Time    // client id and jti of client assertions, until their exp
	accessTTL      time.Duration
	tokenDelay     time.Duration
	tokenDown      int              // status of every /token answer; 0: normal
	faults         map[string]Fault // by endpoint name (SetFault)
	usedRefresh    map[string]bool  // refresh tokens already redeemed
	refreshReuses  int
	idTokenSigner  func(jwt.MapClaims) (string, error)
	authorizeHook  func(url.Values)
	silentError    string
	endpointCounts map[string]int
	grantCounts    map[string]int
	total          int
}

// NewServer starts a server configured by cfg and returns it. The caller
// must call Close when done. NewServer panics if it cannot listen or
// generate a signing key, as httptest.NewServer does.
func NewServer(cfg Config) *Server {
	s := &Server{
		clients:              cloneClients(cfg.Clients),
		users:                cloneUsers(cfg.Users),
		idTokenTTL:           cfg.IDTokenTTL,
		interactive:          cfg.Interactive,
		groupsInUserinfoOnly: cfg.GroupsInUserinfoOnly,
		omitIss:              cfg.OmitIssParameter,
		noRefreshTokens:      cfg.NoRefreshTokens,
		requireIDTokenHint:   cfg.RequireIDTokenHint,
		opaqueAccess:         cfg.OpaqueAccessTokens,
		noFormPost:           cfg.NoFormPost,
		tls:                  cfg.TLS,
		now:                  cfg.Now,
		closing:              make(chan struct{}),
		pages:                template.Must(template.New("pages").Parse(pageTemplates)),
		codes:                make(map[string]*authCode),
		refreshTokens:        make(map[string]*grant),
		accessTokens:         make(map[string]*accessToken),
		opaqueTokens:         make(map[string]*accessToken),
		revokedTokens:        make(map[string]bool),
		usedAssertions:       make(map[string]time.Time),
		accessTTL:            cfg.AccessTokenTTL,
		endpointCounts:       make(map[string]int),
		grantCounts:          make(map[string]int),
		faults:               make(map[string]Fault),
		usedRefresh:          make(map[string]bool),
	}
	if len(s.clients) == 0 {
		s.clients = []Client{{ID: "authgate", Secret: "authgate-secret"}}
	}
	checkClients(s.clients, s.tls)
	if len(s.users) == 0 {
		s.users = DefaultUsers()
	}
	if s.accessTTL <= 0 {
		s.accessTTL = time.Hour
	}
	if s.idTokenTTL <= 0 {
		s.idTokenTTL = time.Hour
	}
	if s.now == nil {
		s.now = time.Now
	}
	key, err := newSigningKey()
	if err != nil {
		panic("upstreamtest: " + err.Error())
	}
	s.keys = []*signingKey{key}
	s.handler = s.routes()

	s.hs = httptest.NewUnstartedServer(s.handler)
	if cfg.Listener != nil {
		_ = s.hs.Listener.Close()
		s.hs.Listener = cfg.Listener
	}
	s.hs.Config.ReadHeaderTimeout = 10 * time.Second
	s.hs.Config.MaxHeaderBytes = 64 << 10
	// The issuer is fixed before the first request can arrive; httptest
	// computes the same string in Start and StartTLS.
	if s.tls {
		// Verification is the token endpoint's business: it pins each
		// client's certificate (RFC 8705 §2.2), so any is accepted here.
		s.hs.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
		s.URL = "https://" + s.hs.Listener.Addr().String()
		s.hs.StartTLS()
	} else {
		s.URL = "http://" + s.hs.Listener.Addr().String()
		s.hs.Start()
	}
	return s
}

// Certificate returns the server's TLS certificate, or nil without
// Config.TLS.
func (s *Server) Certificate() *x509.Certificate {
	if !s.tls {
		return nil
	}
	return s.hs.Certificate()
}

// CertPool returns a pool holding the server's TLS certificate, for a
// client's tls.Config.RootCAs, or nil without Config.TLS.
func (s *Server) CertPool() *x509.CertPool {
	if !s.tls {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.hs.Certificate())
	return pool
}

// HTTPClient returns a new HTTP client for the server: with Config.TLS it
// trusts the server's certificate and presents none of its own (give it
// to upstream.New, which adds the tls_client_auth certificate). It has a
// 10s timeout and, like the gateway's, follows no redirect.
func (s *Server) HTTPClient() *http.Client {
	tr := &http.Transport{}
	if s.tls {
		tr.TLSClientConfig = &tls.Config{RootCAs: s.CertPool()}
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Close shuts the server down and blocks until all outstanding requests
// have completed; a token request waiting out SetTokenDelay returns at once.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.hs.Close()
}

// Issuer returns the issuer identifier, which is the same as URL.
func (s *Server) Issuer() string { return s.URL }

// Handler returns the server's HTTP handler, which serves every endpoint
// and updates the counters. Its issuer stays URL wherever it is mounted.
func (s *Server) Handler() http.Handler { return s.handler }

// SetIDTokenSigner replaces the function that turns ID token claims into a
// token, so that a test can alter claims or sign with alg "none" or HS256.
// Nil restores the default, Sign.
func (s *Server) SetIDTokenSigner(f func(claims jwt.MapClaims) (string, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idTokenSigner = f
}

// SetAuthorizeResponseHook installs f to edit the query of each successful
// authorization response (code, state, iss) before the redirect is sent.
// Nil removes the hook.
func (s *Server) SetAuthorizeResponseHook(f func(q url.Values)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authorizeHook = f
}

// SetSilentLoginError makes a prompt=none authorization request fail with
// the error code (login_required, consent_required, ...), as when the
// user's login session at the server has ended. Empty: prompt=none
// requests are approved (the non-interactive server has a session), or
// refused with login_required (the interactive one has none).
func (s *Server) SetSilentLoginError(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silentError = code
}

// SetAccessTokenTTL sets the lifetime of access tokens issued from now on.
// Zero or negative means one hour.
func (s *Server) SetAccessTokenTTL(d time.Duration) {
	if d <= 0 {
		d = time.Hour
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accessTTL = d
}

// SetTokenDelay makes the token endpoint wait d before it handles each
// request, to widen races between concurrent refreshes. Zero removes the
// delay.
func (s *Server) SetTokenDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenDelay = d
}

// SetTokenEndpointDown makes the token endpoint answer every request with
// status (such as 503) and a temporarily_unavailable error, for fault
// tests; the request is still counted by Count and GrantCount. Zero
// restores normal service. Other endpoints are not affected.
func (s *Server) SetTokenEndpointDown(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenDown = status
}

// Count returns how many requests the named endpoint has received:
// "discovery", "jwks", "authorize", "token", "userinfo", "end_session",
// "revoke" or "introspect". Both discovery paths count as "discovery".
func (s *Server) Count(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endpointCounts[endpoint]
}

// GrantCount returns how many token requests, successful or not, named
// grantType as their grant_type, such as "authorization_code",
// "refresh_token" or "client_credentials".
func (s *Server) GrantCount(grantType string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grantCounts[grantType]
}

// RefreshTokenReuses returns how many token requests presented a refresh
// token that had already been redeemed (rotation makes each single use,
// RFC 9700 §4.14.2): a client that lost a race or forgot a rotated token.
// Each is refused with invalid_grant.
func (s *Server) RefreshTokenReuses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshReuses
}

// TotalRequests returns how many requests the server has received, on any
// path, including unknown ones.
func (s *Server) TotalRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// routes builds the handler for every endpoint.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	get, getPost, post := []string{http.MethodGet}, []string{http.MethodGet, http.MethodPost}, []string{http.MethodPost}
	mux.Handle("/.well-known/openid-configuration", s.endpoint("discovery", get, s.serveDiscovery))
	mux.Handle("/.well-known/oauth-authorization-server", s.endpoint("discovery", get, s.serveDiscovery))
	mux.Handle("/jwks", s.endpoint("jwks", get, s.serveJWKS))
	mux.Handle("/authorize", s.endpoint("authorize", getPost, s.serveAuthorize))
	mux.Handle("/token", s.endpoint("token", post, s.serveToken))
	mux.Handle("/userinfo", s.endpoint("userinfo", getPost, s.serveUserinfo))
	mux.Handle("/logout", s.endpoint("end_session", getPost, s.serveLogout))
	mux.Handle("/revoke", s.endpoint("revoke", post, s.serveRevoke))
	mux.Handle("/introspect", s.endpoint("introspect", post, s.serveIntrospect))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.total++
		s.mu.Unlock()
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		}
		mux.ServeHTTP(w, r)
	})
}

// endpoint wraps h so that it counts as name and answers only methods
// (HEAD is allowed wherever GET is).
func (s *Server) endpoint(name string, methods []string, h http.HandlerFunc) http.Handler {
	allow := methods[0]
	for _, m := range methods[1:] {
		allow += ", " + m
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.endpointCounts[name]++
		s.mu.Unlock()
		if name != "token" && s.injectFault(name, w, r) {
			return // the token endpoint counts its grant first
		}
		for _, m := range methods {
			if r.Method == m || (r.Method == http.MethodHead && m == http.MethodGet) {
				h(w, r)
				return
			}
		}
		w.Header().Set("Allow", allow)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	})
}

// writeJSON sends v as a JSON response. Public documents (discovery, JWKS)
// carry no caching headers, so that clients apply their own policy.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writePrivateJSON sends v as a JSON response that no cache may store, as
// RFC 6749 §5.1 requires for responses carrying tokens or user data.
func writePrivateJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	writeJSON(w, status, v)
}

// oauthError is the error response body of RFC 6749 §5.2.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeOAuthError sends an RFC 6749 §5.2 error response.
func writeOAuthError(w http.ResponseWriter, status int, code, description string) {
	writePrivateJSON(w, status, oauthError{Error: code, Description: description})
}
