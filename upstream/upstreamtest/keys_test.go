package upstreamtest_test

import (
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

// jwks fetches the server's key set, by kid.
func jwks(t *testing.T, srv *upstreamtest.Server) map[string]*rsa.PublicKey {
	t.Helper()
	resp, body := get(t, srv.URL+"/jwks", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /jwks: got %d, want 200", resp.StatusCode)
	}
	var set struct {
		Keys []struct{ Kty, Use, Alg, Kid, N, E string }
	}
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatal(err)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" || k.Use != "sig" || k.Alg != "RS256" || k.Kid == "" {
			t.Errorf("got key %+v, want kty RSA, use sig, alg RS256, a kid", k)
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil {
			t.Fatalf("key %s: bad n or e", k.Kid)
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	return keys
}

// parseIDToken verifies an ID token with the server's JWKS.
func parseIDToken(t *testing.T, srv *upstreamtest.Server, raw string) (*jwt.Token, jwt.MapClaims) {
	t.Helper()
	keys := jwks(t, srv)
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(raw, claims, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		return keys[kid], nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(srv.Issuer()), jwt.WithAudience(clientID), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("id_token: %v", err)
	}
	return tok, claims
}

func TestIDToken(t *testing.T) {
	for _, groupsInUserinfoOnly := range []bool{false, true} {
		srv := newServer(t, upstreamtest.Config{GroupsInUserinfoOnly: groupsInUserinfoOnly})
		res := login(t, srv)

		tok, claims := parseIDToken(t, srv, res.IDToken)
		if got := tok.Header["kid"]; got != srv.KeyID() {
			t.Errorf("kid: got %v, want %s", got, srv.KeyID())
		}
		// The key the JWKS serves is the key PublicKey returns.
		if _, err := jwt.Parse(res.IDToken, func(*jwt.Token) (any, error) { return srv.PublicKey(), nil }, jwt.WithValidMethods([]string{"RS256"})); err != nil {
			t.Errorf("verify with PublicKey(): %v", err)
		}
		sum := sha256.Sum256([]byte(res.AccessToken))
		want := map[string]any{
			"sub":                "user-alice",
			"nonce":              "nonce-456",
			"at_hash":            base64.RawURLEncoding.EncodeToString(sum[:16]),
			"email":              "alice@example.com",
			"email_verified":     true,
			"name":               "Alice Example",
			"preferred_username": "alice",
		}
		for k, v := range want {
			if claims[k] != v {
				t.Errorf("GroupsInUserinfoOnly=%v: claim %s: got %v, want %v", groupsInUserinfoOnly, k, claims[k], v)
			}
		}
		for _, k := range []string{"iat", "exp", "auth_time"} {
			if _, ok := claims[k].(float64); !ok {
				t.Errorf("claim %s: got %v, want a number", k, claims[k])
			}
		}
		groups, hasGroups := claims["groups"]
		if hasGroups == groupsInUserinfoOnly {
			t.Errorf("GroupsInUserinfoOnly=%v: got groups %v", groupsInUserinfoOnly, groups)
		}

		// OpenID Connect Core §12.2: no nonce after a refresh.
		refreshed := refresh(t, srv, goodAuth, res.RefreshToken)
		_, claims = parseIDToken(t, srv, refreshed.IDToken)
		if _, ok := claims["nonce"]; ok {
			t.Errorf("refreshed id_token: got nonce %v, want none", claims["nonce"])
		}
	}
}

func TestNoIDTokenWithoutOpenID(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	p := newPKCE()
	q := authParams(p)
	q.Set("scope", "email")
	res := exchange(t, srv, code(t, srv, q), p.verifier)
	if res.IDToken != "" || res.RefreshToken == "" {
		t.Errorf("scope email: got id_token %v refresh %v, want no id_token and a refresh token", res.IDToken != "", res.RefreshToken != "")
	}
}

func TestRotateKeys(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	before := login(t, srv)
	oldKid := srv.KeyID()
	srv.RotateKeys()
	newKid := srv.KeyID()
	if newKid == oldKid {
		t.Fatalf("after RotateKeys: got the same kid %q", newKid)
	}
	keys := jwks(t, srv)
	if len(keys) != 2 || keys[oldKid] == nil || keys[newKid] == nil {
		t.Fatalf("JWKS: got kids %v, want %s and %s", keys, oldKid, newKid)
	}
	if !keys[newKid].Equal(srv.PublicKey()) {
		t.Errorf("JWKS key %s is not PublicKey()", newKid)
	}
	after := login(t, srv)
	if tok, _ := parseIDToken(t, srv, after.IDToken); tok.Header["kid"] != newKid {
		t.Errorf("new id_token kid: got %v, want %s", tok.Header["kid"], newKid)
	}
	if tok, _ := parseIDToken(t, srv, before.IDToken); tok.Header["kid"] != oldKid {
		t.Errorf("old id_token kid: got %v, want %s", tok.Header["kid"], oldKid)
	}
	// Tokens signed before the rotation stay valid.
	if sub := subject(t, srv, before.AccessToken); sub != "user-alice" {
		t.Errorf("userinfo with a pre-rotation token: got sub %q, want user-alice", sub)
	}
}

func TestIDTokenSigner(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	srv.SetIDTokenSigner(func(claims jwt.MapClaims) (string, error) {
		claims["aud"] = "someone-else"
		return jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	})
	res := login(t, srv)
	tok, _, err := jwt.NewParser().ParseUnverified(res.IDToken, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Method.Alg() != "none" || tok.Claims.(jwt.MapClaims)["aud"] != "someone-else" || tok.Claims.(jwt.MapClaims)["nonce"] != "nonce-456" {
		t.Errorf("custom signer: got alg %s claims %v, want none, aud someone-else, nonce-456", tok.Method.Alg(), tok.Claims)
	}

	srv.SetIDTokenSigner(nil)
	res = login(t, srv)
	if tok, _ := parseIDToken(t, srv, res.IDToken); tok.Method.Alg() != "RS256" {
		t.Errorf("default signer: got alg %s, want RS256", tok.Method.Alg())
	}
}

func TestSign(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	raw, err := srv.Sign(jwt.MapClaims{"sub": "x"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return srv.PublicKey(), nil }, jwt.WithValidMethods([]string{"RS256"}))
	if err != nil {
		t.Fatalf("verify with PublicKey(): %v", err)
	}
	if tok.Header["kid"] != srv.KeyID() {
		t.Errorf("got kid %v, want %s", tok.Header["kid"], srv.KeyID())
	}
}
