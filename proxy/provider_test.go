package proxy_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// twoServers is a gateway in front of two backends, /admin/ signed in at
// e.idp (the default upstream) and /portal/ at customers (upstreams:
// customers).
type twoServers struct {
	e         *env
	g         *gateway
	customers *upstreamtest.Server
	portal    *backend
}

func newTwoServers(t *testing.T, edit func(pc *proxy.Config)) *twoServers {
	t.Helper()
	e := newEnv(t, envOptions{redis: true})
	customers := upstreamtest.NewServer(upstreamtest.Config{Now: e.clock.Now})
	t.Cleanup(customers.Close)
	portal := newBackend(t)
	g := e.gateway(gatewayOptions{
		upstreams: map[string]upstream.Config{"customers": {Issuer: customers.URL, ClientID: "authgate", ClientSecret: clientSecret}},
		mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
			pc.Routes = []proxy.Route{
				{Match: proxy.Match{PathPrefix: "/admin/"}, Backend: e.backend.URL, Grant: proxy.GrantAuthorizationCode},
				{Match: proxy.Match{PathPrefix: "/portal/"}, Backend: portal.URL, Grant: proxy.GrantAuthorizationCode, Upstream: "customers"},
			}
			if edit != nil {
				edit(pc)
			}
		},
	})
	return &twoServers{e: e, g: g, customers: customers, portal: portal}
}

// issuerOf reads the "iss" of the bearer JWT a backend request carried.
func issuerOf(t *testing.T, r *http.Request) string {
	t.Helper()
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("backend got Authorization %q, want a bearer JWT", r.Header.Get("Authorization"))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c.Iss
}

// TestSeveralUpstreams: each route signs in at its own authorization
// server, its backend sees only that server's token, and a user holds both
// sessions at once without one logging the other out (SECURITY.md 30).
func TestSeveralUpstreams(t *testing.T) {
	w := newTwoServers(t, nil)
	e, g := w.e, w.g
	b := newBrowser(t)

	b.login(t, g, "/admin/")
	if got := issuerOf(t, e.backend.last(t)); got != e.idp.Issuer() {
		t.Errorf("admin backend got a token of %q, want the default upstream's %q", got, e.idp.Issuer())
	}
	if e.idp.Count("authorize") != 1 || w.customers.Count("authorize") != 0 {
		t.Fatalf("admin login: authorize at default %d, at customers %d; want 1, 0", e.idp.Count("authorize"), w.customers.Count("authorize"))
	}

	// The admin session does not open the portal: its login is the
	// customers server's.
	if u := b.startLogin(t, g, "/portal/"); !strings.HasPrefix(u.String(), w.customers.URL+"/authorize?") {
		t.Fatalf("portal with an admin session: redirected to %s, want the customers server's authorize", u)
	}
	b.login(t, g, "/portal/")
	if got := issuerOf(t, w.portal.last(t)); got != w.customers.Issuer() {
		t.Errorf("portal backend got a token of %q, want the customers server's %q", got, w.customers.Issuer())
	}
	adminCookie, portalCookie := b.cookie(t, g.URL, "_authgate"), b.cookie(t, g.URL, "_authgate-customers")
	if adminCookie == "" || portalCookie == "" {
		t.Fatalf("cookies after both logins: _authgate %t, _authgate-customers %t; want both", adminCookie != "", portalCookie != "")
	}
	// The admin session survived the portal login.
	if resp, _ := b.noFollow().get(t, g.URL+"/admin/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("admin after the portal login: got %d, want 200", resp.StatusCode)
	}
	if got := issuerOf(t, e.backend.last(t)); got != e.idp.Issuer() {
		t.Errorf("admin backend after both logins got a token of %q", got)
	}
	for _, r := range []*http.Request{e.backend.last(t), w.portal.last(t)} {
		if c := r.Header.Get("Cookie"); strings.Contains(c, "_authgate") {
			t.Errorf("a backend received the gateway's cookies: %q", c)
		}
	}
	if e.idp.Count("authorize") != 1 || w.customers.Count("authorize") != 1 {
		t.Errorf("authorize requests: default %d, customers %d; want 1 each", e.idp.Count("authorize"), w.customers.Count("authorize"))
	}

	// /readyz names each upstream.
	resp, body := b.get(t, g.URL+"/readyz")
	var ready struct {
		Checks struct {
			Upstreams map[string]string `json:"upstreams"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &ready); err != nil || resp.StatusCode != 200 ||
		ready.Checks.Upstreams["default"] != "ok" || ready.Checks.Upstreams["customers"] != "ok" {
		t.Errorf("readyz: %d %s; want 200 with upstreams default and customers ok", resp.StatusCode, body)
	}
}

// TestSessionOfAnotherUpstreamRefused: a session moved under another
// server's cookie (or left there by a changed issuer) is not taken: its
// token belongs to another trust domain. The route asks its own server.
func TestSessionOfAnotherUpstreamRefused(t *testing.T) {
	w := newTwoServers(t, nil)
	g := w.g
	b := newBrowser(t)
	b.login(t, g, "/admin/")
	admin := b.cookie(t, g.URL, "_authgate")
	calls := w.portal.count()

	req := mustRequest(t, http.MethodGet, g.URL+"/portal/", nil)
	req.Header.Set("Cookie", "_authgate-customers="+admin)
	resp, _ := newBrowser(t).noFollow().do(t, req)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), w.customers.URL+"/authorize?") {
		t.Errorf("the default server's session under the customers cookie: got %d to %q, want 302 to the customers server", resp.StatusCode, resp.Header.Get("Location"))
	}
	if w.portal.count() != calls {
		t.Error("the portal backend was reached with another server's session")
	}
	// The session itself lives on for its own server.
	if resp, _ := b.noFollow().get(t, g.URL+"/admin/"); resp.StatusCode != http.StatusOK {
		t.Errorf("admin after the refused transplant: got %d, want 200", resp.StatusCode)
	}
}

// TestSignOutOfOneUpstream: sign-out ends the session at the server of the
// route in rd and leaves the other; all=true ends both.
func TestSignOutOfOneUpstream(t *testing.T) {
	w := newTwoServers(t, nil)
	e, g := w.e, w.g
	b := newBrowser(t)
	b.login(t, g, "/admin/")
	b.login(t, g, "/portal/")

	signOut := func(query string) {
		t.Helper()
		resp, body := b.noFollow().get(t, g.URL+"/oauth2/sign_out?"+query)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET sign_out?%s: got %d", query, resp.StatusCode)
		}
		form := url.Values{}
		for _, name := range []string{"rd", "csrf", "all"} {
			if v := between(body, `name="`+name+`" value="`, `"`); v != "" {
				form.Set(name, v)
			}
		}
		resp, body = b.noFollow().do(t, postForm(t, g.URL+"/oauth2/sign_out", form))
		readLogout(t, resp, body)
	}
	signOut("rd=%2Fportal%2F")
	// userinfo answers for the server of the route in rd (default: the
	// default upstream).
	for rd, want := range map[string]int{"": 200, "/admin/": 200, "/portal/": 401} {
		if resp, _ := b.get(t, g.URL+"/oauth2/userinfo?rd="+url.QueryEscape(rd)); resp.StatusCode != want {
			t.Errorf("userinfo?rd=%s after signing out of the portal: got %d, want %d", rd, resp.StatusCode, want)
		}
	}
	// The first navigation that needs a login says the user signed out.
	if resp, body := b.noFollow().get(t, g.URL+"/portal/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "You have been signed out.") {
		t.Errorf("portal after signing out of it: got %d, want the signed-out page", resp.StatusCode)
	}
	if resp, _ := b.noFollow().get(t, g.URL+"/portal/"); resp.StatusCode != http.StatusFound {
		t.Errorf("portal after signing out of it: got %d, want 302 to a login", resp.StatusCode)
	}
	if resp, _ := b.noFollow().get(t, g.URL+"/admin/"); resp.StatusCode != http.StatusOK {
		t.Errorf("admin after signing out of the portal: got %d, want 200", resp.StatusCode)
	}
	if w.customers.Count("revoke") != 1 || e.idp.Count("revoke") != 0 {
		t.Errorf("revocations: customers %d, default %d; want 1, 0", w.customers.Count("revoke"), e.idp.Count("revoke"))
	}

	b.login(t, g, "/portal/")
	signOut("rd=%2Fadmin%2F&all=true")
	if resp, body := b.noFollow().get(t, g.URL+"/admin/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "You have been signed out.") {
		t.Errorf("/admin/ after sign-out of all: got %d, want the signed-out page", resp.StatusCode)
	}
	for _, p := range []string{"/admin/", "/portal/"} {
		if resp, _ := b.noFollow().get(t, g.URL+p); resp.StatusCode != http.StatusFound {
			t.Errorf("%s after sign-out of all: got %d, want 302 to a login", p, resp.StatusCode)
		}
	}
	if w.customers.Count("revoke") != 2 || e.idp.Count("revoke") != 1 {
		t.Errorf("revocations after all: customers %d, default %d; want 2, 1", w.customers.Count("revoke"), e.idp.Count("revoke"))
	}
}

// TestCallerTokenOfAnotherUpstream: a caller token one server vouched for
// (and that the gateway cached as valid) is not taken on another server's
// route with the same audience.
func TestCallerTokenOfAnotherUpstream(t *testing.T) {
	w := newTwoServers(t, func(pc *proxy.Config) {
		for i := range pc.Routes {
			pc.Routes[i].AcceptBearer = true
			pc.Routes[i].Audience = "urn:shared"
		}
	})
	e, g := w.e, w.g
	now := e.clock.Now()
	tok, err := w.customers.SignTyped(jwt.MapClaims{"iss": w.customers.Issuer(), "sub": "svc", "aud": "urn:shared", "client_id": "caller",
		"iat": now.Unix(), "exp": now.Add(10 * 60e9).Unix()}, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := apiCall(t, g, "/portal/x", tok); resp.StatusCode != http.StatusOK {
		t.Fatalf("customers token on the customers route: got %d, want 200: %s", resp.StatusCode, body)
	}
	if resp, _ := apiCall(t, g, "/admin/x", tok); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("customers token on the default server's route: got %d, want 401", resp.StatusCode)
	}
}

// TestUnknownUpstreamRefused: a route naming no configured upstream is an
// error naming the key.
func TestUnknownUpstreamRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	sc := session.Config{Cookie: session.CookieConfig{Secret: cookieSecret}}
	sessions, err := session.NewManager(sc, e.store, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer sessions.Close()
	up, _ := upstream.New(upstream.Config{Issuer: e.idp.URL, ClientID: "authgate", ClientSecret: clientSecret}, upstream.Deps{})
	_, err = proxy.New(proxy.Config{PublicURL: "https://gw.example", Routes: []proxy.Route{{Backend: e.backend.URL, Grant: proxy.GrantAuthorizationCode, Upstream: "nope"}}},
		proxy.Deps{Upstream: up, Sessions: sessions})
	if err == nil || !strings.Contains(err.Error(), `routes[0].upstream: no upstream named "nope"`) {
		t.Errorf("proxy.New with an unknown upstream: got %v", err)
	}
}

// TestMixUpRefused: the answer to a login at the customers server that
// comes back to the default server's redirect URI (a mix-up, RFC 9700
// §4.4) is refused before its code reaches any token endpoint; at its own
// redirect URI the same kind of answer signs in.
func TestMixUpRefused(t *testing.T) {
	w := newTwoServers(t, nil)
	g := w.g
	b := newBrowser(t)
	au := b.startLogin(t, g, "/portal/")
	if got := au.Query().Get("redirect_uri"); got != g.URL+"/oauth2/callback/customers" {
		t.Fatalf("the customers login's redirect_uri: %q, want %s/oauth2/callback/customers", got, g.URL)
	}
	cb := b.authorize(t, au)
	if cb.Path != "/oauth2/callback/customers" {
		t.Fatalf("callback at %s", cb.Path)
	}
	mixed := *cb
	mixed.Path = "/oauth2/callback"
	tokens := w.customers.Count("token") + w.e.idp.Count("token")
	resp, body := b.noFollow().get(t, mixed.String())
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("the customers server's answer at the default redirect URI: %d, want a 4xx page; %s", resp.StatusCode, body)
	}
	if n := w.customers.Count("token") + w.e.idp.Count("token"); n != tokens {
		t.Errorf("token requests after the mixed-up answer: %d more, want none", n-tokens)
	}
	b.login(t, g, "/portal/")
	if got := issuerOf(t, w.portal.last(t)); got != w.customers.Issuer() {
		t.Errorf("portal after a proper login: token of %q", got)
	}
}

// TestTransplantedCookieEndpoints: the default server's session under the
// customers cookie is no customers session for userinfo, and signing out
// of the customers server with it sends its refresh token nowhere (it
// would reach the wrong server's revocation endpoint).
func TestTransplantedCookieEndpoints(t *testing.T) {
	w := newTwoServers(t, nil)
	g := w.g
	b := newBrowser(t)
	b.login(t, g, "/admin/")
	admin := b.cookie(t, g.URL, "_authgate")

	thief := newBrowser(t)
	u, _ := url.Parse(g.URL)
	thief.jar.SetCookies(u, []*http.Cookie{{Name: "_authgate-customers", Value: admin, Path: "/"}})
	if resp, _ := thief.get(t, g.URL+"/oauth2/userinfo?rd=%2Fportal%2F"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("userinfo for the customers server with the default server's session: %d, want 401", resp.StatusCode)
	}
	_, page := thief.noFollow().get(t, g.URL+"/oauth2/sign_out?rd=%2Fportal%2F")
	form := url.Values{"rd": {"/portal/"}, "csrf": {between(page, `name="csrf" value="`, `"`)}}
	resp, body := thief.noFollow().do(t, postForm(t, g.URL+"/oauth2/sign_out", form))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d %s", resp.StatusCode, body)
	}
	if n := w.customers.Count("revoke"); n != 0 {
		t.Errorf("the customers server's revocation endpoint got %d requests: the default server's refresh token went to it", n)
	}
}
