package upstreamtest

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// tokenError is an error response of the token or revocation endpoint
// (RFC 6749 §5.2).
type tokenError struct {
	status      int
	code        string
	description string
}

// badRequest returns a 400 token endpoint error.
func badRequest(code, description string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: code, description: description}
}

// write sends e; a 401 invites HTTP Basic authentication, as RFC 6749 §5.2
// requires when the client tried it.
func (e *tokenError) write(w http.ResponseWriter) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="upstreamtest"`)
	}
	writeOAuthError(w, e.status, e.code, e.description)
}

// serveToken is the token endpoint (RFC 6749 §3.2).
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	parseErr := parsePostForm(r)
	grantType := r.PostForm.Get("grant_type")
	s.mu.Lock()
	s.grantCounts[grantType]++
	delay, down := s.tokenDelay, s.tokenDown
	s.mu.Unlock()
	if s.injectFault("token", w, r) {
		return
	}
	if down != 0 {
		writeOAuthError(w, down, "temporarily_unavailable", "the token endpoint is down (SetTokenEndpointDown)")
		return
	}
	if delay > 0 && !s.wait(r, delay) {
		writeOAuthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the server is shutting down")
		return
	}
	if parseErr != nil {
		parseErr.write(w)
		return
	}
	client, terr := s.authenticateRequest(r)
	if terr != nil {
		terr.write(w)
		return
	}
	var resp tokenResponse
	switch grantType {
	case "authorization_code", "refresh_token", "client_credentials":
		if !client.allowsGrant(grantType) {
			terr = badRequest("unauthorized_client", "the client may not use grant_type "+grantType)
			break
		}
		switch grantType {
		case "authorization_code":
			resp, terr = s.redeemCode(client, r.PostForm)
		case "refresh_token":
			resp, terr = s.refresh(client, r.PostForm)
		default:
			resp, terr = s.clientCredentials(client, r.PostForm)
		}
	case passwordGrantType:
		resp, terr = s.passwordGrant(client, r.PostForm)
	case "":
		terr = badRequest("invalid_request", "grant_type is required")
	default:
		terr = badRequest("unsupported_grant_type", "grant_type "+grantType+" is not supported")
	}
	if terr != nil {
		terr.write(w)
		return
	}
	writePrivateJSON(w, http.StatusOK, resp)
}

// wait sleeps for d unless the request is abandoned or the server closes
// first, and reports whether it slept the whole time.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing:
		return false
	}
}

// parsePostForm parses the form-encoded body of r into r.PostForm. The
// query string is not read: RFC 6749 §3.2 puts token request parameters in
// the body. A repeated parameter is an error (RFC 6749 §3.2).
func parsePostForm(r *http.Request) *tokenError {
	if err := r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &tokenError{status: http.StatusRequestEntityTooLarge, code: "invalid_request", description: "request body too large"}
		}
		return badRequest("invalid_request", "malformed request body")
	}
	for name, vs := range r.PostForm {
		if len(vs) > 1 {
			return badRequest("invalid_request", name+" is repeated")
		}
	}
	return nil
}

// redeemCode handles grant_type=authorization_code (RFC 6749 §4.1.3,
// RFC 7636 §4.5).
func (s *Server) redeemCode(client Client, form url.Values) (tokenResponse, *tokenError) {
	code, verifier := form.Get("code"), form.Get("code_verifier")
	if code == "" {
		return tokenResponse{}, badRequest("invalid_request", "code is required")
	}
	if verifier == "" {
		return tokenResponse{}, badRequest("invalid_request", "code_verifier is required")
	}
	now := s.now()
	s.mu.Lock()
	ac := s.codes[code]
	switch {
	case ac == nil, ac.clientID != client.ID:
		s.mu.Unlock()
		return tokenResponse{}, badRequest("invalid_grant", "unknown authorization code")
	case ac.redeemed:
		// RFC 6749 §4.1.2: revoke what the code already produced.
		if ac.grant != nil {
			ac.grant.revoked = true
		}
		s.mu.Unlock()
		return tokenResponse{}, badRequest("invalid_grant", "authorization code already used")
	}
	// Any attempt uses the code up, so a verifier cannot be guessed by
	// retrying.
	ac.redeemed = true
	var terr *tokenError
	switch {
	case now.After(ac.expires):
		terr = badRequest("invalid_grant", "authorization code expired")
	case form.Get("redirect_uri") != ac.redirectURI:
		terr = badRequest("invalid_grant", "redirect_uri does not match the authorization request")
	case !validVerifier(verifier) || !secretEqual(ac.challenge, s256(verifier)):
		terr = badRequest("invalid_grant", "code_verifier does not match code_challenge")
	}
	if terr != nil {
		s.mu.Unlock()
		return tokenResponse{}, terr
	}
	g := &grant{clientID: client.ID, user: ac.user, scope: ac.scope, authTime: ac.authTime, sid: s.newSessionID(ac.user)}
	ac.grant = g
	nonce := ac.nonce
	s.mu.Unlock()
	return s.issue(g, g.scope, nonce)
}

// refresh handles grant_type=refresh_token (RFC 6749 §6). The refresh token
// is rotated: the presented one stops working (RFC 9700 §4.14.2).
func (s *Server) refresh(client Client, form url.Values) (tokenResponse, *tokenError) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return tokenResponse{}, badRequest("invalid_request", "refresh_token is required")
	}
	s.mu.Lock()
	g := s.refreshTokens[rt]
	if g == nil && s.usedRefresh[rt] {
		s.refreshReuses++
	}
	if g == nil || g.revoked || g.clientID != client.ID {
		s.mu.Unlock()
		return tokenResponse{}, badRequest("invalid_grant", "refresh token is invalid, revoked or already used")
	}
	scope := g.scope
	if requested := form.Get("scope"); requested != "" {
		// RFC 6749 §6: no scope beyond what was originally granted.
		granted := strings.Fields(g.scope)
		for _, sc := range strings.Fields(requested) {
			if !slices.Contains(granted, sc) {
				s.mu.Unlock()
				return tokenResponse{}, badRequest("invalid_scope", "scope exceeds the original grant")
			}
		}
		scope = requested
	}
	delete(s.refreshTokens, rt)
	s.usedRefresh[rt] = true
	s.mu.Unlock()
	// OpenID Connect Core §12.2: a refreshed ID token carries no nonce.
	return s.issue(g, scope, "")
}

// s256 is the S256 code challenge of verifier (RFC 7636 §4.2).
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
