package upstreamtest

import (
	"net/http"
	"strings"
)

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
	at, ok := s.access(raw, false)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="upstreamtest", error="invalid_token", error_description="the access token is invalid, expired or revoked"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "the access token is invalid, expired or revoked")
		return
	}
	// The UserInfo response (OpenID Connect Core §5.3.2).
	claims := userClaims(at.grant.user)
	claims["groups"] = groupsOf(at.grant.user)
	writePrivateJSON(w, http.StatusOK, claims)
}

// userClaims are the claims about u that ID tokens and userinfo share:
// the standard ones and u.Claims (which cannot replace them).
func userClaims(u User) map[string]any {
	claims := map[string]any{
		"sub":            u.Subject,
		"email":          u.Email,
		"email_verified": u.EmailVerified,
		"name":           u.Name,
	}
	if u.Username != "" {
		claims["preferred_username"] = u.Username
	}
	for k, v := range u.Claims {
		if _, ok := claims[k]; !ok {
			claims[k] = v
		}
	}
	return claims
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
