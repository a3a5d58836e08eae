package proxy_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// TestServerRefusalsAreLogged: an operator must see why sign-ins fail.
// Each error the authorization server answers is logged once, with its
// code and description (without the state), at warn when the
// configuration is the likely cause and at info when the user is.
func TestServerRefusalsAreLogged(t *testing.T) {
	for _, tc := range []struct {
		name, code, level string
	}{
		{"client not allowed the scopes", "invalid_scope", "WARN"},
		{"client not allowed the grant", "unauthorized_client", "WARN"},
		{"user cancelled", "access_denied", "INFO"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			g := e.gateway(gatewayOptions{})
			b := newBrowser(t).noFollow()
			cb := b.authorize(t, b.startLogin(t, g, "/"))
			state := cb.Query().Get("state")
			q := url.Values{"state": {state}, "error": {tc.code}, "error_description": {"refused; echo of state=" + state + " and <script>"}}
			resp, body := b.get(t, g.URL+"/oauth2/callback?"+q.Encode())
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "&lt;script&gt;") {
				t.Errorf("callback with error=%s: got %d, want the 403 page with the description escaped", tc.code, resp.StatusCode)
			}
			var lines []string
			for l := range strings.SplitSeq(e.logs.String(), "\n") {
				if strings.Contains(l, "refused the sign-in") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 {
				t.Fatalf("log lines for the refusal: %d, want 1:\n%s", len(lines), e.logs)
			}
			l := lines[0]
			if !strings.Contains(l, "level="+tc.level) || !strings.Contains(l, "error="+tc.code) || !strings.Contains(l, "where=\"authorization response\"") {
				t.Errorf("refusal logged as %q, want level=%s error=%s where=\"authorization response\"", l, tc.level, tc.code)
			}
			if !strings.Contains(l, "echo of state=[redacted]") || strings.Contains(e.logs.String(), state) {
				t.Errorf("the state reached the log: %q", l)
			}
		})
	}
}

// TestTokenEndpointRefusalIsLogged: a wrong client secret shows the user a
// clean page and the operator one warning naming invalid_client.
func TestTokenEndpointRefusalIsLogged(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: func(_ *proxy.Config, _ *session.Config, uc *upstream.Config) {
		uc.ClientSecret = "not-the-secret"
	}})
	resp, _ := newBrowser(t).get(t, g.URL+"/")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("login with a wrong client secret: got %d, want the 400 sign-in failed page", resp.StatusCode)
	}
	logs := e.logs.String()
	if n := strings.Count(logs, "refused the sign-in"); n != 1 {
		t.Fatalf("refusal log lines: %d, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, `level=WARN msg="the authorization server refused the sign-in" where="token endpoint" error=invalid_client`) {
		t.Errorf("token endpoint refusal not logged as a warning with its code:\n%s", logs)
	}
	if strings.Contains(logs, "not-the-secret") {
		t.Errorf("the client secret reached the log")
	}
}
