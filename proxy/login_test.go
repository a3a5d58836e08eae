package proxy_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

func TestLoginEndToEnd(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			e := newEnv(t, envOptions{redis: store == "redis"})
			g := e.gateway(gatewayOptions{})
			b := newBrowser(t)

			resp := b.login(t, g, "/app/page?x=1&y=2")
			if got := resp.Request.URL.RequestURI(); got != "/app/page?x=1&y=2" {
				t.Errorf("after login the browser is at %q, want the originally requested /app/page?x=1&y=2", got)
			}
			req := e.backend.last(t)
			tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
			if !ok {
				t.Fatalf("backend got Authorization %q, want a bearer token", req.Header.Get("Authorization"))
			}
			claims := jwt.MapClaims{}
			if _, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return e.idp.PublicKey(), nil }); err != nil {
				t.Fatalf("backend's bearer token is not the authorization server's access token: %v", err)
			}
			if claims["sub"] != "user-alice" {
				t.Errorf("token sub = %v, want user-alice", claims["sub"])
			}
			for h, want := range map[string]string{
				"X-Forwarded-User":               "user-alice",
				"X-Forwarded-Email":              "alice@example.com",
				"X-Forwarded-Preferred-Username": "alice",
				"X-Forwarded-Groups":             "admins,staff",
			} {
				if got := req.Header.Get(h); got != want {
					t.Errorf("backend got %s=%q, want %q", h, got, want)
				}
			}
			if c := req.Header.Get("Cookie"); strings.Contains(c, "_authgate") {
				t.Errorf("the gateway's cookie reached the backend: %q", c)
			}

			// The session is reused: no authorization server traffic.
			before := e.idp.TotalRequests()
			for i := 0; i < 3; i++ {
				resp, body := b.get(t, g.URL+"/other")
				if resp.StatusCode != 200 || !strings.Contains(body, "user-alice") {
					t.Fatalf("request with session: got %d %q, want 200 from the backend", resp.StatusCode, body)
				}
			}
			if after := e.idp.TotalRequests(); after != before {
				t.Errorf("authorization server saw %d requests during session use, want 0", after-before)
			}
		})
	}
}

func TestLoginOnOneGatewayWorksOnAnother(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	a, bgw := e.gateway(gatewayOptions{}), e.gateway(gatewayOptions{})
	br := newBrowser(t)
	br.login(t, a, "/")
	// Cookies are per host, not per port: the jar sends A's cookie to B.
	before := e.idp.TotalRequests()
	resp, body := br.noFollow().get(t, bgw.URL+"/on-b")
	if resp.StatusCode != 200 || !strings.Contains(body, "user-alice") {
		t.Fatalf("gateway B with A's session: got %d %q, want 200 from the backend", resp.StatusCode, body)
	}
	if e.idp.TotalRequests() != before {
		t.Errorf("gateway B contacted the authorization server; the session should come from Redis")
	}
}

func TestParallelTabsLogIn(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	// Three tabs start a login before any finishes; they finish in reverse.
	var callbacks []string
	for _, p := range []string{"/tab1", "/tab2", "/tab3"} {
		callbacks = append(callbacks, b.authorize(t, b.startLogin(t, g, p)).String())
	}
	for i := len(callbacks) - 1; i >= 0; i-- {
		resp, body := b.get(t, callbacks[i])
		if resp.StatusCode != 200 {
			t.Fatalf("tab %d callback: got %d, want 200 after redirect; body %s", i+1, resp.StatusCode, body)
		}
		if want := []string{"/tab1", "/tab2", "/tab3"}[i]; resp.Request.URL.Path != want {
			t.Errorf("tab %d landed on %s, want %s", i+1, resp.Request.URL.Path, want)
		}
	}
	// One binding cookie however many tabs.
	n := 0
	for _, c := range b.jar.Cookies(mustRequest(t, "GET", g.URL, nil).URL) {
		if strings.HasPrefix(c.Name, "_authgate") {
			n++
		}
	}
	if n > 2 {
		t.Errorf("browser holds %d gateway cookies after 3 parallel logins, want at most 2 (session + binding)", n)
	}
}

func TestAPIRequestsGet401(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	for name, hdr := range map[string]map[string]string{
		"json":       {"Accept": "application/json"},
		"xhr":        {"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"},
		"fetch cors": {"Accept": "text/html", "Sec-Fetch-Mode": "cors"},
		"post":       {"Accept": "text/html"},
	} {
		t.Run(name, func(t *testing.T) {
			method := http.MethodGet
			if name == "post" {
				method = http.MethodPost
			}
			req := mustRequest(t, method, g.URL+"/api/x", nil)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("got %d, want 401", resp.StatusCode)
			}
			if resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	if e.backend.count() != 0 {
		t.Errorf("backend saw %d unauthenticated requests, want 0", e.backend.count())
	}
}

func TestUserinfoEndpoint(t *testing.T) {
	e := newEnv(t, envOptions{idp: upstreamtest.Config{GroupsInUserinfoOnly: true}})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	b.login(t, g, "/")
	resp, body := b.get(t, g.URL+"/oauth2/userinfo")
	if resp.StatusCode != 200 {
		t.Fatalf("userinfo: got %d, want 200", resp.StatusCode)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatalf("userinfo is not JSON: %v", err)
	}
	if info["email"] != "alice@example.com" || info["user"] != "user-alice" {
		t.Errorf("userinfo = %v, want alice's identity", info)
	}
	// Groups only the userinfo endpoint knows still arrive (peers' bug).
	if g, _ := info["groups"].([]any); len(g) != 2 {
		t.Errorf("groups = %v, want [admins staff] merged from the userinfo endpoint", info["groups"])
	}
	for _, k := range []string{"access_token", "refresh_token", "id_token", "token"} {
		if _, ok := info[k]; ok || strings.Contains(body, "eyJ") {
			t.Errorf("userinfo leaks a token (%s): %s", k, body)
		}
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("userinfo Cache-Control = %q, want no-store", cc)
	}
}

func TestPolicy(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		name  string
		allow proxy.Allow
		user  string
		want  int
	}{
		{"everyone", proxy.Allow{}, "alice", 200},
		{"domain ok", proxy.Allow{EmailDomains: []string{"example.com"}}, "alice", 200},
		{"domain other", proxy.Allow{EmailDomains: []string{"example.com"}}, "bob", 403},
		{"email listed", proxy.Allow{Emails: []string{"BOB@example.org"}}, "bob", 200},
		{"group ok", proxy.Allow{Groups: []string{"admins"}}, "alice", 200},
		{"group missing", proxy.Allow{Groups: []string{"admins"}}, "bob", 403},
		{"domain and group", proxy.Allow{EmailDomains: []string{"example.org"}, Groups: []string{"admins"}}, "bob", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
				pc.Routes[0].Allow = tc.allow
			}})
			b := newBrowser(t)
			resp, body := b.get(t, g.URL+"/?login_hint_ignored")
			_ = body
			if tc.user == "bob" {
				// upstreamtest picks the user from login_hint; start over as bob.
				b = newBrowser(t)
				au := b.startLogin(t, g, "/")
				q := au.Query()
				q.Set("login_hint", "bob")
				au.RawQuery = q.Encode()
				resp, _ = b.get(t, b.authorize(t, au).String())
			}
			if resp.StatusCode != tc.want {
				t.Errorf("%s: got %d, want %d", tc.user, resp.StatusCode, tc.want)
			}
		})
	}
}

func TestSignOut(t *testing.T) {
	// A server that refuses post_logout_redirect_uri without id_token_hint.
	e := newEnv(t, envOptions{redis: true, idp: upstreamtest.Config{RequireIDTokenHint: true}})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	b.login(t, g, "/")
	raw := b.cookie(t, g.URL, "_authgate")
	if raw == "" {
		t.Fatal("no session cookie after login")
	}

	// A cross-site GET (an <img> on another site) does not log the user out.
	resp, body := b.noFollow().get(t, g.URL+"/oauth2/sign_out")
	if resp.StatusCode != 200 || !strings.Contains(body, "<form") {
		t.Fatalf("GET sign_out: got %d, want 200 with a confirmation form", resp.StatusCode)
	}
	// CSP form-action governs the POST's redirect too: without the
	// server's origin a browser refuses to follow it to end_session.
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' "+e.idp.URL+";") {
		t.Errorf("sign-out page CSP %q: want form-action 'self' %s", csp, e.idp.URL)
	}
	if resp, _ := b.noFollow().get(t, g.URL+"/"); resp.StatusCode != 200 {
		t.Fatalf("after GET sign_out the session is gone (got %d); a GET must not log out", resp.StatusCode)
	}
	// A forged POST without the form's token is refused.
	req := mustRequest(t, http.MethodPost, g.URL+"/oauth2/sign_out", strings.NewReader("rd=/"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, _ := b.noFollow().do(t, req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST sign_out without csrf: got %d, want 403", resp.StatusCode)
	}
	// The real form.
	csrf := between(body, `name="csrf" value="`, `"`)
	req = mustRequest(t, http.MethodPost, g.URL+"/oauth2/sign_out", strings.NewReader("rd=%2Fbye&csrf="+csrf))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body = b.noFollow().do(t, req)
	// RP-Initiated Logout §2: the ID token as id_token_hint, with client_id
	// and the way back, in the browser's GET (the server's SameSite=Lax
	// login cookie rides no cross-site POST).
	lr := readLogout(t, resp, body)
	if lr.method != http.MethodGet || lr.endpoint.Scheme+"://"+lr.endpoint.Host+lr.endpoint.Path != e.idp.URL+"/logout" {
		t.Errorf("sign-out goes on by %s to %s, want a 303 to %s/logout", lr.method, lr.endpoint, e.idp.URL)
	}
	if lr.params.Get("post_logout_redirect_uri") != g.URL+"/bye" || lr.params.Get("client_id") != "authgate" {
		t.Errorf("sign-out parameters %v, want post_logout_redirect_uri %s/bye and client_id authgate", lr.params, g.URL)
	}
	if hint := lr.params.Get("id_token_hint"); strings.Count(hint, ".") != 2 {
		t.Errorf("sign-out id_token_hint %q, want the session's ID token", hint)
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("sign-out redirect headers %v: want no-referrer and no-store", resp.Header)
	}
	// upstreamtest, which demands the hint, accepts it and sends the
	// browser back.
	fresp, _ := b.noFollow().get(t, lr.endpoint.String())
	if got := fresp.Header.Get("Location"); fresp.StatusCode/100 != 3 || !strings.HasPrefix(got, g.URL+"/bye") {
		t.Errorf("end_session: got %d to %q, want a redirect to %s/bye", fresp.StatusCode, got, g.URL)
	}
	if e.idp.Count("revoke") != 1 {
		t.Errorf("revocation endpoint called %d times, want 1", e.idp.Count("revoke"))
	}
	// Server-side deletion: replaying the old cookie does not work.
	b2 := newBrowser(t)
	req = mustRequest(t, http.MethodGet, g.URL+"/", nil)
	req.AddCookie(&http.Cookie{Name: "_authgate", Value: raw})
	if resp, _ := b2.noFollow().do(t, req); resp.StatusCode != http.StatusFound {
		t.Errorf("old cookie after sign-out: got %d, want 302 to login", resp.StatusCode)
	}
}

func TestSignOutWithoutSession(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t).noFollow()
	// A cross-site image without a session here must not send the browser
	// to the server's end_session either.
	resp, body := b.get(t, g.URL+"/oauth2/sign_out?rd=/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "<form") || e.idp.Count("end_session") != 0 {
		t.Errorf("GET sign_out without a session: got %d, want 200 with a confirmation form", resp.StatusCode)
	}
	post := func(origin string) *http.Response {
		req := mustRequest(t, http.MethodPost, g.URL+"/oauth2/sign_out", strings.NewReader("rd=%2F"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, _ := b.do(t, req)
		return resp
	}
	if resp := post("https://evil.com"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST sign_out without a session: got %d, want 403", resp.StatusCode)
	}
	if resp := post(g.URL); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), e.idp.URL+"/logout?") {
		t.Errorf("same-origin POST sign_out without a session: got %d to %q, want 303 to end_session", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestSignOutAPIClient(t *testing.T) {
	// An API client holding the cookie confirms as the form would: the
	// JSON answer carries the form's fields.
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	b.login(t, g, "/")
	req := mustRequest(t, http.MethodGet, g.URL+"/oauth2/sign_out", nil)
	req.Header.Set("Accept", "application/json")
	_, body := b.noFollow().do(t, req)
	var answer struct {
		Form struct {
			Action string
			Fields map[string]string
		}
	}
	if err := json.Unmarshal([]byte(body), &answer); err != nil || answer.Form.Fields["csrf"] == "" {
		t.Fatalf("GET sign_out as JSON: got %s (%v), want the form with its csrf field", body, err)
	}
	form := url.Values{}
	for k, v := range answer.Form.Fields {
		form.Set(k, v)
	}
	req = mustRequest(t, http.MethodPost, g.URL+answer.Form.Action, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if resp, _ := b.noFollow().do(t, req); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST sign_out with the JSON form's fields: got %d, want 303", resp.StatusCode)
	}
	req = mustRequest(t, http.MethodGet, g.URL+"/oauth2/userinfo", nil)
	req.Header.Set("Accept", "application/json")
	if resp, _ := b.noFollow().do(t, req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("userinfo after sign-out: got %d, want 401", resp.StatusCode)
	}
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}

func TestPublicPathsNeedNoLogin(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/public/logo.png", 200},
		{"/public/../admin", 302},
		{"/public/..%2fadmin", 302},
		{"/public%2F..%2Fadmin", 302},
		{"/public%23/x", 302},
		{"//public/../admin", 302},
		{"/publicity", 302},
		// What lenient backends resolve: Tomcat/Jetty/Spring drop ";params"
		// from a segment, IIS reads "\" as "/".
		{"/public/..;/admin", 302},
		{"/public/..%3B/admin", 302},
		{"/public;x/../admin", 302},
		{"/public/..%5Cadmin", 302},
		{"/public/logo.png;jsessionid=ABC", 200},
		// The mirror: what strict backends (nginx, Express, Go) read as
		// under /admin/ must not be public because Tomcat would not.
		{"/admin/..;/public/x", 302},
		{"/admin/..%3B/public/x", 302},
		{"/admin/x%5C../../public/x", 302},
		// Backends that do not resolve dot-segments (Express, Node) or keep
		// "%2F" inside a segment (Go's mux) run these under /admin/; a
		// chain that decodes twice reads the %25 ones as dot-segments.
		{"/admin/../public/x", 302},
		{"/admin//../public/x", 302},
		{"/admin/./../public/x", 302},
		{"/admin/..%2Fpublic/x", 302},
		{"/admin/..%2F..%2Fpublic/x", 302},
		{"/admin%2F..%2Fpublic/x", 302},
		{"/admin/%2e%2e%2fpublic/x", 302},
		{"/public/%252e%252e/admin", 302},
		{"/public/..%252fadmin", 302},
		{"/public./x", 302},            // IIS drops the dot: /public/x, but others do not
		{"/PUBLIC/x", 302},             // case-sensitive backends: not /public/
		{"/admin%00/../public/x", 400}, // NUL ends the path for some backends
		{"/public/..%00/admin", 400},
		{"/public//logo.png", 200}, // every reading agrees: public
	} {
		resp, _ := newBrowser(t).noFollow().get(t, g.URL+tc.path)
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s: got %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
	}
	if r := e.backend.last(t); r.Header.Get("Authorization") != "" || r.Header.Get("X-Forwarded-User") != "" {
		t.Errorf("public path got identity headers: %v", r.Header)
	}
}

func TestAmbiguousPathBetweenRoutesRefused(t *testing.T) {
	// "/app/..;/admin/x" is /app/... to one backend and /admin/x to
	// another: the gateway cannot pick a route, so it picks none.
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		admin := pc.Routes[0]
		admin.Match.PathPrefix = "/admin/"
		admin.Allow.Groups = []string{"admins"}
		pc.Routes = append([]proxy.Route{admin}, pc.Routes...)
	}})
	b := newBrowser(t)
	b.login(t, g, "/")
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/app/..;/admin/x", http.StatusBadRequest},
		{"/admin/..;/app/x", http.StatusBadRequest},
		{"/ADMIN/x", http.StatusBadRequest},        // /admin/x to IIS and Express
		{"/admin/../app/x", http.StatusBadRequest}, // /admin/... to Express
		{"/admin%2F..%2Fapp/x", http.StatusBadRequest},
		{"/app/x", http.StatusOK},
		{"/admin/x", http.StatusOK},
		{"/app/x;jsessionid=1", http.StatusOK},
		{"/admin/x;jsessionid=1", http.StatusOK},
	} {
		if resp, _ := b.get(t, g.URL+tc.path); resp.StatusCode != tc.want {
			t.Errorf("GET %s: got %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
	}
}

func TestConcurrentLoginsDoNotMix(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	g := e.gateway(gatewayOptions{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := newBrowser(t)
			resp, err := b.Get(g.URL + "/")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("concurrent login: got %d, want 200", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
}

// TestSignOutReachesEveryReplica (SECURITY.md 45): two gateways on one
// Redis, B serving the session from its cache (whose entries the test's
// clock never expires); a sign-out on A stops the cookie on B within a
// second. (A refresh on A reaching B: session's
// TestCacheCoherentAcrossReplicas.)
func TestSignOutReachesEveryReplica(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	long := func(_ *proxy.Config, sc *session.Config, _ *upstream.Config) { sc.Cache.TTL = time.Minute }
	a, bgw := e.gateway(gatewayOptions{mutate: long}), e.gateway(gatewayOptions{mutate: long})
	for _, g := range []*gateway{a, bgw} {
		deadline := time.Now().Add(5 * time.Second)
		for !g.sessions.CacheInUse() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	br := newBrowser(t)
	br.login(t, a, "/")
	for range 3 { // B now answers from its cache
		if resp, _ := br.noFollow().get(t, bgw.URL+"/on-b"); resp.StatusCode != http.StatusOK {
			t.Fatalf("gateway B with A's session: %d", resp.StatusCode)
		}
	}
	_, body := br.noFollow().get(t, a.URL+"/oauth2/sign_out")
	csrf := between(body, `name="csrf" value="`, `"`)
	req := mustRequest(t, http.MethodPost, a.URL+"/oauth2/sign_out", strings.NewReader("rd=%2F&csrf="+csrf))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	cookie := br.cookie(t, a.URL, "_authgate")
	if resp, _ := br.noFollow().do(t, req); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out on A: %d, want 303", resp.StatusCode)
	}
	// The cookie as the browser held it, replayed at B.
	deadline := time.Now().Add(time.Second)
	for {
		req := mustRequest(t, http.MethodGet, bgw.URL+"/on-b", nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", "_authgate="+cookie)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway B still answers %d for the signed-out cookie 1s after the sign-out on A", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
