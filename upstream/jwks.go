package upstream

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// refetchInterval is the least time between two JWKS fetches triggered by an
// unknown "kid", so forged kids cannot turn the gateway into a flood source.
const refetchInterval = 5 * time.Second

// keySet is the authorization server's JWKS, fetched on first use and again
// when a token names a key it does not hold (key rotation). Concurrent
// re-fetches collapse into one.
type keySet struct {
	c       *Client
	mu      sync.RWMutex
	keys    []jwk
	fetched time.Time
	flights singleflight.Group
}

// jwk is one parsed public key.
type jwk struct {
	kid string
	alg string // may be empty
	key any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// newKeySet returns a key set fetched through c.
func newKeySet(c *Client) *keySet { return &keySet{c: c} }

// errUnknownKey is wrapped when no key in the set matches a token.
var errUnknownKey = errors.New("no matching key in the JWKS")

// lookup returns the key for a token header's kid and alg, re-fetching the
// set once when the kid is unknown.
func (s *keySet) lookup(ctx context.Context, kid, alg string) (any, error) {
	s.mu.RLock()
	k, ok := match(s.keys, kid, alg)
	stale := s.staleLocked()
	s.mu.RUnlock()
	if ok {
		return k, nil
	}
	if !stale {
		return nil, fmt.Errorf("%w (kid %q)", errUnknownKey, kid)
	}
	if _, err, _ := s.flights.Do("jwks", func() (any, error) {
		// A caller that saw the set stale may arrive just after another
		// flight ended: it must not start a second fetch within the interval.
		s.mu.RLock()
		stale := s.staleLocked()
		s.mu.RUnlock()
		if !stale {
			return nil, nil
		}
		return nil, s.refresh(context.WithoutCancel(ctx))
	}); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if k, ok := match(s.keys, kid, alg); ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w (kid %q)", errUnknownKey, kid)
}

// staleLocked reports whether the set may be fetched again: never fetched,
// or not within refetchInterval. s.mu is held.
func (s *keySet) staleLocked() bool {
	return s.keys == nil || s.c.now().Sub(s.fetched) >= refetchInterval
}

// refresh fetches the JWKS and replaces the held keys. A failed fetch
// counts as a fetch for refetchInterval too, so that forged kids cannot
// hammer a JWKS endpoint that is already failing; the held keys stay.
func (s *keySet) refresh(ctx context.Context) error {
	keys, err := s.fetch(ctx)
	s.mu.Lock()
	s.fetched = s.c.now()
	if err == nil {
		s.keys = keys
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.c.log.InfoContext(ctx, "JWKS loaded", "keys", len(keys))
	return nil
}

// fetch downloads and parses the JWKS.
func (s *keySet) fetch(ctx context.Context) ([]jwk, error) {
	m, err := s.c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	if m.JWKSURI == "" {
		return nil, errors.New("the authorization server publishes no jwks_uri (set upstream.jwks_uri)")
	}
	body, err := s.c.get(ctx, "jwks", m.JWKSURI, "application/json", "")
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	keys, skipped, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("JWKS at %s: %w", redactURL(m.JWKSURI), err)
	}
	for _, e := range skipped {
		s.c.log.WarnContext(ctx, "JWKS key unusable", "jwks_uri", redactURL(m.JWKSURI), "error", e.Error())
	}
	return keys, nil
}

// match picks the key for kid and alg. A token without a kid matches only
// when exactly one key fits its algorithm.
func match(keys []jwk, kid, alg string) (any, bool) {
	var found any
	n := 0
	for _, k := range keys {
		if kid != "" && k.kid != kid {
			continue
		}
		if (k.alg != "" && k.alg != alg) || !fits(k.key, alg) {
			continue
		}
		found = k.key
		n++
	}
	return found, n == 1
}

// fits reports whether key can verify alg, so an RSA key is never offered to
// an ECDSA verifier and vice versa.
func fits(key any, alg string) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// parseJWKS parses an RFC 7517 key set, keeping the signature keys it can use
// and skipping the rest: unknown types and encryption keys silently, keys
// it refuses (weak, malformed, unsupported curve) reported in skipped.
func parseJWKS(body []byte) (keys []jwk, skipped []error, err error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Use string `json:"use"`
			Kid string `json:"kid"`
			Alg string `json:"alg"`
			N   string `json:"n"`
			E   string `json:"e"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, nil, fmt.Errorf("invalid JSON: %w", err)
	}
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var key any
		var err error
		switch k.Kty {
		case "RSA":
			key, err = rsaKey(k.N, k.E)
		case "EC":
			key, err = ecKey(k.Crv, k.X, k.Y)
		case "OKP":
			key, err = edKey(k.Crv, k.X)
		default:
			continue
		}
		if err != nil {
			// One legacy or exotic key must not take the others down
			// with it: it is left out, and tokens naming it fail.
			skipped = append(skipped, fmt.Errorf("key %q left out: %w", k.Kid, err))
			continue
		}
		keys = append(keys, jwk{kid: k.Kid, alg: k.Alg, key: key})
	}
	if len(keys) == 0 {
		return nil, nil, errors.Join(append([]error{errors.New("no usable signature keys")}, skipped...)...)
	}
	return keys, skipped, nil
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func rsaKey(n64, e64 string) (*rsa.PublicKey, error) {
	n, err := b64(n64)
	if err != nil {
		return nil, errors.New("bad modulus encoding")
	}
	e, err := b64(e64)
	if err != nil || len(e) == 0 || len(e) > 4 {
		return nil, errors.New("bad exponent")
	}
	key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	if key.N.BitLen() < 2048 {
		return nil, fmt.Errorf("RSA key of %d bits is too short (need 2048)", key.N.BitLen())
	}
	if key.E < 3 || key.E%2 == 0 {
		return nil, errors.New("bad exponent")
	}
	return key, nil
}

func ecKey(crv, x64, y64 string) (*ecdsa.PublicKey, error) {
	var curve elliptic.Curve
	switch crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	case "P-521":
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("unsupported curve %q", crv)
	}
	x, errX := b64(x64)
	y, errY := b64(y64)
	size := (curve.Params().BitSize + 7) / 8
	if errX != nil || errY != nil || len(x) != size || len(y) != size {
		return nil, errors.New("bad coordinates")
	}
	// ParseUncompressedPublicKey rejects points not on the curve.
	return ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
}

func edKey(crv, x64 string) (ed25519.PublicKey, error) {
	x, err := b64(x64)
	if crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
		return nil, errors.New("unsupported or malformed OKP key")
	}
	return ed25519.PublicKey(x), nil
}
