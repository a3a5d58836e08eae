package oidcprovider

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The tests drive the harness with a plain Go client; nothing listens at
// the redirect URIs (the harness returns the redirect instead of
// following it).
const (
	redirectURI   = "http://rp.test/callback"
	postLogoutURI = "http://rp.test/signed-out"
)

func rpClient() Client {
	c := DefaultClient(redirectURI)
	c.PostLogoutRedirectURIs = []string{postLogoutURI}
	return c
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Clients == nil {
		cfg.Clients = []Client{rpClient()}
	}
	return Start(t, cfg)
}

func newBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

func random(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// request is one authorization request with PKCE.
type request struct {
	state, nonce, verifier string
	url                    string
}

func authRequest(t *testing.T, s *Server, scope string, extra url.Values) request {
	t.Helper()
	r := request{state: random(t), nonce: random(t), verifier: random(t)}
	sum := sha256.Sum256([]byte(r.verifier))
	q := url.Values{
		"client_id": {"authgate"}, "redirect_uri": {redirectURI}, "response_type": {"code"},
		"scope": {scope}, "state": {r.state}, "nonce": {r.nonce},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	for k, v := range extra {
		q[k] = v
	}
	r.url = s.URL + "/auth?" + q.Encode()
	return r
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	IDToken      string `json:"id_token"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	Error        string `json:"error"`
}

// tokenRequest posts form to the token endpoint as client authgate,
// with client_secret_basic or, if post, client_secret_post.
func tokenRequest(t *testing.T, s *Server, form url.Values, post bool) (int, tokenResponse) {
	t.Helper()
	if post {
		form.Set("client_id", "authgate")
		form.Set("client_secret", "authgate-secret")
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if !post {
		// RFC 6749 §2.3.1: both form-encoded first.
		req.SetBasicAuth(url.QueryEscape("authgate"), url.QueryEscape("authgate-secret"))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatalf("token endpoint: %d %s", resp.StatusCode, body)
	}
	return resp.StatusCode, tr
}

// exchange redeems the code of the callback cb for r.
func exchange(t *testing.T, s *Server, r request, cb *url.URL) tokenResponse {
	t.Helper()
	if got := cb.Query().Get("state"); got != r.state {
		t.Fatalf("callback %s: state %q, want %q", cb, got, r.state)
	}
	code := cb.Query().Get("code")
	if code == "" {
		t.Fatalf("callback without a code: %s", cb)
	}
	status, tr := tokenRequest(t, s, url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {r.verifier},
	}, false)
	if status != http.StatusOK {
		t.Fatalf("code exchange: %d %+v", status, tr)
	}
	return tr
}

// login runs a whole code flow for user in browser b.
func login(t *testing.T, s *Server, b *http.Client, user, scope string, extra url.Values) tokenResponse {
	t.Helper()
	r := authRequest(t, s, scope, extra)
	return exchange(t, s, r, s.Authorize(t, b, r.url, user))
}

func jwtClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func getJSON(t *testing.T, u, bearer string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func testDiscovery(t *testing.T, s *Server) {
	if strings.HasSuffix(s.URL, "/") || !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Errorf("URL %q, want http://127.0.0.1:PORT", s.URL)
	}
	status, d := getJSON(t, s.URL+"/.well-known/openid-configuration", "")
	if status != http.StatusOK {
		t.Fatalf("discovery: %d", status)
	}
	if d["issuer"] != s.URL {
		t.Errorf("issuer %q, want %q", d["issuer"], s.URL)
	}
	for key, want := range map[string]string{
		"authorization_endpoint": "/auth", "token_endpoint": "/token", "userinfo_endpoint": "/me",
		"end_session_endpoint": "/session/end", "revocation_endpoint": "/token/revocation", "jwks_uri": "/jwks",
	} {
		if d[key] != s.URL+want {
			t.Errorf("%s = %v, want %s", key, d[key], s.URL+want)
		}
	}
	if _, ok := d["introspection_endpoint"]; ok {
		t.Error("introspection_endpoint advertised; stock has introspection off")
	}
	scopes := fmt.Sprint(d["scopes_supported"])
	for _, sc := range []string{"openid", "offline_access", "email", "profile", "groups"} {
		if !strings.Contains(scopes, sc) {
			t.Errorf("scopes_supported %s lacks %s", scopes, sc)
		}
	}
}

func testFeaturesAndScopes(t *testing.T, s *Server) {
	_, d := getJSON(t, s.URL+"/.well-known/openid-configuration", "")
	if d["introspection_endpoint"] != s.URL+"/token/introspection" {
		t.Errorf("introspection_endpoint %v with the feature enabled", d["introspection_endpoint"])
	}
	if !strings.Contains(fmt.Sprint(d["scopes_supported"]), "api:read") {
		t.Errorf("scopes_supported %v lacks api:read", d["scopes_supported"])
	}
	if d["end_session_endpoint"] == nil || d["revocation_endpoint"] == nil {
		t.Error("Features replaced the defaults instead of merging over them")
	}
}

// TestStock runs the tests that need nothing but a stock server on one
// (each with its own browser): a server takes about a second to start.
func TestStock(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	for name, test := range map[string]func(*testing.T, *Server){
		"Discovery":                      testDiscovery,
		"UnknownLoginShowsTheFormAgain":  testUnknownLoginShowsTheFormAgain,
		"OfflineAccess":                  testOfflineAccess,
		"ClientSecretPostForBasicClient": testClientSecretPostForBasicClient,
		"Cancel":                         testCancel,
		"EndSession":                     testEndSession,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, s)
		})
	}
}

// TestConfig: accounts, TTL, Features and Scopes from the Config.
func TestConfig(t *testing.T) {
	t.Parallel()
	s := start(t, Config{
		Accounts: []Account{{Sub: "u-123", Claims: map[string]any{"preferred_username": "carol"}}},
		TTL:      TTL{AccessToken: 90 * time.Second, IDToken: 30 * time.Second},
		Features: map[string]any{"introspection": map[string]any{"enabled": true}},
		Scopes:   []string{"openid", "offline_access", "api:read"},
	})
	t.Run("LoginByPreferredUsernameOrSub", func(t *testing.T) { testLoginByPreferredUsernameOrSub(t, s) })
	t.Run("TTL", func(t *testing.T) { testTTL(t, s) })
	t.Run("FeaturesAndScopes", func(t *testing.T) { testFeaturesAndScopes(t, s) })
}

func TestCodeFlowPKCE(t *testing.T) {
	t.Parallel()
	s := start(t, Config{})
	b := newBrowser()
	r := authRequest(t, s, "openid email profile groups", nil)
	cb := s.Authorize(t, b, r.url, "alice")
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != redirectURI {
		t.Fatalf("redirect to %s, want %s", cb, redirectURI)
	}
	if cb.Query().Get("iss") != s.URL {
		t.Errorf("callback iss %q, want %q (RFC 9207)", cb.Query().Get("iss"), s.URL)
	}
	s.Reset()
	tr := exchange(t, s, r, cb)
	if n := s.Count("POST /token"); n != 1 {
		t.Errorf(`Count("POST /token") = %d after one exchange, want 1 (counts %v)`, n, s.Counts())
	}
	claims := jwtClaims(t, tr.IDToken)
	if claims["sub"] != "alice" || claims["iss"] != s.URL || claims["aud"] != "authgate" || claims["nonce"] != r.nonce {
		t.Errorf("ID token claims %v, want sub alice, iss %s, aud authgate, the nonce", claims, s.URL)
	}
	if tr.RefreshToken != "" {
		t.Error("a refresh token without offline_access")
	}
	status, info := getJSON(t, s.URL+"/me", tr.AccessToken)
	if status != http.StatusOK || info["sub"] != "alice" || info["email"] != "alice@example.com" ||
		info["email_verified"] != true || info["name"] != "Alice Example" || fmt.Sprint(info["groups"]) != "[admins staff]" {
		t.Errorf("userinfo: %d %v", status, info)
	}

	// The code is spent.
	status, again := tokenRequest(t, s, url.Values{
		"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {redirectURI}, "code_verifier": {r.verifier},
	}, false)
	if status != http.StatusBadRequest || again.Error != "invalid_grant" {
		t.Errorf("second exchange: %d %+v, want 400 invalid_grant", status, again)
	}
	if n := s.Count("POST /token"); n != 2 {
		t.Errorf(`Count("POST /token") = %d, want 2`, n)
	}
	s.Reset()
	if n := s.Count("POST /token"); n != 0 {
		t.Errorf(`Count("POST /token") = %d after Reset, want 0`, n)
	}

	// The login session answers the next request without a form.
	r2 := authRequest(t, s, "openid", nil)
	tr2 := exchange(t, s, r2, s.Authorize(t, b, r2.url, "nobody-asked"))
	if sub := jwtClaims(t, tr2.IDToken)["sub"]; sub != "alice" {
		t.Errorf("second login in the same browser: sub %v, want alice", sub)
	}
	for key := range s.Counts() {
		if strings.HasPrefix(key, "POST /interaction/") {
			t.Errorf("a form was posted in the silent login: counts %v", s.Counts())
		}
	}
}

func testLoginByPreferredUsernameOrSub(t *testing.T, s *Server) {
	for _, name := range []string{"carol", "u-123"} {
		tr := login(t, s, newBrowser(), name, "openid", nil)
		if sub := jwtClaims(t, tr.IDToken)["sub"]; sub != "u-123" {
			t.Errorf("login %s: sub %v, want u-123", name, sub)
		}
	}
}

func testUnknownLoginShowsTheFormAgain(t *testing.T, s *Server) {
	b := browser(t, newBrowser())
	r := authRequest(t, s, "openid", nil)
	req := get(r.url)
	var resp *http.Response
	var body []byte
	for {
		var loc *url.URL
		resp, body, loc = step(t, b, req)
		if loc == nil {
			break
		}
		req = get(loc.String())
	}
	m := interactionPath.FindStringSubmatch(req.URL.Path)
	if resp.StatusCode != http.StatusOK || m == nil || !strings.Contains(string(body), `name="login"`) {
		t.Fatalf("%s: %d, want the login form:\n%s", req.URL, resp.StatusCode, body)
	}
	resp, body, loc := step(t, b, postForm(s.URL+"/interaction/"+m[1]+"/login", url.Values{"login": {"mallory"}, "password": {"x"}}))
	if loc != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "unknown user mallory") ||
		!strings.Contains(string(body), `name="login"`) || !strings.Contains(string(body), "/abort") {
		t.Fatalf("unknown login: %d %v, want the form again with an error:\n%s", resp.StatusCode, loc, body)
	}
	// The same interaction still takes a right login.
	_, _, loc = step(t, b, postForm(s.URL+"/interaction/"+m[1]+"/login", url.Values{"login": {"bob"}, "password": {"x"}}))
	if loc == nil {
		t.Fatal("no redirect after a good login")
	}
	tr := exchange(t, s, r, s.Authorize(t, b, loc.String(), ""))
	if sub := jwtClaims(t, tr.IDToken)["sub"]; sub != "bob" {
		t.Errorf("sub %v, want bob", sub)
	}
}

// TestOfflineAccess: stock policy issues a refresh token only for
// offline_access asked with prompt=consent (OpenID Connect Core §11).
func testOfflineAccess(t *testing.T, s *Server) {
	t.Run("without prompt=consent", func(t *testing.T) {
		tr := login(t, s, newBrowser(), "alice", "openid offline_access", nil)
		if tr.RefreshToken != "" || strings.Contains(tr.Scope, "offline_access") {
			t.Errorf("scope %q, refresh token %v; want offline_access dropped, no refresh token", tr.Scope, tr.RefreshToken != "")
		}
	})
	t.Run("with prompt=consent", func(t *testing.T) {
		tr := login(t, s, newBrowser(), "alice", "openid offline_access", url.Values{"prompt": {"consent"}})
		if tr.RefreshToken == "" || !strings.Contains(tr.Scope, "offline_access") {
			t.Fatalf("scope %q, no refresh token; want one with offline_access", tr.Scope)
		}
		status, rt := tokenRequest(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}, false)
		if status != http.StatusOK || rt.AccessToken == "" || jwtClaims(t, rt.IDToken)["sub"] != "alice" {
			t.Errorf("refresh: %d %+v", status, rt)
		}
	})
}

// TestClientSecretPostForBasicClient: oidc-provider takes the secret in
// the body or in the Authorization header from a client registered with
// either of client_secret_basic and client_secret_post.
func testClientSecretPostForBasicClient(t *testing.T, s *Server) {
	r := authRequest(t, s, "openid", nil)
	cb := s.Authorize(t, newBrowser(), r.url, "alice")
	status, tr := tokenRequest(t, s, url.Values{
		"grant_type": {"authorization_code"}, "code": {cb.Query().Get("code")}, "redirect_uri": {redirectURI}, "code_verifier": {r.verifier},
	}, true)
	if status != http.StatusOK || tr.IDToken == "" {
		t.Errorf("client_secret_post for a client_secret_basic client: %d %+v", status, tr)
	}
}

func testCancel(t *testing.T, s *Server) {
	r := authRequest(t, s, "openid", nil)
	cb := s.Cancel(t, newBrowser(), r.url)
	if cb.Query().Get("error") != "access_denied" || cb.Query().Get("state") != r.state || !strings.HasPrefix(cb.String(), redirectURI+"?") {
		t.Errorf("Cancel: %s, want %s?error=access_denied&state=...", cb, redirectURI)
	}
}

func testTTL(t *testing.T, s *Server) {
	tr := login(t, s, newBrowser(), "u-123", "openid", nil)
	if tr.ExpiresIn != 90 {
		t.Errorf("expires_in %d, want 90", tr.ExpiresIn)
	}
	c := jwtClaims(t, tr.IDToken)
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 30 {
		t.Errorf("ID token lives %vs, want 30", exp-iat)
	}
}

func endSessionURL(s *Server, q url.Values) *http.Request {
	return get(s.URL + "/session/end?" + q.Encode())
}

func testEndSession(t *testing.T, s *Server) {
	t.Run("stock", func(t *testing.T) {
		t.Parallel()
		b := newBrowser()
		if s.SignedIn(t, b, "authgate", redirectURI) {
			t.Fatal("SignedIn before any login")
		}
		login(t, s, b, "alice", "openid", nil)
		if !s.SignedIn(t, b, "authgate", redirectURI) {
			t.Fatal("not SignedIn after the login")
		}
		// Stock accepts client_id instead of id_token_hint.
		res := s.EndSessionRequest(t, b, endSessionURL(s, url.Values{
			"client_id": {"authgate"}, "post_logout_redirect_uri": {postLogoutURI}, "state": {"st"},
		}))
		if res.Redirect == nil || res.Redirect.String() != postLogoutURI+"?state=st" || !res.Confirmed {
			t.Fatalf("end_session: %+v, want a confirmed logout back to %s?state=st", res, postLogoutURI)
		}
		if s.SignedIn(t, b, "authgate", redirectURI) {
			t.Error("still SignedIn after the logout")
		}
	})
	t.Run("without post_logout_redirect_uri", func(t *testing.T) {
		t.Parallel()
		b := newBrowser()
		tr := login(t, s, b, "alice", "openid", nil)
		res := s.EndSessionRequest(t, b, endSessionURL(s, url.Values{"id_token_hint": {tr.IDToken}}))
		if res.Redirect != nil || !res.Confirmed || res.Status != http.StatusOK || !strings.HasSuffix(res.URL.Path, "/session/end/success") {
			t.Errorf("end_session: %+v, want the confirmed success page", res)
		}
		if s.SignedIn(t, b, "authgate", redirectURI) {
			t.Error("still SignedIn after the logout")
		}
	})
	t.Run("no session left", func(t *testing.T) {
		t.Parallel()
		// oidc-provider then answers with an auto-posting confirm form.
		res := s.EndSessionRequest(t, newBrowser(), endSessionURL(s, url.Values{
			"client_id": {"authgate"}, "post_logout_redirect_uri": {postLogoutURI},
		}))
		if res.Redirect == nil || res.Redirect.String() != postLogoutURI || !res.Confirmed {
			t.Errorf("end_session: %+v, want back to %s", res, postLogoutURI)
		}
	})
	t.Run("unregistered post_logout_redirect_uri", func(t *testing.T) {
		t.Parallel()
		res := s.EndSessionRequest(t, newBrowser(), endSessionURL(s, url.Values{
			"client_id": {"authgate"}, "post_logout_redirect_uri": {"http://evil.test/"},
		}))
		if res.Redirect != nil || res.Status != http.StatusBadRequest || !strings.Contains(res.Body, "post_logout_redirect_uri not registered") {
			t.Errorf("end_session: %+v, want a 400 page", res)
		}
	})
	t.Run("POST refused by default", func(t *testing.T) {
		t.Parallel()
		res := s.EndSessionRequest(t, newBrowser(), postForm(s.URL+"/session/end", url.Values{"client_id": {"authgate"}}))
		if res.Redirect != nil || res.Status != http.StatusNotFound {
			t.Errorf("POST end_session: %+v, want 404 (enableHttpPostMethods is off)", res)
		}
	})
}

// TestRequireIDTokenHint drives the logout both ways a gateway may answer
// its sign-out: a 303 to end_session, and a page posting to it (which
// needs enableHttpPostMethods, itself only with SameSite=None cookies).
func TestRequireIDTokenHint(t *testing.T) {
	t.Parallel()
	s := start(t, Config{
		RequireIDTokenHint: true,
		Extra: map[string]any{
			"enableHttpPostMethods": true,
			"cookies":               map[string]any{"long": map[string]any{"sameSite": "none"}},
		},
	})
	// gw plays the gateway's sign-out: /redirect answers 303, /page an
	// auto-posting form; ?hint=... adds the id_token_hint.
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := url.Values{"client_id": {"authgate"}, "post_logout_redirect_uri": {postLogoutURI}, "state": {"gw"}}
		if h := r.URL.Query().Get("hint"); h != "" {
			q.Set("id_token_hint", h)
		}
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, s.URL+"/session/end?"+q.Encode(), http.StatusSeeOther)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!DOCTYPE html><body onload="document.forms[0].submit()"><form method="post" action="%s/session/end">`, s.URL)
		for k := range q {
			fmt.Fprintf(w, `<input type="hidden" name="%s" value="%s">`, k, q.Get(k))
		}
		fmt.Fprint(w, `<noscript><button type="submit">Continue</button></noscript></form></body>`)
	}))
	t.Cleanup(gw.Close)
	signOut := func(t *testing.T, b *http.Client, path, hint string) *http.Response {
		t.Helper()
		resp, err := browser(t, b).Get(gw.URL + path + "?" + url.Values{"hint": {hint}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, path := range []string{"/redirect", "/page"} {
		t.Run(path, func(t *testing.T) {
			b := newBrowser()
			tr := login(t, s, b, "alice", "openid", nil)
			res := s.EndSession(t, b, signOut(t, b, path, ""))
			if res.Status != http.StatusInternalServerError || res.Confirmed || res.Redirect != nil || !strings.Contains(res.Body, "id_token_hint") {
				t.Errorf("without a hint: %+v, want the 500 page", res)
			}
			if !s.SignedIn(t, b, "authgate", redirectURI) {
				t.Error("signed out although the server refused")
			}
			res = s.EndSession(t, b, signOut(t, b, path, tr.IDToken))
			if res.Redirect == nil || res.Redirect.String() != postLogoutURI+"?state=gw" || !res.Confirmed {
				t.Errorf("with the hint: %+v, want a confirmed logout back to %s", res, postLogoutURI)
			}
			if s.SignedIn(t, b, "authgate", redirectURI) {
				t.Error("still signed in after the logout")
			}
		})
	}
}

func TestLocateWithoutNode(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, _, err := locate()
	if err == nil || !strings.Contains(err.Error(), InstallCommand) {
		t.Errorf("locate without node: %v, want an error naming %q", err, InstallCommand)
	}
}

func TestFindForm(t *testing.T) {
	page := []byte(`<form id=x method=get action="/a"><input name="q" value="1"></form>
<FORM method='POST' action="http://h/p?a=1&amp;b=2"><input type="hidden" name="xsrf" value="a&quot;b"/>
<input type="checkbox" name="no" value="1"><input type="submit" name="go" value="Go"><input name="e"></FORM>`)
	f, ok := findForm(page, func(f form) bool { return strings.EqualFold(f.method, "post") })
	want := url.Values{"xsrf": {`a"b`}, "e": {""}}
	if !ok || f.action != "http://h/p?a=1&b=2" || f.inputs.Encode() != want.Encode() {
		t.Errorf("findForm: %+v %v", f, ok)
	}
}
