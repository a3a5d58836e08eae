package upstream

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// maxTokenSize bounds a JWT before any parsing, so a huge or many-dotted
// token is refused in constant work.
const maxTokenSize = 64 << 10

// Identity is who an ID token (and the userinfo endpoint) says the user is.
type Identity struct {
	// Subject is the "sub" claim: the user's stable identifier at the server.
	Subject string
	// User names the user toward the backend: the claim Config.Claims.User
	// names, or Subject when the tokens lack it.
	User string
	// Email is the claim Config.Claims.Email names ("email" by default);
	// trust it only with EmailVerified.
	Email string
	// EmailVerified is the "email_verified" claim; false when absent.
	EmailVerified bool
	// Name is the "name" claim.
	Name string
	// PreferredUsername is the "preferred_username" claim.
	PreferredUsername string
	// Groups is the claim Config.Claims.Groups names ("groups" by default;
	// a list, or one string); nil when absent.
	Groups []string
	// Claims are the remaining claims, protocol claims (iss, aud, exp,
	// nonce, at_hash, ...) removed.
	Claims map[string]any
	// SessionID is the ID token's "sid" claim: the login session at the
	// server, which front- and back-channel logout name. Empty when absent.
	SessionID string
}

// protocolClaims are not identity and are dropped from Identity.Claims.
var protocolClaims = []string{"iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "azp", "auth_time", "jti", "sid", "acr", "amr", "typ", "s_hash",
	"sub", "email", "email_verified", "name", "preferred_username", "groups"}

// VerifyIDToken validates an ID token (OpenID Connect Core §3.1.3.7): a
// signature by a key from the server's JWKS with an allowed algorithm, iss,
// aud (and azp), exp, nonce when wantNonce is set, and at_hash when the token
// carries one and accessToken is given. Header parameters that point to other
// keys (jku, x5u, jwk) are ignored. Every failure wraps ErrInvalidIDToken.
func (c *Client) VerifyIDToken(ctx context.Context, raw Secret, wantNonce Secret, accessToken Secret) (*Identity, error) {
	claims, alg, err := c.parseJWT(ctx, raw.Reveal())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidIDToken, err)
	}
	if aud, _ := claims.GetAudience(); len(aud) > 1 {
		if azp, _ := claims["azp"].(string); azp != c.cfg.ClientID {
			return nil, fmt.Errorf("%w: several audiences and azp is not the client id", ErrInvalidIDToken)
		}
	}
	if !wantNonce.IsZero() {
		nonce, _ := claims["nonce"].(string)
		if subtle.ConstantTimeCompare([]byte(nonce), []byte(wantNonce.Reveal())) != 1 {
			return nil, fmt.Errorf("%w: nonce mismatch", ErrInvalidIDToken)
		}
	}
	if atHash, ok := claims["at_hash"].(string); ok && !accessToken.IsZero() {
		if !checkHalfHash(alg, accessToken.Reveal(), atHash) {
			return nil, fmt.Errorf("%w: at_hash does not match the access token", ErrInvalidIDToken)
		}
	}
	id := c.identityFrom(claims)
	if id.Subject == "" {
		return nil, fmt.Errorf("%w: no sub claim", ErrInvalidIDToken)
	}
	return id, nil
}

// parseJWT verifies a JWT's signature and its iss, aud and exp claims.
func (c *Client) parseJWT(ctx context.Context, raw string) (jwt.MapClaims, string, error) {
	return c.parseJWTWith(ctx, raw, jwt.WithExpirationRequired())
}

// parseJWTWith verifies a JWT's signature, iss, aud, iat (when present) and
// exp (when present; opts may require it).
func (c *Client) parseJWTWith(ctx context.Context, raw string, opts ...jwt.ParserOption) (jwt.MapClaims, string, error) {
	if len(raw) > maxTokenSize {
		return nil, "", fmt.Errorf("token larger than %d bytes", maxTokenSize)
	}
	if strings.Count(raw, ".") != 2 {
		return nil, "", fmt.Errorf("not a compact JWS")
	}
	p := jwt.NewParser(append([]jwt.ParserOption{
		jwt.WithValidMethods(c.cfg.IDTokenAlgorithms),
		jwt.WithIssuer(c.cfg.Issuer),
		jwt.WithAudience(c.cfg.ClientID),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(c.cfg.ClockSkew),
		jwt.WithTimeFunc(c.now),
	}, opts...)...)
	var alg string
	claims := jwt.MapClaims{}
	_, err := p.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		alg = t.Method.Alg()
		kid, _ := t.Header["kid"].(string)
		return c.srv.keys.lookup(ctx, kid, alg)
	})
	if err != nil {
		return nil, "", err
	}
	return claims, alg, nil
}

// checkHalfHash verifies an at_hash/c_hash value: the base64url left half of
// the hash that matches the JWS algorithm (OpenID Connect Core §3.1.3.6).
func checkHalfHash(alg, value, want string) bool {
	var h hash.Hash
	switch {
	case alg == "EdDSA":
		h = sha512.New() // Ed25519
	case strings.HasSuffix(alg, "256"):
		h = sha256.New()
	case strings.HasSuffix(alg, "384"):
		h = sha512.New384()
	case strings.HasSuffix(alg, "512"):
		h = sha512.New()
	default:
		return false
	}
	h.Write([]byte(value))
	sum := h.Sum(nil)
	got := base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// identityFrom reads the identity claims through the configured claim
// mapping, tolerating the common variants (email_verified as a string,
// groups as a single string).
func (c *Client) identityFrom(claims map[string]any) *Identity {
	str := func(k string) string { s, _ := claims[k].(string); return s }
	mapped := c.cfg.Claims
	id := &Identity{
		Subject:           str("sub"),
		Name:              str("name"),
		PreferredUsername: str("preferred_username"),
		Groups:            claimStrings(claims, mapped.Groups),
		SessionID:         str("sid"),
	}
	id.User, _ = lookupClaim(claims, mapped.User).(string)
	id.Email, _ = lookupClaim(claims, mapped.Email).(string)
	switch v := claims["email_verified"].(type) {
	case bool:
		id.EmailVerified = v
	case string:
		id.EmailVerified = v == "true"
	}
	for k, v := range claims {
		if !slices.Contains(protocolClaims, k) {
			if id.Claims == nil {
				id.Claims = map[string]any{}
			}
			id.Claims[k] = v
		}
	}
	return id
}

// lookupClaim finds a claim by name, else by a dot-separated path into
// nested objects ("realm_access.roles"); nil when absent.
func lookupClaim(claims map[string]any, path string) any {
	if v, ok := claims[path]; ok {
		return v
	}
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = obj[part]; !ok {
			return nil
		}
	}
	return cur
}

// claimStrings reads a claim that is a list of strings or one string.
func claimStrings(claims map[string]any, path string) []string {
	switch v := lookupClaim(claims, path).(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, g := range v {
			if s, ok := g.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// merge adds what other knows and id does not (userinfo after the ID token).
func (id *Identity) merge(other *Identity) {
	if id.User == "" {
		id.User = other.User
	}
	if id.Email == "" {
		id.Email, id.EmailVerified = other.Email, other.EmailVerified
	}
	if id.Name == "" {
		id.Name = other.Name
	}
	if id.PreferredUsername == "" {
		id.PreferredUsername = other.PreferredUsername
	}
	if len(id.Groups) == 0 {
		id.Groups = other.Groups
	}
	for k, v := range other.Claims {
		if _, ok := id.Claims[k]; !ok {
			if id.Claims == nil {
				id.Claims = map[string]any{}
			}
			id.Claims[k] = v
		}
	}
}
