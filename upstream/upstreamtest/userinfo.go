package upstreamtest

import (
	"net/http"
	"strings"
)

// userinfo is the UserInfo response (OpenID Connect Core §5.3.2).
type userinfo struct {
	Subject           string   `json:"sub"`
	Email             string   `json:"email"`
	EmailVerified     bool     `json:"email_verified"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	Groups            []string `json:"groups"`
}

// serveUserinfo is the UserInfo endpoint. It accepts only access tokens
// this server issued, unexpired and unrevoked, in the Authorization header
// (RFC 6750 §2.1).
func (s *Server) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	raw, ok := bearerToken(r)
	if !ok {
		// RFC 6750 §3.1: no error code when no credentials were sent.
		w.Header().Set("WWW-Authenticate", `Bearer realm="upstreamtest"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_request", "bearer access token required")
		return
	}
	g, ok := s.accessGrant(raw)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="upstreamtest", error="invalid_token", error_description="the access token is invalid, expired or revoked"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "the access token is invalid, expired or revoked")
		return
	}
	u := g.user
	writePrivateJSON(w, http.StatusOK, userinfo{
		Subject:           u.Subject,
		Email:             u.Email,
		EmailVerified:     u.EmailVerified,
		Name:              u.Name,
		PreferredUsername: u.Username,
		Groups:            groupsOf(u),
	})
}

// accessGrant returns the grant of a valid, unexpired, unrevoked access
// token.
func (s *Server) accessGrant(raw string) (*grant, bool) {
	claims, err := s.verify(raw, "at+jwt", false)
	if err != nil {
		return nil, false
	}
	jti, _ := claims["jti"].(string)
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.accessTokens[jti]
	if g == nil || g.revoked || s.revokedTokens[raw] {
		return nil, false
	}
	return g, true
}

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
