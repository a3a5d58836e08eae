package interop_test

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/interop/oidcprovider"
	"github.com/authgate/authgate/session/redistest"
)

// codeFlowConfig is a gateway config for one authorization code route at
// op, sessions in a private Redis; extra goes under upstream:.
func codeFlowConfig(t *testing.T, op *oidcprovider.Server, be *backend, upstreamExtra string) func(string) string {
	rd := redistest.Start(t)
	return func(string) string {
		return fmt.Sprintf(`upstream:
  issuer: %q
  client_id: authgate
  client_secret: "${CLIENT_SECRET}"
  scopes: [openid, email, profile, groups, offline_access]
%s
session:
  store: redis
  redis: { url: %q }
  cookie: { secret: "${COOKIE_SECRET}", secure: false }
routes:
  - backend: %q
    grant: authorization_code
`, op.URL, upstreamExtra, rd.URL, be.URL)
	}
}

// startOP runs oidc-provider with the default client registered for a
// gateway that will listen at publicURL; each test gets its own.
func startOP(t *testing.T, cfg oidcprovider.Config, publicURL string) *oidcprovider.Server {
	t.Helper()
	if len(cfg.Clients) == 0 {
		c := oidcprovider.DefaultClient(publicURL + "/oauth2/callback")
		c.PostLogoutRedirectURIs = []string{publicURL + "/"}
		cfg.Clients = []oidcprovider.Client{c}
	}
	return oidcprovider.Start(t, cfg)
}

// login signs the browser in at g through op as user and returns the
// answer of the page first asked for.
func login(t *testing.T, op *oidcprovider.Server, g *gateway, b *browser, path, user string) *http.Response {
	t.Helper()
	resp, _ := b.get(t, g.URL+path)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s without a session: %d, want 302 to the authorization server", path, resp.StatusCode)
	}
	cb := op.Authorize(t, b.Client, resp.Header.Get("Location"), user)
	resp, body := b.get(t, cb.String())
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d, want 302 back to %s; body %s", resp.StatusCode, path, body)
	}
	resp, body = b.get(t, g.URL+resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after login: %d %s", resp.StatusCode, body)
	}
	return resp
}

// gatewayFor starts a gateway whose public URL is known before op starts
// (op registers the gateway's redirect URI).
func gatewayFor(t *testing.T, opCfg oidcprovider.Config, upstreamExtra string) (*gateway, *oidcprovider.Server, *backend) {
	t.Helper()
	addr := freeAddr(t)
	op := startOP(t, opCfg, "http://"+addr)
	be := newBackend(t)
	body := codeFlowConfig(t, op, be, upstreamExtra)
	g := startGatewayAt(t, addr, "authgate-secret", body)
	return g, op, be
}

// TestOIDCProviderLogin: the plain login against oidc-provider on its
// stock settings, with claims that only userinfo has (oidc-provider puts
// none but sub in the ID token when an access token is issued).
func TestOIDCProviderLogin(t *testing.T) {
	g, op, be := gatewayFor(t, oidcprovider.Config{}, "")
	b := newBrowser()
	login(t, op, g, b, "/app?x=1", "alice")
	h := be.lastHeader(t)
	for k, want := range map[string]string{"X-Forwarded-User": "alice", "X-Forwarded-Email": "alice@example.com", "X-Forwarded-Groups": "admins,staff"} {
		if got := h.Get(k); got != want {
			t.Errorf("backend got %s=%q, want %q", k, got, want)
		}
	}
	if !strings.HasPrefix(h.Get("Authorization"), "Bearer ") {
		t.Errorf("backend got no bearer token")
	}
}

// TestOIDCProviderNoRefreshToken: stock oidc-provider drops offline_access
// without prompt=consent and issues no refresh token. The session lives
// until its access token expires (the old bug deleted it a quarter of the
// lifetime early, silently), a warning says how to fix it, API requests
// then get 401, and a navigation signs in again silently with prompt=none
// through the server's login session.
func TestOIDCProviderNoRefreshToken(t *testing.T) {
	const ttl = 6 * time.Second
	g, op, be := gatewayFor(t, oidcprovider.Config{TTL: oidcprovider.TTL{AccessToken: ttl}}, "")
	b := newBrowser()
	start := time.Now()
	login(t, op, g, b, "/", "alice")
	first := be.lastHeader(t).Get("Authorization")
	if n := len(g.logLines("level=WARN", "issued no refresh token", "prompt=consent")); n != 1 {
		t.Errorf("warnings about the missing refresh token: %d, want 1 naming prompt=consent\n%s", n, g.Logs())
	}
	// Past the old cut-off (a quarter of the lifetime before expiry).
	time.Sleep(time.Until(start.Add(ttl * 4 / 5)))
	if resp, _ := b.get(t, g.URL+"/later"); resp.StatusCode != 200 || be.lastHeader(t).Get("Authorization") != first {
		t.Fatalf("at 80%% of the token's life: got %d, want 200 with the same token", resp.StatusCode)
	}
	time.Sleep(time.Until(start.Add(ttl + time.Second)))
	req, _ := http.NewRequest(http.MethodGet, g.URL+"/api", nil)
	req.Header.Set("Accept", "application/json")
	if resp, _ := b.do(t, req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API request after expiry: got %d, want 401", resp.StatusCode)
	}
	resp, _ := b.get(t, g.URL+"/page")
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("prompt") != "none" {
		t.Fatalf("navigation after expiry: got %d to %s, want a silent sign-in with prompt=none", resp.StatusCode, loc)
	}
	cb := op.Authorize(t, b.Client, loc.String(), "alice") // the login session answers: no form
	if cb.Query().Get("code") == "" {
		t.Fatalf("silent sign-in at oidc-provider: %s, want a code", cb)
	}
	resp, _ = b.get(t, cb.String())
	if resp, _ = b.get(t, g.URL+resp.Header.Get("Location")); resp.StatusCode != 200 || be.lastHeader(t).Get("Authorization") == first {
		t.Errorf("after the silent sign-in: got %d, want 200 with a new token", resp.StatusCode)
	}
}

// TestOIDCProviderPromptConsent: with authorization_params {prompt:
// consent} oidc-provider keeps offline_access, issues a refresh token,
// and the gateway renews the session with it, rotation included.
func TestOIDCProviderPromptConsent(t *testing.T) {
	const ttl = 4 * time.Second
	g, op, be := gatewayFor(t, oidcprovider.Config{TTL: oidcprovider.TTL{AccessToken: ttl}}, "  authorization_params: { prompt: consent }")
	b := newBrowser()
	login(t, op, g, b, "/", "alice")
	if n := len(g.logLinesNow("issued no refresh token")); n != 0 {
		t.Errorf("warned about a missing refresh token although prompt=consent brought one")
	}
	first := be.lastHeader(t).Get("Authorization")
	time.Sleep(ttl * 4 / 5) // within a quarter of the lifetime: renewed
	if resp, _ := b.get(t, g.URL+"/renewed"); resp.StatusCode != 200 || be.lastHeader(t).Get("Authorization") == first {
		t.Fatalf("near expiry: got %d, want 200 with a refreshed token", resp.StatusCode)
	}
	if n := len(g.logLines("level=DEBUG", `msg="token refresh"`, "outcome=ok")); n != 1 {
		t.Errorf("refresh log lines: %d, want 1 with outcome=ok", n)
	}
	if n := op.Count("POST /token"); n != 2 {
		t.Errorf("token requests: %d, want 2 (code, refresh)", n)
	}
}

var hidden = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)

// signOutForm reads the fields of the gateway's sign-out page.
func signOutForm(page string) url.Values {
	form := url.Values{}
	for _, m := range hidden.FindAllStringSubmatch(page, -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	return form
}

// signOut posts the gateway's sign-out form and returns the gateway's
// answer with its body.
func signOut(t *testing.T, g *gateway, b *browser) (*http.Response, string) {
	t.Helper()
	_, page := b.get(t, g.URL+"/oauth2/sign_out")
	req, _ := http.NewRequest(http.MethodPost, g.URL+"/oauth2/sign_out", strings.NewReader(signOutForm(page).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(t, req)
}

// TestOIDCProviderLogoutWithIDTokenHint: a server that refuses
// post_logout_redirect_uri without id_token_hint. The gateway posts the
// ID token as the hint; the server ends its login session and sends the
// browser back. (Before: the user ended on the server's 500 page, still
// signed in there.)
func TestOIDCProviderLogoutWithIDTokenHint(t *testing.T) {
	g, op, _ := gatewayFor(t, oidcprovider.Config{RequireIDTokenHint: true}, "")
	b := newBrowser()
	login(t, op, g, b, "/", "alice")
	if !op.SignedIn(t, b.Client, "authgate", g.URL+"/oauth2/callback") {
		t.Fatal("no login session at oidc-provider after the login")
	}
	// Without the hint (what authgate sent before) this server fails and
	// keeps the user signed in.
	q := url.Values{"client_id": {"authgate"}, "post_logout_redirect_uri": {g.URL + "/"}}
	noHint, _ := http.NewRequest(http.MethodGet, op.URL+"/session/end?"+q.Encode(), nil)
	if res := op.EndSessionRequest(t, b.Client, noHint); res.Status != 500 || !op.SignedIn(t, b.Client, "authgate", g.URL+"/oauth2/callback") {
		t.Fatalf("end_session without a hint at the strict server: %+v, want its 500 with the user still signed in", res)
	}
	resp, _ := signOut(t, g, b)
	end, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(end.String(), op.URL+"/session/end?") || end.Query().Get("id_token_hint") == "" {
		t.Fatalf("sign-out: got %d to %s, want a 303 to %s/session/end with id_token_hint", resp.StatusCode, end, op.URL)
	}
	res := op.EndSession(t, b.Client, resp)
	if res.Redirect == nil || res.Redirect.String() != g.URL+"/" {
		t.Fatalf("end_session with the hint: %+v, want a redirect to %s/", res, g.URL)
	}
	if op.SignedIn(t, b.Client, "authgate", g.URL+"/oauth2/callback") {
		t.Error("oidc-provider still has a login session after the sign-out")
	}
}

// TestOIDCProviderRefusalsLogged: a client not allowed the scopes it asks
// for (invalid_scope: a warning) and a user who cancels (access_denied:
// info); both a 403 page.
func TestOIDCProviderRefusalsLogged(t *testing.T) {
	t.Run("invalid_scope", func(t *testing.T) {
		addr := freeAddr(t)
		c := oidcprovider.DefaultClient("http://" + addr + "/oauth2/callback")
		c.Scope = "openid" // not email, profile
		op := startOP(t, oidcprovider.Config{Clients: []oidcprovider.Client{c}}, "http://"+addr)
		be := newBackend(t)
		g := startGatewayAt(t, addr, "authgate-secret", codeFlowConfig(t, op, be, ""))
		b := newBrowser()
		resp, _ := b.get(t, g.URL+"/")
		cb := op.Authorize(t, b.Client, resp.Header.Get("Location"), "alice")
		if cb.Query().Get("error") != "invalid_scope" {
			t.Fatalf("oidc-provider answered %s, want error=invalid_scope", cb)
		}
		if resp, _ := b.get(t, cb.String()); resp.StatusCode != http.StatusForbidden {
			t.Errorf("callback: %d, want 403", resp.StatusCode)
		}
		if n := len(g.logLines("level=WARN", "refused the sign-in", "error=invalid_scope")); n != 1 {
			t.Errorf("warnings with error=invalid_scope: %d, want 1\n%s", n, g.Logs())
		}
	})
	t.Run("access_denied", func(t *testing.T) {
		g, op, _ := gatewayFor(t, oidcprovider.Config{}, "")
		b := newBrowser()
		resp, _ := b.get(t, g.URL+"/")
		cb := op.Cancel(t, b.Client, resp.Header.Get("Location"))
		if cb.Query().Get("error") != "access_denied" {
			t.Fatalf("oidc-provider answered %s, want error=access_denied", cb)
		}
		if resp, body := b.get(t, cb.String()); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "access_denied") {
			t.Errorf("callback: %d, want the 403 page naming access_denied", resp.StatusCode)
		}
		if n := len(g.logLines("level=INFO", "refused the sign-in", "error=access_denied", "cancelled")); n != 1 {
			t.Errorf("info lines with error=access_denied: %d, want 1\n%s", n, g.Logs())
		}
	})
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}
