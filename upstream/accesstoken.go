package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrInvalidToken wraps every reason to refuse a caller's access token.
var ErrInvalidToken = errors.New("invalid access token")

// maxAccessTokenLeeway caps the clock leeway for caller tokens, whatever
// clock_skew says: a minute of grace is the most a resource server gives.
const maxAccessTokenLeeway = time.Minute

// AccessToken is a caller's access token, validated.
type AccessToken struct {
	// Identity is who the token names, through the claim mapping (for a
	// client credentials token, sub is usually the client).
	Identity *Identity
	// Expiry is the token's exp; the zero time when unknown (an
	// introspection answer without exp).
	Expiry time.Time
	// ClientID is the client the token was issued to, when it says.
	ClientID string
	// Scope is the granted scope, when the token says.
	Scope string
}

// VerifyAccessToken validates a JWT access token a caller brought
// (RFC 9068, RFC 6750): a signature by a key of the server's JWKS with an
// allowed algorithm (jku, x5u and jwk headers ignored), iss exactly the
// issuer, aud containing audience, exp required, nbf and iat honoured with
// at most a minute of leeway. typ may be at+jwt (RFC 9068 §4), JWT or
// absent; a token that looks like an ID token (nonce or at_hash without
// typ at+jwt) is refused, so an ID token cannot stand in for an access
// token. Every failure wraps ErrInvalidToken, except an unreachable JWKS
// (ErrUnavailable).
func (c *Client) VerifyAccessToken(ctx context.Context, raw, audience string) (*AccessToken, error) {
	if len(raw) > maxTokenSize {
		return nil, fmt.Errorf("%w: token larger than %d bytes", ErrInvalidToken, maxTokenSize)
	}
	if strings.Count(raw, ".") != 2 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrInvalidToken)
	}
	p := jwt.NewParser(
		jwt.WithValidMethods(c.cfg.IDTokenAlgorithms),
		jwt.WithIssuer(c.cfg.Issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(min(c.cfg.ClockSkew, maxAccessTokenLeeway)),
		jwt.WithTimeFunc(c.now),
	)
	claims := jwt.MapClaims{}
	var typ string
	_, err := p.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		typ, _ = t.Header["typ"].(string)
		kid, _ := t.Header["kid"].(string)
		return c.srv.keys.lookup(ctx, kid, t.Method.Alg())
	})
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	switch strings.ToLower(typ) {
	case "at+jwt", "application/at+jwt":
	case "", "jwt":
		if looksLikeIDToken(claims, c.cfg.ClientID) {
			return nil, fmt.Errorf("%w: an ID token is no access token", ErrInvalidToken)
		}
	default:
		return nil, fmt.Errorf("%w: typ %q is not an access token", ErrInvalidToken, truncate(typ, 40))
	}
	at := &AccessToken{Identity: c.completeUser(c.identityFrom(claims))}
	if at.Identity.Subject == "" {
		return nil, fmt.Errorf("%w: no sub claim", ErrInvalidToken)
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		at.Expiry = exp.Time
	}
	at.ClientID, _ = claims["client_id"].(string)
	if at.ClientID == "" {
		at.ClientID, _ = claims["azp"].(string)
	}
	at.Scope = scopeOf(claims["scope"])
	return at, nil
}

// looksLikeIDToken tells an ID token from an access token that lacks RFC
// 9068's typ: ID tokens carry nonce, at_hash or c_hash, or are for this
// client (aud) with neither scope nor client_id, which access tokens
// almost always have. Refreshed ID tokens may lack the hashes and the
// nonce (OpenID Connect Core §12.2), hence the second test.
func looksLikeIDToken(claims map[string]any, clientID string) bool {
	for _, k := range [...]string{"nonce", "at_hash", "c_hash"} {
		if _, ok := claims[k]; ok {
			return true
		}
	}
	_, scope := claims["scope"]
	_, scp := claims["scp"]
	_, cid := claims["client_id"]
	return hasAudience(claims["aud"], clientID) && !scope && !scp && !cid
}

// scopeOf reads a scope claim: a space-separated string, or a list (the
// "scp" habit of some servers).
func scopeOf(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []any:
		var parts []string
		for _, x := range s {
			if str, ok := x.(string); ok {
				parts = append(parts, str)
			}
		}
		return strings.Join(parts, " ")
	}
	return ""
}

// hasAudience reports whether aud (a string or a list) contains want.
func hasAudience(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		return slices.ContainsFunc(a, func(x any) bool { s, _ := x.(string); return s == want })
	}
	return false
}
