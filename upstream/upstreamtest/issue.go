package upstreamtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// grant is one authorization: a redeemed code and the tokens it and its
// refreshes produced. Revoking it invalidates all of them.
type grant struct {
	clientID string
	user     User
	scope    string
	authTime time.Time
	revoked  bool
}

// tokenResponse is a successful token response (RFC 6749 §5.1, OpenID
// Connect Core §3.1.3.3).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

// issue mints an access token, a refresh token and, for the openid scope,
// an ID token, all belonging to g.
func (s *Server) issue(g *grant, scope, nonce string) (tokenResponse, *tokenError) {
	now := s.now()
	s.mu.Lock()
	ttl, signer := s.accessTTL, s.idTokenSigner
	s.mu.Unlock()
	if signer == nil {
		signer = s.Sign
	}
	serverError := &tokenError{status: http.StatusInternalServerError, code: "server_error", description: "could not sign a token"}

	jti := rand.Text()
	// RFC 9068 §2.2: the JWT access token profile.
	atClaims := jwt.MapClaims{
		"iss":       s.URL,
		"sub":       g.user.Subject,
		"aud":       g.clientID,
		"client_id": g.clientID,
		"iat":       now.Unix(),
		"exp":       now.Add(ttl).Unix(),
		"jti":       jti,
	}
	if scope != "" {
		atClaims["scope"] = scope
	}
	access, err := s.sign(atClaims, "at+jwt")
	if err != nil {
		return tokenResponse{}, serverError
	}
	resp := tokenResponse{
		AccessToken: access,
		TokenType:   "Bearer",
		ExpiresIn:   int64((ttl + time.Second - 1) / time.Second),
		Scope:       scope,
	}
	if !s.noRefreshTokens {
		resp.RefreshToken = rand.Text()
	}
	if slices.Contains(strings.Fields(scope), "openid") {
		resp.IDToken, err = signer(s.idTokenClaims(g, now, nonce, access))
		if err != nil {
			return tokenResponse{}, serverError
		}
	}
	s.mu.Lock()
	if resp.RefreshToken != "" {
		s.refreshTokens[resp.RefreshToken] = g
	}
	s.accessTokens[jti] = g
	s.mu.Unlock()
	return resp, nil
}

// idTokenClaims returns the claims of an ID token for g issued at now
// alongside accessToken (OpenID Connect Core §2, §3.1.3.6).
func (s *Server) idTokenClaims(g *grant, now time.Time, nonce, accessToken string) jwt.MapClaims {
	u := g.user
	claims := jwt.MapClaims(userClaims(u))
	for k, v := range map[string]any{
		"iss":       s.URL,
		"aud":       g.clientID,
		"iat":       now.Unix(),
		"exp":       now.Add(s.idTokenTTL).Unix(),
		"auth_time": g.authTime.Unix(),
		"at_hash":   atHash(accessToken),
	} {
		claims[k] = v
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	if !s.groupsInUserinfoOnly {
		claims["groups"] = groupsOf(u)
	}
	return claims
}

// atHash is the at_hash of an access token for an RS256 ID token: the
// base64url left half of its SHA-256 (OpenID Connect Core §3.1.3.6).
func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// groupsOf returns u's groups, never nil, so that JSON has a list.
func groupsOf(u User) []string {
	if u.Groups == nil {
		return []string{}
	}
	return slices.Clone(u.Groups)
}
