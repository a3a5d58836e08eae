package interop_test

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authgate/authgate/interop/oidcprovider"
	"github.com/authgate/authgate/session/redistest"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// severalServers is one authgate process in front of five backends on two
// authorization servers: oidc-provider (the default upstream for /op/, the
// implicit client "legacy" for /legacy/, the machine client "svc" for
// /api/) and upstreamtest (upstream "ut": /ut/ with the code flow, /pw/
// with the password grant).
type severalServers struct {
	g                          *gateway
	op                         *oidcprovider.Server
	ut                         *upstreamtest.Server
	opApp, utApp, pw, old, api *backend
}

func startSeveralServers(t *testing.T) *severalServers {
	t.Helper()
	addr := freeAddr(t)
	public := "http://" + addr
	code := oidcprovider.DefaultClient(public + "/oauth2/callback")
	code.PostLogoutRedirectURIs = []string{public + "/"}
	w := &severalServers{
		op: oidcprovider.Start(t, oidcprovider.Config{
			OmitFormPost: true, // the implicit route's tokens come in the fragment
			Clients: []oidcprovider.Client{code,
				{ID: "legacy", Secret: "legacy-secret", GrantTypes: []string{"implicit"}, ResponseTypes: []string{"id_token token"}, RedirectURIs: []string{public + "/oauth2/callback/legacy"}},
				serviceClient("svc", "svc-secret")},
			Features:        map[string]any{"clientCredentials": map[string]any{"enabled": true}},
			ResourceServers: map[string]oidcprovider.ResourceServer{ordersAPI: {Scope: "orders.read"}},
			Extra:           map[string]any{"responseTypes": []string{"code", "id_token token"}},
		}),
		ut: upstreamtest.NewServer(upstreamtest.Config{Clients: []upstreamtest.Client{{ID: "authgate", Secret: "authgate-secret",
			GrantTypes: []string{"authorization_code", "refresh_token", "password"}}}}),
		opApp: newBackend(t), utApp: newBackend(t), pw: newBackend(t), old: newBackend(t), api: newBackend(t),
	}
	t.Cleanup(w.ut.Close)
	rd := redistest.Start(t)
	w.g = startGatewayAt(t, addr, "authgate-secret", func(string) string {
		return fmt.Sprintf(`upstream:
  issuer: %[1]q
  client_id: authgate
  client_secret: "${CLIENT_SECRET}"
  scopes: [openid, email, profile, groups]
upstreams:
  ut:
    issuer: %[2]q
    client_id: authgate
    client_secret: "${CLIENT_SECRET}"
    scopes: [openid, email, profile, groups]
  legacy: { issuer: %[1]q, client_id: legacy, client_secret: legacy-secret, scopes: [openid, email, profile] }
  machines: { issuer: %[1]q, client_id: svc, client_secret: svc-secret, scopes: [openid] }
session:
  store: redis
  redis: { url: %[3]q }
  cookie: { secret: "${COOKIE_SECRET}", secure: false }
routes:
  - { match: { path_prefix: "/op/" }, backend: %[4]q, grant: authorization_code }
  - { match: { path_prefix: "/ut/" }, backend: %[5]q, grant: authorization_code, upstream: ut }
  - { match: { path_prefix: "/pw/" }, backend: %[6]q, grant: password, upstream: ut }
  - { match: { path_prefix: "/legacy/" }, backend: %[7]q, grant: implicit, upstream: legacy }
  - { match: { path_prefix: "/api/" }, backend: %[8]q, grant: client_credentials, upstream: machines, scopes: [orders.read], resource: %[9]q }
`, w.op.URL, w.ut.URL, rd.URL, w.opApp.URL, w.utApp.URL, w.pw.URL, w.old.URL, w.api.URL, ordersAPI)
	})
	return w
}

// issuerOf names the server whose access token the backend received last:
// upstreamtest's are JWTs naming it; oidc-provider's code-flow tokens are
// opaque, so its userinfo endpoint is asked whether it issued the token.
func (w *severalServers) issuerOf(t *testing.T, be *backend) string {
	t.Helper()
	auth := be.lastHeader(t).Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		t.Fatalf("backend got Authorization %.12q, want a bearer token", auth)
	}
	if strings.Count(tok, ".") == 2 {
		iss, _ := jwtClaims(t, tok)["iss"].(string)
		return iss
	}
	req, _ := http.NewRequest(http.MethodGet, w.op.URL+"/me", nil)
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return w.op.URL
	}
	return fmt.Sprintf("(an opaque token oidc-provider's userinfo answers %d)", resp.StatusCode)
}

// utLogin signs b in at the upstreamtest route path (its server approves
// at once, as alice).
func (w *severalServers) utLogin(t *testing.T, b *browser, path string) {
	t.Helper()
	resp, _ := b.get(t, w.g.URL+path)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, w.ut.URL+"/authorize?") {
		t.Fatalf("GET %s without its session: %d to %q, want 302 to upstreamtest's authorize", path, resp.StatusCode, loc)
	}
	resp, _ = b.get(t, loc)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("upstreamtest authorize: %d", resp.StatusCode)
	}
	resp, body := b.get(t, resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	if resp, _ := b.get(t, w.g.URL+resp.Header.Get("Location")); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the upstreamtest login: %d", resp.StatusCode)
	}
}

// TestSeveralAuthorizationServers: oidc-provider and upstreamtest behind
// one authgate process, every grant on its own upstream. Each backend sees
// only its own server's token; a session at one server opens no route of
// the other, and neither login nor sign-out at one touches the other.
func TestSeveralAuthorizationServers(t *testing.T) {
	w := startSeveralServers(t)
	g := w.g
	b := newBrowser()

	login(t, w.op, g, b, "/op/home", "alice")
	if got := w.issuerOf(t, w.opApp); got != w.op.URL {
		t.Errorf("/op/ backend got a token of %q, want oidc-provider's %q", got, w.op.URL)
	}
	// The oidc-provider session does not open the upstreamtest route: its
	// login is upstreamtest's.
	w.utLogin(t, b, "/ut/home")
	if got := w.issuerOf(t, w.utApp); got != w.ut.URL {
		t.Errorf("/ut/ backend got a token of %q, want upstreamtest's %q", got, w.ut.URL)
	}
	if resp, _ := b.get(t, g.URL+"/op/again"); resp.StatusCode != http.StatusOK || w.issuerOf(t, w.opApp) != w.op.URL {
		t.Errorf("/op/ after the upstreamtest login: %d, want 200 with oidc-provider's token", resp.StatusCode)
	}

	// oidc-provider's session under upstreamtest's cookie is refused.
	opCookie := cookieOf(t, b, g.URL, "_authgate")
	req, _ := http.NewRequest(http.MethodGet, g.URL+"/ut/x", nil)
	req.Header.Set("Cookie", "_authgate-ut="+opCookie)
	n := w.utApp.count()
	if resp, _ := newBrowser().do(t, req); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), w.ut.URL+"/authorize?") || w.utApp.count() != n {
		t.Errorf("oidc-provider's session on the upstreamtest route: %d to %q, want 302 to upstreamtest and no backend call", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Sign-out of upstreamtest's route leaves oidc-provider's session.
	_, page := b.get(t, g.URL+"/oauth2/sign_out?rd=%2Fut%2F")
	form := url.Values{}
	for _, m := range hidden.FindAllStringSubmatch(page, -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	req, _ = http.NewRequest(http.MethodPost, g.URL+"/oauth2/sign_out", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, body := b.do(t, req); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), w.ut.URL+"/logout?") {
		t.Fatalf("sign-out of /ut/: %d to %q, want 303 to upstreamtest's end_session; %s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	// The first navigation that would sign in says the user signed out.
	if resp, body := b.get(t, g.URL+"/ut/x"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "You have been signed out.") {
		t.Errorf("/ut/ after its sign-out: %d, want the signed-out page", resp.StatusCode)
	}
	if resp, _ := b.get(t, g.URL+"/ut/x"); resp.StatusCode != http.StatusFound {
		t.Errorf("/ut/ after its sign-out: %d, want 302 to a login", resp.StatusCode)
	}
	if resp, _ := b.get(t, g.URL+"/op/x"); resp.StatusCode != http.StatusOK {
		t.Errorf("/op/ after signing out of /ut/: %d, want 200", resp.StatusCode)
	}
	if w.ut.Count("revoke") != 1 {
		t.Errorf("upstreamtest revocations: %d, want 1", w.ut.Count("revoke"))
	}

	// /readyz names all four upstreams, the three of oidc-provider
	// sharing its discovery.
	resp, body := b.get(t, g.URL+"/readyz")
	for _, name := range []string{`"default":"ok"`, `"ut":"ok"`, `"legacy":"ok"`, `"machines":"ok"`} {
		if resp.StatusCode != 200 || !strings.Contains(body, name) {
			t.Errorf("readyz %d %s: want %s", resp.StatusCode, body, name)
		}
	}
}

// TestMixedGrantsOnSeveralServers: the password route (upstreamtest), the
// implicit route (oidc-provider's client "legacy") and the client
// credentials route (oidc-provider's client "svc") of the same gateway
// work end to end, each backend with its own server's token.
func TestMixedGrantsOnSeveralServers(t *testing.T) {
	w := startSeveralServers(t)
	g := w.g

	// Password sign-in at upstreamtest through the gateway's form.
	b := newBrowser()
	resp, _ := b.get(t, g.URL+"/pw/report")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/oauth2/login?rd=") {
		t.Fatalf("/pw/ without a session: %d to %q, want the login form", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, page := b.get(t, g.URL+resp.Header.Get("Location"))
	form := url.Values{"csrf": {between(page, `name="csrf" value="`, `"`)}, "rd": {"/pw/report"}, "username": {"alice"}, "password": {"alice-password"}}
	req, _ := http.NewRequest(http.MethodPost, g.URL+"/oauth2/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, body := b.do(t, req); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("password sign-in: %d %s", resp.StatusCode, body)
	}
	if resp, _ := b.get(t, g.URL+"/pw/report"); resp.StatusCode != http.StatusOK || w.issuerOf(t, w.pw) != w.ut.URL {
		t.Errorf("/pw/ after sign-in: %d, want 200 with upstreamtest's token", resp.StatusCode)
	}
	// The password session is upstreamtest's ("ut"): it opens the /ut/
	// code-flow route too, but not oidc-provider's.
	if resp, _ := b.get(t, g.URL+"/ut/x"); resp.StatusCode != http.StatusOK {
		t.Errorf("/ut/ with the password session of the same upstream: %d, want 200", resp.StatusCode)
	}
	if resp, _ := b.get(t, g.URL+"/op/x"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), w.op.URL) {
		t.Errorf("/op/ with upstreamtest's session: %d to %q, want 302 to oidc-provider", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The implicit grant at oidc-provider's client "legacy".
	b2 := newBrowser()
	resp, _ = b2.get(t, g.URL+"/legacy/page")
	au := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.Contains(au, "client_id=legacy") {
		t.Fatalf("/legacy/ without a session: %d to %q, want oidc-provider's authorize for client legacy", resp.StatusCode, au)
	}
	cb := w.op.Authorize(t, b2.Client, au, "bob")
	fields, _ := url.ParseQuery(cb.Fragment)
	req, _ = http.NewRequest(http.MethodPost, g.URL+"/oauth2/implicit", strings.NewReader(fields.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, body := b2.do(t, req); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("implicit POST: %d %s", resp.StatusCode, body)
	}
	if resp, _ := b2.get(t, g.URL+"/legacy/page"); resp.StatusCode != http.StatusOK || w.issuerOf(t, w.old) != w.op.URL || w.old.lastHeader(t).Get("X-Forwarded-User") != "bob" {
		t.Errorf("/legacy/ after the implicit login: %d, want 200 with oidc-provider's token for bob", resp.StatusCode)
	}
	// The "legacy" session is not the default upstream's, though both are
	// oidc-provider: another client, another registration.
	if resp, _ := b2.get(t, g.URL+"/op/x"); resp.StatusCode != http.StatusFound {
		t.Errorf("/op/ with the legacy client's session: %d, want 302 to a login", resp.StatusCode)
	}

	// Client credentials at oidc-provider's client "svc": no credentials
	// from the caller.
	resp, body := newBrowser().get(t, g.URL+"/api/orders")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/: %d %s", resp.StatusCode, body)
	}
	claims := jwtClaims(t, strings.TrimPrefix(w.api.lastHeader(t).Get("Authorization"), "Bearer "))
	if claims["iss"] != w.op.URL || claims["aud"] != ordersAPI || claims["client_id"] != "svc" {
		t.Errorf("/api/ backend got iss %v aud %v client %v; want oidc-provider's token for %s, client svc", claims["iss"], claims["aud"], claims["client_id"], ordersAPI)
	}
}

// cookieOf is the value of the named cookie the browser holds for u.
func cookieOf(t *testing.T, b *browser, u, name string) string {
	t.Helper()
	pu, _ := url.Parse(u)
	for _, c := range b.Jar.Cookies(pu) {
		if c.Name == name {
			return c.Value
		}
	}
	t.Fatalf("no cookie %s for %s", name, u)
	return ""
}
