package upstreamtest

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/url"
	"slices"
	"strings"
)

// passwordGrantType is the grant_type of the resource owner password
// credentials grant (RFC 6749 §4.3).
const passwordGrantType = "password"

// errBadCredentials is the one answer to an unknown user and to a wrong
// password, so that the token endpoint does not tell which accounts exist.
var errBadCredentials = badRequest("invalid_grant", "invalid username or password")

// passwordEnabled reports whether the server supports the password grant:
// it does once a registered client lists "password" in Client.GrantTypes.
// The grant is opt-in, never implied by empty GrantTypes, because RFC 9700
// §2.4 says it must not be used; without such a client, grant_type=password
// is answered unsupported_grant_type and discovery does not advertise it.
func (s *Server) passwordEnabled() bool {
	return slices.ContainsFunc(s.clients, allowsPassword)
}

// allowsPassword reports whether c may use the password grant: only when
// its GrantTypes list "password", whether it is confidential or public
// (RFC 6749 §4.3.2 authenticates the client only when it can be).
func allowsPassword(c Client) bool {
	return slices.Contains(c.GrantTypes, passwordGrantType)
}

// passwordGrant handles grant_type=password (RFC 6749 §4.3.2): username
// is matched against User.Username, else User.Email; password against
// User.Password in constant time. A user with an empty Password never
// signs in this way. Success issues what the code flow does: an access
// token, a refresh token (unless Config.NoRefreshTokens) and, with scope
// openid, an ID token without nonce whose auth_time is now.
func (s *Server) passwordGrant(client Client, form url.Values) (tokenResponse, *tokenError) {
	switch {
	case !s.passwordEnabled():
		return tokenResponse{}, badRequest("unsupported_grant_type", "grant_type password is not supported")
	case !allowsPassword(client):
		return tokenResponse{}, badRequest("unauthorized_client", "the client may not use grant_type password")
	}
	username, password := form.Get("username"), form.Get("password")
	if username == "" || password == "" {
		return tokenResponse{}, badRequest("invalid_request", "username and password are required")
	}
	user, ok := s.checkPassword(username, password)
	if !ok {
		return tokenResponse{}, errBadCredentials
	}
	scope := strings.Join(strings.Fields(form.Get("scope")), " ")
	g := &grant{clientID: client.ID, user: user, scope: scope, authTime: s.now(), sid: s.newSessionID(user)}
	return s.issue(g, scope, "")
}

// checkPassword returns the user whose username (else email) is username,
// when password is theirs. It does the same work for an unknown user, a
// user without a password and a wrong password, and compares digests so
// that the time taken depends on neither password's length.
func (s *Server) checkPassword(username, password string) (User, bool) {
	i := slices.IndexFunc(s.users, func(u User) bool { return u.Username == username })
	if i < 0 {
		i = slices.IndexFunc(s.users, func(u User) bool { return u.Email != "" && u.Email == username })
	}
	var want string
	if i >= 0 {
		want = s.users[i].Password
	}
	w, g := sha256.Sum256([]byte(want)), sha256.Sum256([]byte(password))
	match := subtle.ConstantTimeCompare(w[:], g[:]) == 1
	if i < 0 || want == "" || !match {
		return User{}, false
	}
	return s.users[i], true
}
