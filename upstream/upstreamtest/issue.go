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
	// sid names the login session that made the grant, the ID tokens'
	// "sid" claim (Front- and Back-Channel Logout); empty for client
	// credentials.
	sid string
}

// accessToken is what the server knows of an access token it issued.
type accessToken struct {
	grant   *grant
	scope   string
	aud     string
	issued  time.Time
	expires time.Time
}

// tokenResponse is a successful token response (RFC 6749 §5.1, OpenID
// Connect Core §3.1.3.3).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

// issue mints an access token, a refresh token and, for the openid scope,
// an ID token, all belonging to g.
func (s *Server) issue(g *grant, scope, nonce string) (tokenResponse, *tokenError) {
	now := s.now()
	s.mu.Lock()
	signer := s.idTokenSigner
	s.mu.Unlock()
	if signer == nil {
		signer = s.Sign
	}
	resp, terr := s.mintAccess(g, scope, g.clientID, now)
	if terr != nil {
		return tokenResponse{}, terr
	}
	if !s.noRefreshTokens {
		resp.RefreshToken = rand.Text()
	}
	if slices.Contains(strings.Fields(scope), "openid") {
		var err error
		resp.IDToken, err = signer(s.idTokenClaims(g, now, nonce, resp.AccessToken))
		if err != nil {
			return tokenResponse{}, errSign
		}
	}
	if resp.RefreshToken != "" {
		s.mu.Lock()
		s.refreshTokens[resp.RefreshToken] = g
		s.mu.Unlock()
	}
	return resp, nil
}

// errSign is the answer when a token cannot be signed.
var errSign = &tokenError{status: http.StatusInternalServerError, code: "server_error", description: "could not sign a token"}

// mintAccess issues and records an access token of g for scope and aud,
// and returns a response carrying it alone: an RS256 JWT (the profile of
// RFC 9068 §2.2), or an opaque random string with Config.OpaqueAccessTokens.
func (s *Server) mintAccess(g *grant, scope, aud string, now time.Time) (tokenResponse, *tokenError) {
	s.mu.Lock()
	ttl := s.accessTTL
	s.mu.Unlock()
	rec := &accessToken{grant: g, scope: scope, aud: aud, issued: now, expires: now.Add(ttl)}
	var access, jti string
	if s.opaqueAccess {
		access = rand.Text() + rand.Text()
	} else {
		jti = rand.Text()
		claims := jwt.MapClaims{
			"iss":       s.URL,
			"sub":       g.user.Subject,
			"aud":       aud,
			"client_id": g.clientID,
			"iat":       now.Unix(),
			"exp":       rec.expires.Unix(),
			"jti":       jti,
		}
		if scope != "" {
			claims["scope"] = scope
		}
		var err error
		if access, err = s.sign(claims, "at+jwt"); err != nil {
			return tokenResponse{}, errSign
		}
	}
	s.mu.Lock()
	if jti != "" {
		s.accessTokens[jti] = rec
	} else {
		s.opaqueTokens[access] = rec
	}
	s.mu.Unlock()
	return tokenResponse{
		AccessToken: access,
		TokenType:   "Bearer",
		ExpiresIn:   int64((ttl + time.Second - 1) / time.Second),
		Scope:       scope,
	}, nil
}

// access returns the record of an access token this server issued, unless
// it has expired (checked unless ignoreExpiry) or was revoked.
func (s *Server) access(raw string, ignoreExpiry bool) (*accessToken, bool) {
	var rec *accessToken
	if strings.Count(raw, ".") == 2 {
		claims, err := s.verify(raw, "at+jwt", ignoreExpiry)
		if err != nil {
			return nil, false
		}
		jti, _ := claims["jti"].(string)
		s.mu.Lock()
		defer s.mu.Unlock()
		rec = s.accessTokens[jti]
	} else {
		s.mu.Lock()
		defer s.mu.Unlock()
		rec = s.opaqueTokens[raw]
		if rec != nil && !ignoreExpiry && !s.now().Before(rec.expires) {
			return nil, false
		}
	}
	if rec == nil || rec.grant.revoked || s.revokedTokens[raw] {
		return nil, false
	}
	return rec, true
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
	if g.sid != "" {
		claims["sid"] = g.sid
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
