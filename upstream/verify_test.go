package upstream_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

const testNonce = "nonce-9d2f"

// foreignKey is an RSA key the authorization server never published.
var foreignKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// verifyEnv is an authorization server and a client sharing a fake clock.
type verifyEnv struct {
	clk *clock
	srv *upstreamtest.Server
	c   *upstream.Client
}

func newVerifyEnv(t testing.TB) *verifyEnv {
	t.Helper()
	clk := newClock()
	srv := newServer(t, upstreamtest.Config{Now: clk.Now})
	return &verifyEnv{clk: clk, srv: srv, c: newClient(t, configFor(srv), upstream.Deps{Now: clk.Now})}
}

// claims are valid ID token claims for the client at the current time.
func (e *verifyEnv) claims() jwt.MapClaims {
	now := e.clk.Now()
	return jwt.MapClaims{
		"iss":            e.srv.Issuer(),
		"sub":            "user-alice",
		"aud":            clientID,
		"iat":            now.Unix(),
		"exp":            now.Add(time.Hour).Unix(),
		"nonce":          testNonce,
		"email":          "alice@example.com",
		"email_verified": true,
		"groups":         []string{"admins"},
	}
}

// sign returns the server's RS256 token for the claims edited by edit.
func (e *verifyEnv) sign(t testing.TB, edit func(jwt.MapClaims)) string {
	t.Helper()
	c := e.claims()
	if edit != nil {
		edit(c)
	}
	s, err := e.srv.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signWith signs claims with method and key, with the given header
// members added.
func signWith(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// halfHash is the at_hash of token for a SHA-256 algorithm.
func halfHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

func TestVerifyIDToken(t *testing.T) {
	e := newVerifyEnv(t)
	pubDER, err := x509.MarshalPKIXPublicKey(e.srv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	skew := 30 * time.Second

	tests := []struct {
		name    string
		token   func(t *testing.T) string
		nonce   upstream.Secret
		access  upstream.Secret
		wantErr bool
	}{
		{name: "valid", token: func(t *testing.T) string { return e.sign(t, nil) }, nonce: testNonce},
		{name: "valid, nonce not checked", token: func(t *testing.T) string { return e.sign(t, func(c jwt.MapClaims) { delete(c, "nonce") }) }},
		{name: "valid, several audiences with azp", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["aud"] = []string{clientID, "other"}; c["azp"] = clientID })
		}, nonce: testNonce},
		{name: "valid, exp within clock skew", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["exp"] = e.clk.Now().Add(-skew + 5*time.Second).Unix() })
		}, nonce: testNonce},
		{name: "valid, iat slightly ahead", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["iat"] = e.clk.Now().Add(10 * time.Second).Unix() })
		}, nonce: testNonce},
		{name: "valid, at_hash matches", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["at_hash"] = halfHash("at-1") })
		}, nonce: testNonce, access: "at-1"},

		{name: "wrong nonce", token: func(t *testing.T) string { return e.sign(t, nil) }, nonce: "another-nonce", wantErr: true},
		{name: "missing nonce", token: func(t *testing.T) string { return e.sign(t, func(c jwt.MapClaims) { delete(c, "nonce") }) }, nonce: testNonce, wantErr: true},
		{name: "nonce prefix", token: func(t *testing.T) string { return e.sign(t, func(c jwt.MapClaims) { c["nonce"] = testNonce[:5] }) }, nonce: testNonce, wantErr: true},
		{name: "wrong aud", token: func(t *testing.T) string { return e.sign(t, func(c jwt.MapClaims) { c["aud"] = "other-client" }) }, nonce: testNonce, wantErr: true},
		{name: "no aud", token: func(t *testing.T) string { return e.sign(t, func(c jwt.MapClaims) { delete(c, "aud") }) }, nonce: testNonce, wantErr: true},
		{name: "several audiences without azp", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["aud"] = []string{clientID, "other"} })
		}, nonce: testNonce, wantErr: true},
		{name: "several audiences, azp another client", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["aud"] = []string{clientID, "other"}; c["azp"] = "other" })
		}, nonce: testNonce, wantErr: true},
		{name: "wrong iss", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })
		}, nonce: testNonce, wantErr: true},
		{name: "iss with trailing slash", token: func(t *testing.T) string { return e.sign(t, func(c jwt.MapClaims) { c["iss"] = e.srv.Issuer() + "/" }) }, nonce: testNonce, wantErr: true},
		{name: "no iss", token: func(t *testing.T) string { return e.sign(t, func(c jwt.MapClaims) { delete(c, "iss") }) }, nonce: testNonce, wantErr: true},
		{name: "expired beyond clock skew", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["exp"] = e.clk.Now().Add(-skew - time.Second).Unix() })
		}, nonce: testNonce, wantErr: true},
		{name: "no exp", token: func(t *testing.T) string { return e.sign(t, func(c jwt.MapClaims) { delete(c, "exp") }) }, nonce: testNonce, wantErr: true},
		{name: "exp as a string", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["exp"] = "9999999999" })
		}, nonce: testNonce, wantErr: true},
		{name: "iat far in the future", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["iat"] = e.clk.Now().Add(time.Hour).Unix() })
		}, nonce: testNonce, wantErr: true},
		{name: "nbf in the future", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["nbf"] = e.clk.Now().Add(time.Hour).Unix() })
		}, nonce: testNonce, wantErr: true},
		{name: "no sub", token: func(t *testing.T) string { return e.sign(t, func(c jwt.MapClaims) { delete(c, "sub") }) }, nonce: testNonce, wantErr: true},
		{name: "wrong at_hash", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["at_hash"] = halfHash("at-2") })
		}, nonce: testNonce, access: "at-1", wantErr: true},
		{name: "alg none", token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, e.claims(), map[string]any{"kid": e.srv.KeyID()})
		}, nonce: testNonce, wantErr: true},
		{name: "alg none, signature of a real token kept", token: func(t *testing.T) string {
			real := strings.Split(e.sign(t, nil), ".")
			none := strings.Split(signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, e.claims(), nil), ".")
			return none[0] + "." + real[1] + "." + real[2]
		}, nonce: testNonce, wantErr: true},
		{name: "HS256 signed with the public key DER", token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodHS256, pubDER, e.claims(), map[string]any{"kid": e.srv.KeyID()})
		}, nonce: testNonce, wantErr: true},
		{name: "HS256 signed with the public key PEM", token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodHS256, pubPEM, e.claims(), map[string]any{"kid": e.srv.KeyID()})
		}, nonce: testNonce, wantErr: true},
		{name: "RS256 with a foreign key under the server's kid", token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodRS256, foreignKey(), e.claims(), map[string]any{"kid": e.srv.KeyID()})
		}, nonce: testNonce, wantErr: true},
		{name: "RS256 with a foreign key, no kid", token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodRS256, foreignKey(), e.claims(), nil)
		}, nonce: testNonce, wantErr: true},
		{name: "RS256 with a foreign key embedded as jwk header", token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodRS256, foreignKey(), e.claims(), map[string]any{"kid": "attacker", "jwk": rsaJWK("attacker", &foreignKey().PublicKey)})
		}, nonce: testNonce, wantErr: true},
		{name: "payload swapped under a valid signature", token: func(t *testing.T) string {
			good := strings.Split(e.sign(t, nil), ".")
			evil := strings.Split(e.sign(t, func(c jwt.MapClaims) { c["sub"] = "user-admin" }), ".")
			return good[0] + "." + evil[1] + "." + good[2]
		}, nonce: testNonce, wantErr: true},
		{name: "signature stripped", token: func(t *testing.T) string {
			p := strings.Split(e.sign(t, nil), ".")
			return p[0] + "." + p[1] + "."
		}, nonce: testNonce, wantErr: true},
		{name: "header alg changed to PS256", token: func(t *testing.T) string {
			p := strings.Split(e.sign(t, nil), ".")
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"PS256","kid":"` + e.srv.KeyID() + `","typ":"JWT"}`))
			return h + "." + p[1] + "." + p[2]
		}, nonce: testNonce, wantErr: true},
		{name: "empty", token: func(*testing.T) string { return "" }, nonce: testNonce, wantErr: true},
		{name: "garbage", token: func(*testing.T) string { return "not.a.jwt" }, nonce: testNonce, wantErr: true},
		{name: "JWE shape (five parts)", token: func(*testing.T) string { return "a.b.c.d.e" }, nonce: testNonce, wantErr: true},
		{name: "1 MB token", token: func(t *testing.T) string {
			return e.sign(t, func(c jwt.MapClaims) { c["pad"] = strings.Repeat("a", 1<<20) })
		}, nonce: testNonce, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.token(t)
			id, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(raw), tt.nonce, tt.access)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("VerifyIDToken: got %v, want nil", err)
				}
				if id.Subject != "user-alice" || id.Email != "alice@example.com" || !id.EmailVerified || !slices.Equal(id.Groups, []string{"admins"}) {
					t.Errorf("Identity: got %+v, want alice's", id)
				}
				return
			}
			if err == nil {
				t.Fatalf("VerifyIDToken: got %+v, want an error", id)
			}
			if !errors.Is(err, upstream.ErrInvalidIDToken) {
				t.Errorf("VerifyIDToken: got %v, want it to wrap ErrInvalidIDToken", err)
			}
			if id != nil {
				t.Errorf("VerifyIDToken: got identity %+v with the error, want nil", id)
			}
		})
	}
}

func TestVerifyIDTokenAlgorithmAllowList(t *testing.T) {
	// The server signs RS256; a client that allows only ES256 refuses it.
	e := newVerifyEnv(t)
	cfg := configFor(e.srv)
	cfg.IDTokenAlgorithms = []string{"ES256"}
	c := newClient(t, cfg, upstream.Deps{Now: e.clk.Now})
	if _, err := c.VerifyIDToken(ctx(t), upstream.Secret(e.sign(t, nil)), testNonce, ""); !errors.Is(err, upstream.ErrInvalidIDToken) {
		t.Errorf("VerifyIDToken: got %v, want ErrInvalidIDToken for RS256 outside the allow-list", err)
	}
}

func TestVerifyIDTokenIgnoresKeyURLHeaders(t *testing.T) {
	// The attack: a token naming the attacker's key set in jku or x5u, so
	// that a naive verifier fetches and trusts it (SECURITY.md 9).
	e := newVerifyEnv(t)
	attacker := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwksJSON(rsaJWK("attacker", &foreignKey().PublicKey)))
	})
	header := map[string]any{
		"kid": "attacker",
		"jku": attacker.URL + "/jwks",
		"x5u": attacker.URL + "/cert.pem",
	}
	raw := signWith(t, jwt.SigningMethodRS256, foreignKey(), e.claims(), header)
	if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(raw), testNonce, ""); !errors.Is(err, upstream.ErrInvalidIDToken) {
		t.Fatalf("VerifyIDToken: got %v, want ErrInvalidIDToken", err)
	}
	if got := attacker.Hits(); got != 0 {
		t.Errorf("requests to the jku/x5u host: got %d, want 0", got)
	}
	if got := e.srv.Count("jwks"); got != 1 {
		t.Errorf("requests to the configured JWKS: got %d, want 1", got)
	}
}

func TestVerifyIDTokenHugeInputsRefusedFast(t *testing.T) {
	// The attack: a token built to make the parser work hard (SECURITY.md 9).
	e := newVerifyEnv(t)
	tests := []struct{ name, raw string }{
		{"100,000 dots", strings.Repeat(".", 100_000)},
		{"60,000 dots (under the size cap)", strings.Repeat(".", 60_000)},
		{"100,000 dotted segments", strings.Repeat("e30.", 100_000)},
		{"1 MB of base64", "eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("A", 1<<20) + ".sig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(tt.raw), testNonce, "")
			elapsed := time.Since(start)
			if !errors.Is(err, upstream.ErrInvalidIDToken) {
				t.Errorf("VerifyIDToken: got %v, want ErrInvalidIDToken", err)
			}
			if elapsed > 50*time.Millisecond {
				t.Errorf("VerifyIDToken took %v, want under 50ms", elapsed)
			}
		})
	}
	if got := e.srv.TotalRequests(); got != 0 {
		t.Errorf("requests to the server: got %d, want 0 (refused before any key lookup)", got)
	}
}

// rsaJWK is the JWK of an RSA public key.
func rsaJWK(kid string, pub *rsa.PublicKey) map[string]any {
	return map[string]any{
		"kty": "RSA",
		"kid": kid,
		"n":   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
}
