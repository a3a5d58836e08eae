// Package upstreamtest provides an in-process OAuth 2.0 / OpenID Connect
// authorization server for tests and for the `authgate demo` command, in the
// manner of net/http/httptest.
//
// The server implements discovery (OpenID Connect Discovery 1.0 and RFC 8414),
// the authorization code grant with mandatory PKCE S256 (RFC 6749 §4.1,
// RFC 7636), refresh tokens with rotation, the RFC 9207 `iss` authorization
// response parameter, a JWKS endpoint with key rotation, UserInfo,
// RP-initiated logout and token revocation (RFC 7009). Access tokens are
// RS256 JWTs (RFC 9068); refresh tokens and codes are opaque random strings.
//
// Hooks let a test misbehave on purpose: sign ID tokens with another
// algorithm, tamper with the authorization response, slow the token endpoint
// down. Counters report what the server was asked for.
//
//	srv := upstreamtest.NewServer(upstreamtest.Config{})
//	defer srv.Close()
//	// point the client at srv.Issuer(), client "authgate" / "authgate-secret"
//
// State lives in memory and is never expired in bulk; a Server is meant to
// live as long as one test or one demo process.
package upstreamtest
