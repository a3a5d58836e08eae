package upstreamtest

import "github.com/golang-jwt/jwt/v5"

// SignTyped is Sign with typ as the header's typ, e.g. "at+jwt" for an
// RFC 9068 access token a test hands to a gateway as a caller's token.
func (s *Server) SignTyped(claims jwt.MapClaims, typ string) (string, error) {
	return s.sign(claims, typ)
}
