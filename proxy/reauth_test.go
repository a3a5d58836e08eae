package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// TestSessionWithoutRefreshTokenLivesUntilItsTokenExpires pins the bug of
// servers that issue no refresh token (oidc-provider without
// prompt=consent): the session was deleted a quarter of the token's
// lifetime before it expired, silently. It must live until the token
// expires, never less, and then be renewed silently (prompt=none) by a
// navigation while an API request gets 401.
func TestSessionWithoutRefreshTokenLivesUntilItsTokenExpires(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			e := newEnv(t, envOptions{redis: store == "redis", idp: upstreamtest.Config{NoRefreshTokens: true, AccessTokenTTL: 10 * time.Minute}})
			g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
				longIdle(pc, sc, uc)
				uc.Scopes = []string{"openid", "email", "profile", "offline_access"}
			}})
			b := newBrowser(t)
			b.login(t, g, "/")
			first := bearer(e.backend.last(t))
			if n := strings.Count(e.logs.String(), "issued no refresh token"); n != 1 {
				t.Errorf("warnings about the missing refresh token after one login: %d, want 1:\n%s", n, e.logs)
			}

			// Until the token expires (well past the old "quarter before"
			// cut-off): served with the same token, no call to the server.
			before := e.idp.TotalRequests()
			e.clock.Advance(9*time.Minute + 50*time.Second)
			resp, body := b.noFollow().get(t, g.URL+"/still-here")
			if resp.StatusCode != http.StatusOK || bearer(e.backend.last(t)) != first {
				t.Fatalf("10 s before the token expires: got %d %q, want 200 with the session's token", resp.StatusCode, body)
			}
			if got := e.idp.TotalRequests() - before; got != 0 {
				t.Errorf("the authorization server saw %d requests while the token was valid, want 0", got)
			}

			// Expired: an API request gets 401 invalid_token, keeps its cookie.
			e.clock.Advance(20 * time.Second)
			req := mustRequest(t, http.MethodGet, g.URL+"/api", nil)
			req.Header.Set("Accept", "application/json")
			resp, _ = b.noFollow().do(t, req)
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("API request after expiry: got %d %q, want 401 with error=\"invalid_token\"", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
			for _, c := range resp.Cookies() {
				if strings.HasSuffix(c.Name, "_authgate") && c.MaxAge < 0 {
					t.Errorf("the API request's 401 cleared the session cookie; a navigation could no longer renew it silently")
				}
			}

			// A navigation: to the server with prompt=none, back with a new
			// session and token, at the page asked for.
			authURL := b.startLogin(t, g, "/page?x=1")
			if p := authURL.Query().Get("prompt"); p != "none" {
				t.Fatalf("silent renewal: authorization request has prompt=%q, want none", p)
			}
			resp, _ = b.get(t, b.authorize(t, authURL).String())
			if resp.StatusCode != http.StatusOK || resp.Request.URL.RequestURI() != "/page?x=1" {
				t.Fatalf("after the silent renewal: got %d at %s, want 200 at /page?x=1", resp.StatusCode, resp.Request.URL.RequestURI())
			}
			if bearer(e.backend.last(t)) == first {
				t.Errorf("after the silent renewal the backend still got the expired token")
			}
		})
	}
}

// TestSilentRenewalFallsBackToInteractiveLogin: when the server answers
// prompt=none with login_required (and the like), the gateway starts an
// ordinary login to the same page instead of showing an error.
func TestSilentRenewalFallsBackToInteractiveLogin(t *testing.T) {
	for _, code := range []string{"login_required", "interaction_required", "consent_required"} {
		t.Run(code, func(t *testing.T) {
			e := newEnv(t, envOptions{idp: upstreamtest.Config{NoRefreshTokens: true, AccessTokenTTL: 10 * time.Minute}})
			g := e.gateway(gatewayOptions{mutate: longIdle})
			b := newBrowser(t)
			b.login(t, g, "/")
			e.clock.Advance(11 * time.Minute)
			e.idp.SetSilentLoginError(code)

			silent := b.startLogin(t, g, "/deep/page")
			cb := b.authorize(t, silent)
			if cb.Query().Get("error") != code {
				t.Fatalf("the server's answer to prompt=none: %s, want error=%s", cb, code)
			}
			resp, _ := b.noFollow().get(t, cb.String())
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("callback with %s after a silent attempt: got %d, want 302 to an interactive login", code, resp.StatusCode)
			}
			interactive := mustParse(t, resp.Header.Get("Location"))
			if !strings.HasPrefix(interactive.String(), e.idp.URL) || interactive.Query().Has("prompt") {
				t.Fatalf("fallback login goes to %s, want the authorization endpoint without prompt", interactive)
			}
			e.idp.SetSilentLoginError("")
			resp, _ = b.get(t, b.authorize(t, interactive).String())
			if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/deep/page" {
				t.Errorf("after the interactive login: got %d at %s, want 200 at /deep/page", resp.StatusCode, resp.Request.URL.Path)
			}
		})
	}
}

// TestNonSilentLoginRequiredIsAnError: login_required answering an
// ordinary login is shown, not retried (no redirect loop).
func TestNonSilentLoginRequiredIsAnError(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	authURL := b.startLogin(t, g, "/")
	cb := b.authorize(t, authURL)
	q := cb.Query()
	q.Del("code")
	q.Set("error", "login_required")
	cb.RawQuery = q.Encode()
	if resp, _ := b.noFollow().get(t, cb.String()); resp.StatusCode != http.StatusForbidden {
		t.Errorf("login_required for an interactive login: got %d, want the 403 page", resp.StatusCode)
	}
}

// TestAuthorizationParams: upstream.authorization_params go with every
// authorization request; a silent renewal's prompt=none replaces their
// prompt.
func TestAuthorizationParams(t *testing.T) {
	e := newEnv(t, envOptions{idp: upstreamtest.Config{NoRefreshTokens: true, AccessTokenTTL: 10 * time.Minute}})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		longIdle(pc, sc, uc)
		uc.AuthorizationParams = map[string]string{"prompt": "consent", "acr_values": "urn:mfa", "audience": "https://api.example.com"}
	}})
	b := newBrowser(t)
	u := b.startLogin(t, g, "/")
	for k, want := range map[string]string{"prompt": "consent", "acr_values": "urn:mfa", "audience": "https://api.example.com", "response_type": "code", "code_challenge_method": "S256"} {
		if got := u.Query().Get(k); got != want {
			t.Errorf("authorization request %s=%q, want %q", k, got, want)
		}
	}
	b.get(t, b.authorize(t, u).String())
	e.clock.Advance(11 * time.Minute)
	u = b.startLogin(t, g, "/")
	if got := u.Query()["prompt"]; len(got) != 1 || got[0] != "none" {
		t.Errorf("silent renewal sends prompt=%q, want exactly none", got)
	}
	if u.Query().Get("acr_values") != "urn:mfa" {
		t.Errorf("silent renewal dropped the configured acr_values")
	}
}
