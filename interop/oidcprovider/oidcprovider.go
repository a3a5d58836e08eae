// Package oidcprovider runs the npm oidc-provider (panva's OpenID Certified
// authorization server for Node.js) for tests, the way net/http/httptest
// runs a Go server: on a free loopback port, with a configuration the test
// writes, stopped when the test ends.
//
// The server is the pinned package in interop/node, installed with
//
//	npm ci --prefix interop/node
//
// in the module root. Without node or the package, Start skips the test,
// unless the environment has AUTHGATE_INTEROP_TESTS=required (CI), which
// fails it instead.
//
// A test starts a server, points the code under test at Server.URL (the
// issuer; discovery is at URL + "/.well-known/openid-configuration") and
// plays the browser with Authorize, Cancel, EndSession and SignedIn, each
// given an *http.Client with a cookie jar that stands for the user's
// browser.
package oidcprovider

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html"
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
	"syscall"
	"testing"
	"time"
)

// InstallCommand is the command, run in the module root, that installs the
// pinned oidc-provider Start needs.
const InstallCommand = "npm ci --prefix interop/node"

// Client is a client registration in oidc-provider's metadata names
// (OpenID Connect Dynamic Client Registration 1.0 §2). Empty fields are
// left out, so oidc-provider's client defaults apply to them.
type Client struct {
	// ID is the client_id.
	ID string `json:"client_id"`
	// Secret is the client_secret; empty for a public client.
	Secret string `json:"client_secret,omitempty"`
	// RedirectURIs are the redirect_uris, e.g. the gateway's callback.
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// PostLogoutRedirectURIs are the post_logout_redirect_uris.
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris,omitempty"`
	// GrantTypes are the grant_types; empty means authorization_code.
	GrantTypes []string `json:"grant_types,omitempty"`
	// ResponseTypes are the response_types; empty means code.
	ResponseTypes []string `json:"response_types,omitempty"`
	// Scope is the space-separated scope allow-list; empty allows all.
	Scope string `json:"scope,omitempty"`
	// TokenEndpointAuthMethod is the token_endpoint_auth_method; empty
	// means client_secret_basic.
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// Extra holds further metadata (jwks, application_type, ...), merged
	// into the registration; it wins over the fields above.
	Extra map[string]any `json:"-"`
}

// MarshalJSON writes the registration with Extra merged in.
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

// Account is a user who can sign in. The login form accepts its Sub or its
// preferred_username claim as login name, with any password. Claims are
// what oidc-provider's findAccount returns (sub is added), released by
// scope as Config.Claims says.
type Account struct {
	// Sub is the account's subject identifier.
	Sub string `json:"sub"`
	// Claims are the account's claims, e.g. email or groups.
	Claims map[string]any `json:"claims"`
	// Password is what the password grant (Config.Grants "password")
	// accepts for this account; empty means the grant never signs it in.
	// The login form ignores it.
	Password string `json:"password,omitempty"`
}

// TTL holds the lifetimes of the server's artifacts, sent in whole seconds
// (rounded up). Zero keeps oidc-provider's default: access tokens 1 h (or
// a resource server's own), client-credentials tokens 10 min, authorization
// codes 1 min, ID tokens 1 h, refresh tokens 14 d, sessions 14 d, grants
// 14 d, interactions 1 h.
type TTL struct {
	// AccessToken is the lifetime of access tokens of the code flow.
	AccessToken time.Duration
	// AuthorizationCode is the lifetime of authorization codes.
	AuthorizationCode time.Duration
	// ClientCredentials is the lifetime of client-credentials tokens.
	ClientCredentials time.Duration
	// IDToken is the lifetime of ID tokens.
	IDToken time.Duration
	// RefreshToken is the lifetime of refresh tokens.
	RefreshToken time.Duration
	// Session is the lifetime of the login session (its cookie).
	Session time.Duration
	// Grant is the lifetime of grants (what the user consented to).
	Grant time.Duration
	// Interaction is the lifetime of a login or consent interaction.
	Interaction time.Duration
}

// Config configures a server. Its zero value registers DefaultClient with
// no redirect URIs (give it the caller's with DefaultClient(uri) in
// Clients) and the accounts of DefaultAccounts.
type Config struct {
	// Clients are the registered clients; empty means one DefaultClient().
	Clients []Client
	// Accounts are the users; empty means DefaultAccounts().
	Accounts []Account
	// TTL holds the artifacts' lifetimes.
	TTL TTL
	// Features are deep-merged over the harness's defaults (revocation
	// and RP-initiated logout on, devInteractions off in favour of the
	// harness's login form), in oidc-provider's names, for example
	// {"clientCredentials": {"enabled": true}} or
	// {"introspection": {"enabled": true}}.
	Features map[string]any
	// Claims is the scope → claims map; nil means openid [sub], email
	// [email, email_verified], profile [name, preferred_username,
	// given_name, family_name] and groups [groups].
	Claims map[string][]string
	// Scopes are the scopes besides those Claims defines; nil means
	// oidc-provider's own (openid, offline_access).
	Scopes []string
	// RequireIDTokenHint makes the end-session endpoint answer a request
	// (GET or POST) that carries post_logout_redirect_uri without
	// id_token_hint with a 500 page, leaving the user signed in, as some
	// servers do.
	RequireIDTokenHint bool
	// ResourceServers are the RFC 8707 resource indicators the server
	// knows, by indicator; any other indicator is invalid_target.
	ResourceServers map[string]ResourceServer
	// Grants names modules in interop/node/grants to load, each
	// registering a grant type oidc-provider lacks through
	// provider.registerGrantType (see interop/node/grants/README.md).
	Grants []string
	// OmitFormPost makes the server behave as one without OAuth 2.0 Form
	// Post Response Mode: discovery leaves form_post out of
	// response_modes_supported, and an authorization request with
	// response_mode=form_post is answered unsupported_response_mode by
	// the response type's default mode. False means oidc-provider's
	// stock form_post.
	OmitFormPost bool
	// LoopbackFetch lets the server's own outgoing requests (back-channel
	// logout notifications, a client's jwks_uri) reach loopback
	// addresses, which oidc-provider refuses by default as SSRF
	// protection: through its documented fetch configuration hook, for
	// 127.0.0.1, ::1 and localhost only. False keeps the protection.
	LoopbackFetch bool
	// Extra holds any other Provider configuration, deep-merged last (for
	// example {"pkce": ...} or {"enableHttpPostMethods": true}).
	Extra map[string]any
}

// ResourceServer is an API the server issues access tokens for
// (resourceIndicators' getResourceServerInfo).
type ResourceServer struct {
	// Scope is the space-separated scope the API accepts.
	Scope string `json:"scope,omitempty"`
	// AccessTokenFormat is "jwt" (the default) or "opaque".
	AccessTokenFormat string `json:"accessTokenFormat,omitempty"`
	// Audience is the tokens' aud; empty means the indicator itself.
	Audience string `json:"audience,omitempty"`
}

// DefaultClient returns the confidential client "authgate" with secret
// "authgate-secret" (client_secret_basic, oidc-provider's default), the
// authorization_code and refresh_token grants and response type code,
// registered for redirectURIs.
func DefaultClient(redirectURIs ...string) Client {
	return Client{
		ID: "authgate", Secret: "authgate-secret", RedirectURIs: redirectURIs,
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
	}
}

// DefaultAccounts returns alice (alice@example.com, groups admins and
// staff) and bob (bob@example.org, group staff), both with verified email
// addresses.
func DefaultAccounts() []Account {
	return []Account{
		{Sub: "alice", Claims: map[string]any{
			"email": "alice@example.com", "email_verified": true, "name": "Alice Example",
			"given_name": "Alice", "family_name": "Example", "preferred_username": "alice",
			"groups": []string{"admins", "staff"},
		}},
		{Sub: "bob", Claims: map[string]any{
			"email": "bob@example.org", "email_verified": true, "name": "Bob Example",
			"given_name": "Bob", "family_name": "Example", "preferred_username": "bob",
			"groups": []string{"staff"},
		}},
	}
}

// Server is a running oidc-provider.
type Server struct {
	// URL is the issuer identifier, http://127.0.0.1:PORT with no
	// trailing slash, exactly as oidc-provider writes it in discovery and
	// in tokens' iss.
	URL string

	origin string
	log    *logBuffer
}

// Start runs a server configured by cfg until the test ends. It skips the
// test when node or the installed package is missing (fails it with
// AUTHGATE_INTEROP_TESTS=required), and fails it when the server does not
// come up within 20 seconds. When the test has failed, the server's log
// is written to the test log at the end.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	dir, node, err := locate()
	if err != nil {
		if os.Getenv("AUTHGATE_INTEROP_TESTS") == "required" {
			t.Fatalf("oidcprovider: %v (AUTHGATE_INTEROP_TESTS=required)", err)
		}
		t.Skipf("oidcprovider: %v", err)
	}
	input, err := cfg.document()
	if err != nil {
		t.Fatalf("oidcprovider: config: %v", err)
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
		t.Fatalf("oidcprovider: starting node: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		// The server exits when its stdin closes; SIGTERM too.
		stdin.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("oidc-provider log (%s):\n%s", s.URL, s.log)
		}
	})
	// The configuration is the first line of stdin, which then stays open.
	if _, err := stdin.Write(append(input, '\n')); err != nil {
		t.Fatalf("oidcprovider: writing the config: %v\n%s", err, s.log)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var line struct {
				Issuer string `json:"issuer"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Issuer != "" {
				select {
				case ready <- line.Issuer:
				default:
				}
				continue
			}
			fmt.Fprintf(s.log, "stdout: %s\n", sc.Bytes())
		}
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case s.URL = <-ready:
	case <-done:
		t.Fatalf("oidcprovider: node exited at start-up: %v\n%s", cmd.ProcessState, s.log)
	case <-time.After(20 * time.Second):
		t.Fatalf("oidcprovider: no ready line from node after 20s:\n%s", s.log)
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatalf("oidcprovider: bad issuer %q: %v", s.URL, err)
	}
	s.origin = u.Scheme + "://" + u.Host
	return s
}

// locate finds interop/node (with the installed package) and node.
func locate() (dir, node string, err error) {
	dir, err = nodeDir()
	if err != nil {
		return "", "", err
	}
	node, err = exec.LookPath("node")
	if err != nil {
		return "", "", fmt.Errorf("node is not on PATH (install Node.js 20.19 or later, e.g. apt-get install nodejs npm, then run %s in the module root)", InstallCommand)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err != nil {
		return "", "", fmt.Errorf("oidc-provider is not installed in %s; run %s in the module root", dir, InstallCommand)
	}
	return dir, node, nil
}

// nodeDir is interop/node of this module: next to this source file, or
// found through go env GOMOD (for builds with -trimpath).
func nodeDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Join(filepath.Dir(file), "..", "node")
		if _, err := os.Stat(filepath.Join(dir, "server.mjs")); err == nil {
			return dir, nil
		}
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", errors.New("cannot find the module root (interop/node/server.mjs) from the source path or go env GOMOD")
	}
	dir := filepath.Join(filepath.Dir(gomod), "interop", "node")
	if _, err := os.Stat(filepath.Join(dir, "server.mjs")); err != nil {
		return "", fmt.Errorf("no %s", filepath.Join(dir, "server.mjs"))
	}
	return dir, nil
}

// document is the JSON configuration server.mjs reads.
func (cfg Config) document() ([]byte, error) {
	clients := cfg.Clients
	if len(clients) == 0 {
		clients = []Client{DefaultClient()}
	}
	accounts := cfg.Accounts
	if len(accounts) == 0 {
		accounts = DefaultAccounts()
	}
	doc := map[string]any{
		"clients":            clients,
		"accounts":           accounts,
		"ttl":                cfg.TTL.seconds(),
		"requireIdTokenHint": cfg.RequireIDTokenHint,
		"omitFormPost":       cfg.OmitFormPost,
		"loopbackFetch":      cfg.LoopbackFetch,
	}
	set := func(key string, v any, present bool) {
		if present {
			doc[key] = v
		}
	}
	set("features", cfg.Features, cfg.Features != nil)
	set("claims", cfg.Claims, cfg.Claims != nil)
	set("scopes", cfg.Scopes, cfg.Scopes != nil)
	set("resourceServers", cfg.ResourceServers, cfg.ResourceServers != nil)
	set("grants", cfg.Grants, cfg.Grants != nil)
	set("extra", cfg.Extra, cfg.Extra != nil)
	return json.Marshal(doc)
}

// seconds maps the lifetimes to oidc-provider's ttl names.
func (ttl TTL) seconds() map[string]int64 {
	out := map[string]int64{}
	for name, d := range map[string]time.Duration{
		"AccessToken": ttl.AccessToken, "AuthorizationCode": ttl.AuthorizationCode,
		"ClientCredentials": ttl.ClientCredentials, "IdToken": ttl.IDToken,
		"RefreshToken": ttl.RefreshToken, "Session": ttl.Session, "Grant": ttl.Grant,
		"Interaction": ttl.Interaction,
	} {
		if d > 0 {
			out[name] = int64((d + time.Second - 1) / time.Second)
		}
	}
	return out
}

// Log returns what the server has logged so far: one line per request
// ("METHOD /path?query STATUS"), oidc-provider's warnings and the errors
// it reported.
func (s *Server) Log() string { return s.log.String() }

var testClient = &http.Client{Timeout: 10 * time.Second}

// Counts returns how many requests the server has answered per
// "METHOD /path" (no query), e.g. "POST /token", since the start or the
// last Reset. It panics if the server does not answer.
func (s *Server) Counts() map[string]int {
	resp, err := testClient.Get(s.URL + "/__test/counts")
	if err != nil {
		panic(fmt.Sprintf("oidcprovider: counts: %v", err))
	}
	defer resp.Body.Close()
	m := map[string]int{}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		panic(fmt.Sprintf("oidcprovider: counts: %v", err))
	}
	return m
}

// Count returns how many requests the server has answered for methodPath,
// e.g. "POST /token", since the start or the last Reset.
func (s *Server) Count(methodPath string) int { return s.Counts()[methodPath] }

// Reset sets all counts to zero. It panics if the server does not answer.
func (s *Server) Reset() {
	resp, err := testClient.Post(s.URL+"/__test/reset", "", nil)
	if err != nil {
		panic(fmt.Sprintf("oidcprovider: reset: %v", err))
	}
	resp.Body.Close()
}

// owns reports whether u is on the server's origin.
func (s *Server) owns(u *url.URL) bool { return u.Scheme+"://"+u.Host == s.origin }

const maxSteps = 20

// browser returns a copy of c that shares its cookie jar and transport but
// follows no redirects.
func browser(t testing.TB, c *http.Client) *http.Client {
	t.Helper()
	if c == nil || c.Jar == nil {
		t.Fatal("oidcprovider: the browser needs an *http.Client with a cookie jar")
	}
	n := *c
	n.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if n.Timeout == 0 {
		n.Timeout = 15 * time.Second
	}
	return &n
}

// step sends req and returns the answer with its body read (at most 1 MiB)
// and, for a redirect, its resolved Location.
func step(t testing.TB, c *http.Client, req *http.Request) (*http.Response, []byte, *url.URL) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("oidcprovider: %s %s: %v", req.Method, req.URL, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode < 300 || resp.StatusCode > 399 {
		return resp, body, nil
	}
	loc, err := req.URL.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		t.Fatalf("oidcprovider: %s %s: %d with Location %q", req.Method, req.URL, resp.StatusCode, resp.Header.Get("Location"))
	}
	return resp, body, loc
}

func get(u string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		panic(err)
	}
	return req
}

func postForm(u string, form url.Values) *http.Request {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

// Authorize plays the browser c (an *http.Client with a cookie jar; its
// CheckRedirect is not used) from authURL, normally the server's
// authorization endpoint with the client's parameters, through the
// server's sign-in as login (any password), consent granted for whatever
// was asked. It follows redirects on the server's origin and returns the
// first redirect that leaves it: the client's redirect_uri with code and
// state, or with error. When the browser already has a login session at
// the server, no form is shown. An unknown login, an error page or any
// other page fails the test with the page's body.
func (s *Server) Authorize(t testing.TB, c *http.Client, authURL, login string) *url.URL {
	t.Helper()
	return s.interact(t, c, authURL, "login", url.Values{"login": {login}, "password": {"any password"}})
}

// Cancel is Authorize with the user pressing Cancel on the sign-in form:
// the redirect it returns carries error=access_denied.
func (s *Server) Cancel(t testing.TB, c *http.Client, authURL string) *url.URL {
	t.Helper()
	return s.interact(t, c, authURL, "abort", url.Values{})
}

// FormPost is an authorization response in form_post mode (OAuth 2.0 Form
// Post Response Mode §2): the server's auto-posting page.
type FormPost struct {
	// Status is the page's HTTP status: oidc-provider sends 200 with a
	// response, 400 with an error.
	Status int
	// Action is the form's action, the client's redirect_uri.
	Action *url.URL
	// Fields are the form's hidden inputs: code or access_token,
	// id_token, state, iss..., or error.
	Fields url.Values
}

// AuthorizeFormPost is Authorize for a request with response_mode=
// form_post: it signs in as login the same way and returns the page that
// posts the response to the client, instead of a redirect, without
// posting it. A redirect off the server's origin or any other page fails
// the test.
func (s *Server) AuthorizeFormPost(t testing.TB, c *http.Client, authURL, login string) FormPost {
	t.Helper()
	var fp FormPost
	if loc := s.interactPost(t, c, authURL, "login", url.Values{"login": {login}, "password": {"any password"}}, &fp); loc != nil {
		t.Fatalf("oidcprovider: %s redirected to %s instead of answering with a form_post page", authURL, loc)
	}
	return fp
}

var interactionPath = regexp.MustCompile(`^/interaction/([^/]+)$`)

func (s *Server) interact(t testing.TB, c *http.Client, start, action string, form url.Values) *url.URL {
	t.Helper()
	return s.interactPost(t, c, start, action, form, nil)
}

// interactPost is interact that, with fp, also ends at a page with a POST
// form to another origin (a form_post response), which it stores in fp,
// returning nil.
func (s *Server) interactPost(t testing.TB, c *http.Client, start, action string, submit url.Values, fp *FormPost) *url.URL {
	t.Helper()
	c = browser(t, c)
	req := get(start)
	submitted := false
	for range maxSteps {
		resp, body, loc := step(t, c, req)
		if loc != nil {
			if !s.owns(loc) {
				return loc
			}
			req = get(loc.String())
			continue
		}
		m := interactionPath.FindStringSubmatch(req.URL.Path)
		if resp.StatusCode == http.StatusOK && req.Method == http.MethodGet && s.owns(req.URL) && m != nil && !submitted {
			submitted = true // once: a second form means the login was refused
			req = postForm(s.URL+"/interaction/"+m[1]+"/"+action, submit)
			continue
		}
		if fp != nil && m == nil {
			f, ok := findForm(body, func(f form) bool { return strings.EqualFold(f.method, "post") })
			if target, err := req.URL.Parse(f.action); ok && err == nil && !s.owns(target) {
				*fp = FormPost{Status: resp.StatusCode, Action: target, Fields: f.inputs}
				return nil
			}
		}
		t.Fatalf("oidcprovider: %s %s answered %d instead of a redirect:\n%s", req.Method, req.URL, resp.StatusCode, body)
	}
	t.Fatalf("oidcprovider: more than %d steps from %s", maxSteps, start)
	return nil
}

// LogoutResult is how an end-session request ended. After a successful
// RP-initiated logout with post_logout_redirect_uri, Redirect is that URI
// (with state) and Confirmed is true; without one, the server shows its
// "signed out" page (Status 200 at URL .../session/end/success). A
// refusal is an error page: Status and Body, Confirmed false.
type LogoutResult struct {
	// Redirect is the first redirect off the server's origin (the
	// post_logout_redirect_uri); nil when the server ended on a page.
	Redirect *url.URL
	// Confirmed tells whether the server asked to confirm the logout
	// (its form with xsrf, or its auto-posting form when the browser had
	// no session left) and the harness confirmed it with logout=yes.
	Confirmed bool
	// Status, Body and URL are those of the page the server ended on
	// when there was no Redirect.
	Status int
	Body   string
	URL    *url.URL
}

// EndSession follows a sign-out answer of the code under test (the
// gateway's) to the server: a redirect to the end-session endpoint, or an
// HTML page with a POST form to it (the first form with method post;
// its hidden inputs are sent). It then goes on as EndSessionRequest. Any
// other answer fails the test. signOut's body is read and closed.
func (s *Server) EndSession(t testing.TB, c *http.Client, signOut *http.Response) LogoutResult {
	t.Helper()
	defer signOut.Body.Close()
	base := &url.URL{}
	if signOut.Request != nil {
		base = signOut.Request.URL
	}
	body, _ := io.ReadAll(io.LimitReader(signOut.Body, 1<<20))
	var req *http.Request
	switch {
	case signOut.StatusCode >= 300 && signOut.StatusCode <= 399:
		loc, err := base.Parse(signOut.Header.Get("Location"))
		if err != nil || !s.owns(loc) {
			t.Fatalf("oidcprovider: the sign-out answer redirects to %q, not to the server at %s", signOut.Header.Get("Location"), s.URL)
		}
		req = get(loc.String())
	case signOut.StatusCode == http.StatusOK:
		f, ok := findForm(body, func(f form) bool { return strings.EqualFold(f.method, "post") })
		if !ok {
			t.Fatalf("oidcprovider: the sign-out page has no POST form:\n%s", body)
		}
		action, err := base.Parse(f.action)
		if err != nil || !s.owns(action) {
			t.Fatalf("oidcprovider: the sign-out page posts to %q, not to the server at %s", f.action, s.URL)
		}
		req = postForm(action.String(), f.inputs)
	default:
		t.Fatalf("oidcprovider: the sign-out answer is %d, neither a redirect nor a page with a form:\n%s", signOut.StatusCode, body)
	}
	return s.EndSessionRequest(t, c, req)
}

// EndSessionRequest sends req (a GET or POST to the server's end-session
// endpoint, built by the test) with the browser c (an *http.Client with a
// cookie jar), confirms the server's logout page with logout=yes,
// follows redirects on the server's origin and reports where it ended.
func (s *Server) EndSessionRequest(t testing.TB, c *http.Client, req *http.Request) LogoutResult {
	t.Helper()
	c = browser(t, c)
	var res LogoutResult
	for range maxSteps {
		resp, body, loc := step(t, c, req)
		if loc != nil {
			if !s.owns(loc) {
				res.Redirect = loc
				return res
			}
			req = get(loc.String())
			continue
		}
		if resp.StatusCode == http.StatusOK && !res.Confirmed {
			f, ok := findForm(body, func(f form) bool {
				return strings.EqualFold(f.method, "post") && strings.HasSuffix(f.action, "/confirm") && f.inputs.Has("xsrf")
			})
			if target, err := req.URL.Parse(f.action); ok && err == nil && s.owns(target) {
				res.Confirmed = true
				f.inputs.Set("logout", "yes")
				req = postForm(target.String(), f.inputs)
				continue
			}
		}
		res.Status, res.Body, res.URL = resp.StatusCode, string(body), req.URL
		return res
	}
	t.Fatalf("oidcprovider: end_session: more than %d steps", maxSteps)
	return res
}

// SignedIn reports whether the browser c still has a login session at the
// server, by an authorization request for the client with prompt=none:
// a code or consent_required means yes, login_required no. The request
// adds to the counts (GET /auth) and, when signed in, issues a code that
// is never used.
func (s *Server) SignedIn(t testing.TB, c *http.Client, clientID, redirectURI string) bool {
	t.Helper()
	q := url.Values{
		"client_id": {clientID}, "redirect_uri": {redirectURI}, "response_type": {"code"}, "scope": {"openid"},
		"prompt": {"none"}, "state": {"signed-in-probe"},
		// PKCE, in case the client is public: S256 of a fixed verifier.
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"},
	}
	c = browser(t, c)
	req := get(s.URL + "/auth?" + q.Encode())
	for range maxSteps {
		resp, body, loc := step(t, c, req)
		switch {
		case loc == nil:
			t.Fatalf("oidcprovider: SignedIn: %s answered %d:\n%s", req.URL, resp.StatusCode, body)
		case s.owns(loc):
			req = get(loc.String())
			continue
		case loc.Query().Get("code") != "", loc.Query().Get("error") == "consent_required":
			return true
		case loc.Query().Get("error") == "login_required":
			return false
		default:
			t.Fatalf("oidcprovider: SignedIn: unexpected answer %s", loc)
		}
	}
	t.Fatalf("oidcprovider: SignedIn: more than %d steps", maxSteps)
	return false
}

// form is an HTML form: its method, action and input values.
type form struct {
	method, action string
	inputs         url.Values
}

var (
	formRe  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form\s*>`)
	inputRe = regexp.MustCompile(`(?is)<input\b([^>]*)>`)
	attrRe  = regexp.MustCompile(`(?s)([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>` + "`" + `]+))`)
)

func attrs(s string) map[string]string {
	m := map[string]string{}
	for _, a := range attrRe.FindAllStringSubmatch(s, -1) {
		name := strings.ToLower(a[1])
		if _, dup := m[name]; !dup {
			m[name] = html.UnescapeString(a[2] + a[3] + a[4])
		}
	}
	return m
}

// findForm returns the first form in page that ok accepts, with its
// named inputs (buttons and unchecked boxes aside).
func findForm(page []byte, ok func(form) bool) (form, bool) {
	for _, fm := range formRe.FindAllSubmatch(page, -1) {
		a := attrs(string(fm[1]))
		f := form{method: a["method"], action: a["action"], inputs: url.Values{}}
		if f.method == "" {
			f.method = "get"
		}
		for _, in := range inputRe.FindAllSubmatch(fm[2], -1) {
			ia := attrs(string(in[1]))
			typ := strings.ToLower(ia["type"])
			if ia["name"] == "" || typ == "submit" || typ == "button" || typ == "image" ||
				((typ == "checkbox" || typ == "radio") && !strings.Contains(strings.ToLower(string(in[1])), "checked")) {
				continue
			}
			f.inputs.Add(ia["name"], ia["value"])
		}
		if ok(f) {
			return f, true
		}
	}
	return form{}, false
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

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
