package proxy_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// TestForbiddenPageNamesTheAccount: the 403 page says who is signed in
// (escaped: the name is the server's claim, which some servers let users
// choose) and offers a sign-out that works; after it the user reads that
// they are signed out, once. Attack: a preferred_username of
// <script>…</script>.
func TestForbiddenPageNamesTheAccount(t *testing.T) {
	const evil = `<script>alert(1)</script>"x`
	e := newEnv(t, envOptions{idp: upstreamtest.Config{Users: []upstreamtest.User{
		{Subject: "user-mallory", Username: evil, Password: "pw", Email: "mallory@example.org", EmailVerified: true},
	}}})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Routes[0].Allow = proxy.Allow{Groups: []string{"admins"}}
	}})
	b := newBrowser(t)
	resp, body := b.get(t, g.URL+"/reports")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("got %d, want 403; %.300s", resp.StatusCode, body)
	}
	if want := "Signed in as <strong>&lt;script&gt;alert(1)&lt;/script&gt;&#34;x</strong>."; !strings.Contains(body, want) {
		t.Errorf("403 page lacks %q:\n%s", want, body)
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "eyJ") {
		t.Errorf("403 page holds markup from the claim, or a token:\n%s", body)
	}
	if !strings.Contains(body, `<form method="post" action="/oauth2/sign_out">`) {
		t.Fatalf("403 page has no sign-out form:\n%s", body)
	}
	form := formFields(body)
	if form.Get("csrf") == "" || form.Get("rd") != "/" {
		t.Errorf("sign-out form fields %v, want csrf and rd=/", form)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' "+e.idp.URL+";") {
		t.Errorf("403 page CSP %q: want form-action 'self' %s (the sign-out continues at end_session)", csp, e.idp.URL)
	}

	// An API client gets the JSON of every error, and no form.
	req := mustRequest(t, http.MethodGet, g.URL+"/reports", nil)
	req.Header.Set("Accept", "application/json")
	resp, jsonBody := b.do(t, req)
	var v map[string]any
	if err := json.Unmarshal([]byte(jsonBody), &v); err != nil || resp.StatusCode != 403 || len(v) != 3 || v["status"] != 403.0 || v["error"] != "Access denied" || v["message"] == nil {
		t.Errorf("403 as JSON: %d %s, want {status, error, message}", resp.StatusCode, jsonBody)
	}

	// The button signs out (end_session and back), and the landing says
	// so instead of starting another login.
	resp, body = b.do(t, postForm(t, g.URL+"/oauth2/sign_out", form))
	if resp.StatusCode != 200 || resp.Request.URL.String() != g.URL+"/" || !strings.Contains(body, "<h1>Signed out</h1>") ||
		!strings.Contains(body, "You have been signed out.") || !strings.Contains(body, `<a href="/oauth2/start?rd=%2F">Sign in again</a>`) {
		t.Fatalf("after the sign-out: %d at %s, want the signed-out page at /; %s", resp.StatusCode, resp.Request.URL, body)
	}
	if e.idp.Count("end_session") != 1 {
		t.Errorf("end_session called %d times, want 1", e.idp.Count("end_session"))
	}
	// Once: the next navigation signs in.
	if resp, _ := b.noFollow().get(t, g.URL+"/"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), e.idp.URL) {
		t.Errorf("second navigation after the sign-out: %d to %q, want 302 to the authorization server", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestForbiddenCallerTokenNoSignOut: a caller's own token refused by the
// rules gets the 403 page without a sign-out button (signing out would end
// the browser's session, not the token).
func TestForbiddenCallerTokenNoSignOut(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Routes[0].AcceptBearer = true
		pc.Routes[0].Allow = proxy.Allow{Groups: []string{"operators"}}
	}})
	b := newBrowser(t)
	if resp, _ := b.get(t, g.URL+"/"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("alice without operators: got %d, want 403", resp.StatusCode)
	}
	req := mustRequest(t, http.MethodPost, e.idp.URL+"/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("authgate", clientSecret)
	_, tokBody := b.do(t, req)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(tokBody), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("client credentials token: %s", tokBody)
	}
	req = mustRequest(t, http.MethodGet, g.URL+"/", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, body := b.do(t, req)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Signed in as <strong>authgate</strong>") {
		t.Fatalf("caller token without operators: %d, want the 403 page naming the token's subject; %s", resp.StatusCode, body)
	}
	if strings.Contains(body, "<form") || strings.Contains(body, tok.AccessToken) {
		t.Errorf("403 page for a caller token offers a sign-out or shows the token:\n%s", body)
	}
}

// TestErrorJSONShape: the 401 of a route and of /oauth2/userinfo are one
// JSON document; an answer that is no error (the sign-out confirmation)
// says "title", never "error".
func TestErrorJSONShape(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	get := func(path string) (*http.Response, string) {
		req := mustRequest(t, http.MethodGet, g.URL+path, nil)
		req.Header.Set("Accept", "application/json")
		return newBrowser(t).noFollow().do(t, req)
	}
	route, routeBody := get("/api/x")
	info, infoBody := get("/oauth2/userinfo")
	if route.StatusCode != 401 || info.StatusCode != 401 || routeBody != infoBody {
		t.Errorf("401s differ:\n route    %d %s\n userinfo %d %s", route.StatusCode, routeBody, info.StatusCode, infoBody)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(routeBody), &v); err != nil || len(v) != 3 || v["status"] != 401.0 || v["error"] != "Sign-in required" || v["message"] != "This request needs a signed-in session." {
		t.Errorf("401 JSON %s, want {status: 401, error: Sign-in required, message: ...}", routeBody)
	}
	for _, resp := range []*http.Response{route, info} {
		if resp.Header.Get("WWW-Authenticate") != `Bearer realm="authgate"` || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v", resp.Request.URL.Path, resp.Header)
		}
	}
	resp, body := get("/oauth2/sign_out")
	v = nil
	if err := json.Unmarshal([]byte(body), &v); err != nil || resp.StatusCode != 200 || v["title"] != "Sign out" || v["form"] == nil {
		t.Errorf("sign-out confirmation JSON: %d %s, want title and form", resp.StatusCode, body)
	}
	if _, ok := v["error"]; ok {
		t.Errorf("sign-out confirmation (200) says \"error\": %s", body)
	}
}

// TestSignedOutMarker: the word after a sign-out comes from a fixed page,
// shown once, only for the gateway's own marker value; nothing of the
// request is echoed in it, the backend never sees the marker, and a new
// sign-in clears it.
func TestSignedOutMarker(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	with := func(value, path string) (*http.Response, string) {
		req := mustRequest(t, http.MethodGet, g.URL+path, nil)
		req.AddCookie(&http.Cookie{Name: "_authgate_signed_out", Value: value})
		return newBrowser(t).noFollow().do(t, req)
	}
	// A forged value is no marker: the login starts, and the cookie goes.
	resp, _ := with("%3Cb%3Eowned%3C/b%3E", "/")
	if resp.StatusCode != http.StatusFound || !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), "_authgate_signed_out=; Path=/; Max-Age=0") {
		t.Errorf("forged marker: %d, Set-Cookie %q; want the login and the cookie cleared", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
	// The real one: a fixed page; the request's markup is not in it (its
	// path rides only percent-encoded in the link).
	resp, body := with("1", "/%3Cb%3Ehi%3C/b%3E?m=%3Ci%3Ex%3C/i%3E")
	if resp.StatusCode != 200 || !strings.Contains(body, "You have been signed out.") {
		t.Fatalf("marker: %d, want the signed-out page; %s", resp.StatusCode, body)
	}
	for _, bad := range []string{"<b>", "&lt;b&gt;", "<i>", "&lt;i&gt;"} {
		if strings.Contains(body, bad) {
			t.Errorf("signed-out page reflects the request (%q):\n%s", bad, body)
		}
	}
	// Behind forward-auth the landing is /oauth2/start: the same page,
	// whose link starts the login.
	resp, body = with("1", "/oauth2/start?rd=%2Fapp%2Fx")
	link := between(body, `<a href="`, `"`)
	if resp.StatusCode != 200 || link != "/oauth2/start?rd=%2Fapp%2Fx" {
		t.Fatalf("/oauth2/start with the marker: %d, link %q; want the signed-out page linking to the login", resp.StatusCode, link)
	}
	b := newBrowser(t)
	if resp, _ := b.noFollow().get(t, g.URL+"/oauth2/start?rd=%2Fapp%2Fx"); resp.StatusCode != http.StatusFound {
		t.Errorf("the link: %d, want 302 to the authorization server", resp.StatusCode)
	}

	// The backend never sees it; a sign-in clears it.
	b.login(t, g, "/")
	u, _ := url.Parse(g.URL)
	b.jar.SetCookies(u, []*http.Cookie{{Name: "_authgate_signed_out", Value: "1", Path: "/"}})
	if resp, _ := b.get(t, g.URL+"/x"); resp.StatusCode != 200 || strings.Contains(e.backend.last(t).Header.Get("Cookie"), "signed_out") {
		t.Errorf("with a session and the marker: %d, backend Cookie %q; want the backend without the marker", resp.StatusCode, e.backend.last(t).Header.Get("Cookie"))
	}
	// A login begun before the marker came (another tab) ends with it
	// cleared.
	b.jar.SetCookies(u, []*http.Cookie{{Name: "_authgate", Path: "/", MaxAge: -1}, {Name: "_authgate_signed_out", Path: "/", MaxAge: -1}})
	au := b.startLogin(t, g, "/y")
	b.jar.SetCookies(u, []*http.Cookie{{Name: "_authgate_signed_out", Value: "1", Path: "/"}})
	if resp, body := b.get(t, b.authorize(t, au).String()); resp.StatusCode != 200 || !strings.Contains(body, "backend says hello") {
		t.Errorf("the login's end: %d %q, want the backend", resp.StatusCode, body)
	}
	if c := b.cookie(t, g.URL, "_authgate_signed_out"); c != "" {
		t.Errorf("the marker survived a sign-in: %q", c)
	}
}

// TestSignedOutPasswordForm: after a sign-out on a password route the
// gateway's own form says so, once.
func TestSignedOutPasswordForm(t *testing.T) {
	e := newEnv(t, envOptions{idp: passwordIdP})
	g := e.gateway(gatewayOptions{mutate: passwordRoute})
	b := newBrowser(t)
	if resp, _ := formLogin(t, g, b, "/app", "alice", "alice-password"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	_, page := b.get(t, g.URL+"/oauth2/sign_out")
	resp, body := b.do(t, postForm(t, g.URL+"/oauth2/sign_out", formFields(page)))
	if resp.StatusCode != 200 || !strings.Contains(body, `autocomplete="current-password"`) ||
		!strings.Contains(body, `<p class="notice" role="status">You have been signed out.</p>`) {
		t.Fatalf("after the sign-out: %d at %s, want the form saying so; %s", resp.StatusCode, resp.Request.URL, body)
	}
	if _, body := b.get(t, g.URL+"/oauth2/login?rd=%2F"); strings.Contains(body, "signed out") {
		t.Errorf("the form says \"signed out\" a second time")
	}
}

// TestForbiddenSignOutOfItsServer: with several authorization servers the
// 403 page's button ends the session at the refusing route's server (its
// rd leads there) and leaves the other.
func TestForbiddenSignOutOfItsServer(t *testing.T) {
	w := newTwoServers(t, func(pc *proxy.Config) {
		pc.Routes[1].Allow = proxy.Allow{Groups: []string{"operators"}}
	})
	b := newBrowser(t)
	b.login(t, w.g, "/admin/")
	resp, body := b.get(t, w.g.URL+"/portal/x")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Signed in as <strong>alice</strong>") {
		t.Fatalf("portal without operators: %d, want the 403 page naming alice; %s", resp.StatusCode, body)
	}
	form := formFields(body)
	if form.Get("rd") != "/portal/" || form.Get("csrf") == "" {
		t.Fatalf("the 403 page's sign-out fields %v, want rd=/portal/ and a csrf token", form)
	}
	resp, body = b.noFollow().do(t, postForm(t, w.g.URL+"/oauth2/sign_out", form))
	readLogout(t, resp, body)
	if w.customers.Count("revoke") != 1 || w.e.idp.Count("revoke") != 0 {
		t.Errorf("revocations: customers %d, default %d; want 1, 0", w.customers.Count("revoke"), w.e.idp.Count("revoke"))
	}
	if resp, _ := b.noFollow().get(t, w.g.URL+"/admin/"); resp.StatusCode != http.StatusOK {
		t.Errorf("admin after the portal's sign-out: %d, want 200 (its session stays)", resp.StatusCode)
	}
}
