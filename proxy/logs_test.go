package proxy_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
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

// TestNoMachineOrCallerSecretsInLogs: the service-to-service flows at debug
// level — a machine token fetched, renewed, refused by the backend and
// failing at the server; caller JWTs and opaque tokens good and bad; a
// route's own client secret — leave no token or secret in the log and none
// in clear in Redis (SECURITY.md 32, 44).
func TestNoMachineOrCallerSecretsInLogs(t *testing.T) {
	e := newEnv(t, envOptions{redis: true, idp: upstreamtest.Config{OpaqueAccessTokens: true, Clients: []upstreamtest.Client{
		{ID: "authgate", Secret: clientSecret}, {ID: "orders-client", Secret: "orders-secret-canary"}}}})
	var refuse atomic.Bool
	var mu sync.Mutex
	var sent []string // every token the backend received
	e.backend.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent = append(sent, bearer(r))
		mu.Unlock()
		if refuse.Load() {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		machineRoute(pc, sc, uc)
		pc.Routes[0].AcceptBearer = true
		pc.Routes[0].ClientID, pc.Routes[0].ClientSecret = "orders-client", "orders-secret-canary"
	}})
	var canaries []string
	seen := func(tok string) { canaries = append(canaries, tok) }
	apiCall(t, g, "/orders/1", "")
	req := postForm(t, e.idp.URL+"/token", url.Values{"grant_type": {"client_credentials"}, "audience": {"urn:orders"}})
	req.SetBasicAuth("orders-client", "orders-secret-canary")
	resp, body := newBrowser(t).do(t, req)
	if resp.StatusCode != 200 {
		t.Fatalf("token for a caller: %d %s", resp.StatusCode, body)
	}
	opaque := between(body, `"access_token":"`, `"`)
	seen(opaque)
	apiCall(t, g, "/orders/1", opaque)                  // introspected
	apiCall(t, g, "/orders/1", "opaque-garbage-canary") // refused
	seen("opaque-garbage-canary")
	jwtTok := signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")
	seen(jwtTok)
	apiCall(t, g, "/orders/1", jwtTok)
	apiCall(t, g, "/orders/1", jwtTok[:len(jwtTok)-4]+"AAAA")
	refuse.Store(true)
	apiCall(t, g, "/orders/1", "") // the backend refuses the machine token
	refuse.Store(false)
	e.idp.SetTokenEndpointDown(http.StatusServiceUnavailable)
	apiCall(t, g, "/orders/1", "")
	e.idp.SetTokenEndpointDown(0)
	e.clock.Advance(time.Minute)
	apiCall(t, g, "/orders/1", "")
	seen("orders-secret-canary")
	seen(clientSecret)
	mu.Lock()
	canaries = append(canaries, sent...) // the machine tokens, two of them
	mu.Unlock()

	logs := e.logs.String()
	if !strings.Contains(logs, "client credentials token fetched") || !strings.Contains(logs, "caller token refused") {
		t.Fatalf("the log lacks the flows; the test would prove nothing:\n%s", logs)
	}
	c := e.redis.Client(t)
	keys, _ := c.Keys(t.Context(), "*").Result()
	if len(keys) == 0 {
		t.Fatal("Redis holds nothing; the test would prove nothing")
	}
	for _, k := range canaries {
		if len(k) < 8 {
			continue
		}
		if strings.Contains(logs, k) {
			t.Errorf("the log holds a secret (%.12s…)", k)
		}
		for _, key := range keys {
			v, _ := c.Get(t.Context(), key).Result()
			if strings.Contains(key, k) || strings.Contains(v, k) {
				t.Errorf("Redis %q holds a secret in clear (%.12s…)", key, k)
			}
		}
	}
}
