package proxy_test

import (
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// acceptBearer makes the test gateway's route take caller tokens meant for
// audience (empty: the client id).
func acceptBearer(audience string) func(*proxy.Config, *session.Config, *upstream.Config) {
	return func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Routes[0].AcceptBearer = true
		pc.Routes[0].Audience = audience
	}
}

// accessClaims are the claims of a valid RFC 9068 access token of e's
// server for aud.
func accessClaims(e *env, aud string) jwt.MapClaims {
	now := e.clock.Now()
	return jwt.MapClaims{"iss": e.idp.URL, "sub": "svc-caller", "aud": aud, "client_id": "caller-app",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "scope": "orders.read", "email": "caller@example.com", "groups": []string{"robots"}}
}

func signAT(t *testing.T, e *env, c jwt.MapClaims, typ string) string {
	t.Helper()
	raw, err := e.idp.SignTyped(c, typ)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// apiCall sends one API request with a bearer token.
func apiCall(t *testing.T, g *gateway, path, token string) (*http.Response, string) {
	t.Helper()
	req := mustRequest(t, http.MethodGet, g.URL+path, nil)
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestCallerJWT: a caller's own JWT access token passes through as is, with
// identity headers from its claims; every kind of bad token gets 401
// invalid_token and never reaches the backend (SECURITY.md 9, 22).
func TestCallerJWT(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: acceptBearer("urn:orders")})
	good := signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")
	// The default audience is the client id: the gateway's own ID tokens
	// must not pass there either.
	dflt := e.gateway(gatewayOptions{mutate: acceptBearer("")})
	if resp, _ := apiCall(t, dflt, "/x", signAT(t, e, jwt.MapClaims{"iss": e.idp.URL, "sub": "u", "aud": "authgate",
		"iat": e.clock.Now().Unix(), "exp": e.clock.Now().Add(time.Hour).Unix()}, "JWT")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an ID-token-shaped JWT on a route whose audience is the client id: got %d, want 401", resp.StatusCode)
	}
	if resp, _ := apiCall(t, dflt, "/x", signAT(t, e, accessClaims(e, "authgate"), "JWT")); resp.StatusCode != http.StatusOK {
		t.Errorf("an access token (scope, client_id) for the client id: got %d, want 200", resp.StatusCode)
	}

	resp, _ := apiCall(t, g, "/orders/1", good)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid caller JWT: got %d, want 200", resp.StatusCode)
	}
	req := e.backend.last(t)
	if got := req.Header.Get("Authorization"); got != "Bearer "+good {
		t.Errorf("backend got Authorization %q, want the caller's token as is", got)
	}
	if req.Header.Get("X-Forwarded-User") != "svc-caller" || req.Header.Get("X-Forwarded-Groups") != "robots" {
		t.Errorf("identity headers from the token: user %q groups %q, want svc-caller, robots", req.Header.Get("X-Forwarded-User"), req.Header.Get("X-Forwarded-Groups"))
	}
	for _, c := range resp.Cookies() {
		t.Errorf("a bearer request got a cookie: %s", c.Name)
	}
	// RFC 9068 typ, plain JWT typ and none are all access tokens.
	for _, typ := range []string{"JWT", "application/at+jwt"} {
		if resp, _ := apiCall(t, g, "/x", signAT(t, e, accessClaims(e, "urn:orders"), typ)); resp.StatusCode != 200 {
			t.Errorf("caller JWT with typ %q: got %d, want 200", typ, resp.StatusCode)
		}
	}

	mutate := func(f func(jwt.MapClaims)) string {
		c := accessClaims(e, "urn:orders")
		f(c)
		return signAT(t, e, c, "at+jwt")
	}
	der, _ := x509.MarshalPKIXPublicKey(e.idp.PublicKey())
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, accessClaims(e, "urn:orders"))
	hs.Header["kid"] = e.idp.KeyID()
	hsRaw, _ := hs.SignedString(der)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, accessClaims(e, "urn:orders")).SignedString(jwt.UnsafeAllowNoneSignatureType)
	foreign := jwt.NewWithClaims(jwt.SigningMethodRS256, accessClaims(e, "urn:orders"))
	foreign.Header["kid"] = "attacker"
	foreignRaw, _ := foreign.SignedString(attackerKey(t))
	idClaims := accessClaims(e, "urn:orders")
	idClaims["nonce"] = "n"
	idToken := signAT(t, e, idClaims, "JWT")
	idTokenJWT := signAT(t, e, jwt.MapClaims{"iss": e.idp.URL, "sub": "u", "aud": "urn:orders", "exp": e.clock.Now().Add(time.Hour).Unix(), "at_hash": "x"}, "JWT")
	for name, tok := range map[string]string{
		"expired":                    mutate(func(c jwt.MapClaims) { c["exp"] = e.clock.Now().Add(-2 * time.Minute).Unix() }),
		"not yet valid":              mutate(func(c jwt.MapClaims) { c["nbf"] = e.clock.Now().Add(5 * time.Minute).Unix() }),
		"no exp":                     mutate(func(c jwt.MapClaims) { delete(c, "exp") }),
		"wrong iss":                  mutate(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }),
		"wrong aud":                  mutate(func(c jwt.MapClaims) { c["aud"] = "urn:other" }),
		"the client id as aud":       mutate(func(c jwt.MapClaims) { c["aud"] = "authgate" }),
		"tampered":                   good[:len(good)-6] + "AAAAAA",
		"alg none":                   none,
		"HS256 with the public key":  hsRaw,
		"unknown kid, foreign key":   foreignRaw,
		"an ID token (nonce)":        idToken,
		"an ID token (at_hash, JWT)": idTokenJWT,
		"a refreshed ID token (no nonce, no hash; aud the client)": signAT(t, e, jwt.MapClaims{"iss": e.idp.URL, "sub": "u", "aud": "authgate",
			"iat": e.clock.Now().Unix(), "exp": e.clock.Now().Add(time.Hour).Unix(), "auth_time": e.clock.Now().Unix()}, "JWT"),
		"typ of something else":        signAT(t, e, accessClaims(e, "urn:orders"), "logout+jwt"),
		"garbage":                      "not-a-token",
		"60000 dots":                   strings.Repeat(".", 60000),
		"a valid token for another rt": signAT(t, e, accessClaims(e, "authgate"), "at+jwt"),
	} {
		t.Run(name, func(t *testing.T) {
			before := e.backend.count()
			resp, body := apiCall(t, g, "/orders/1", tok)
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("got %d %q, want 401 with error=\"invalid_token\"", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
			if strings.Contains(body, tok) && len(tok) > 20 {
				t.Errorf("the 401 body echoes the token")
			}
			if e.backend.count() != before {
				t.Errorf("the backend was called with a refused token")
			}
		})
	}

	// Without a token the route's own grant applies: a browser logs in.
	b := newBrowser(t)
	if resp := b.login(t, g, "/"); resp.StatusCode != 200 {
		t.Errorf("browser without a bearer token: got %d, want the login", resp.StatusCode)
	}
}

// TestCallerJWTExpiresInCache: a token validated once (and cached) stops
// working at its exp, cache or not.
func TestCallerJWTExpiresInCache(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: acceptBearer("urn:orders")})
	c := accessClaims(e, "urn:orders")
	c["exp"] = e.clock.Now().Add(90 * time.Second).Unix()
	tok := signAT(t, e, c, "at+jwt")
	for range 3 {
		if resp, _ := apiCall(t, g, "/x", tok); resp.StatusCode != 200 {
			t.Fatalf("got %d, want 200", resp.StatusCode)
		}
	}
	e.clock.Advance(90*time.Second + 61*time.Second) // past exp and the leeway
	if resp, _ := apiCall(t, g, "/x", tok); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a cached token past its exp: got %d, want 401", resp.StatusCode)
	}
}

// TestCallerTokenNotAcceptedWithoutAcceptBearer: on a route without
// accept_bearer a caller's Authorization never reaches the backend.
func TestCallerTokenNotAcceptedWithoutAcceptBearer(t *testing.T) {
	e := newEnv(t, envOptions{idp: upstreamtest.Config{}})
	g := e.gateway(gatewayOptions{})
	tok := signAT(t, e, accessClaims(e, "authgate"), "at+jwt")
	if resp, _ := apiCall(t, g, "/x", tok); resp.StatusCode != http.StatusUnauthorized || e.backend.count() != 0 {
		t.Errorf("caller token on a route without accept_bearer: got %d, backend calls %d; want 401 and none", resp.StatusCode, e.backend.count())
	}
}

// TestCallerJWTUnknownKidRefetchesOnce: a burst of tokens naming unknown
// keys costs one JWKS re-fetch, not one per token (SECURITY.md 9).
func TestCallerJWTUnknownKidRefetchesOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: acceptBearer("urn:orders")})
	if resp, _ := apiCall(t, g, "/x", signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")); resp.StatusCode != 200 {
		t.Fatalf("valid token: %d", resp.StatusCode)
	}
	e.clock.Advance(6 * time.Second) // past the least time between re-fetches
	before := e.idp.Count("jwks")
	for i := range 20 {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, accessClaims(e, "urn:orders"))
		tok.Header["kid"] = fmt.Sprintf("forged-%d", i)
		raw, _ := tok.SignedString(attackerKey(t))
		if resp, _ := apiCall(t, g, "/x", raw); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("token with an unknown kid: got %d, want 401", resp.StatusCode)
		}
	}
	if n := e.idp.Count("jwks") - before; n != 1 {
		t.Errorf("JWKS fetches for 20 unknown kids: %d, want 1", n)
	}
}
