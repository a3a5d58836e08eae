package upstream

import (
	"context"
	"crypto/rand"
	"errors"
	"net/url"
)

// Probes for `authgate check -online`: each asks the authorization server
// something whose answer tells whether the configuration is right, and
// changes nothing there.

// KeyCount fetches the JWKS now and returns how many of its keys can verify
// tokens. The keys held for verification are left as they are.
func (c *Client) KeyCount(ctx context.Context) (int, error) {
	keys, err := c.srv.keys.fetch(ctx)
	return len(keys), err
}

// ErrMadeUpCodeAccepted is ProbeClientAuth's answer when the token endpoint
// issued tokens for an authorization code that does not exist.
var ErrMadeUpCodeAccepted = errors.New("the token endpoint accepted a made-up authorization code")

// ProbeClientAuth asks the token endpoint to redeem an authorization code
// that was never issued, authenticating as this client. A server
// authenticates the client before it looks at the grant (RFC 6749 §3.2.1,
// §5.2), so the answer tells a client registration that works
// (invalid_grant: the client was accepted, the code was not) from one that
// does not (invalid_client, or unauthorized_client for a client that may not
// use the code flow). It returns nil for invalid_grant, else the error (a
// *TokenError for any other refusal). No user, code or token is involved.
func (c *Client) ProbeClientAuth(ctx context.Context, redirectURI string) error {
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {"authgate-check-" + rand.Text()},
		"redirect_uri":  {redirectURI},
		"code_verifier": {NewVerifier().Reveal()},
	}
	_, err := c.token(ctx, form)
	if err == nil {
		return ErrMadeUpCodeAccepted
	}
	var te *TokenError
	if errors.As(err, &te) && te.Code == "invalid_grant" && !errors.Is(err, ErrUnavailable) {
		return nil
	}
	return err
}
