package proxy_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// TestNoSecretsInLogs runs every flow at debug level and greps the log for
// every secret value that passed through (SECURITY.md 32).
func TestNoSecretsInLogs(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	g := e.gateway(gatewayOptions{mutate: longIdle})
	b := newBrowser(t)
	var canaries []string

	// Login, observing the state, code and tokens on the way.
	au := b.startLogin(t, g, "/secret-path?q=1")
	canaries = append(canaries, au.Query().Get("state"), au.Query().Get("nonce"), au.Query().Get("code_challenge"))
	cb := b.authorize(t, au)
	canaries = append(canaries, cb.Query().Get("code"))
	if resp, _ := b.get(t, cb.String()); resp.StatusCode != 200 {
		t.Fatalf("login: got %d", resp.StatusCode)
	}
	canaries = append(canaries, bearer(e.backend.last(t)), b.cookie(t, g.URL, "_authgate"), b.cookie(t, g.URL, "_authgate_csrf"))
	ticket, _ := g.sessions.DecodeTicket(b.cookie(t, g.URL, "_authgate"))
	sess, _, err := g.sessions.Load(t.Context(), ticket)
	if err != nil {
		t.Fatal(err)
	}
	canaries = append(canaries, sess.Token.RefreshToken.Reveal(), sess.Token.IDToken.Reveal())

	// Refresh, failures, sign-out: the noisy paths.
	e.clock.Advance(59*time.Minute + 30*time.Second)
	b.get(t, g.URL+"/after-refresh")
	canaries = append(canaries, bearer(e.backend.last(t)))
	b.get(t, g.URL+"/oauth2/callback?state=bogus-state-canary&code=bogus-code-canary")
	canaries = append(canaries, "bogus-state-canary", "bogus-code-canary")
	req := mustRequest(t, http.MethodGet, g.URL+"/x", nil)
	req.Header.Set("Cookie", "_authgate=tampered-cookie-canary")
	b.noFollow().do(t, req)
	canaries = append(canaries, "tampered-cookie-canary")
	req = mustRequest(t, http.MethodGet, g.URL+"/x", nil)
	req.Header.Set("Authorization", "Bearer client-sent-token-canary")
	b.do(t, req)
	canaries = append(canaries, "client-sent-token-canary")
	resp, body := b.get(t, g.URL+"/oauth2/sign_out")
	csrf := between(body, `name="csrf" value="`, `"`)
	canaries = append(canaries, csrf)
	form := url.Values{"csrf": {csrf}, "rd": {"/"}}
	req = mustRequest(t, http.MethodPost, g.URL+"/oauth2/sign_out", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body = b.noFollow().do(t, req)
	if lr := readLogout(t, resp, body); lr.params.Get("id_token_hint") == "" {
		t.Fatalf("sign-out: got %d %s %s, want the redirect with the ID token hint", resp.StatusCode, lr.method, lr.endpoint)
	}
	// A gateway whose token endpoint fails, so errors get logged.
	bad := e.gateway(gatewayOptions{mutate: func(_ *proxy.Config, _ *session.Config, uc *upstream.Config) {
		uc.ClientSecret = "wrong-client-secret-canary"
	}})
	newBrowser(t).get(t, bad.URL+"/")
	canaries = append(canaries, "wrong-client-secret-canary", clientSecret, cookieSecret.Reveal())

	logs := e.logs.String()
	if !strings.Contains(logs, "level=DEBUG") && !strings.Contains(logs, "msg=login") {
		t.Fatalf("the log captured nothing; the test would prove nothing:\n%s", logs)
	}
	for _, c := range canaries {
		if len(c) < 8 {
			t.Fatalf("canary %q too short to be meaningful", c)
		}
		if strings.Contains(logs, c) {
			t.Errorf("log contains a secret value (%.10s…):\n%s", c, logs)
		}
	}
	if strings.Contains(logs, "secret-path?q=1") || strings.Contains(logs, "q=1") {
		t.Errorf("log contains a query string")
	}
}
