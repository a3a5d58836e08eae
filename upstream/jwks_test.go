package upstream_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// refetchWait is longer than the client's least interval between two JWKS
// fetches triggered by unknown kids.
const refetchWait = 6 * time.Second

// jwksJSON is a JWK Set of keys.
func jwksJSON(keys ...map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

// ecJWK is the JWK of an EC public key.
func ecJWK(t *testing.T, kid string, pub *ecdsa.PublicKey) map[string]any {
	t.Helper()
	b, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	size := (len(b) - 1) / 2
	return map[string]any{
		"kty": "EC",
		"kid": kid,
		"crv": pub.Curve.Params().Name,
		"x":   base64.RawURLEncoding.EncodeToString(b[1 : 1+size]),
		"y":   base64.RawURLEncoding.EncodeToString(b[1+size:]),
	}
}

// edJWK is the JWK of an Ed25519 public key.
func edJWK(kid string, pub ed25519.PublicKey) map[string]any {
	return map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": base64.RawURLEncoding.EncodeToString(pub)}
}

// jwksEnv is a client whose discovery comes from upstreamtest but whose
// JWKS is served by a fake the test controls.
type jwksEnv struct {
	*verifyEnv
	jwks    *fake
	body    atomic.Pointer[[]byte]
	handler atomic.Pointer[http.HandlerFunc] // nil: serve body
}

func newJWKSEnv(t *testing.T, keys ...map[string]any) *jwksEnv {
	t.Helper()
	e := &jwksEnv{verifyEnv: &verifyEnv{clk: newClock()}}
	e.srv = newServer(t, upstreamtest.Config{Now: e.clk.Now})
	e.setKeys(keys...)
	e.jwks = newFake(t, func(w http.ResponseWriter, r *http.Request) {
		if h := e.handler.Load(); h != nil {
			(*h)(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(*e.body.Load())
	})
	cfg := configFor(e.srv)
	cfg.JWKSURI = e.jwks.URL + "/jwks"
	e.c = newClient(t, cfg, upstream.Deps{Now: e.clk.Now})
	return e
}

// serve makes the JWKS endpoint answer with h.
func (e *jwksEnv) serve(h http.HandlerFunc) { e.handler.Store(&h) }

func (e *jwksEnv) setKeys(keys ...map[string]any) {
	b := jwksJSON(keys...)
	e.body.Store(&b)
}

func TestJWKSKeyTypes(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey := foreignKey()

	e := newJWKSEnv(t,
		map[string]any{"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},                        // skipped
		map[string]any{"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"}, // skipped
		ecJWK(t, "p256", &p256.PublicKey),
		ecJWK(t, "p384", &p384.PublicKey),
		ecJWK(t, "p521", &p521.PublicKey),
		edJWK("ed", edPub),
		rsaJWK("rsa", &rsaKey.PublicKey),
	)
	tests := []struct {
		name   string
		method jwt.SigningMethod
		key    crypto.Signer
		kid    string
		hash   func([]byte) []byte // at_hash digest
	}{
		{"ES256 P-256", jwt.SigningMethodES256, p256, "p256", sha256Sum},
		{"ES384 P-384", jwt.SigningMethodES384, p384, "p384", func(b []byte) []byte { s := sha512.Sum384(b); return s[:] }},
		{"ES512 P-521", jwt.SigningMethodES512, p521, "p521", func(b []byte) []byte { s := sha512.Sum512(b); return s[:] }},
		{"EdDSA Ed25519", jwt.SigningMethodEdDSA, edPriv, "ed", func(b []byte) []byte { s := sha512.Sum512(b); return s[:] }},
		{"PS256 RSA", jwt.SigningMethodPS256, rsaKey, "rsa", sha256Sum},
		{"RS512 RSA", jwt.SigningMethodRS512, rsaKey, "rsa", func(b []byte) []byte { s := sha512.Sum512(b); return s[:] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims := e.claims()
			sum := tt.hash([]byte("at-1"))
			claims["at_hash"] = base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
			raw := signWith(t, tt.method, tt.key, claims, map[string]any{"kid": tt.kid})
			id, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(raw), testNonce, "at-1")
			if err != nil {
				t.Fatalf("VerifyIDToken: got %v, want nil", err)
			}
			if id.Subject != "user-alice" {
				t.Errorf("Subject: got %q, want user-alice", id.Subject)
			}
			if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(raw), testNonce, "at-2"); !errors.Is(err, upstream.ErrInvalidIDToken) {
				t.Errorf("VerifyIDToken with another access token: got %v, want an at_hash error", err)
			}
		})
	}
	if got := e.jwks.Hits(); got != 1 {
		t.Errorf("JWKS requests: got %d, want 1", got)
	}
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestJWKSKeyWithoutKid(t *testing.T) {
	a, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	noKid := func(k map[string]any) map[string]any { delete(k, "kid"); return k }

	t.Run("one key fits", func(t *testing.T) {
		e := newJWKSEnv(t, noKid(ecJWK(t, "", &a.PublicKey)), rsaJWK("rsa", &foreignKey().PublicKey))
		raw := signWith(t, jwt.SigningMethodES256, a, e.claims(), nil)
		if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(raw), testNonce, ""); err != nil {
			t.Errorf("VerifyIDToken: got %v, want nil", err)
		}
	})
	t.Run("two keys fit", func(t *testing.T) {
		// Ambiguous: the client must not try keys until one works.
		e := newJWKSEnv(t, noKid(ecJWK(t, "", &a.PublicKey)), noKid(ecJWK(t, "", &b.PublicKey)))
		raw := signWith(t, jwt.SigningMethodES256, a, e.claims(), nil)
		if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(raw), testNonce, ""); !errors.Is(err, upstream.ErrInvalidIDToken) {
			t.Errorf("VerifyIDToken: got %v, want ErrInvalidIDToken", err)
		}
	})
}

func TestJWKSKeyTypeConfusion(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey := foreignKey()
	withAlg := func(k map[string]any, alg string) map[string]any { k["alg"] = alg; return k }

	tests := []struct {
		name   string
		keys   []map[string]any
		method jwt.SigningMethod
		key    crypto.Signer
		kid    string
	}{
		// An RSA key is never offered to an ES256 verifier.
		{"ES256 token, RSA key under its kid", []map[string]any{rsaJWK("k", &rsaKey.PublicKey)}, jwt.SigningMethodES256, ec, "k"},
		{"RS256 token, EC key under its kid", []map[string]any{ecJWK(t, "k", &ec.PublicKey)}, jwt.SigningMethodRS256, rsaKey, "k"},
		{"ES384 token, P-256 key under its kid", []map[string]any{ecJWK(t, "k", &ec.PublicKey)}, jwt.SigningMethodES384, ec384, "k"},
		{"EdDSA token, RSA key under its kid", []map[string]any{rsaJWK("k", &rsaKey.PublicKey)}, jwt.SigningMethodEdDSA, edPriv, "k"},
		{"ES256 token, Ed25519 key under its kid", []map[string]any{edJWK("k", edPub)}, jwt.SigningMethodES256, ec, "k"},
		{"PS256 token, key restricted to RS256", []map[string]any{withAlg(rsaJWK("k", &rsaKey.PublicKey), "RS256")}, jwt.SigningMethodPS256, rsaKey, "k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newJWKSEnv(t, tt.keys...)
			raw := signWith(t, tt.method, tt.key, e.claims(), map[string]any{"kid": tt.kid})
			if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(raw), testNonce, ""); !errors.Is(err, upstream.ErrInvalidIDToken) {
				t.Errorf("VerifyIDToken: got %v, want ErrInvalidIDToken", err)
			}
		})
	}
}

func TestJWKSWeakOrMalformedKeysRefused(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	offCurve := ecJWK(t, "k", &ec.PublicKey)
	offCurve["y"] = offCurve["x"]
	tests := []struct {
		name   string
		keys   []map[string]any
		method jwt.SigningMethod
		key    crypto.Signer
	}{
		{"RSA 1024-bit", []map[string]any{rsaJWK("k", &weak.PublicKey)}, jwt.SigningMethodRS256, weak},
		{"EC point not on the curve", []map[string]any{offCurve}, jwt.SigningMethodES256, ec},
		{"only encryption keys", []map[string]any{func() map[string]any { k := ecJWK(t, "k", &ec.PublicKey); k["use"] = "enc"; return k }()}, jwt.SigningMethodES256, ec},
		{"unsupported curve", []map[string]any{func() map[string]any { k := ecJWK(t, "k", &ec.PublicKey); k["crv"] = "secp256k1"; return k }()}, jwt.SigningMethodES256, ec},
		{"no keys", nil, jwt.SigningMethodES256, ec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newJWKSEnv(t, tt.keys...)
			raw := signWith(t, tt.method, tt.key, e.claims(), map[string]any{"kid": "k"})
			if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(raw), testNonce, ""); !errors.Is(err, upstream.ErrInvalidIDToken) {
				t.Errorf("VerifyIDToken: got %v, want ErrInvalidIDToken", err)
			}
		})
	}
}

func TestJWKSUnusableKeyLeavesTheOthers(t *testing.T) {
	// Regression: one legacy 1024-bit key or an exotic curve in the set
	// made every login fail.
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	exotic := ecJWK(t, "exotic", &good.PublicKey)
	exotic["crv"] = "secp256k1"
	e := newJWKSEnv(t, rsaJWK("weak", &weak.PublicKey), exotic, ecJWK(t, "good", &good.PublicKey))
	raw := signWith(t, jwt.SigningMethodES256, good, e.claims(), map[string]any{"kid": "good"})
	if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(raw), testNonce, ""); err != nil {
		t.Errorf("token signed with the good key: %v", err)
	}
	raw = signWith(t, jwt.SigningMethodRS256, weak, e.claims(), map[string]any{"kid": "weak"})
	if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(raw), testNonce, ""); !errors.Is(err, upstream.ErrInvalidIDToken) {
		t.Errorf("token signed with the weak key: got %v, want ErrInvalidIDToken", err)
	}
}

func TestJWKSKeyRotation(t *testing.T) {
	e := newVerifyEnv(t)
	before := e.sign(t, nil)
	if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(before), testNonce, ""); err != nil {
		t.Fatalf("VerifyIDToken before rotation: %v", err)
	}
	e.srv.RotateKeys()
	after := e.sign(t, nil)

	// Right after a fetch, an unknown kid does not trigger another one.
	if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(after), testNonce, ""); !errors.Is(err, upstream.ErrInvalidIDToken) {
		t.Errorf("VerifyIDToken within the refetch interval: got %v, want ErrInvalidIDToken", err)
	}
	if got := e.srv.Count("jwks"); got != 1 {
		t.Errorf("JWKS requests within the refetch interval: got %d, want 1", got)
	}

	e.clk.Advance(refetchWait)
	if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(e.sign(t, nil)), testNonce, ""); err != nil {
		t.Fatalf("VerifyIDToken with the new kid after the interval: got %v, want nil", err)
	}
	if got := e.srv.Count("jwks"); got != 2 {
		t.Errorf("JWKS requests: got %d, want 2 (one re-fetch for the new kid)", got)
	}
	// Tokens signed before the rotation still verify: the old key is kept.
	if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(before), testNonce, ""); err != nil {
		t.Errorf("VerifyIDToken with the old kid: got %v, want nil", err)
	}
	if got := e.srv.Count("jwks"); got != 2 {
		t.Errorf("JWKS requests: got %d, want 2", got)
	}
}

// forgedKid is a token signed by a foreign key under a random kid.
func forgedKid(t *testing.T, e *verifyEnv) upstream.Secret {
	t.Helper()
	return upstream.Secret(signWith(t, jwt.SigningMethodRS256, foreignKey(), e.claims(), map[string]any{"kid": rand.Text()}))
}

func TestJWKSUnknownKidRefetchLimited(t *testing.T) {
	// The attack: a stream of tokens with forged kids, to turn the gateway
	// into a flood source against the authorization server's JWKS.
	e := newVerifyEnv(t)
	if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(e.sign(t, nil)), testNonce, ""); err != nil {
		t.Fatalf("VerifyIDToken: %v", err)
	}
	verifyForged := func(n int) {
		t.Helper()
		for range n {
			if _, err := e.c.VerifyIDToken(ctx(t), forgedKid(t, e), testNonce, ""); !errors.Is(err, upstream.ErrInvalidIDToken) {
				t.Fatalf("VerifyIDToken with a forged kid: got %v, want ErrInvalidIDToken", err)
			}
		}
	}
	verifyForged(20)
	if got := e.srv.Count("jwks"); got != 1 {
		t.Errorf("JWKS requests after 20 forged kids within the interval: got %d, want 1", got)
	}
	for i := 2; i <= 4; i++ {
		e.clk.Advance(refetchWait)
		verifyForged(20)
		if got := e.srv.Count("jwks"); got != i {
			t.Errorf("JWKS requests after interval %d: got %d, want %d", i-1, got, i)
		}
	}

	t.Run("concurrent", func(t *testing.T) {
		e.clk.Advance(refetchWait)
		base := e.srv.Count("jwks")
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if _, err := e.c.VerifyIDToken(ctx(t), forgedKid(t, e), testNonce, ""); err == nil {
					t.Error("VerifyIDToken with a forged kid: got nil error")
				}
			})
		}
		wg.Wait()
		if got := e.srv.Count("jwks") - base; got != 1 {
			t.Errorf("JWKS requests for 50 concurrent forged kids: got %d, want 1", got)
		}
	})
}

func TestJWKSFailingServerNotFlooded(t *testing.T) {
	// The same attack while the JWKS endpoint is failing: every forged kid
	// must not become another request to a server already in trouble.
	e := newJWKSEnv(t, rsaJWK("rsa", &foreignKey().PublicKey))
	var failing atomic.Bool
	e.serve(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		w.Write(*e.body.Load())
	})
	good := signWith(t, jwt.SigningMethodRS256, foreignKey(), e.claims(), map[string]any{"kid": "rsa"})
	if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(good), testNonce, ""); err != nil {
		t.Fatalf("VerifyIDToken: %v", err)
	}
	failing.Store(true)
	e.clk.Advance(refetchWait)
	for range 20 {
		if _, err := e.c.VerifyIDToken(ctx(t), forgedKid(t, e.verifyEnv), testNonce, ""); !errors.Is(err, upstream.ErrInvalidIDToken) {
			t.Fatalf("VerifyIDToken with a forged kid: got %v, want ErrInvalidIDToken", err)
		}
	}
	if got := e.jwks.Hits(); got != 2 {
		t.Errorf("JWKS requests: got %d, want 2 (the first fetch and one failed re-fetch)", got)
	}
	// The known key keeps working while the endpoint fails.
	if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(good), testNonce, ""); err != nil {
		t.Errorf("VerifyIDToken with a known kid while the JWKS fails: got %v, want nil", err)
	}
	// After the interval the endpoint is tried again.
	failing.Store(false)
	e.clk.Advance(refetchWait)
	if _, err := e.c.VerifyIDToken(ctx(t), forgedKid(t, e.verifyEnv), testNonce, ""); !errors.Is(err, upstream.ErrInvalidIDToken) {
		t.Fatalf("VerifyIDToken with a forged kid: got %v, want ErrInvalidIDToken", err)
	}
	if got := e.jwks.Hits(); got != 3 {
		t.Errorf("JWKS requests after the interval: got %d, want 3", got)
	}
}

func TestJWKSUnavailable(t *testing.T) {
	e := newJWKSEnv(t)
	e.serve(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	})
	_, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(e.sign(t, nil)), testNonce, "")
	if !errors.Is(err, upstream.ErrInvalidIDToken) || !errors.Is(err, upstream.ErrUnavailable) {
		t.Errorf("VerifyIDToken: got %v, want ErrInvalidIDToken and ErrUnavailable", err)
	}
}

func TestJWKSOversized(t *testing.T) {
	t.Run("2 MB", func(t *testing.T) {
		e := newJWKSEnv(t)
		pad := `{"keys":[],"pad":"` + strings.Repeat("a", 2<<20) + `"}`
		e.serve(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(pad)) })
		if _, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(e.sign(t, nil)), testNonce, ""); !errors.Is(err, upstream.ErrInvalidIDToken) {
			t.Errorf("VerifyIDToken: got %v, want ErrInvalidIDToken", err)
		}
	})

	t.Run("1 GB stream, bounded", func(t *testing.T) {
		e := newJWKSEnv(t)
		var written atomic.Int64
		done := make(chan struct{})
		e.serve(func(w http.ResponseWriter, r *http.Request) {
			defer close(done)
			chunk := []byte(strings.Repeat(" ", 64<<10))
			w.Write([]byte(`{"keys":[`))
			for written.Load() < 1<<30 {
				n, err := w.Write(chunk)
				written.Add(int64(n))
				if err != nil {
					return
				}
			}
		})
		start := time.Now()
		_, err := e.c.VerifyIDToken(ctx(t), upstream.Secret(e.sign(t, nil)), testNonce, "")
		if !errors.Is(err, upstream.ErrInvalidIDToken) {
			t.Errorf("VerifyIDToken: got %v, want ErrInvalidIDToken", err)
		}
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Errorf("VerifyIDToken took %v, want the read cut short", elapsed)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the JWKS handler is still writing: the client did not hang up")
		}
		if got := written.Load(); got > 64<<20 {
			t.Errorf("JWKS bytes sent before the client hung up: got %d, want well under 64 MB", got)
		}
	})
}
