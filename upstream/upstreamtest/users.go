package upstreamtest

import (
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"slices"
)

// User is a deterministic test account.
type User struct {
	// Subject is the stable "sub" claim.
	Subject string
	// Username is the login name and the "preferred_username" claim (left
	// out of tokens when empty).
	Username string
	// Password is what the interactive login form accepts.
	Password string
	// Email is the "email" claim.
	Email string
	// Name is the "name" claim.
	Name string
	// EmailVerified is the "email_verified" claim.
	EmailVerified bool
	// Groups is the "groups" claim; nil is sent as an empty list.
	Groups []string
	// Claims are further claims put in ID tokens and userinfo answers
	// ("roles", nested objects such as {"realm_access": {"roles": [...]}}),
	// after the standard ones, which they cannot replace.
	Claims map[string]any
}

// Client authentication methods for Client.AuthMethod (RFC 6749 §2.3.1,
// RFC 7523 §2.2, RFC 8705 §2, OpenID Connect Core §9).
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
	PrivateKeyJWT     = "private_key_jwt"
	TLSClientAuth     = "tls_client_auth"
	None              = "none"
)

// Client is a registered OAuth client.
type Client struct {
	// ID is the client_id.
	ID string
	// Secret is the client_secret of client_secret_basic and
	// client_secret_post.
	Secret string
	// RedirectURIs are the redirect URIs the client may use, compared as
	// exact strings. Empty means any http or https URI whose host is
	// 127.0.0.1, ::1 or localhost, with any port and path.
	RedirectURIs []string
	// AuthMethod is the one way the client may authenticate at the token,
	// revocation and introspection endpoints; any other way is answered
	// 401 invalid_client:
	//   - client_secret_basic or client_secret_post: Secret, that way only;
	//   - private_key_jwt: a client_assertion JWT verified with PublicKey;
	//   - tls_client_auth: a TLS client certificate equal to
	//     TLSCertificate (needs Config.TLS) and client_id in the form;
	//   - none: a public client, client_id in the form and no credential.
	// Empty means Secret by client_secret_basic or client_secret_post,
	// either one; with an empty Secret that is a client_id alone.
	AuthMethod string
	// PublicKey verifies the client's assertions for private_key_jwt: an
	// *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey; any
	// asymmetric JWS algorithm that fits it is accepted. An assertion
	// needs iss and sub equal to ID (but see AssertionIssuer), aud the
	// issuer or the token endpoint URL (but see AssertionAudience), exp in
	// the future and at most five minutes ahead, and a jti not seen before
	// (RFC 7523 §3).
	PublicKey crypto.PublicKey
	// AssertionIssuer, when set, makes the client's assertions issued by
	// a third party rather than by the client itself, as in workload
	// identity federation with Kubernetes service-account tokens: iss
	// must be AssertionIssuer and sub AssertionSubject, and the same
	// assertion may be presented again until it expires, however far
	// ahead that is. The form must name the client in client_id.
	AssertionIssuer string
	// AssertionSubject is the sub of federated assertions; see
	// AssertionIssuer.
	AssertionSubject string
	// AssertionAudience, when set, is the only aud an assertion may
	// carry (such as "api://AzureADTokenExchange" for a federated one).
	AssertionAudience string
	// TLSCertificate is the certificate a tls_client_auth client must
	// present, compared byte for byte: the pinning of RFC 8705 §2.2, which
	// the client does no differently from §2.1.
	TLSCertificate *x509.Certificate
	// GrantTypes are the grant types the client may use:
	// authorization_code, refresh_token, client_credentials. Empty means
	// all three, client_credentials only for a confidential client (one
	// that authenticates with something), as RFC 6749 §4.4 requires;
	// a public client is refused client_credentials even when listed.
	GrantTypes []string
	// Scopes, when set, are all the scopes a client credentials request
	// may ask for; others are answered invalid_scope. Empty means any.
	Scopes []string
}

// confidential reports whether c authenticates with a credential.
func (c Client) confidential() bool {
	switch c.AuthMethod {
	case "":
		return c.Secret != ""
	case None:
		return false
	}
	return true
}

// allowsGrant reports whether c may use grantType.
func (c Client) allowsGrant(grantType string) bool {
	if grantType == "client_credentials" && !c.confidential() {
		return false
	}
	return len(c.GrantTypes) == 0 || slices.Contains(c.GrantTypes, grantType)
}

// DefaultUsers returns the two default accounts, alice (groups admins and
// staff) and bob (group staff). Each call returns fresh copies.
func DefaultUsers() []User {
	return []User{
		{
			Subject:       "user-alice",
			Username:      "alice",
			Password:      "alice-password",
			Email:         "alice@example.com",
			Name:          "Alice Example",
			EmailVerified: true,
			Groups:        []string{"admins", "staff"},
		},
		{
			Subject:       "user-bob",
			Username:      "bob",
			Password:      "bob-password",
			Email:         "bob@example.org",
			Name:          "Bob Example",
			EmailVerified: true,
			Groups:        []string{"staff"},
		},
	}
}

// cloneUsers copies users deeply, so that the caller's later edits do not
// reach the server.
func cloneUsers(users []User) []User {
	out := slices.Clone(users)
	for i := range out {
		out[i].Groups = slices.Clone(out[i].Groups)
	}
	return out
}

// cloneClients copies clients deeply.
func cloneClients(clients []Client) []Client {
	out := slices.Clone(clients)
	for i := range out {
		out[i].RedirectURIs = slices.Clone(out[i].RedirectURIs)
		out[i].GrantTypes = slices.Clone(out[i].GrantTypes)
		out[i].Scopes = slices.Clone(out[i].Scopes)
	}
	return out
}

// client returns the registered client with the given id.
func (s *Server) client(id string) (Client, bool) {
	if id == "" {
		return Client{}, false
	}
	for _, c := range s.clients {
		if c.ID == id {
			return c, true
		}
	}
	return Client{}, false
}

// userByHint returns the user whose username or email is hint
// (OpenID Connect Core §3.1.2.1 login_hint).
func (s *Server) userByHint(hint string) (User, bool) {
	for _, u := range s.users {
		if u.Username == hint || (u.Email != "" && u.Email == hint) {
			return u, true
		}
	}
	return User{}, false
}

// login returns the user these credentials belong to. An unknown user and a
// wrong password are indistinguishable to the caller.
func (s *Server) login(username, password string) (User, bool) {
	for _, u := range s.users {
		if u.Username == username && username != "" {
			if secretEqual(u.Password, password) {
				return u, true
			}
			return User{}, false
		}
	}
	return User{}, false
}

// secretEqual compares secrets in constant time (for equal lengths).
func secretEqual(want, got string) bool {
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}
