package upstream_test

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream"
)

// FuzzVerifyTokens: whatever a caller, a browser or a server sends as an
// ID token, a caller's access token or a logout token, verification never
// panics, and only the tokens the server really signed (the seeds) pass.
func FuzzVerifyTokens(f *testing.F) {
	e := newVerifyEnv(f)
	signed := map[string]bool{}
	id := e.sign(f, nil)
	logout, err := e.srv.SignTyped(logoutClaims(e), "logout+jwt")
	if err != nil {
		f.Fatal(err)
	}
	now := e.clk.Now()
	access, err := e.srv.SignTyped(jwt.MapClaims{"iss": e.srv.Issuer(), "sub": "svc", "aud": clientID, "client_id": "caller",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "scope": "api"}, "at+jwt")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{id, logout, access} {
		signed[s] = true
		f.Add(s)
		f.Add(s[:len(s)-3])
	}
	for _, s := range []string{"", ".", "..", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "eyJhbGciOiJIUzI1NiJ9.e30.x", "eyJ" + string(make([]byte, 64))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(raw), testNonce, ""); err == nil && raw != id {
			t.Fatalf("VerifyIDToken accepted %q", raw)
		}
		if _, err := e.c.VerifyLogoutToken(ctx(t), upstream.Secret(raw)); err == nil && raw != logout {
			t.Fatalf("VerifyLogoutToken accepted %q", raw)
		}
		if _, err := e.c.VerifyAccessToken(ctx(t), raw, clientID); err == nil && !signed[raw] {
			t.Fatalf("VerifyAccessToken accepted %q", raw)
		}
	})
}

// BenchmarkVerifyAccessToken: a caller's JWT access token (RS256, the key
// set already fetched) checked in full, as the gateway does on a cache
// miss; the proxy caches the outcome under a keyed hash of the token
// (BenchmarkGatewayCallerJWT).
func BenchmarkVerifyAccessToken(b *testing.B) {
	e := newVerifyEnv(b)
	now := e.clk.Now()
	access, err := e.srv.SignTyped(jwt.MapClaims{"iss": e.srv.Issuer(), "sub": "svc", "aud": clientID, "client_id": "caller",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "scope": "api"}, "at+jwt")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.c.VerifyAccessToken(b.Context(), access, clientID); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.c.VerifyAccessToken(b.Context(), access, clientID); err != nil {
			b.Fatal(err)
		}
	}
}
