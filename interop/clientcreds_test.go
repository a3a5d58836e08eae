package interop_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/interop/oidcprovider"
	"github.com/authgate/authgate/session/redistest"
)

// ordersAPI is the resource indicator of the protected API: oidc-provider
// issues JWT access tokens for it (RFC 8707, RFC 9068).
const ordersAPI = "https://orders.example/"

// opaqueAPI is an API whose tokens oidc-provider issues opaque, so
// resource servers must introspect them.
const opaqueAPI = "https://opaque.example/"

// machineOP runs oidc-provider with client credentials, introspection and
// the two resource servers, and the clients given.
func machineOP(t *testing.T, clients ...oidcprovider.Client) *oidcprovider.Server {
	t.Helper()
	return oidcprovider.Start(t, oidcprovider.Config{
		Clients: clients,
		Features: map[string]any{
			"clientCredentials": map[string]any{"enabled": true},
			"introspection":     map[string]any{"enabled": true},
		},
		ResourceServers: map[string]oidcprovider.ResourceServer{
			ordersAPI: {Scope: "orders.read orders.write"},
			opaqueAPI: {Scope: "orders.read", AccessTokenFormat: "opaque"},
		},
	})
}

// serviceClient is a confidential client allowed only client credentials.
func serviceClient(id, secret string) oidcprovider.Client {
	return oidcprovider.Client{ID: id, Secret: secret, GrantTypes: []string{"client_credentials"},
		Extra: map[string]any{"response_types": []string{}, "redirect_uris": []string{}}}
}

// machineConfig is a gateway config with one client_credentials route for
// ordersAPI (accepting caller tokens) at op; upstreamExtra goes under
// upstream:, redisURL "" means the memory store.
func machineConfig(op *oidcprovider.Server, be *backend, clientID, upstreamExtra, redisURL string) func(string) string {
	return func(string) string {
		store := "store: memory"
		if redisURL != "" {
			store = fmt.Sprintf("store: redis\n  redis: { url: %q }", redisURL)
		}
		return fmt.Sprintf(`upstream:
  issuer: %q
  client_id: %q
  scopes: [openid]
%s
session:
  %s
  cookie: { secret: "${COOKIE_SECRET}", secure: false }
introspection_cache_ttl: 2s
routes:
  - match: { path_prefix: "/orders/" }
    backend: %q
    grant: client_credentials
    scopes: [orders.read]
    resource: %q
    accept_bearer: true
  - match: { path_prefix: "/opaque/" }
    backend: %q
    grant: client_credentials
    resource: %q
    accept_bearer: true
`, op.URL, clientID, upstreamExtra, store, be.URL, ordersAPI, be.URL, opaqueAPI)
	}
}

// TestOIDCProviderClientCredentialsFleet: 1,000 concurrent requests with no
// credentials through two authgate processes sharing one Redis, on a cold
// cache: oidc-provider sees exactly one token request; the backend gets
// that one JWT (aud = the resource) on every request; nobody gets a cookie.
func TestOIDCProviderClientCredentialsFleet(t *testing.T) {
	op := machineOP(t, serviceClient("svc", "svc-secret"))
	be := newBackend(t)
	rd := redistest.Start(t)
	cfg := machineConfig(op, be, "svc", `  client_secret: "${CLIENT_SECRET}"`, rd.URL)
	a, b := startGateway(t, "svc-secret", cfg), startGateway(t, "svc-secret", cfg)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses, cookies := map[int]int{}, 0
	sem := make(chan struct{}, 200)
	for i := range 1000 {
		g := a
		if i%2 == 1 {
			g = b
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			resp, err := client.Get(g.URL + "/orders/42")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			cookies += len(resp.Header.Values("Set-Cookie"))
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[200] != 1000 {
		t.Errorf("statuses %v, want 1000 × 200", statuses)
	}
	if n := op.Count("POST /token"); n != 1 {
		t.Errorf("oidc-provider token requests: %d, want 1 for two gateways", n)
	}
	if cookies != 0 {
		t.Errorf("%d Set-Cookie headers, want none", cookies)
	}
	claims := jwtClaims(t, strings.TrimPrefix(be.lastHeader(t).Get("Authorization"), "Bearer "))
	if claims["aud"] != ordersAPI || claims["client_id"] != "svc" || claims["scope"] != "orders.read" {
		t.Errorf("machine token aud=%v client_id=%v scope=%v, want %s, svc, orders.read", claims["aud"], claims["client_id"], claims["scope"], ordersAPI)
	}
	for _, h := range []string{"X-Forwarded-User", "X-Forwarded-Email"} {
		if v := be.lastHeader(t).Get(h); v != "" {
			t.Errorf("machine request carried %s=%q", h, v)
		}
	}
}

// jwtClaims decodes a JWT's payload (the signature is the gateway's and
// the backend's business; here only what it says matters).
func jwtClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]any{}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOIDCProviderClientAuthMethods: each method oidc-provider supports
// (client_secret_basic, client_secret_post, private_key_jwt) gets a
// token; a wrong secret is refused with a clear log line and a 503.
func TestOIDCProviderClientAuthMethods(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(t.TempDir(), "client-key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	n, e := b64(key.N.Bytes()), b64(big.NewInt(int64(key.E)).Bytes())
	// The kid authgate puts in the assertion's header: the RFC 7638
	// thumbprint, which oidc-provider matches against the registered key.
	thumb := sha256.Sum256([]byte(`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`))
	jwk := map[string]any{"kty": "RSA", "n": n, "e": e, "use": "sig", "kid": b64(thumb[:])}

	basic := serviceClient("svc-basic", "basic-secret")
	post := serviceClient("svc-post", "post-secret")
	post.TokenEndpointAuthMethod = "client_secret_post"
	pkj := serviceClient("svc-jwt", "")
	pkj.TokenEndpointAuthMethod = "private_key_jwt"
	pkj.Extra["jwks"] = map[string]any{"keys": []any{jwk}}
	op := machineOP(t, basic, post, pkj)

	for _, tc := range []struct {
		name, client, secret, extra string
		want                        int
	}{
		{"client_secret_basic", "svc-basic", "basic-secret", `  client_secret: "${CLIENT_SECRET}"`, 200},
		{"client_secret_post", "svc-post", "post-secret", "  client_secret: \"${CLIENT_SECRET}\"\n  client_auth: client_secret_post", 200},
		{"private_key_jwt", "svc-jwt", "", "  client_auth: private_key_jwt\n  private_key_file: " + keyFile, 200},
		{"wrong secret", "svc-basic", "not-the-secret", `  client_secret: "${CLIENT_SECRET}"`, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend(t)
			g := startGateway(t, tc.secret, machineConfig(op, be, tc.client, tc.extra, ""))
			resp, err := http.Get(g.URL + "/orders/1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want != 200 {
				if len(g.logLines("level=WARN", "client credentials token fetch failed", "invalid_client")) == 0 {
					t.Errorf("no warning naming invalid_client:\n%s", g.Logs())
				}
				if strings.Contains(g.Logs(), tc.secret) {
					t.Errorf("the secret reached the log")
				}
				return
			}
			if sub := jwtClaims(t, strings.TrimPrefix(be.lastHeader(t).Get("Authorization"), "Bearer "))["client_id"]; sub != tc.client {
				t.Errorf("token of %v, want %s", sub, tc.client)
			}
		})
	}
}

// TestOIDCProviderCallerTokens: a caller's own tokens from oidc-provider: a
// JWT for the route's resource passes as is, one for another resource
// does not; an opaque token is introspected once for two replicas, and a
// revoked one stops working when the cached answer ends.
func TestOIDCProviderCallerTokens(t *testing.T) {
	op := machineOP(t, serviceClient("svc", "svc-secret"), serviceClient("caller", "caller-secret"))
	be := newBackend(t)
	rd := redistest.Start(t)
	cfg := machineConfig(op, be, "svc", `  client_secret: "${CLIENT_SECRET}"`, rd.URL)
	a, b := startGateway(t, "svc-secret", cfg), startGateway(t, "svc-secret", cfg)
	issue := func(resource string) string {
		req, _ := http.NewRequest(http.MethodPost, op.URL+"/token", strings.NewReader(url.Values{
			"grant_type": {"client_credentials"}, "resource": {resource}, "scope": {"orders.read"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("caller", "caller-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
			t.Fatalf("oidc-provider issued no token for %s: %d", resource, resp.StatusCode)
		}
		return tr.AccessToken
	}
	call := func(g *gateway, path, tok string) int {
		req, _ := http.NewRequest(http.MethodGet, g.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	jwtTok := issue(ordersAPI)
	if got := call(a, "/orders/1", jwtTok); got != 200 || be.lastHeader(t).Get("Authorization") != "Bearer "+jwtTok {
		t.Errorf("caller JWT for the route's resource: got %d, want 200 with the token passed on", got)
	}
	if got := be.lastHeader(t).Get("X-Forwarded-User"); got != "caller" {
		t.Errorf("X-Forwarded-User %q, want the token's sub caller", got)
	}
	if got := call(a, "/opaque/1", jwtTok); got != 401 {
		t.Errorf("caller JWT for another resource: got %d, want 401", got)
	}
	if got := call(a, "/orders/1", jwtTok[:len(jwtTok)-5]+"AAAAA"); got != 401 {
		t.Errorf("tampered caller JWT: got %d, want 401", got)
	}

	opaque := issue(opaqueAPI)
	if strings.Count(opaque, ".") == 2 {
		t.Fatalf("oidc-provider issued a JWT for %s, want an opaque token", opaqueAPI)
	}
	before := op.Count("POST /token/introspection")
	for _, g := range []*gateway{a, b, a, b} {
		if got := call(g, "/opaque/1", opaque); got != 200 {
			t.Fatalf("active opaque token: got %d, want 200", got)
		}
	}
	if n := op.Count("POST /token/introspection") - before; n != 1 {
		t.Errorf("introspection requests for one token on two replicas: %d, want 1", n)
	}
	if got := call(a, "/opaque/1", "an-opaque-token-oidc-provider-never-issued"); got != 401 {
		t.Errorf("unknown opaque token: got %d, want 401", got)
	}
	// Revoked: refused once the cached answer (introspection_cache_ttl 2s) ends.
	req, _ := http.NewRequest(http.MethodPost, op.URL+"/token/revocation", strings.NewReader(url.Values{"token": {opaque}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("caller", "caller-secret")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("revocation at oidc-provider: %v", err)
	}
	time.Sleep(2100 * time.Millisecond)
	if got := call(b, "/opaque/1", opaque); got != 401 {
		t.Errorf("revoked opaque token after the cache time: got %d, want 401", got)
	}
}
