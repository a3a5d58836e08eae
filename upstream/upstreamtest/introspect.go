package upstreamtest

import "net/http"

// introspection is an RFC 7662 §2.2 answer for an active token.
type introspection struct {
	Active    bool   `json:"active"`
	Sub       string `json:"sub"`
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope,omitempty"`
	Exp       int64  `json:"exp"`
	Iat       int64  `json:"iat"`
	Aud       string `json:"aud"`
	Iss       string `json:"iss"`
	TokenType string `json:"token_type"`
}

// serveIntrospect is the introspection endpoint (RFC 7662 §2). Any
// authenticated client may ask about any token; an access token this
// server issued, unexpired and unrevoked, is active, and everything else
// (refresh tokens, ID tokens, garbage) is {"active": false}.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	if terr := parsePostForm(r); terr != nil {
		terr.write(w)
		return
	}
	if _, terr := s.authenticateRequest(r); terr != nil {
		terr.write(w)
		return
	}
	token := r.PostForm.Get("token")
	if token == "" {
		badRequest("invalid_request", "token is required").write(w)
		return
	}
	at, ok := s.access(token, false)
	if !ok {
		writePrivateJSON(w, http.StatusOK, struct {
			Active bool `json:"active"`
		}{false})
		return
	}
	writePrivateJSON(w, http.StatusOK, introspection{
		Active:    true,
		Sub:       at.grant.user.Subject,
		ClientID:  at.grant.clientID,
		Scope:     at.scope,
		Exp:       at.expires.Unix(),
		Iat:       at.issued.Unix(),
		Aud:       at.aud,
		Iss:       s.URL,
		TokenType: "Bearer",
	})
}
