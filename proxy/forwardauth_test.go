package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// askAuth sends one forward-auth question to g as an ingress would: the
// browser's cookie (if any) and the original request in headers.
func askAuth(t testing.TB, g *gateway, query, cookie string, hdr map[string]string) *http.Response {
	t.Helper()
	method := http.MethodGet
	if m, ok := hdr[":method"]; ok { // the subrequest's own method (nginx keeps the original)
		method = m
		delete(hdr, ":method")
	}
	req := mustRequest(t, method, g.URL+"/oauth2/auth"+query, nil)
	if cookie != "" {
		req.Header.Set("Cookie", "_authgate="+cookie)
	}
	for k, v := range hdr {
		req.Header[k] = strings.Split(v, "\x00") // "\x00" separates repeated headers
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// faGateway is a gateway with forward-auth on, asked from 127.0.0.1 (a
// trusted proxy unless the test names others).
func (e *env) faGateway(o gatewayOptions) *gateway {
	mutate := o.mutate
	o.mutate = func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		if mutate != nil {
			mutate(pc, sc, uc)
		}
		pc.ForwardAuth.Enabled = true
		if len(pc.TrustedProxies) == 0 {
			pc.TrustedProxies = []string{"127.0.0.1"}
		}
	}
	return e.gateway(o)
}

// identityIn lists the identity headers of an answer.
func identityIn(h http.Header) []string {
	var out []string
	for k, v := range h {
		if l := strings.ToLower(k); (strings.HasPrefix(l, "x-auth-request-") || l == "authorization") && strings.Join(v, "") != "" {
			out = append(out, k)
		}
	}
	return out
}

func loggedIn(t *testing.T, g *gateway) string {
	t.Helper()
	b := newBrowser(t)
	b.login(t, g, "/")
	c := b.cookie(t, g.URL, "_authgate")
	if c == "" {
		t.Fatal("no session cookie after login")
	}
	return c
}

// TestForwardAuthGrants: a session → 202 with the identity and the
// access token; the answer is no-store and asks nothing of the backend.
func TestForwardAuthGrants(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	g := e.faGateway(gatewayOptions{})
	c := loggedIn(t, g)
	before := e.backend.count()
	for name, hdr := range map[string]map[string]string{
		"nginx X-Original-URI":         {"X-Original-Uri": "/app/x?y=1"},
		"ingress-nginx X-Original-URL": {"X-Original-Url": "https://app.example.com/app/x", "X-Original-Method": "GET"},
		"traefik X-Forwarded-*":        {"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com", "X-Forwarded-Uri": "/app/x"},
	} {
		t.Run(name, func(t *testing.T) {
			resp := askAuth(t, g, "", c, hdr)
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("got %d, want 202", resp.StatusCode)
			}
			want := map[string]string{
				"X-Auth-Request-User":   "user-alice",
				"X-Auth-Request-Email":  "alice@example.com",
				"X-Auth-Request-Groups": "admins,staff",
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			authz := resp.Header.Get("Authorization")
			if !strings.HasPrefix(authz, "Bearer ") || len(authz) < 20 {
				t.Errorf("Authorization = %q, want the session's bearer token", authz)
			}
			if got := resp.Header.Get("X-Auth-Request-Access-Token"); "Bearer "+got != authz {
				t.Errorf("X-Auth-Request-Access-Token is not the bearer token")
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
		})
	}
	if e.backend.count() != before {
		t.Errorf("forward-auth reached the backend")
	}
}

// TestForwardAuthProbesGet401: nothing without a valid session gets
// anything but 401, and never an identity header (SECURITY.md 42, 43).
func TestForwardAuthProbesGet401(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	g := e.faGateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Routes[0].AcceptBearer = true
	}})
	c := loggedIn(t, g)
	forged, _ := e.idp.Sign(map[string]any{"sub": "mallory", "iss": "https://evil.example", "aud": "authgate", "exp": time.Now().Add(time.Hour).Unix()})
	uri := map[string]string{"X-Original-Uri": "/app"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"X-Original-Uri": "/app"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	many := strings.Repeat("a=b; ", 1000)
	for _, tc := range []struct {
		name, cookie string
		hdr          map[string]string
	}{
		{"no cookie", "", uri},
		{"garbage cookie", "garbage", uri},
		{"truncated cookie", c[:len(c)/2], uri},
		{"cookie with a flipped byte", flip(c), uri},
		{"spoofed identity headers", "", with("X-Auth-Request-User", "admin", "X-Forwarded-User", "admin", "X_Auth_Request_Email", "a@example.com")},
		{"forged bearer", "", with("Authorization", "Bearer "+forged)},
		{"garbage bearer", "", with("Authorization", "Bearer x.y.z")},
		{"basic credentials", "", with("Authorization", "Basic YWxpY2U6cGFzc3dvcmQ=")},
		{"NUL in the URI", "", map[string]string{"X-Original-Uri": "/app%00/x"}},
		{"cross-site POST named GET", c, map[string]string{":method": "POST", "X-Original-Uri": "/app", "X-Original-Method": "GET", "Origin": "https://evil.example"}},
		{"cross-site POST", c, map[string]string{"X-Original-Uri": "/app", "X-Original-Method": "POST", "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}},
		{"sibling host's POST", c, map[string]string{"X-Original-Url": "https://app1.example.com/app", "X-Original-Method": "POST", "Origin": "https://evil.example.com", "Sec-Fetch-Site": "same-site"}},
		{"cross-site websocket without Upgrade", c, map[string]string{"X-Original-Uri": "/app", "Sec-Websocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-Fetch-Mode": "websocket", "Origin": "https://evil.example"}},
		{"no original URI", "", map[string]string{}},
		{"no original URI with a session", c, map[string]string{}},
		{"NUL in the URI with a session", c, map[string]string{"X-Original-Uri": "/app%00/x"}},
		{"//evil URI", "", map[string]string{"X-Original-Uri": "//evil.example/x"}},
		{"absolute URI", c, map[string]string{"X-Original-Uri": "http://evil.example/x"}},
		{"not a URI", c, map[string]string{"X-Original-Uri": "app"}},
		{"bad X-Original-URL", c, map[string]string{"X-Original-Url": "javascript:alert(1)"}},
		{"bad host", c, map[string]string{"X-Forwarded-Host": "evil/x", "X-Forwarded-Uri": "/app"}},
		{"the endpoint itself", c, map[string]string{"X-Original-Uri": "/oauth2/auth"}},
		{"another gateway endpoint", c, map[string]string{"X-Original-Uri": "/oauth2/../oauth2/userinfo"}},
		{"too many cookies", "", with("Cookie", many)},
		// A client's own copies of the headers its proxy does not set
		// (nginx passes them into the subrequest): they must agree.
		{"X-Forwarded-Uri added to ingress-nginx's", "", map[string]string{"X-Original-Url": "http://app.example.com/app", "X-Forwarded-Uri": "/public/x"}},
		{"X-Original-Url added to Traefik's", "", map[string]string{"X-Forwarded-Uri": "/app", "X-Forwarded-Host": "app.example.com", "X-Original-Url": "http://app.example.com/public/x"}},
		{"X-Forwarded-Uri added to nginx's", "", map[string]string{"X-Original-Uri": "/app", "X-Forwarded-Uri": "/public/x"}},
		{"X-Forwarded-Host added to nginx's", c, map[string]string{"X-Original-Uri": "/app", "X-Forwarded-Host": "other.example.com"}},
		{"X-Forwarded-Host disagreeing", c, map[string]string{"X-Original-Url": "http://app.example.com/app", "X-Forwarded-Host": "other.example.com"}},
		{"the header twice", "", map[string]string{"X-Original-Uri": "/app"}},
	} {
		want := http.StatusUnauthorized
		if tc.cookie == c {
			want = http.StatusForbidden // signed in: a login would not help
		}
		t.Run(tc.name, func(t *testing.T) {
			hdr := tc.hdr
			if tc.name == "the header twice" {
				hdr = map[string]string{"X-Forwarded-Uri": "/public/x\x00/app"} // split below
			}
			resp := askAuth(t, g, "", tc.cookie, hdr)
			if resp.StatusCode != want {
				t.Errorf("got %d, want %d", resp.StatusCode, want)
			}
			if id := identityIn(resp.Header); len(id) > 0 {
				t.Errorf("a refusal carries identity headers %v", id)
			}
		})
	}
	// A POST subrequest that declares a body the proxy never sends
	// (nginx without proxy_pass_request_body off): answered at once.
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "POST /oauth2/auth HTTP/1.1\r\nHost: app\r\nX-Original-Uri: /app\r\nCookie: _authgate=%s\r\nContent-Length: 10485760\r\n\r\n", c)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("POST subrequest with an unsent body: %v", err)
	}
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("POST subrequest with an unsent body: got %d, want 202", resp.StatusCode)
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[5] == 'A' {
		b[5] = 'B'
	} else {
		b[5] = 'A'
	}
	return string(b)
}

// TestForwardAuthPolicy: the route's allow and the query's allowed_*
// both apply; a refusal is 403 without identity; public paths pass
// without one.
func TestForwardAuthPolicy(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	g := e.faGateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Routes = append([]proxy.Route{{Match: proxy.Match{PathPrefix: "/ops/"}, Backend: pc.Routes[0].Backend,
			Grant: proxy.GrantAuthorizationCode, Allow: proxy.Allow{Groups: []string{"operators"}}}}, pc.Routes...)
	}})
	c := loggedIn(t, g)
	for _, tc := range []struct {
		query, uri string
		want       int
		identity   bool
	}{
		{"", "/app", 202, true},
		{"", "/ops/x", 403, false},
		{"?allowed_groups=admins", "/app", 202, true},
		{"?allowed_groups=operators,auditors", "/app", 403, false},
		{"?allowed_groups=operators&allowed_groups=staff", "/app", 202, true},
		{"?allowed_emails=alice@example.com", "/app", 202, true},
		{"?allowed_emails=bob@example.org", "/app", 403, false},
		{"?allowed_email_domains=example.com", "/app", 202, true},
		{"?allowed_email_domains=evil.com", "/app", 403, false},
		{"?allowed_email_domains=alice@example.com", "/app", 403, false},
		{"", "/public/x", 202, false},
	} {
		resp := askAuth(t, g, tc.query, c, map[string]string{"X-Original-Uri": tc.uri})
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: got %d, want %d", tc.query, tc.uri, resp.StatusCode, tc.want)
		}
		if got := len(identityIn(resp.Header)) > 0; got != tc.identity {
			t.Errorf("%s %s: identity headers %v, want %v", tc.query, tc.uri, identityIn(resp.Header), tc.identity)
		}
	}
	// Public paths need no session either; their 202 still names every
	// header, empty, so that a proxy copying them replaces a client's own.
	resp := askAuth(t, g, "", "", map[string]string{"X-Original-Uri": "/public/x"})
	if resp.StatusCode != 202 {
		t.Errorf("public path without a session: got %d, want 202", resp.StatusCode)
	}
	for _, k := range []string{"Authorization", "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups", "X-Auth-Request-Preferred-Username", "X-Auth-Request-Access-Token"} {
		if v, ok := resp.Header[k]; !ok || strings.Join(v, "") != "" {
			t.Errorf("public path: %s = %q (present %v), want present and empty", k, v, ok)
		}
	}
	// ... but not under another reading of the path (SECURITY.md 26).
	for _, uri := range []string{"/public/../app", "/public/..%2fapp", "/public/..;/app"} {
		if resp := askAuth(t, g, "", "", map[string]string{"X-Original-Uri": uri}); resp.StatusCode != 401 {
			t.Errorf("%s without a session: got %d, want 401", uri, resp.StatusCode)
		}
	}
}

// TestForwardAuthSessionEnds: a session deleted server-side is refused at
// once; a store outage never yields 2xx, and the sign-in it leads to keeps
// the cookie, so the user is back when the store is.
func TestForwardAuthSessionEnds(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	g := e.faGateway(gatewayOptions{})
	uri := map[string]string{"X-Original-Uri": "/app"}

	gone := loggedIn(t, g)
	ticket, err := g.sessions.DecodeTicket(gone)
	if err != nil {
		t.Fatal(err)
	}
	if resp := askAuth(t, g, "", gone, uri); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("before the deletion: got %d, want 202", resp.StatusCode)
	}
	if err := g.sessions.Delete(context.Background(), ticket); err != nil {
		t.Fatal(err)
	}
	if resp := askAuth(t, g, "", gone, uri); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("session deleted server-side: got %d, want 401", resp.StatusCode)
	}

	b := newBrowser(t)
	b.login(t, g, "/")
	c := b.cookie(t, g.URL, "_authgate")
	e.redis.Pause()
	waitCacheOff(t, g)
	if resp := askAuth(t, g, "", c, uri); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("store not answering: got %d, want 401", resp.StatusCode)
	}
	// ingress-nginx then sends the browser to the sign-in.
	resp, _ := b.noFollow().get(t, g.URL+"/oauth2/start?rd=/app")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("sign-in with the store down: got %d, want 503", resp.StatusCode)
	}
	for _, sc := range resp.Cookies() {
		if sc.Name == "_authgate" {
			t.Errorf("sign-in with the store down touched the session cookie: %v", sc)
		}
	}
	e.redis.Resume()
	if resp := askAuth(t, g, "", c, uri); resp.StatusCode != http.StatusAccepted {
		t.Errorf("store back: got %d, want 202 with the same cookie", resp.StatusCode)
	}
	e.redis.Stop()
	waitCacheOff(t, g)
	if resp := askAuth(t, g, "", c, uri); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("store down: got %d, want 401", resp.StatusCode)
	}
}

// TestForwardAuthRefreshes: a token about to expire is renewed by the
// forward-auth request, as on the proxied path.
func TestForwardAuthRefreshes(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	e.idp.SetAccessTokenTTL(10 * time.Minute)
	g := e.faGateway(gatewayOptions{})
	c := loggedIn(t, g)
	uri := map[string]string{"X-Original-Uri": "/app"}
	first := askAuth(t, g, "", c, uri).Header.Get("Authorization")
	e.clock.Advance(9*time.Minute + 30*time.Second)
	resp := askAuth(t, g, "", c, uri)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("near expiry: got %d, want 202", resp.StatusCode)
	}
	if got := resp.Header.Get("Authorization"); got == first || got == "" {
		t.Errorf("near expiry the token was not renewed")
	}
	if n := e.idp.GrantCount("refresh_token"); n != 1 {
		t.Errorf("refreshes: %d, want 1", n)
	}
}

// TestForwardAuthRedirectMode: for proxies that pass the answer to the
// browser, a navigation without a session goes to the sign-in at the
// public URL with the original URL to return to; an API call still gets
// 401; the nginx form (the default) answers 401 to both.
func TestForwardAuthRedirectMode(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.faGateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.AllowedRedirectDomains = []string{".example.com"}
	}})
	nav := map[string]string{"Accept": "text/html", "Sec-Fetch-Mode": "navigate",
		"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app1.example.com", "X-Forwarded-Uri": "/x?y=1"}
	resp := askAuth(t, g, "?redirect=true", "", nav)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("navigation, redirect mode: got %d, want 302", resp.StatusCode)
	}
	want := g.URL + "/oauth2/start?rd=" + url.QueryEscape("https://app1.example.com/x?y=1")
	if loc := resp.Header.Get("Location"); loc != want {
		t.Errorf("Location = %q, want %q", loc, want)
	}
	if resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("the redirect set a cookie on the application's host: %q", resp.Header.Get("Set-Cookie"))
	}
	api := map[string]string{"Accept": "application/json", "X-Forwarded-Host": "app1.example.com", "X-Forwarded-Uri": "/x"}
	if resp := askAuth(t, g, "?redirect=true", "", api); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API call, redirect mode: got %d, want 401", resp.StatusCode)
	}
	if resp := askAuth(t, g, "", "", nav); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("navigation, nginx mode: got %d, want 401", resp.StatusCode)
	}
	// The sign-in it leads to returns to the application's host.
	b := newBrowser(t).noFollow()
	resp, _ = b.get(t, want)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start: %d", resp.StatusCode)
	}
	cb := b.authorize(t, mustURL(t, resp.Header.Get("Location")))
	resp, body := b.get(t, cb.String())
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != "https://app1.example.com/x?y=1" {
		t.Errorf("callback: %d to %q, want 302 to the original URL; %s", resp.StatusCode, loc, body)
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestForwardAuthTrustedProxies: with trusted_proxies set, the original
// request is believed only from them (SECURITY.md 43).
func TestForwardAuthTrustedProxies(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		trusted []string
		want    int
	}{
		{[]string{"10.0.0.0/8"}, 401}, // the test client is not one: decided for "/", not public
		{[]string{"127.0.0.1"}, 202},  // it is: /public/x is public
	} {
		g := e.faGateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
			pc.TrustedProxies = tc.trusted
		}})
		if resp := askAuth(t, g, "", "", map[string]string{"X-Forwarded-Uri": "/public/x"}); resp.StatusCode != tc.want {
			t.Errorf("trusted_proxies %v: got %d, want %d", tc.trusted, resp.StatusCode, tc.want)
		}
	}
}

// TestForwardAuthOtherCredentials: a caller's own bearer token on an
// accept_bearer route and a client_credentials route answer as the
// proxied path does: 202 with the token the backend would get.
func TestForwardAuthOtherCredentials(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.faGateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		be := pc.Routes[0].Backend
		pc.Routes = []proxy.Route{
			{Match: proxy.Match{PathPrefix: "/svc/"}, Backend: be, Grant: proxy.GrantClientCredentials},
			{Match: proxy.Match{PathPrefix: "/api/"}, Backend: be, Grant: proxy.GrantAuthorizationCode, AcceptBearer: true, Audience: "urn:orders"},
		}
	}})
	tok := signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")
	resp := askAuth(t, g, "", "", map[string]string{"X-Original-Uri": "/api/x", "Authorization": "Bearer " + tok, "Accept": "application/json"})
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Authorization") != "Bearer "+tok {
		t.Errorf("caller JWT: got %d with Authorization %.20q, want 202 passing the caller's token", resp.StatusCode, resp.Header.Get("Authorization"))
	}
	if got := resp.Header.Get("X-Auth-Request-User"); got != "svc-caller" {
		t.Errorf("caller JWT: X-Auth-Request-User %q, want the token's subject", got)
	}
	resp = askAuth(t, g, "", "", map[string]string{"X-Original-Uri": "/svc/x"})
	if resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(resp.Header.Get("Authorization"), "Bearer ") {
		t.Errorf("client credentials: got %d, want 202 with the machine token", resp.StatusCode)
	}
	if u := resp.Header.Get("X-Auth-Request-User"); u != "" {
		t.Errorf("client credentials: X-Auth-Request-User %q, want none (SECURITY.md 37)", u)
	}
	if n := e.idp.GrantCount("client_credentials"); n != 1 {
		t.Errorf("client credentials fetches: %d, want 1", n)
	}
}

// TestForwardAuthNoAccessTokenHeader: pass_access_token: false leaves out
// X-Auth-Request-Access-Token, not the Authorization header.
func TestForwardAuthNoAccessTokenHeader(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.faGateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		off := false
		pc.ForwardAuth.PassAccessToken = &off
	}})
	resp := askAuth(t, g, "", loggedIn(t, g), map[string]string{"X-Original-Uri": "/app"})
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Authorization") == "" {
		t.Fatalf("got %d, want 202 with Authorization", resp.StatusCode)
	}
	if v := resp.Header.Get("X-Auth-Request-Access-Token"); v != "" {
		t.Error("X-Auth-Request-Access-Token sent with pass_access_token: false")
	}
	if _, ok := resp.Header["X-Auth-Request-Access-Token"]; !ok {
		t.Error("X-Auth-Request-Access-Token missing: an empty one must replace a client's copy at proxies that copy it")
	}
}

// TestForwardAuthOffByDefault: without forward_auth.enabled there is no
// endpoint, not even for a trusted proxy with a session: 404, no token.
func TestForwardAuthOffByDefault(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.TrustedProxies = []string{"127.0.0.1"}
	}})
	resp := askAuth(t, g, "", loggedIn(t, g), map[string]string{"X-Original-Uri": "/app"})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("forward_auth off: got %d, want 404", resp.StatusCode)
	}
	if id := identityIn(resp.Header); len(id) > 0 {
		t.Errorf("forward_auth off: the answer carries %v", id)
	}
}
