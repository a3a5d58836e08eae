package proxy_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"io"
	"net"
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

// TestBadCookiesStartALogin: a cookie that is tampered with, forged, from
// another key, or names no session gets a fresh login, never a 500.
func TestBadCookiesStartALogin(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	b.login(t, g, "/")
	good := b.cookie(t, g.URL, "_authgate")
	binding := b.cookie(t, g.URL, "_authgate_csrf")

	other := e.gateway(gatewayOptions{mutate: func(_ *proxy.Config, sc *session.Config, _ *upstream.Config) {
		sc.Cookie.Secret = upstream.Secret("lkEEphDNo1jlH4QIrsW//5xuQTtm5wqv7XY07zJpcL0=")
	}})
	foreign := newBrowser(t)
	foreign.login(t, other, "/")

	backendBefore := e.backend.count()
	flip := []byte(good)
	flip[len(flip)/2] ^= 1
	for _, tc := range []struct{ name, value string }{
		{"tampered", string(flip)},
		{"truncated", good[:len(good)/2]},
		{"forged random", "MTcwMDAwMDAwMHxhYmNkZWZ8c2lnbmF0dXJl"},
		{"other gateway's key", foreign.cookie(t, other.URL, "_authgate")},
		{"binding cookie as session", binding},
		{"empty", ""},
		{"huge", strings.Repeat("A", 3000)},
		{"garbage bytes", "%00%ff;;=="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, accept := range []string{"text/html", "application/json"} {
				req := mustRequest(t, http.MethodGet, g.URL+"/private", nil)
				req.Header.Set("Accept", accept)
				req.Header.Set("Cookie", "_authgate="+tc.value)
				resp, err := http.DefaultTransport.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				want := http.StatusFound
				if accept != "text/html" {
					want = http.StatusUnauthorized
				}
				if resp.StatusCode != want {
					t.Errorf("Accept %s: got %d, want %d", accept, resp.StatusCode, want)
				}
			}
		})
	}
	if n := e.backend.count() - backendBefore; n != 0 {
		t.Errorf("backend saw %d requests with bad cookies, want 0", n)
	}
}

// TestCookieAttributes pins SECURITY.md 12 for the default (secure) config.
func TestCookieAttributes(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: func(_ *proxy.Config, sc *session.Config, _ *upstream.Config) {
		sc.Cookie.Secure = nil // default: true
	}})
	b := newBrowser(t).noFollow()
	resp, _ := b.get(t, g.URL+"/")
	cb := b.authorize(t, mustParse(t, resp.Header.Get("Location")))
	// The jar will not send a Secure cookie over http, so replay it by hand.
	var binding string
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-_authgate_csrf" {
			binding = c.Value
			checkCookie(t, c)
		}
	}
	if binding == "" {
		t.Fatalf("no __Host-_authgate_csrf cookie in %v", resp.Header["Set-Cookie"])
	}
	req := mustRequest(t, http.MethodGet, cb.String(), nil)
	req.AddCookie(&http.Cookie{Name: "__Host-_authgate_csrf", Value: binding})
	resp, _ = b.do(t, req)
	var sess *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-_authgate" {
			sess = c
		}
	}
	if sess == nil {
		t.Fatalf("callback set no __Host-_authgate cookie: %v", resp.Header["Set-Cookie"])
	}
	checkCookie(t, sess)
	if strings.Count(sess.Value, ".") == 2 && strings.HasPrefix(sess.Value, "eyJ") {
		t.Errorf("session cookie looks like a JWT; it must be an opaque ticket")
	}
	if sess.MaxAge != int((12 * time.Hour).Seconds()) {
		t.Errorf("session cookie Max-Age = %d, want the 12h absolute lifetime", sess.MaxAge)
	}
}

func checkCookie(t *testing.T, c *http.Cookie) {
	t.Helper()
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("cookie %s: Secure=%v HttpOnly=%v SameSite=%v Path=%q Domain=%q; want Secure, HttpOnly, Lax, /, host-only",
			c.Name, c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain)
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestCallbackRefusals: every broken or hostile authorization response gets a
// clean 4xx page, no session, no backend call — and for state failures, the
// token endpoint never saw the code (SECURITY.md 6).
func TestCallbackRefusals(t *testing.T) {
	type tc struct {
		name       string
		setup      func(e *env) // before the login starts
		tamper     func(t *testing.T, e *env, cb *url.URL, b *browser) (*url.URL, *browser)
		want       int
		codeUnused bool // the token endpoint must not have been called
	}
	signWith := func(f func(c jwt.MapClaims, s *upstreamtest.Server) (string, error)) func(e *env) {
		return func(e *env) {
			e.idp.SetIDTokenSigner(func(c jwt.MapClaims) (string, error) { return f(c, e.idp) })
		}
	}
	cases := []tc{
		{name: "missing state", want: 400, codeUnused: true, tamper: func(t *testing.T, e *env, cb *url.URL, b *browser) (*url.URL, *browser) {
			q := cb.Query()
			q.Del("state")
			cb.RawQuery = q.Encode()
			return cb, b
		}},
		{name: "wrong state", want: 400, codeUnused: true, tamper: func(t *testing.T, e *env, cb *url.URL, b *browser) (*url.URL, *browser) {
			q := cb.Query()
			q.Set("state", "AAAAAAAAAAAAAAAAAAAAAAAAAA")
			cb.RawQuery = q.Encode()
			return cb, b
		}},
		{name: "no binding cookie", want: 400, codeUnused: true, tamper: func(t *testing.T, e *env, cb *url.URL, b *browser) (*url.URL, *browser) {
			return cb, newBrowser(t)
		}},
		{name: "attacker's code and state in victim's browser", want: 400, codeUnused: true, tamper: func(t *testing.T, e *env, cb *url.URL, b *browser) (*url.URL, *browser) {
			victim := newBrowser(t)
			// The victim has a pending login of its own, so a binding cookie.
			victim.startLogin(t, e.lastGateway, "/")
			return cb, victim
		}},
		{name: "wrong iss", want: 400, setup: func(e *env) {
			e.idp.SetAuthorizeResponseHook(func(q url.Values) { q.Set("iss", "https://evil.example") })
		}, codeUnused: true},
		{name: "missing iss although advertised", want: 400, setup: func(e *env) {
			e.idp.SetAuthorizeResponseHook(func(q url.Values) { q.Del("iss") })
		}, codeUnused: true},
		{name: "error from server is escaped", want: 403, codeUnused: true, tamper: func(t *testing.T, e *env, cb *url.URL, b *browser) (*url.URL, *browser) {
			q := cb.Query()
			q.Del("code")
			q.Set("error", "access_denied")
			q.Set("error_description", "<script>alert(1)</script>")
			cb.RawQuery = q.Encode()
			return cb, b
		}},
		{name: "wrong nonce", want: 401, setup: signWith(func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			c["nonce"] = "not-the-nonce"
			return s.Sign(c)
		})},
		{name: "no nonce", want: 401, setup: signWith(func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			delete(c, "nonce")
			return s.Sign(c)
		})},
		{name: "wrong aud", want: 401, setup: signWith(func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			c["aud"] = "someone-else"
			return s.Sign(c)
		})},
		{name: "wrong iss claim", want: 401, setup: signWith(func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			c["iss"] = "https://evil.example"
			return s.Sign(c)
		})},
		{name: "expired", want: 401, setup: signWith(func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			return s.Sign(c)
		})},
		{name: "no exp", want: 401, setup: signWith(func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			delete(c, "exp")
			return s.Sign(c)
		})},
		{name: "alg none", want: 401, setup: signWith(func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			return jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
		})},
		{name: "HS256 signed with the public key", want: 401, setup: signWith(func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			der, _ := x509.MarshalPKIXPublicKey(s.PublicKey())
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
			tok.Header["kid"] = s.KeyID()
			return tok.SignedString(der)
		})},
		{name: "foreign key, unknown kid, jku elsewhere", want: 401, setup: signWith(func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
			tok.Header["kid"] = "attacker"
			tok.Header["jku"] = "http://127.0.0.1:1/jwks"
			return tok.SignedString(attackerKey(t))
		})},
		{name: "foreign key under the real kid", want: 401, setup: signWith(func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
			tok.Header["kid"] = s.KeyID()
			return tok.SignedString(attackerKey(t))
		})},
		{name: "bad signature", want: 401, setup: signWith(func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			raw, err := s.Sign(c)
			if err != nil {
				return "", err
			}
			return raw[:len(raw)-4] + "AAAA", nil
		})},
		{name: "100000 dots", want: 401, setup: signWith(func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			return strings.Repeat(".", 100000), nil
		})},
		{name: "replayed code with a fresh state", want: 400, tamper: func(t *testing.T, e *env, cb *url.URL, b *browser) (*url.URL, *browser) {
			// Redeem the code once, legitimately.
			if resp, _ := b.get(t, cb.String()); resp.StatusCode != 200 {
				t.Fatalf("first redemption: got %d", resp.StatusCode)
			}
			// New login, new state; paste the old code in.
			fresh := b.authorize(t, b.startLogin(t, e.lastGateway, "/oauth2/start?rd=/"))
			q := fresh.Query()
			q.Set("code", cb.Query().Get("code"))
			fresh.RawQuery = q.Encode()
			return fresh, b
		}},
		{name: "replayed callback", want: 400, tamper: func(t *testing.T, e *env, cb *url.URL, b *browser) (*url.URL, *browser) {
			if resp, _ := b.get(t, cb.String()); resp.StatusCode != 200 {
				t.Fatalf("first callback: got %d", resp.StatusCode)
			}
			return cb, b
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			g := e.gateway(gatewayOptions{})
			e.lastGateway = g
			if c.setup != nil {
				c.setup(e)
			}
			b := newBrowser(t)
			cb := b.authorize(t, b.startLogin(t, g, "/"))
			if c.tamper != nil {
				cb, b = c.tamper(t, e, cb, b)
			}
			tokenCalls := e.idp.Count("token")
			backendCalls := e.backend.count()
			resp, body := b.noFollow().get(t, cb.String())
			if resp.StatusCode != c.want {
				t.Errorf("got %d, want %d; body %.300s", resp.StatusCode, c.want, body)
			}
			if !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "</html>") {
				t.Errorf("want a clean HTML page, got %q", resp.Header.Get("Content-Type"))
			}
			if strings.Contains(body, "<script>") || strings.Contains(body, "goroutine") {
				t.Errorf("page contains unescaped script or a stack trace: %.300s", body)
			}
			if c.name == "error from server is escaped" && !strings.Contains(body, "&lt;script&gt;") {
				t.Errorf("error_description not shown escaped: %.300s", body)
			}
			for _, sc := range resp.Cookies() {
				if sc.Name == "_authgate" && sc.Value != "" {
					t.Errorf("a session cookie was set on a refused callback")
				}
			}
			if c.codeUnused && e.idp.Count("token") != tokenCalls {
				t.Errorf("token endpoint called %d times, want 0: the state must be checked first", e.idp.Count("token")-tokenCalls)
			}
			if e.backend.count() != backendCalls {
				t.Errorf("backend called on a refused login")
			}
		})
	}
}

var (
	attackerOnce sync.Once
	attacker     *rsa.PrivateKey
)

// attackerKey is an RSA key the authorization server never published.
func attackerKey(t *testing.T) *rsa.PrivateKey {
	attackerOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		attacker = k
	})
	return attacker
}

// TestRedirectTargetsStayOnOrigin: hostile rd values never lead the browser
// off-origin after login (SECURITY.md 1).
func TestRedirectTargetsStayOnOrigin(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.AllowedRedirectDomains = []string{".example.com"}
	}})
	for _, rd := range []string{
		"//evil.com", "/\\evil.com", "\\/evil.com", "/%2F%2Fevil.com", "\t//evil.com", "/%09/evil.com",
		"/./\\evil.com", "https:evil.com", "https://evil.com", "https://app.example.com.evil.com",
		"https://app.example.com@evil.com", "https://badexample.com", "javascript:alert(1)",
		"/\r\nLocation: https://evil.com", "//evil.com/%2e%2e", "http://[::1]:80@evil.com/",
		"%2F%2Fevil.com", "/%5Cevil.com", "/%5C%5Cevil.com", "///evil.com", "https://evil.com\\@app.example.com",
	} {
		t.Run(rd, func(t *testing.T) {
			b := newBrowser(t).noFollow()
			resp, _ := b.get(t, g.URL+"/oauth2/start?rd="+url.QueryEscape(rd))
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("start: got %d, want 302", resp.StatusCode)
			}
			cb := b.authorize(t, mustParse(t, resp.Header.Get("Location")))
			resp, _ = b.get(t, cb.String())
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusFound || loc != "/" {
				t.Errorf("after login: got %d to %q, want 302 to /", resp.StatusCode, loc)
			}
			// And on sign-out: the confirmation form, then its POST.
			resp, body := b.get(t, g.URL+"/oauth2/sign_out?rd="+url.QueryEscape(rd))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("sign_out page: got %d, want 200", resp.StatusCode)
			}
			form := url.Values{"rd": {rd}, "csrf": {between(body, `name="csrf" value="`, `"`)}}
			req := mustRequest(t, http.MethodPost, g.URL+"/oauth2/sign_out", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, body = b.do(t, req)
			lr := readLogout(t, resp, body)
			if got := lr.params.Get("post_logout_redirect_uri"); lr.endpoint.Host != mustParse(t, e.idp.URL).Host || got != g.URL+"/" {
				t.Errorf("sign-out: goes to %s with post_logout_redirect_uri %q, want the end_session_endpoint with %s/", lr.endpoint, got, g.URL)
			}
		})
	}
	// Allowed targets are kept.
	for _, rd := range []string{"/dashboard?tab=1", "https://app.example.com/x", "https://deep.sub.example.com/"} {
		b := newBrowser(t).noFollow()
		resp, _ := b.get(t, g.URL+"/oauth2/start?rd="+url.QueryEscape(rd))
		resp, _ = b.get(t, b.authorize(t, mustParse(t, resp.Header.Get("Location"))).String())
		if loc := resp.Header.Get("Location"); loc != rd {
			t.Errorf("rd=%q: redirected to %q, want it kept", rd, loc)
		}
	}
}

// TestSpoofedIdentityHeadersNeverReachBackend pins SECURITY.md 21–23.
func TestSpoofedIdentityHeadersNeverReachBackend(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	b.login(t, g, "/")
	spoofed := map[string]string{
		"X-Forwarded-User":               "mallory",
		"x-forwarded-email":              "mallory@evil.com",
		"X_Forwarded_User":               "mallory",
		"x_forwarded_groups":             "admins",
		"X-FORWARDED-ACCESS-TOKEN":       "stolen",
		"X-Auth-Request-User":            "mallory",
		"x_auth_request_email":           "mallory@evil.com",
		"X-Id-Token":                     "forged",
		"X-Forwarded-Preferred_Username": "mallory",
	}
	for _, public := range []bool{false, true} {
		path := "/private"
		if public {
			path = "/public/x"
		}
		req := mustRequest(t, http.MethodGet, g.URL+path, nil)
		for k, v := range spoofed {
			req.Header[k] = []string{v} // raw keys, not canonicalised
		}
		req.Header.Set("Authorization", "Bearer attacker-token")
		req.Header.Set("Connection", "X-Forwarded-User, Authorization, X-Forwarded-Email")
		resp, _ := b.do(t, req)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: got %d, want 200", path, resp.StatusCode)
		}
		got := e.backend.last(t)
		for k, vs := range got.Header {
			for _, v := range vs {
				if strings.Contains(v, "mallory") || v == "stolen" || v == "forged" || v == "admins" && !strings.EqualFold(k, "X-Forwarded-Groups") || strings.Contains(v, "attacker-token") {
					t.Errorf("path %s: backend received spoofed %s: %q", path, k, v)
				}
			}
		}
		if !public {
			if got.Header.Get("X-Forwarded-User") != "user-alice" || !strings.HasPrefix(got.Header.Get("Authorization"), "Bearer ey") {
				t.Errorf("injected headers missing after Connection tricks: user=%q auth=%.12q", got.Header.Get("X-Forwarded-User"), got.Header.Get("Authorization"))
			}
		}
	}
}

// TestCrossSiteWritesRefused pins SECURITY.md 18.
func TestCrossSiteWritesRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	b.login(t, g, "/")
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"sec-fetch cross-site", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"foreign origin", map[string]string{"Origin": "https://evil.com"}, 403},
		{"null origin", map[string]string{"Origin": "null"}, 403},
		{"same origin", map[string]string{"Origin": g.URL, "Sec-Fetch-Site": "same-origin"}, 200},
		{"no browser headers", nil, 200},
	} {
		req := mustRequest(t, http.MethodPost, g.URL+"/form", strings.NewReader("a=1"))
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		resp, _ := b.do(t, req)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
}

// TestGatewayPagesHeaders pins SECURITY.md 33.
func TestGatewayPagesHeaders(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t).noFollow()
	for _, path := range []string{"/oauth2/callback?state=x&code=y", "/oauth2/start", "/oauth2/nope", "/oauth2/userinfo"} {
		resp, _ := b.get(t, g.URL+path)
		h := resp.Header
		if h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: Cache-Control=%q Referrer-Policy=%q X-Frame-Options=%q", path, h.Get("Cache-Control"), h.Get("Referrer-Policy"), h.Get("X-Frame-Options"))
		}
	}
}

// TestTooManyCookies pins SECURITY.md 19.
func TestTooManyCookies(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	req := mustRequest(t, http.MethodGet, g.URL+"/", nil)
	var sb strings.Builder
	for i := 0; i < 5000; i++ {
		sb.WriteString("c=1; ")
	}
	req.Header.Set("Cookie", sb.String())
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("5000 cookies: got %d, want 431", resp.StatusCode)
	}
	req.Header.Set("Cookie", "big="+strings.Repeat("x", 1<<20))
	resp, err = http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("1 MB cookie: got %d, want 431", resp.StatusCode)
	}
}

// TestLimits pins SECURITY.md 38: oversized bodies to the gateway's
// endpoints get 413; a slowloris connection is closed.
func TestLimits(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Limits.ReadHeaderTimeout = 300 * time.Millisecond
	}})
	big := strings.Repeat("x", 10<<20)
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/oauth2/callback?state=x&code=y"},
		{http.MethodPost, "/oauth2/sign_out"},
	} {
		req := mustRequest(t, tc.method, g.URL+tc.path, strings.NewReader(big))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, _ := newBrowser(t).noFollow().do(t, req)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("10 MB to %s %s: got %d, want 413", tc.method, tc.path, resp.StatusCode)
		}
	}
	// Chunked (no Content-Length) is bounded too.
	req := mustRequest(t, http.MethodPost, g.URL+"/oauth2/sign_out", io.MultiReader(strings.NewReader("rd=/&x="), strings.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, _ := newBrowser(t).noFollow().do(t, req)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked 10 MB sign-out: got %d, want 413", resp.StatusCode)
	}

	conn, err := net.Dial("tcp", g.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(conn)
	if err != nil || time.Since(start) > 2*time.Second {
		t.Errorf("slowloris connection not closed by the server within the header timeout (err %v after %v)", err, time.Since(start))
	}
}
