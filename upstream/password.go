package upstream

import (
	"context"
	"errors"
	"net/url"
	"strings"
)

// ErrNoCredentials is returned by Password, before any request is sent,
// when the username or the password is empty (RFC 6749 §4.3.2 requires
// both).
var ErrNoCredentials = errors.New("password grant: username and password are required")

// Password signs a user in with the resource owner password credentials
// grant (RFC 6749 §4.3): it posts grant_type=password with username,
// password and Config.Scopes to the token endpoint, authenticating as
// configured, then builds the identity as Exchange does (the ID token
// verified when the server sent one, no nonce since this grant has no
// authorization request; the userinfo answer merged; the claim mapping
// applied).
//
// A wrong password or an unknown user is answered invalid_grant (RFC 6749
// §5.2): IsInvalidGrant reports it, and the caller should tell the user
// no more than that. The password travels only in the request body; no
// error carries it, even when the server echoes it in error_description.
// Throttling is the caller's business (SECURITY.md 35).
func (c *Client) Password(ctx context.Context, username string, password Secret) (*Login, error) {
	if username == "" || password.IsZero() {
		return nil, ErrNoCredentials
	}
	form := url.Values{
		"grant_type": {"password"},
		"username":   {username},
		"password":   {password.Reveal()},
	}
	if len(c.cfg.Scopes) > 0 {
		form.Set("scope", strings.Join(c.cfg.Scopes, " "))
	}
	tok, err := c.token(ctx, form)
	if err != nil {
		return nil, err
	}
	id, err := c.identify(ctx, tok, "")
	if err != nil {
		return nil, err
	}
	return &Login{Token: tok, Identity: id}, nil
}
