package interop_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/interop/oidcprovider"
	"github.com/authgate/authgate/session/redistest"
)

// logoutRecorder stands between oidc-provider and gateway A for
// back-channel logout notifications: it keeps every logout_token it is
// sent (so the test can replay them) and passes the ones for /authgate on
// to A, answering what A answers; those for /other (another client's) it
// only keeps.
type logoutRecorder struct {
	*httptest.Server
	target string // A's back-channel logout URL
	mu     sync.Mutex
	tokens map[string][]string // by path
}

func newLogoutRecorder(t *testing.T) *logoutRecorder {
	r := &logoutRecorder{tokens: map[string][]string{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		form, _ := url.ParseQuery(string(body))
		r.mu.Lock()
		r.tokens[req.URL.Path] = append(r.tokens[req.URL.Path], form.Get("logout_token"))
		target := r.target
		r.mu.Unlock()
		if req.URL.Path != "/authgate" {
			w.WriteHeader(http.StatusOK)
			return
		}
		resp, err := http.Post(target, req.Header.Get("Content-Type"), strings.NewReader(string(body)))
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *logoutRecorder) received(path string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.tokens[path]...)
}

// apiStatus is what g answers an API request carrying b's cookies.
func apiStatus(t *testing.T, g *gateway, b *browser) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.URL+"/x", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := b.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOIDCProviderBackChannelLogout: two authgate processes, one Redis,
// oidc-provider with back-channel logout on. A user who signs out at the
// server is signed out of both gateways within a second (B had the
// session cached) and the refresh token is revoked; other sessions stay.
// A replayed logout token, another client's
// logout token and an unsigned copy get 400 and end nothing.
func TestOIDCProviderBackChannelLogout(t *testing.T) {
	// Every test server binds its port before the gateways' are picked:
	// one bound later could take a port freeAddr found free.
	rec := newLogoutRecorder(t)
	app := newBackend(t)
	rd := redistest.Start(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	rec.target = "http://" + addrA + "/oauth2/backchannel_logout"
	client := oidcprovider.DefaultClient("http://"+addrA+"/oauth2/callback", "http://"+addrB+"/oauth2/callback")
	client.Extra = map[string]any{"backchannel_logout_uri": rec.URL + "/authgate", "backchannel_logout_session_required": true}
	other := oidcprovider.Client{ID: "other", Secret: "other-secret", RedirectURIs: []string{"http://127.0.0.1:9/cb"},
		GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"},
		Extra: map[string]any{"backchannel_logout_uri": rec.URL + "/other", "backchannel_logout_session_required": true}}
	op := oidcprovider.Start(t, oidcprovider.Config{
		Clients:       []oidcprovider.Client{client, other},
		Features:      map[string]any{"backchannelLogout": map[string]any{"enabled": true}},
		LoopbackFetch: true,
	})
	body := func(string) string {
		return fmt.Sprintf(`upstream:
  issuer: %q
  client_id: authgate
  client_secret: "${CLIENT_SECRET}"
  scopes: [openid, email, profile, offline_access]
  authorization_params: { prompt: consent }
session:
  store: redis
  redis: { url: %q }
  cookie: { secret: "${COOKIE_SECRET}", secure: false }
  cache: { ttl: 1m }
routes:
  - backend: %q
    grant: authorization_code
`, op.URL, rd.URL, app.URL)
	}
	a := startGatewayAt(t, addrA, "authgate-secret", body)
	b := startGatewayAt(t, addrB, "authgate-secret", body)

	alice, alice2, bob := newBrowser(), newBrowser(), newBrowser()
	login(t, op, a, alice, "/", "alice")
	login(t, op, a, alice2, "/", "alice")
	login(t, op, a, bob, "/", "bob")
	for _, br := range []*browser{alice, alice2, bob} {
		for range 2 { // B caches the sessions
			if apiStatus(t, b, br) != http.StatusOK {
				t.Fatal("gateway B refuses a session made on A")
			}
		}
	}
	revocations := op.Count("POST /token/revocation")

	// alice signs out at the server (not through the gateway).
	end, _ := http.NewRequest(http.MethodGet, op.URL+"/session/end", nil)
	if res := op.EndSessionRequest(t, alice.Client, end); !res.Confirmed {
		t.Fatalf("sign-out at oidc-provider: %+v", res)
	}
	tokens := rec.received("/authgate")
	if len(tokens) != 1 {
		t.Fatalf("back-channel notifications to the gateway: %d, want 1; oidc-provider log:\n%s", len(tokens), op.Log())
	}
	deadline := time.Now().Add(time.Second)
	for apiStatus(t, a, alice) != http.StatusUnauthorized || apiStatus(t, b, alice) != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatalf("alice's session still works 1 s after the server's back-channel logout; A's log:\n%s", strings.Join(a.logLines("logout"), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if apiStatus(t, a, alice2) != http.StatusOK || apiStatus(t, b, bob) != http.StatusOK {
		t.Error("the logout of alice's login session ended another session")
	}
	if n := op.Count("POST /token/revocation"); n != revocations+1 {
		t.Errorf("revocations by the gateway: %d, want 1 (the ended session's refresh token)", n-revocations)
	}

	post := func(g *gateway, token string) int {
		resp, err := http.PostForm(g.URL+"/oauth2/backchannel_logout", url.Values{"logout_token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Replayed, on either gateway.
	if s1, s2 := post(a, tokens[0]), post(b, tokens[0]); s1 != http.StatusBadRequest || s2 != http.StatusBadRequest {
		t.Errorf("replayed logout token: A %d, B %d; want 400", s1, s2)
	}
	// The server's own signature over another kind of token or another
	// client: an ID token (it has a nonce), the logout token of client
	// "other" (aud other).
	victim := newBrowser()
	login(t, op, a, victim, "/", "bob")
	q := url.Values{"client_id": {"other"}, "redirect_uri": {"http://127.0.0.1:9/cb"}, "response_type": {"code"}, "scope": {"openid"},
		"state": {"s"}, "nonce": {"n"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
	op.Authorize(t, victim.Client, op.URL+"/auth?"+q.Encode(), "bob")
	end, _ = http.NewRequest(http.MethodGet, op.URL+"/session/end", nil)
	op.EndSessionRequest(t, victim.Client, end)
	others := rec.received("/other")
	if len(others) != 1 {
		t.Fatalf("notifications for client other: %d, want 1", len(others))
	}
	parts := strings.Split(others[0], ".")
	unsigned := "eyJhbGciOiJub25lIiwidHlwIjoibG9nb3V0K2p3dCJ9." + parts[1] + "."
	for name, tok := range map[string]string{"another client's": others[0], "unsigned": unsigned, "garbage": "x.y.z"} {
		if s := post(a, tok); s != http.StatusBadRequest {
			t.Errorf("%s logout token: %d, want 400", name, s)
		}
	}
	if apiStatus(t, b, bob) != http.StatusOK || apiStatus(t, b, alice2) != http.StatusOK {
		t.Error("a refused logout token ended a session")
	}

	// An operator revokes alice everywhere, with the CLI on A's config:
	// her other browsers' sessions end on both gateways; bob's stay.
	alice3 := newBrowser()
	login(t, op, b, alice3, "/", "alice")
	cmd := exec.Command(authgateBin, "revoke", "-config", a.config, "-sub", "alice")
	cmd.Env = a.env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ended 2 sessions") {
		t.Fatalf("authgate revoke -sub alice: %v: %s", err, out)
	}
	deadline = time.Now().Add(time.Second)
	for apiStatus(t, a, alice2) != http.StatusUnauthorized || apiStatus(t, b, alice3) != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("alice's sessions still work 1 s after authgate revoke")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if apiStatus(t, a, bob) != http.StatusOK {
		t.Error("revoking alice ended bob's session")
	}
}
