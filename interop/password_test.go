package interop_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authgate/authgate/interop/oidcprovider"
	"github.com/authgate/authgate/session/redistest"
)

// passwordOP runs oidc-provider with the password grant registered through
// its registerGrantType extension API (interop/node/grants/password.mjs):
// oidc-provider has none built in.
func passwordOP(t *testing.T) *oidcprovider.Server {
	t.Helper()
	accounts := oidcprovider.DefaultAccounts()
	accounts[0].Password = "alice-pw-interop"
	accounts[1].Password = "bob-pw-interop"
	return oidcprovider.Start(t, oidcprovider.Config{
		Grants:   []string{"password"},
		Accounts: accounts,
		Clients: []oidcprovider.Client{{ID: "authgate", Secret: "authgate-secret", GrantTypes: []string{"password", "refresh_token"},
			Extra: map[string]any{"response_types": []string{}}}},
	})
}

// passwordGateway is an authgate process with one password route at op,
// sessions in a private Redis, 3 failures per account allowed.
func passwordGateway(t *testing.T, op *oidcprovider.Server, be *backend) *gateway {
	rd := redistest.Start(t)
	return startGateway(t, "authgate-secret", func(string) string {
		return fmt.Sprintf(`upstream:
  issuer: %q
  client_id: authgate
  client_secret: "${CLIENT_SECRET}"
  scopes: [openid, email, profile, groups]
session:
  store: redis
  redis: { url: %q }
  cookie: { secret: "${COOKIE_SECRET}", secure: false }
password: { max_failures_per_user: 3 }
routes:
  - backend: %q
    grant: password
`, op.URL, rd.URL, be.URL)
	})
}

// TestOIDCProviderPasswordForm: the gateway's login form against
// oidc-provider: a wrong password and an unknown user get the same 401, the
// right one a session, a 303 to the page asked for, and the backend the
// server's token and alice's identity.
func TestOIDCProviderPasswordForm(t *testing.T) {
	op := passwordOP(t)
	be := newBackend(t)
	g := passwordGateway(t, op, be)
	b := newBrowser()
	resp, _ := b.get(t, g.URL+"/reports?week=2")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "/oauth2/login?rd=") {
		t.Fatalf("without a session: %d to %q, want the login form", resp.StatusCode, loc)
	}
	post := func(user, pass string) (*http.Response, string) {
		_, page := b.get(t, g.URL+"/oauth2/login?rd=%2Freports%3Fweek%3D2")
		form := url.Values{"csrf": {between(page, `name="csrf" value="`, `"`)}, "rd": {"/reports?week=2"}, "username": {user}, "password": {pass}}
		req, _ := http.NewRequest(http.MethodPost, g.URL+"/oauth2/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return b.do(t, req)
	}
	r1, wrong := post("alice", "not-it")
	r2, unknown := post("mallory", "whatever")
	if r1.StatusCode != 401 || r2.StatusCode != 401 || !strings.Contains(wrong, "Invalid username or password.") || !strings.Contains(unknown, "Invalid username or password.") {
		t.Errorf("wrong password %d, unknown user %d: want 401 and the same message", r1.StatusCode, r2.StatusCode)
	}
	resp, _ = post("alice", "alice-pw-interop")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/reports?week=2" {
		t.Fatalf("right password: %d to %q, want 303 to /reports?week=2", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := b.get(t, g.URL+"/reports?week=2"); resp.StatusCode != 200 {
		t.Fatalf("with the session: %d", resp.StatusCode)
	}
	h := be.lastHeader(t)
	if h.Get("X-Forwarded-User") != "alice" || h.Get("X-Forwarded-Email") != "alice@example.com" || !strings.HasPrefix(h.Get("Authorization"), "Bearer ") {
		t.Errorf("backend got user %q email %q auth %.10q, want alice's identity and a bearer token", h.Get("X-Forwarded-User"), h.Get("X-Forwarded-Email"), h.Get("Authorization"))
	}
	if strings.Contains(g.Logs(), "alice-pw-interop") || strings.Contains(g.Logs(), "not-it") {
		t.Errorf("a password reached the gateway's log")
	}
}

// TestOIDCProviderPasswordBasic: HTTP Basic against oidc-provider: 20
// calls, one token request; past 3 failures the right password gets 429
// without reaching the server; another user is unaffected.
func TestOIDCProviderPasswordBasic(t *testing.T) {
	op := passwordOP(t)
	be := newBackend(t)
	g := passwordGateway(t, op, be)
	call := func(user, pass string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, g.URL+"/legacy", nil)
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	before := op.Count("POST /token")
	for range 20 {
		if resp := call("bob", "bob-pw-interop"); resp.StatusCode != 200 {
			t.Fatalf("Basic call: %d", resp.StatusCode)
		}
	}
	if n := op.Count("POST /token") - before; n != 1 {
		t.Errorf("token requests for 20 Basic calls: %d, want 1", n)
	}
	if got := be.lastHeader(t).Get("Authorization"); !strings.HasPrefix(got, "Bearer ") {
		t.Errorf("backend got Authorization %.12q, want a bearer token", got)
	}
	for range 3 {
		if resp := call("alice", "wrong"); resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Fatalf("wrong password: %d %q, want 401 Basic", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	before = op.Count("POST /token")
	if resp := call("alice", "alice-pw-interop"); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("right password while locked: %d, want 429 with Retry-After", resp.StatusCode)
	}
	if n := op.Count("POST /token") - before; n != 0 {
		t.Errorf("the server saw %d attempts during the lock, want 0", n)
	}
	if resp := call("bob", "bob-pw-interop"); resp.StatusCode != 200 {
		t.Errorf("another user during alice's lock: %d, want 200", resp.StatusCode)
	}
}
