package upstreamtest

import (
	"crypto/subtle"
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

// Client is a registered OAuth client. Every client is confidential: it
// authenticates at the token and revocation endpoints with its secret.
type Client struct {
	// ID is the client_id.
	ID string
	// Secret is the client_secret.
	Secret string
	// RedirectURIs are the redirect URIs the client may use, compared as
	// exact strings. Empty means any http or https URI whose host is
	// 127.0.0.1, ::1 or localhost, with any port and path.
	RedirectURIs []string
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

// authenticateClient returns the client whose id and secret these are.
func (s *Server) authenticateClient(id, secret string) (Client, bool) {
	c, ok := s.client(id)
	if !ok || !secretEqual(c.Secret, secret) {
		return Client{}, false
	}
	return c, true
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
