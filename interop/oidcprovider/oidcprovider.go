// Package oidcprovider runs the npm oidc-provider (the OpenID Certified
// authorization server for Node.js) for tests, like net/http/httptest runs
// a Go server: on a free loopback port, with a configuration the test
// writes, stopped at the end of the test.
//
// The server is the pinned package in interop/node (npm ci --prefix
// interop/node). Without node or the package the tests that need it are
// skipped, unless AUTHGATE_INTEROP_TESTS=required (CI), which fails them.
package oidcprovider

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Client is a client registration, in oidc-provider's metadata names
// (OpenID Connect Dynamic Client Registration §2).
type Client struct {
	ID                      string   `json:"client_id"`
	Secret                  string   `json:"client_secret,omitempty"`
	RedirectURIs            []string `json:"redirect_uris,omitempty"`
	PostLogoutRedirectURIs  []string `json:"post_logout_redirect_uris,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	// Extra are further metadata (jwks, application_type, ...), merged in.
	Extra map[string]any `json:"-"`
}

// MarshalJSON merges Extra into the metadata.
func (c Client) MarshalJSON() ([]byte, error) {
	type plain Client
	b, err := json.Marshal(plain(c))
	if err != nil || len(c.Extra) == 0 {
		return b, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range c.Extra {
		m[k] = v
	}
	return json.Marshal(m)
}

// Account is a user who can sign in; the login form accepts its Sub or
// its preferred_username claim (any password).
type Account struct {
	Sub    string         `json:"sub"`
	Claims map[string]any `json:"claims"`
}

// TTL are the lifetimes of the server's artifacts; zero keeps
// oidc-provider's default (access tokens 1 h, ID tokens 1 h, refresh
// tokens 14 d).
type TTL struct {
	AccessToken, IDToken, RefreshToken, ClientCredentials, Session, Grant, Interaction time.Duration
}

// Config configures a server. The zero value is one confidential client
// (DefaultClient) and the accounts alice and bob.
type Config struct {
	// Clients are the registrations; empty means DefaultClient(nil).
	Clients []Client
	// Accounts are the users; empty means DefaultAccounts().
	Accounts []Account
	// TTL are the artifacts' lifetimes.
	TTL TTL
	// Features are deep-merged over the harness's defaults (revocation
	// and RP-initiated logout on, devInteractions replaced by the
	// harness's login form), e.g. {"clientCredentials": {"enabled": true}}.
	Features map[string]any
	// Claims is the scope → claims map; nil means openid [sub], email
	// [email, email_verified], profile [name, preferred_username, ...],
	// groups [groups].
	Claims map[string][]string
	// Scopes are the scopes besides the claims' ones; nil means
	// oidc-provider's own (openid, offline_access).
	Scopes []string
	// RequireIDTokenHint makes end-session requests that carry
	// post_logout_redirect_uri without id_token_hint fail with a 500 page,
	// as some servers do.
	RequireIDTokenHint bool
	// ResourceServers are the RFC 8707 resource indicators the server
	// knows, each with the scope it grants and its token format.
	ResourceServers map[string]ResourceServer
	// Grants names modules of interop/node/grants to load (grant types
	// oidc-provider lacks, registered through registerGrantType).
	Grants []string
	// Extra are further Provider configuration keys, deep-merged.
	Extra map[string]any
}

// ResourceServer is an API the server issues tokens for.
type ResourceServer struct {
	// Scope is the space-separated scope it grants.
	Scope string `json:"scope,omitempty"`
	// AccessTokenFormat is "jwt" (the default) or "opaque".
	AccessTokenFormat string `json:"accessTokenFormat,omitempty"`
	// Audience is the tokens' aud; default the indicator itself.
	Audience string `json:"audience,omitempty"`
}

// DefaultClient is the confidential client authgate / authgate-secret
// with the code and refresh grants, for the given redirect URIs.
func DefaultClient(redirectURIs ...string) Client {
	return Client{ID: "authgate", Secret: "authgate-secret", RedirectURIs: redirectURIs,
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"}}
}

// DefaultAccounts are alice (groups admins, staff) and bob (staff).
func DefaultAccounts() []Account {
	return []Account{
		{Sub: "alice", Claims: map[string]any{"email": "alice@example.com", "email_verified": true, "name": "Alice Example",
			"preferred_username": "alice", "groups": []string{"admins", "staff"}}},
		{Sub: "bob", Claims: map[string]any{"email": "bob@example.org", "email_verified": true, "name": "Bob Example",
			"preferred_username": "bob", "groups": []string{"staff"}}},
	}
}

// Server is a running oidc-provider.
type Server struct {
	// URL is the issuer identifier, http://127.0.0.1:port, exactly as
	// oidc-provider writes it in discovery and tokens.
	URL string
	log *logBuffer
}

// Start runs a server configured by cfg until the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	dir := nodeDir()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json"))
	}
	if err != nil {
		msg := "oidc-provider is not installed; run: npm ci --prefix interop/node (" + err.Error() + ")"
		if os.Getenv("AUTHGATE_INTEROP_TESTS") == "required" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if len(cfg.Clients) == 0 {
		cfg.Clients = []Client{DefaultClient()}
	}
	if len(cfg.Accounts) == 0 {
		cfg.Accounts = DefaultAccounts()
	}
	doc := map[string]any{
		"clients": cfg.Clients, "accounts": cfg.Accounts, "features": cfg.Features, "scopes": cfg.Scopes,
		"requireIdTokenHint": cfg.RequireIDTokenHint, "grants": cfg.Grants, "resourceServers": cfg.ResourceServers, "extra": cfg.Extra, "ttl": cfg.TTL.seconds(),
	}
	if cfg.Claims != nil {
		doc["claims"] = cfg.Claims
	}
	input, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "server.mjs")
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{log: &logBuffer{}}
	cmd.Stderr = s.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		stdin.Close() // the server exits when its stdin closes
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("oidc-provider log:\n%s", s.log)
		}
	})
	if _, err := stdin.Write(append(input, '\n')); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var line struct {
				Issuer string `json:"issuer"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Issuer != "" {
				ready <- line.Issuer
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case s.URL = <-ready:
	case <-done:
		t.Fatalf("oidc-provider exited at start-up:\n%s", s.log)
	case <-time.After(20 * time.Second):
		t.Fatalf("oidc-provider not ready after 20s:\n%s", s.log)
	}
	return s
}

// nodeDir is interop/node of this checkout.
func nodeDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "node")
}

func (ttl TTL) seconds() map[string]int64 {
	out := map[string]int64{}
	for name, d := range map[string]time.Duration{"AccessToken": ttl.AccessToken, "IdToken": ttl.IDToken, "RefreshToken": ttl.RefreshToken,
		"ClientCredentials": ttl.ClientCredentials, "Session": ttl.Session, "Grant": ttl.Grant, "Interaction": ttl.Interaction} {
		if d > 0 {
			out[name] = int64((d + time.Second - 1) / time.Second)
		}
	}
	return out
}

// Log returns what the server logged (one line per request, and errors).
func (s *Server) Log() string { return s.log.String() }

// Counts returns how many requests each "METHOD /path" received.
func (s *Server) Counts(t testing.TB) map[string]int {
	t.Helper()
	resp, err := http.Get(s.URL + "/__test/counts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]int{}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Count returns how many requests "METHOD /path" received, e.g. "POST /token".
func (s *Server) Count(t testing.TB, methodPath string) int { return s.Counts(t)[methodPath] }

// noFollow is c, sharing its cookie jar, without following redirects.
func noFollow(c *http.Client) *http.Client {
	n := *c
	n.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if n.Timeout == 0 {
		n.Timeout = 15 * time.Second
	}
	return &n
}

// Authorize drives a browser (c, with a cookie jar) from authURL through
// the server's sign-in as login, consent granted for what was asked, and
// returns where the server finally sends it off its own origin: the
// client's redirect_uri with code and state, or with an error. With a
// login session at the server already, no form is shown (prompt=none
// works the same way).
func (s *Server) Authorize(t testing.TB, c *http.Client, authURL, login string) *url.URL {
	t.Helper()
	return s.drive(t, c, authURL, func(uid string) (string, url.Values) {
		return "/interaction/" + uid + "/login", url.Values{"login": {login}, "password": {"any"}}
	})
}

// Cancel is Authorize with the user pressing Cancel at the sign-in form.
func (s *Server) Cancel(t testing.TB, c *http.Client, authURL string) *url.URL {
	t.Helper()
	return s.drive(t, c, authURL, func(uid string) (string, url.Values) {
		return "/interaction/" + uid + "/abort", url.Values{}
	})
}

var interactionPath = regexp.MustCompile(`^/interaction/([^/]+)$`)

func (s *Server) drive(t testing.TB, c *http.Client, start string, submit func(uid string) (string, url.Values)) *url.URL {
	t.Helper()
	c = noFollow(c)
	next, _ := http.NewRequest(http.MethodGet, start, nil)
	for range 20 {
		resp, err := c.Do(next)
		if err != nil {
			t.Fatalf("oidc-provider: %s %s: %v", next.Method, next.URL, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode/100 == 3 {
			loc, err := next.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				t.Fatalf("oidc-provider: bad Location %q", resp.Header.Get("Location"))
			}
			if !strings.HasPrefix(loc.String(), s.URL+"/") {
				return loc
			}
			next, _ = http.NewRequest(http.MethodGet, loc.String(), nil)
			continue
		}
		m := interactionPath.FindStringSubmatch(next.URL.Path)
		if resp.StatusCode != http.StatusOK || m == nil || next.Method != http.MethodGet {
			t.Fatalf("oidc-provider answered %s %s with %d:\n%s", next.Method, next.URL.Path, resp.StatusCode, body)
		}
		path, form := submit(m[1])
		next, _ = http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(form.Encode()))
		next.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	t.Fatal("oidc-provider: more than 20 redirects")
	return nil
}

// LogoutResult is how an end-session request ended.
type LogoutResult struct {
	// Redirect is where the server sent the browser after the sign-out
	// (the post_logout_redirect_uri); nil when it showed a page instead.
	Redirect *url.URL
	// Status and Body are the page's when there was no redirect.
	Status int
	Body   string
}

var (
	formAction = regexp.MustCompile(`<form[^>]*id="op.logoutForm"[^>]*action="([^"]+)"`)
	xsrfInput  = regexp.MustCompile(`name="xsrf" value="([^"]+)"`)
)

// EndSession sends the browser's end-session request (a GET of u, or a POST
// of form to u when form is not nil), confirms the server's "sign out?"
// page, and reports where it ended.
func (s *Server) EndSession(t testing.TB, c *http.Client, u string, form url.Values) LogoutResult {
	t.Helper()
	c = noFollow(c)
	var req *http.Request
	if form == nil {
		req, _ = http.NewRequest(http.MethodGet, u, nil)
	} else {
		req, _ = http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for range 5 {
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("oidc-provider end_session: %v", err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode/100 == 3 {
			loc, _ := req.URL.Parse(resp.Header.Get("Location"))
			if !strings.HasPrefix(loc.String(), s.URL+"/") {
				return LogoutResult{Redirect: loc}
			}
			req, _ = http.NewRequest(http.MethodGet, loc.String(), nil)
			continue
		}
		action := formAction.FindSubmatch(body)
		xsrf := xsrfInput.FindSubmatch(body)
		if resp.StatusCode != http.StatusOK || action == nil || xsrf == nil {
			return LogoutResult{Status: resp.StatusCode, Body: string(body)}
		}
		target, _ := req.URL.Parse(string(bytes.ReplaceAll(action[1], []byte("&amp;"), []byte("&"))))
		confirm := url.Values{"xsrf": {string(xsrf[1])}, "logout": {"yes"}}
		req, _ = http.NewRequest(http.MethodPost, target.String(), strings.NewReader(confirm.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	t.Fatal("oidc-provider end_session: too many steps")
	return LogoutResult{}
}

// SignedIn reports whether the browser c still has a login session at the
// server: an authorization request with prompt=none for the client
// succeeds without a form.
func (s *Server) SignedIn(t testing.TB, c *http.Client, clientID, redirectURI string) bool {
	t.Helper()
	q := url.Values{"client_id": {clientID}, "redirect_uri": {redirectURI}, "response_type": {"code"}, "scope": {"openid"},
		"prompt": {"none"}, "state": {"probe-state-0123456789abcdef"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	resp, err := noFollow(c).Get(s.URL + "/auth?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for hop := 0; resp.StatusCode/100 == 3 && hop < 5; hop++ {
		loc, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if !strings.HasPrefix(loc.String(), s.URL+"/") {
			switch {
			case loc.Query().Get("code") != "":
				return true
			case loc.Query().Get("error") == "login_required":
				return false
			default:
				t.Fatalf("SignedIn: unexpected answer %s", loc)
			}
		}
		if resp, err = noFollow(c).Get(loc.String()); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	t.Fatalf("SignedIn: status %d", resp.StatusCode)
	return false
}

// logBuffer collects the server's stderr.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }

var _ fmt.Stringer = (*logBuffer)(nil)
