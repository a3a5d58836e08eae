package proxy_test

import (
	"encoding/json"
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

// machineRoute makes the test gateway's route a client_credentials route
// for urn:orders with scope orders.read.
func machineRoute(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
	r := &pc.Routes[0]
	r.Grant = proxy.GrantClientCredentials
	r.Scopes = []string{"orders.read"}
	r.Audience = "urn:orders"
}

// tokenClaims reads a JWT access token the backend got (signature checked
// by the caller's test where it matters).
func tokenClaims(t *testing.T, e *env, raw string) jwt.MapClaims {
	t.Helper()
	c := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(raw, c, func(*jwt.Token) (any, error) { return e.idp.PublicKey(), nil }); err != nil {
		t.Fatalf("backend's token is not the server's: %v", err)
	}
	return c
}

// TestClientCredentialsOneFetchForTheFleet: 1,000 concurrent requests
// without credentials through two gateways sharing Redis, on a cold
// cache: exactly one token request, the same token on every backend
// request, no cookie, no user identity (SECURITY.md 37).
func TestClientCredentialsOneFetchForTheFleet(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	a := e.gateway(gatewayOptions{mutate: machineRoute})
	b := e.gateway(gatewayOptions{mutate: machineRoute})
	e.idp.SetTokenDelay(100 * time.Millisecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	cookies := 0
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}, Timeout: 20 * time.Second}
	for i := range 1000 {
		g := a
		if i%2 == 1 {
			g = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(g.URL + "/orders/" + "1")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			cookies += len(resp.Cookies())
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[200] != 1000 {
		t.Errorf("statuses %v, want 1000 × 200", statuses)
	}
	if n := e.idp.GrantCount("client_credentials"); n != 1 {
		t.Errorf("client credentials requests: %d, want 1 for the fleet", n)
	}
	if cookies != 0 {
		t.Errorf("%d responses set a cookie, want none", cookies)
	}
	tokens := map[string]bool{}
	e.backend.mu.Lock()
	for _, r := range e.backend.reqs {
		tokens[bearer(r)] = true
		for _, h := range []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups"} {
			if r.Header.Get(h) != "" {
				t.Errorf("a machine request carried %s", h)
			}
		}
	}
	e.backend.mu.Unlock()
	if len(tokens) != 1 {
		t.Fatalf("the backend saw %d distinct tokens, want 1", len(tokens))
	}
	for tok := range tokens {
		c := tokenClaims(t, e, tok)
		if c["aud"] != "urn:orders" || c["scope"] != "orders.read" || c["sub"] != "authgate" {
			t.Errorf("machine token claims aud=%v scope=%v sub=%v, want urn:orders, orders.read, authgate", c["aud"], c["scope"], c["sub"])
		}
	}
}

// TestClientCredentialsSteadyStreamAcrossRenewal: requests in the renewal
// window are served at once with the current token while one renewal
// runs; no request ever carries an expired token.
func TestClientCredentialsSteadyStreamAcrossRenewal(t *testing.T) {
	e := newEnv(t, envOptions{redis: true, idp: upstreamtest.Config{AccessTokenTTL: 10 * time.Minute}})
	g := e.gateway(gatewayOptions{mutate: machineRoute})
	get := func() (int, time.Duration) {
		start := time.Now()
		resp, err := http.Get(g.URL + "/orders/1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	get()
	first := bearer(e.backend.last(t))
	e.clock.Advance(9*time.Minute + 35*time.Second) // in the renewal window (30 to 45 s before expiry)
	e.idp.SetTokenDelay(300 * time.Millisecond)
	renewed := false
	for range 40 {
		status, d := get()
		if status != 200 || d > 250*time.Millisecond {
			t.Fatalf("request during the renewal: %d after %v, want 200 without waiting for the token endpoint", status, d)
		}
		tok := bearer(e.backend.last(t))
		if exp, _ := tokenClaims(t, e, tok).GetExpirationTime(); !e.clock.Now().Before(exp.Time) {
			t.Fatalf("a request carried an expired token")
		}
		if tok != first {
			renewed = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !renewed {
		t.Errorf("the token was not renewed ahead of expiry:\n%s", e.logs)
	}
	if n := e.idp.GrantCount("client_credentials"); n != 2 {
		t.Errorf("client credentials requests: %d, want 2", n)
	}
}

// TestClientCredentialsServerDown: a cached token keeps everything
// working; without one the caller gets 503 with Retry-After and a JSON
// reason, and the gateway recovers by itself.
func TestClientCredentialsServerDown(t *testing.T) {
	e := newEnv(t, envOptions{idp: upstreamtest.Config{AccessTokenTTL: 10 * time.Minute}})
	g := e.gateway(gatewayOptions{mutate: machineRoute})
	if resp, _ := apiCall(t, g, "/orders/1", ""); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	e.idp.SetTokenEndpointDown(http.StatusServiceUnavailable)
	e.clock.Advance(9*time.Minute + 35*time.Second)
	for range 3 {
		if resp, _ := apiCall(t, g, "/orders/1", ""); resp.StatusCode != 200 {
			t.Fatalf("with a valid cached token while the server is down: got %d, want 200", resp.StatusCode)
		}
	}
	e.clock.Advance(time.Minute) // expired
	resp, body := apiCall(t, g, "/orders/1", "")
	var v map[string]any
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || json.Unmarshal([]byte(body), &v) != nil || v["error"] == nil {
		t.Fatalf("without a usable token: got %d Retry-After %q body %q, want 503 with Retry-After and a JSON reason", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if strings.Contains(body, clientSecret) || !strings.Contains(e.logs.String(), "client credentials token fetch failed") {
		t.Errorf("want a warning in the log and no secret in the answer")
	}
	e.idp.SetTokenEndpointDown(0)
	e.clock.Advance(time.Minute) // past the back-off
	if resp, _ := apiCall(t, g, "/orders/1", ""); resp.StatusCode != 200 {
		t.Errorf("after the server is back: got %d, want 200", resp.StatusCode)
	}
}

// TestClientCredentialsBackendInvalidToken: a burst of backend
// invalid_token answers returns each 401 to its caller (no silent replay)
// and causes one new fetch.
func TestClientCredentialsBackendInvalidToken(t *testing.T) {
	e := newEnv(t, envOptions{})
	var mu sync.Mutex
	refused := map[string]bool{}
	e.backend.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if len(refused) == 0 || refused[bearer(r)] {
			refused[bearer(r)] = true
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(200)
	})
	g := e.gateway(gatewayOptions{mutate: machineRoute})
	statuses := make(chan int, 20)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := apiCall(t, g, "/orders/1", "")
			statuses <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 && s != 401 {
			t.Errorf("status %d, want the backend's 401 or 200", s)
		}
	}
	if resp, _ := apiCall(t, g, "/orders/1", ""); resp.StatusCode != 200 {
		t.Errorf("after the refused token was dropped: got %d, want 200", resp.StatusCode)
	}
	if n := e.idp.GrantCount("client_credentials"); n != 2 {
		t.Errorf("client credentials requests: %d, want 2 (one, then one after the burst)", n)
	}
}

// TestClientCredentialsRouteClient: a route's own client_id and secret.
func TestClientCredentialsRouteClient(t *testing.T) {
	e := newEnv(t, envOptions{idp: upstreamtest.Config{Clients: []upstreamtest.Client{
		{ID: "authgate", Secret: clientSecret}, {ID: "orders-client", Secret: "orders-secret"}}}})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		machineRoute(pc, sc, uc)
		pc.Routes[0].ClientID, pc.Routes[0].ClientSecret = "orders-client", "orders-secret"
	}})
	if resp, _ := apiCall(t, g, "/orders/1", ""); resp.StatusCode != 200 {
		t.Fatalf("got %d, want 200", resp.StatusCode)
	}
	if sub := tokenClaims(t, e, bearer(e.backend.last(t)))["sub"]; sub != "orders-client" {
		t.Errorf("machine token of %v, want the route's client orders-client", sub)
	}
}

// TestClientCredentialsWithCallerTokens: on a client_credentials route
// with accept_bearer a caller's token passes as is; without one the
// gateway's own token is injected.
func TestClientCredentialsWithCallerTokens(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		machineRoute(pc, sc, uc)
		pc.Routes[0].AcceptBearer = true
	}})
	caller := signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")
	if resp, _ := apiCall(t, g, "/orders/1", caller); resp.StatusCode != 200 || bearer(e.backend.last(t)) != caller {
		t.Errorf("caller token on a cc route: got %d, backend token kept = %v", resp.StatusCode, bearer(e.backend.last(t)) == caller)
	}
	if resp, _ := apiCall(t, g, "/orders/1", ""); resp.StatusCode != 200 || bearer(e.backend.last(t)) == caller {
		t.Errorf("no caller token on a cc route: got %d, want the gateway's own token", resp.StatusCode)
	}
	if resp, _ := apiCall(t, g, "/orders/1", "garbage"); resp.StatusCode != 401 {
		t.Errorf("a bad caller token on a cc route: got %d, want 401 (never the machine token instead)", resp.StatusCode)
	}
}

// TestCallerOpaqueTokens: opaque tokens are introspected (RFC 7662): active
// passes, inactive and revoked get 401, and two replicas share one
// introspection per token.
func TestCallerOpaqueTokens(t *testing.T) {
	e := newEnv(t, envOptions{redis: true, idp: upstreamtest.Config{OpaqueAccessTokens: true, Clients: []upstreamtest.Client{
		{ID: "authgate", Secret: clientSecret}, {ID: "caller", Secret: "caller-secret"}}}})
	mutate := func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Routes[0].AcceptBearer = true
		pc.Routes[0].Audience = "urn:orders"
	}
	a, b := e.gateway(gatewayOptions{mutate: mutate}), e.gateway(gatewayOptions{mutate: mutate})
	issue := func(aud string) string {
		form := url.Values{"grant_type": {"client_credentials"}, "audience": {aud}}
		req := postForm(t, e.idp.URL+"/token", form)
		req.SetBasicAuth("caller", "caller-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(resp.Body).Decode(&tr)
		if tr.AccessToken == "" || strings.Count(tr.AccessToken, ".") == 2 {
			t.Fatalf("upstreamtest issued %q, want an opaque token", tr.AccessToken)
		}
		return tr.AccessToken
	}
	tok := issue("urn:orders")
	for _, g := range []*gateway{a, b, a, b} {
		if resp, _ := apiCall(t, g, "/x", tok); resp.StatusCode != 200 || bearer(e.backend.last(t)) != tok {
			t.Fatalf("active opaque token: got %d, want 200 with the token passed on", resp.StatusCode)
		}
	}
	if n := e.idp.Count("introspect"); n != 1 {
		t.Errorf("introspection calls for one token on two replicas: %d, want 1", n)
	}
	if got := e.backend.last(t).Header.Get("X-Forwarded-User"); got != "caller" {
		t.Errorf("X-Forwarded-User %q, want the token's client caller", got)
	}
	other := issue("urn:else")
	if resp, _ := apiCall(t, a, "/x", other); resp.StatusCode != 401 {
		t.Errorf("opaque token for another audience: got %d, want 401", resp.StatusCode)
	}
	if resp, _ := apiCall(t, a, "/x", "opaque-garbage-token"); resp.StatusCode != 401 {
		t.Errorf("unknown opaque token: got %d, want 401", resp.StatusCode)
	}
	// Revoked at the server: refused once the cached answer ends.
	revoked := issue("urn:orders")
	apiCall(t, a, "/x", revoked)
	req := postForm(t, e.idp.URL+"/revoke", url.Values{"token": {revoked}, "token_type_hint": {"access_token"}})
	req.SetBasicAuth("caller", "caller-secret")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v", err)
	}
	e.clock.Advance(61 * time.Second) // introspection_cache_ttl
	if resp, _ := apiCall(t, b, "/x", revoked); resp.StatusCode != 401 {
		t.Errorf("revoked opaque token after the cache time: got %d, want 401", resp.StatusCode)
	}
}
