package upstreamtest

import (
	"errors"
	"net/http"
	"net/url"
)

// serveLogout is the end-session endpoint (OpenID Connect RP-Initiated
// Logout 1.0 §2). The server keeps no login session, so logging out only
// means sending the browser back to the client, when the client may be
// sent back to, or showing a "signed out" page.
func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		status := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			status = http.StatusRequestEntityTooLarge
		}
		s.renderError(w, status, "The logout request could not be read.")
		return
	}
	form := r.Form
	clientID := form.Get("client_id")
	if s.requireIDTokenHint && form.Get("post_logout_redirect_uri") != "" && form.Get("id_token_hint") == "" {
		s.renderError(w, http.StatusInternalServerError, "id_token_hint is required with post_logout_redirect_uri.")
		return
	}
	if hint := form.Get("id_token_hint"); hint != "" {
		// RP-Initiated Logout §4: the OP must have issued the hint; it may
		// have expired.
		claims, err := s.verify(hint, "JWT", true)
		if err != nil {
			s.renderError(w, http.StatusBadRequest, "The id_token_hint was not issued by this server.")
			return
		}
		aud, _ := claims.GetAudience()
		switch {
		case len(aud) != 1:
			s.renderError(w, http.StatusBadRequest, "The id_token_hint has no single audience.")
			return
		case clientID == "":
			clientID = aud[0]
		case clientID != aud[0]:
			s.renderError(w, http.StatusBadRequest, "The id_token_hint was issued to another client.")
			return
		}
	}
	if target := form.Get("post_logout_redirect_uri"); target != "" {
		if c, ok := s.client(clientID); ok && postLogoutRedirectAllowed(c, target) {
			q := url.Values{}
			if state := form.Get("state"); state != "" {
				q.Set("state", state)
			}
			redirect(w, r, withQuery(target, q))
			return
		}
	}
	s.renderPage(w, http.StatusOK, "signed_out", nil)
}

// serveRevoke is the revocation endpoint (RFC 7009 §2). It answers 200 for
// any authenticated request, whether or not it knew the token (§2.2).
// Revoking a refresh token revokes the whole grant, access tokens included
// (§2.1); revoking an access token revokes only that token.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if terr := parsePostForm(r); terr != nil {
		terr.write(w)
		return
	}
	client, terr := s.authenticateRequest(r)
	if terr != nil {
		terr.write(w)
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		badRequest("invalid_request", "token is required").write(w)
		return
	}
	s.mu.Lock()
	g := s.refreshTokens[token]
	if g != nil && g.clientID == client.ID {
		g.revoked = true
		s.revokedTokens[token] = true
	}
	s.mu.Unlock()
	if g == nil {
		if at, ok := s.access(token, true); ok && at.grant.clientID == client.ID {
			s.mu.Lock()
			s.revokedTokens[token] = true
			s.mu.Unlock()
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// Revoked reports whether token, a refresh or access token this server
// issued, has been revoked: named in a /revoke request, or belonging to a
// grant revoked by /revoke or by a replayed authorization code. A refresh
// token that was merely rotated is not revoked.
func (s *Server) Revoked(token string) bool {
	s.mu.Lock()
	if s.revokedTokens[token] {
		s.mu.Unlock()
		return true
	}
	if g := s.refreshTokens[token]; g != nil {
		revoked := g.revoked
		s.mu.Unlock()
		return revoked
	}
	s.mu.Unlock()
	var rec *accessToken
	if claims, err := s.verify(token, "at+jwt", true); err == nil {
		jti, _ := claims["jti"].(string)
		s.mu.Lock()
		rec = s.accessTokens[jti]
		s.mu.Unlock()
	} else {
		s.mu.Lock()
		rec = s.opaqueTokens[token]
		s.mu.Unlock()
	}
	if rec == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return rec.grant.revoked
}
