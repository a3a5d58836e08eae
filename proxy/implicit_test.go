package proxy_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// implicitIdP is upstreamtest with the implicit grant allowed for the
// gateway's client; noFormPost hides form_post from its discovery.
func implicitIdP(noFormPost bool) upstreamtest.Config {
	return upstreamtest.Config{NoFormPost: noFormPost, AccessTokenTTL: 10 * time.Minute, Clients: []upstreamtest.Client{{ID: "authgate", Secret: clientSecret,
		GrantTypes: []string{"authorization_code", "refresh_token", "implicit"}}}}
}

func implicitRoute(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
	pc.Routes[0].Grant = proxy.GrantImplicit
	longIdle(pc, sc, uc)
}

var hiddenField = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)

// formFields reads a page's hidden inputs.
func formFields(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(body, -1) {
		v.Set(unescapeHTML(m[1]), unescapeHTML(m[2]))
	}
	return v
}

func unescapeHTML(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

// implicitResponse signs in at e's server and returns the implicit
// response's parameters as the gateway's page would post them: from the
// fragment (fragment mode, after checking the page the callback serves),
// or relayed by the gateway's page (form_post).
func implicitResponse(t *testing.T, e *env, g *gateway, b *browser, path string) url.Values {
	t.Helper()
	au := b.startLogin(t, g, path)
	q := au.Query()
	if q.Get("response_type") != "id_token token" || q.Get("nonce") == "" || q.Has("code_challenge") {
		t.Fatalf("implicit authorization request %v: want response_type=id_token token, a nonce, no PKCE", q)
	}
	if q.Get("response_mode") == "form_post" {
		resp, body := b.noFollow().get(t, au.String())
		if resp.StatusCode != 200 {
			t.Fatalf("form_post page: %d", resp.StatusCode)
		}
		posted := formFields(body)
		resp, relay := b.noFollow().do(t, postForm(t, g.URL+"/oauth2/callback", posted))
		checkRelayPage(t, resp, relay)
		return formFields(relay)
	}
	cb := b.authorize(t, au)
	if cb.Fragment == "" || cb.RawQuery != "" {
		t.Fatalf("fragment mode: redirected to %s, want the tokens in the fragment", cb)
	}
	page := *cb
	page.Fragment = ""
	resp, body := b.noFollow().get(t, page.String())
	checkRelayPage(t, resp, body)
	if strings.Contains(body, "access_token=") {
		t.Errorf("the fragment page carries a token itself")
	}
	p, err := url.ParseQuery(cb.Fragment)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkRelayPage checks the gateway's self-posting page: a nonce script and
// nothing else may run; no caching, no referrer; it posts same-origin.
func checkRelayPage(t *testing.T, resp *http.Response, body string) {
	t.Helper()
	csp := resp.Header.Get("Content-Security-Policy")
	nonce := between(csp, "script-src 'nonce-", "'")
	if resp.StatusCode != 200 || nonce == "" || !strings.Contains(body, `<script nonce="`+nonce+`">`) ||
		resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Referrer-Policy") != "no-referrer" ||
		!strings.Contains(body, `action="/oauth2/implicit"`) || !strings.Contains(body, "<noscript>") {
		t.Fatalf("relay page: %d CSP %q headers %v body %.300s", resp.StatusCode, csp, resp.Header, body)
	}
}

func TestImplicitLogin(t *testing.T) {
	for _, mode := range []string{"form_post", "fragment"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, envOptions{redis: true, idp: implicitIdP(mode == "fragment")})
			g := e.gateway(gatewayOptions{mutate: implicitRoute})
			b := newBrowser(t)
			p := implicitResponse(t, e, g, b, "/app?x=1")
			resp, _ := b.noFollow().do(t, postForm(t, g.URL+"/oauth2/implicit", p))
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app?x=1" {
				t.Fatalf("implicit POST: %d to %q, want 303 to /app?x=1", resp.StatusCode, resp.Header.Get("Location"))
			}
			if strings.Contains(resp.Header.Get("Location"), "token") {
				t.Errorf("the redirect carries a token")
			}
			resp, body := b.get(t, g.URL+"/app?x=1")
			if resp.StatusCode != 200 || !strings.Contains(body, "user-alice") || bearer(e.backend.last(t)) != p.Get("access_token") {
				t.Fatalf("with the session: %d %q, want the backend with the implicit access token", resp.StatusCode, body)
			}
			// Replayed: the state is spent.
			if resp, _ := b.noFollow().do(t, postForm(t, g.URL+"/oauth2/implicit", p)); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("replayed implicit POST: %d, want 400", resp.StatusCode)
			}
			if !strings.Contains(e.logs.String(), "RFC 9700") {
				t.Errorf("no start-up warning naming RFC 9700")
			}
		})
	}
}

// TestImplicitRefusals: wrong state, wrong nonce, at_hash mismatch, an ID
// token for another client, an access token without at_hash, a cancelled
// login: no session, no backend call.
func TestImplicitRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		want   int
		signer func(jwt.MapClaims, *upstreamtest.Server) (string, error)
		tamper func(url.Values)
	}{
		{name: "wrong state", want: 400, tamper: func(p url.Values) { p.Set("state", p.Get("state")+"X") }},
		{name: "no state", want: 400, tamper: func(p url.Values) { p.Del("state") }},
		{name: "wrong nonce", want: 401, signer: func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) { c["nonce"] = "other"; return s.Sign(c) }},
		{name: "at_hash mismatch", want: 401, signer: func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA"
			return s.Sign(c)
		}},
		{name: "no at_hash", want: 401, signer: func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) { delete(c, "at_hash"); return s.Sign(c) }},
		{name: "ID token for another client", want: 401, signer: func(c jwt.MapClaims, s *upstreamtest.Server) (string, error) {
			c["aud"] = "someone-else"
			return s.Sign(c)
		}},
		{name: "swapped access token", want: 401, tamper: func(p url.Values) { p.Set("access_token", p.Get("access_token")+"x") }},
		{name: "cancelled", want: 403, tamper: func(p url.Values) {
			for _, k := range []string{"access_token", "id_token", "token_type", "expires_in"} {
				p.Del(k)
			}
			p.Set("error", "access_denied")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{idp: implicitIdP(true)})
			g := e.gateway(gatewayOptions{mutate: implicitRoute})
			if tc.signer != nil {
				e.idp.SetIDTokenSigner(func(c jwt.MapClaims) (string, error) { return tc.signer(c, e.idp) })
			}
			b := newBrowser(t)
			p := implicitResponse(t, e, g, b, "/")
			if tc.tamper != nil {
				tc.tamper(p)
			}
			resp, _ := b.noFollow().do(t, postForm(t, g.URL+"/oauth2/implicit", p))
			if resp.StatusCode != tc.want {
				t.Errorf("got %d, want %d", resp.StatusCode, tc.want)
			}
			if b.cookie(t, g.URL, "_authgate") != "" || e.backend.count() != 0 {
				t.Errorf("a refused implicit response left a session cookie or reached the backend")
			}
		})
	}
}

// TestImplicitSilentRenewal: no refresh token; shortly before the access
// token expires a navigation signs in again silently (prompt=none), an API
// call keeps working with the current token; with the server's session
// gone, an interactive login follows.
func TestImplicitSilentRenewal(t *testing.T) {
	e := newEnv(t, envOptions{idp: implicitIdP(true)})
	g := e.gateway(gatewayOptions{mutate: implicitRoute})
	b := newBrowser(t)
	p := implicitResponse(t, e, g, b, "/")
	b.noFollow().do(t, postForm(t, g.URL+"/oauth2/implicit", p))
	e.clock.Advance(9*time.Minute + 30*time.Second)
	if resp, _ := apiCall(t, g, "/api", ""); resp.StatusCode != 401 {
		// apiCall has no cookie: a 401 shows the route is protected.
		t.Fatalf("api without a session: %d", resp.StatusCode)
	}
	req := mustRequest(t, http.MethodGet, g.URL+"/api", nil)
	req.Header.Set("Accept", "application/json")
	if resp, _ := b.noFollow().do(t, req); resp.StatusCode != 200 {
		t.Errorf("API call near expiry: %d, want 200 with the current token", resp.StatusCode)
	}
	silent := b.startLogin(t, g, "/page")
	if silent.Query().Get("prompt") != "none" {
		t.Fatalf("navigation near expiry: %s, want a silent sign-in", silent)
	}
	e.idp.SetSilentLoginError("login_required")
	cb := b.authorize(t, silent)
	page := *cb
	page.Fragment = ""
	b.noFollow().get(t, page.String())
	fp, _ := url.ParseQuery(cb.Fragment)
	resp, _ := b.noFollow().do(t, postForm(t, g.URL+"/oauth2/implicit", fp))
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Has("prompt") || loc.Query().Get("response_type") != "id_token token" {
		t.Errorf("login_required after the silent attempt: %d to %s, want an interactive implicit login", resp.StatusCode, loc)
	}
}

// TestImplicitNeedsOpenID: an implicit route without scope openid is a
// configuration error: without an ID token nothing binds the access token
// to the login, so anyone's token from any client would sign in.
func TestImplicitNeedsOpenID(t *testing.T) {
	e := newEnv(t, envOptions{idp: implicitIdP(true)})
	sc := session.Config{Store: "memory", Cookie: session.CookieConfig{Secret: cookieSecret}}
	sc.SetDefaults()
	sessions, err := session.NewManager(sc, e.store, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	up, err := upstream.New(upstream.Config{Issuer: e.idp.URL, ClientID: "authgate", ClientSecret: clientSecret, Scopes: []string{"profile"}}, upstream.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = proxy.New(proxy.Config{PublicURL: "http://127.0.0.1:1", Routes: []proxy.Route{{Backend: e.backend.URL, Grant: proxy.GrantImplicit}}},
		proxy.Deps{Upstream: up, Sessions: sessions})
	if err == nil || !strings.Contains(err.Error(), "openid") {
		t.Errorf("implicit route without openid: got %v, want an error naming openid", err)
	}
}

// TestCodeCallbackNeedsIssEvenWithIDTokenParam: the RFC 9207 §2.4
// exception (a response with an ID token may omit iss) is the implicit
// grant's only: a code-flow callback with a stray id_token parameter and
// no iss, from a server that sends iss, is refused (found in review).
func TestCodeCallbackNeedsIssEvenWithIDTokenParam(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	cb := b.authorize(t, b.startLogin(t, g, "/"))
	q := cb.Query()
	q.Del("iss")
	q.Set("id_token", "x.y.z")
	cb.RawQuery = q.Encode()
	if resp, _ := b.noFollow().get(t, cb.String()); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("code callback without iss but with id_token: %d, want 400", resp.StatusCode)
	}
}
