package upstreamtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/http"

	"github.com/golang-jwt/jwt/v5"
)

// signingKey is one RSA key the server has signed with.
type signingKey struct {
	id   string
	priv *rsa.PrivateKey
}

// jwk is an RSA public key as a JSON Web Key (RFC 7517, RFC 7518 §6.3.1).
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// newSigningKey generates an RSA-2048 key whose kid is its RFC 7638
// thumbprint, so that distinct keys always have distinct kids.
func newSigningKey() (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	n, e := encodePublic(&priv.PublicKey)
	// RFC 7638 §3.2: the required members in lexicographic order, no spaces.
	sum := sha256.Sum256([]byte(`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`))
	return &signingKey{id: base64.RawURLEncoding.EncodeToString(sum[:]), priv: priv}, nil
}

// encodePublic returns the base64url modulus and exponent of pub.
func encodePublic(pub *rsa.PublicKey) (n, e string) {
	enc := base64.RawURLEncoding
	return enc.EncodeToString(pub.N.Bytes()), enc.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
}

// RotateKeys makes a new RSA-2048 key, with a new kid, the signing key.
// Earlier public keys stay in the JWKS, and tokens they signed stay valid.
// RotateKeys panics if it cannot generate a key.
func (s *Server) RotateKeys() {
	key, err := newSigningKey()
	if err != nil {
		panic("upstreamtest: " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, key)
}

// currentKey returns the signing key.
func (s *Server) currentKey() *signingKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[len(s.keys)-1]
}

// PublicKey returns the public half of the current signing key, which a
// test can misuse as an HMAC secret (the RS256-to-HS256 confusion attack).
func (s *Server) PublicKey() *rsa.PublicKey { return &s.currentKey().priv.PublicKey }

// KeyID returns the kid of the current signing key.
func (s *Server) KeyID() string { return s.currentKey().id }

// Sign returns claims as a JWT signed with RS256 by the current key, whose
// kid is in the header. It is the default ID token signer.
func (s *Server) Sign(claims jwt.MapClaims) (string, error) {
	return s.sign(claims, "JWT")
}

// sign signs claims with the current key and typ as the header's typ.
func (s *Server) sign(claims jwt.MapClaims, typ string) (string, error) {
	key := s.currentKey()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = key.id
	t.Header["typ"] = typ
	signed, err := t.SignedString(key.priv)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return signed, nil
}

// serveJWKS serves every public key the server has had (RFC 7517 §5),
// the current one first.
func (s *Server) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	keys := make([]jwk, 0, len(s.keys))
	for i := len(s.keys) - 1; i >= 0; i-- {
		n, e := encodePublic(&s.keys[i].priv.PublicKey)
		keys = append(keys, jwk{Kty: "RSA", Use: "sig", Alg: "RS256", Kid: s.keys[i].id, N: n, E: e})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Keys []jwk `json:"keys"`
	}{keys})
}

// maxTokenBytes bounds the tokens the server parses; its own are far
// smaller.
const maxTokenBytes = 16 << 10

// errForeignToken is returned for a token that this server did not issue
// or that is not of the expected type.
var errForeignToken = errors.New("token not issued by this server")

// verify parses raw, a JWT this server signed with any of its keys with
// header typ, and returns its claims. Expiry is checked with the server's
// clock unless ignoreExpiry is set (RP-initiated logout accepts expired ID
// token hints).
func (s *Server) verify(raw, typ string, ignoreExpiry bool) (jwt.MapClaims, error) {
	if len(raw) > maxTokenBytes {
		return nil, errForeignToken
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithIssuer(s.URL),
		jwt.WithTimeFunc(s.now),
	}
	if ignoreExpiry {
		opts = append(opts, jwt.WithoutClaimsValidation())
	} else {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		if got, _ := t.Header["typ"].(string); got != typ {
			return nil, errForeignToken
		}
		kid, _ := t.Header["kid"].(string)
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, k := range s.keys {
			if k.id == kid {
				return &k.priv.PublicKey, nil
			}
		}
		return nil, errForeignToken
	}, opts...)
	if err != nil {
		return nil, err
	}
	if ignoreExpiry {
		// WithoutClaimsValidation skipped the issuer check too.
		if iss, _ := claims["iss"].(string); iss != s.URL {
			return nil, errForeignToken
		}
	}
	return claims, nil
}
