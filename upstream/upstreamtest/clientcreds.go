package upstreamtest

import (
	"net/url"
	"slices"
	"strings"
)

// clientCredentials handles grant_type=client_credentials (RFC 6749
// §4.4): an access token for the client itself, sub the client id, aud
// the RFC 8707 resource, else the audience parameter, else the client id;
// no refresh token (§4.4.3) and no ID token.
func (s *Server) clientCredentials(client Client, form url.Values) (tokenResponse, *tokenError) {
	scope := strings.Join(strings.Fields(form.Get("scope")), " ")
	if len(client.Scopes) > 0 {
		for _, sc := range strings.Fields(scope) {
			if !slices.Contains(client.Scopes, sc) {
				return tokenResponse{}, badRequest("invalid_scope", "scope "+sc+" is not allowed for this client")
			}
		}
	}
	aud := client.ID
	if a := form.Get("audience"); a != "" {
		aud = a
	}
	if res := form.Get("resource"); res != "" {
		// RFC 8707 §2: an absolute URI without a fragment.
		u, err := url.Parse(res)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(res, "#") {
			return tokenResponse{}, badRequest("invalid_target", "resource must be an absolute URI without a fragment")
		}
		aud = res
	}
	now := s.now()
	g := &grant{clientID: client.ID, user: User{Subject: client.ID}, scope: scope, authTime: now}
	return s.mintAccess(g, scope, aud, now)
}
