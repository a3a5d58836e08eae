// Package upstreamtest provides an in-process OAuth 2.0 / OpenID Connect
// authorization server for tests and for the `authgate demo` command, in the
// manner of net/http/httptest.
//
// The server implements discovery (OpenID Connect Discovery 1.0 and RFC 8414),
// the authorization code grant with mandatory PKCE S256 (RFC 6749 §4.1,
// RFC 7636), refresh tokens with rotation, the client credentials grant
// (RFC 6749 §4.4) with RFC 8707 resource indicators, the RFC 9207 `iss`
// authorization response parameter, a JWKS endpoint with key rotation,
// UserInfo, RP-initiated logout, token revocation (RFC 7009) and token
// introspection (RFC 7662). Access tokens are RS256 JWTs (RFC 9068), or
// opaque random strings with Config.OpaqueAccessTokens; refresh tokens and
// codes are opaque random strings.
//
// Clients authenticate at the token, revocation and introspection
// endpoints by the method each is registered for (Client.AuthMethod):
// client_secret_basic, client_secret_post, private_key_jwt (RFC 7523,
// with replay and lifetime checks, or third-party assertions as in
// workload identity federation), tls_client_auth (RFC 8705; Config.TLS
// serves HTTPS and asks for client certificates; NewClientCertificate
// makes one) or none.
//
// Hooks let a test misbehave on purpose: sign ID tokens with another
// algorithm, tamper with the authorization response, slow the token endpoint
// down or take it down (SetTokenEndpointDown), make any endpoint slow,
// reset its connections or answer garbage (SetFault). Counters report what
// the server was asked for, and reused refresh tokens (RefreshTokenReuses).
//
//	srv := upstreamtest.NewServer(upstreamtest.Config{})
//	defer srv.Close()
//	// point the client at srv.Issuer(), client "authgate" / "authgate-secret"
//
// State lives in memory and is never expired in bulk; a Server is meant to
// live as long as one test or one demo process.
package upstreamtest
