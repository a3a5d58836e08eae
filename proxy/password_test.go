package proxy_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// passwordIdP is upstreamtest with the password grant allowed for the
// gateway's client.
var passwordIdP = upstreamtest.Config{Clients: []upstreamtest.Client{{ID: "authgate", Secret: clientSecret,
	GrantTypes: []string{"authorization_code", "refresh_token", "password"}}}}

// passwordRoute makes the test gateway's route a password route.
func passwordRoute(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
	pc.Routes[0].Grant = proxy.GrantPassword
	pc.Password.MaxFailuresPerUser = 3
	pc.Password.MaxFailuresPerAddress = 6
}

// formLogin opens the login form for rd and posts user and pass with the
// form's CSRF token.
func formLogin(t *testing.T, g *gateway, b *browser, rd, user, pass string) (*http.Response, string) {
	t.Helper()
	resp, body := b.get(t, g.URL+"/oauth2/login?rd="+url.QueryEscape(rd))
	if resp.StatusCode != 200 || !strings.Contains(body, `autocomplete="current-password"`) {
		t.Fatalf("login form: %d %s", resp.StatusCode, body)
	}
	form := url.Values{"csrf": {between(body, `name="csrf" value="`, `"`)}, "rd": {rd}, "username": {user}, "password": {pass}}
	return b.noFollow().do(t, postForm(t, g.URL+"/oauth2/login", form))
}

func TestPasswordFormLogin(t *testing.T) {
	e := newEnv(t, envOptions{redis: true, idp: passwordIdP})
	g := e.gateway(gatewayOptions{mutate: passwordRoute})
	b := newBrowser(t)

	// A navigation without a session goes to the form, not the server.
	resp, _ := b.noFollow().get(t, g.URL+"/app/page?x=1")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "/oauth2/login?rd=") {
		t.Fatalf("navigation without a session: %d to %q, want 302 to /oauth2/login", resp.StatusCode, loc)
	}
	resp, body := b.get(t, g.URL+"/oauth2/login?rd=%2Fapp%2Fpage%3Fx%3D1")
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" ||
		!strings.Contains(body, `<label for="username">`) || !strings.Contains(body, `autocomplete="username"`) || strings.Contains(body, "<script") {
		t.Errorf("login page: CSP %q, headers %v; want a strict, script-free, labelled form", csp, resp.Header)
	}

	// Wrong password and unknown user: 401 and the same words.
	r1, wrong := formLogin(t, g, b, "/app/page?x=1", "alice", "wrong-password-canary")
	r2, unknown := formLogin(t, g, b, "/app/page?x=1", "nobody", "whatever")
	if r1.StatusCode != 401 || r2.StatusCode != 401 || !strings.Contains(wrong, "Invalid username or password.") || !strings.Contains(unknown, "Invalid username or password.") {
		t.Errorf("bad sign-ins: %d, %d; want 401 with one generic message", r1.StatusCode, r2.StatusCode)
	}
	if strings.Contains(wrong, "wrong-password-canary") {
		t.Errorf("the form echoed the password back")
	}

	before := e.idp.GrantCount("password")
	resp, _ = formLogin(t, g, b, "/app/page?x=1", "alice", "alice-password")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app/page?x=1" {
		t.Fatalf("sign-in: %d to %q, want 303 to /app/page?x=1", resp.StatusCode, resp.Header.Get("Location"))
	}
	if e.idp.GrantCount("password")-before != 1 {
		t.Errorf("token endpoint password calls: %d, want 1", e.idp.GrantCount("password")-before)
	}
	resp, body = b.get(t, g.URL+"/app/page?x=1")
	if resp.StatusCode != 200 || e.backend.last(t).Header.Get("X-Forwarded-User") != "user-alice" {
		t.Fatalf("with the session: %d %q, want the backend as alice", resp.StatusCode, body)
	}
	tokenClaims(t, e, bearer(e.backend.last(t))) // the server's own signature

	// Sign-out as in the code flow.
	_, page := b.get(t, g.URL+"/oauth2/sign_out")
	resp, _ = b.noFollow().do(t, postForm(t, g.URL+"/oauth2/sign_out", url.Values{"csrf": {between(page, `name="csrf" value="`, `"`)}}))
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-out: %d", resp.StatusCode)
	}
	if resp, _ := b.noFollow().get(t, g.URL+"/app"); resp.StatusCode != http.StatusFound {
		t.Errorf("after sign-out: %d, want 302 to the form", resp.StatusCode)
	}
}

// TestPasswordFormCSRF: a POST without the form's token, or with another
// browser's, is refused before the token endpoint hears of it; credentials
// never come from a URL.
func TestPasswordFormCSRF(t *testing.T) {
	e := newEnv(t, envOptions{idp: passwordIdP})
	g := e.gateway(gatewayOptions{mutate: passwordRoute})
	victim, attacker := newBrowser(t), newBrowser(t)
	_, body := attacker.get(t, g.URL+"/oauth2/login")
	foreign := between(body, `name="csrf" value="`, `"`)
	victim.get(t, g.URL+"/oauth2/login")
	for name, form := range map[string]url.Values{
		"no token":              {"username": {"alice"}, "password": {"alice-password"}},
		"another browser's one": {"csrf": {foreign}, "username": {"alice"}, "password": {"alice-password"}},
	} {
		resp, _ := victim.noFollow().do(t, postForm(t, g.URL+"/oauth2/login", form))
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: got %d, want 403", name, resp.StatusCode)
		}
	}
	if resp, _ := victim.get(t, g.URL+"/oauth2/login?username=alice&password=alice-password"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("credentials in the URL: got %d, want 405", resp.StatusCode)
	}
	if n := e.idp.GrantCount("password"); n != 0 {
		t.Errorf("token endpoint password calls: %d, want 0", n)
	}
}

func basicCall(t *testing.T, g *gateway, user, pass string) *http.Response {
	t.Helper()
	req := mustRequest(t, http.MethodGet, g.URL+"/legacy", nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestPasswordBasic: HTTP Basic becomes a bearer token; 20 calls cost one
// token request; a wrong password is never cached.
func TestPasswordBasic(t *testing.T) {
	e := newEnv(t, envOptions{idp: passwordIdP})
	g := e.gateway(gatewayOptions{mutate: passwordRoute})
	for range 20 {
		if resp := basicCall(t, g, "alice", "alice-password"); resp.StatusCode != 200 {
			t.Fatalf("Basic call: %d", resp.StatusCode)
		}
	}
	if n := e.idp.GrantCount("password"); n != 1 {
		t.Errorf("token requests for 20 Basic calls: %d, want 1", n)
	}
	req := e.backend.last(t)
	if !strings.HasPrefix(req.Header.Get("Authorization"), "Bearer ") || req.Header.Get("X-Forwarded-User") != "user-alice" {
		t.Errorf("backend got Authorization %q, user %q; want a bearer token for alice", req.Header.Get("Authorization"), req.Header.Get("X-Forwarded-User"))
	}
	for range 2 {
		resp := basicCall(t, g, "alice", "wrong")
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic realm=") {
			t.Errorf("wrong Basic password: %d %q, want 401 with the Basic challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if n := e.idp.GrantCount("password"); n != 3 {
		t.Errorf("token requests after 2 wrong passwords: %d, want 3 (failures never cached)", n)
	}
	// Without credentials an API client gets the Basic challenge.
	resp, _ := apiCall(t, g, "/legacy", "")
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("no credentials: %d %q, want 401 Basic", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

// TestPasswordThrottle: failures lock an account for every address, the
// right password included (no oracle), form and Basic alike; others are
// unaffected; an address trying many accounts is locked too; two gateways
// share the counters.
func TestPasswordThrottle(t *testing.T) {
	e := newEnv(t, envOptions{redis: true, idp: passwordIdP})
	mutate := func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		passwordRoute(pc, sc, uc)
		pc.TrustedProxies = []string{"127.0.0.1/32"} // the test names the client address
	}
	a, b := e.gateway(gatewayOptions{mutate: mutate}), e.gateway(gatewayOptions{mutate: mutate})
	from := func(g *gateway, addr, user, pass string) *http.Response {
		req := mustRequest(t, http.MethodGet, g.URL+"/legacy", nil)
		req.SetBasicAuth(user, pass)
		req.Header.Set("X-Forwarded-For", addr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// 3 bad attempts for alice, each from a new address, across both gateways.
	for i, g := range []*gateway{a, b, a} {
		if resp := from(g, "10.0.0."+string(rune('1'+i)), "alice", "bad"); resp.StatusCode != 401 {
			t.Fatalf("bad attempt %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	calls := e.idp.GrantCount("password")
	resp := from(b, "10.0.0.9", "alice", "alice-password")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("right password while locked: %d Retry-After %q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	fb := newBrowser(t)
	if resp, _ := formLogin(t, a, fb, "/", "alice", "alice-password"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("form, right password while locked: %d, want 429", resp.StatusCode)
	}
	if n := e.idp.GrantCount("password"); n != calls {
		t.Errorf("the token endpoint saw %d attempts during the lock, want none", n-calls)
	}
	if resp := from(a, "10.0.0.9", "bob", "bob-password"); resp.StatusCode != 200 {
		t.Errorf("another user: %d, want 200", resp.StatusCode)
	}
	// One address, ever new usernames: locked at 6.
	for i := range 6 {
		from(a, "10.9.9.9", "user"+string(rune('a'+i)), "x")
	}
	if resp := from(b, "10.9.9.9", "bob", "bob-password"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("address over its limit: %d, want 429", resp.StatusCode)
	}
}

// TestPasswordNeverLeaks: a planted password appears in no log line (debug
// level) and no Redis value or key, after form and Basic sign-ins, good
// and bad (SECURITY.md 32, 35, 44).
func TestPasswordNeverLeaks(t *testing.T) {
	const canary = "pw-canary-7f3a9c"
	users := upstreamtest.DefaultUsers()
	users[0].Password = canary + "-right"
	e := newEnv(t, envOptions{redis: true, idp: upstreamtest.Config{Users: users, Clients: passwordIdP.Clients}})
	g := e.gateway(gatewayOptions{mutate: passwordRoute})
	b := newBrowser(t)
	formLogin(t, g, b, "/", "alice", canary+"-wrong")
	if resp, _ := formLogin(t, g, b, "/", "alice", canary+"-right"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("form sign-in: %d", resp.StatusCode)
	}
	basicCall(t, g, "alice", canary+"-right")
	basicCall(t, g, "alice", canary+"-basic-wrong")
	if strings.Contains(e.logs.String(), canary) {
		t.Errorf("a password reached the log")
	}
	if !strings.Contains(e.logs.String(), "password sign-in failed") {
		t.Fatalf("the log captured nothing; the test would prove nothing")
	}
	c := e.redis.Client(t)
	keys, err := c.Keys(t.Context(), "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("Redis keys: %v %v", keys, err)
	}
	for _, k := range keys {
		v, _ := c.Get(t.Context(), k).Result()
		if strings.Contains(k, canary) || strings.Contains(v, canary) || strings.Contains(k, "alice") || strings.Contains(v, "alice") {
			t.Errorf("Redis %q holds a password or a user name in clear", k)
		}
	}
}

// TestPasswordSessionRefresh: a password session renews its token as the
// code flow's does.
func TestPasswordSessionRefresh(t *testing.T) {
	e := newEnv(t, envOptions{idp: passwordIdP})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		passwordRoute(pc, sc, uc)
		longIdle(pc, sc, uc)
	}})
	b := newBrowser(t)
	formLogin(t, g, b, "/", "alice", "alice-password")
	b.get(t, g.URL+"/a")
	first := bearer(e.backend.last(t))
	e.clock.Advance(59*time.Minute + 30*time.Second)
	if resp, _ := b.get(t, g.URL+"/b"); resp.StatusCode != 200 || bearer(e.backend.last(t)) == first {
		t.Errorf("near expiry: %d, want 200 with a refreshed token", resp.StatusCode)
	}
	if n := e.idp.GrantCount("refresh_token"); n != 1 {
		t.Errorf("refreshes: %d, want 1", n)
	}
}

// TestPasswordGrantRefusedByServer: a server that does not allow the grant
// for the gateway's client gets a 502 page naming its refusal, and one
// warning with the fix however many attempts.
func TestPasswordGrantRefusedByServer(t *testing.T) {
	e := newEnv(t, envOptions{idp: upstreamtest.Config{Clients: []upstreamtest.Client{
		{ID: "authgate", Secret: clientSecret},
		{ID: "other", Secret: "x", GrantTypes: []string{"password"}}, // the server has the grant, not for us
	}}})
	g := e.gateway(gatewayOptions{mutate: passwordRoute})
	for range 3 {
		resp, body := formLogin(t, g, newBrowser(t), "/", "alice", "alice-password")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "unauthorized_client") {
			t.Fatalf("refused grant: %d %.200s, want 502 naming unauthorized_client", resp.StatusCode, body)
		}
	}
	if n := strings.Count(e.logs.String(), "refuses the password grant"); n != 1 {
		t.Errorf("warnings: %d, want 1", n)
	}
}

// TestPasswordTokenIsValidAtTheServer: the backend's token is one the
// server's introspection calls active.
func TestPasswordTokenIsValidAtTheServer(t *testing.T) {
	e := newEnv(t, envOptions{idp: passwordIdP})
	g := e.gateway(gatewayOptions{mutate: passwordRoute})
	if resp := basicCall(t, g, "alice", "alice-password"); resp.StatusCode != 200 {
		t.Fatalf("Basic call: %d", resp.StatusCode)
	}
	req := postForm(t, e.idp.URL+"/introspect", url.Values{"token": {bearer(e.backend.last(t))}})
	req.SetBasicAuth("authgate", clientSecret)
	resp, body := newBrowser(t).do(t, req)
	if resp.StatusCode != 200 || !strings.Contains(body, `"active":true`) {
		t.Errorf("introspection of the backend's token: %d %s, want active", resp.StatusCode, body)
	}
}

// TestPasswordLockCoversCachedBasic: while an account is locked, its
// cached Basic login is refused too; else a guess of the cached password
// would get 200 and a wrong one 429 (an oracle, found in review).
func TestPasswordLockCoversCachedBasic(t *testing.T) {
	e := newEnv(t, envOptions{idp: passwordIdP})
	g := e.gateway(gatewayOptions{mutate: passwordRoute})
	if resp := basicCall(t, g, "alice", "alice-password"); resp.StatusCode != 200 {
		t.Fatalf("Basic: %d", resp.StatusCode)
	}
	for range 3 {
		basicCall(t, g, "alice", "guess")
	}
	if resp := basicCall(t, g, "alice", "alice-password"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("cached right password during the lock: %d, want 429", resp.StatusCode)
	}
}

// TestPasswordThrottleParallel: 50 parallel wrong attempts for one
// account, each from its own address, cannot overrun the limit of 3 (each
// attempt is counted before the token endpoint is asked).
func TestPasswordThrottleParallel(t *testing.T) {
	e := newEnv(t, envOptions{redis: true, idp: passwordIdP})
	e.idp.SetTokenDelay(50 * time.Millisecond)
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		passwordRoute(pc, sc, uc)
		pc.TrustedProxies = []string{"127.0.0.1/32"}
	}})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := mustRequest(t, http.MethodGet, g.URL+"/legacy", nil)
			req.SetBasicAuth("alice", "wrong")
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.1.%d.%d", i/200, i%200+1))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if n := e.idp.GrantCount("password"); n > 3 {
		t.Errorf("token endpoint attempts: %d, want at most the limit 3", n)
	}
}
