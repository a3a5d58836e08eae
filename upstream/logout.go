package upstream

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// EndSessionURL returns the RP-initiated logout URL (OpenID Connect
// RP-Initiated Logout 1.0 §2), or "" when the server has no
// end_session_endpoint. It sends client_id rather than id_token_hint so that
// no token ever rides in a URL the gateway builds.
func (c *Client) EndSessionURL(ctx context.Context, postLogoutRedirect string) (string, error) {
	m, err := c.Metadata(ctx)
	if err != nil {
		return "", err
	}
	if m.EndSessionEndpoint == "" {
		return "", nil
	}
	q := url.Values{"client_id": {c.cfg.ClientID}}
	if postLogoutRedirect != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirect)
	}
	return appendQuery(m.EndSessionEndpoint, q), nil
}

// Revoke revokes a token at the RFC 7009 revocation endpoint; it does nothing
// when the server has none. hint is "refresh_token" or "access_token".
func (c *Client) Revoke(ctx context.Context, token Secret, hint string) error {
	m, err := c.Metadata(ctx)
	if err != nil {
		return err
	}
	if m.RevocationEndpoint == "" || token.IsZero() {
		return nil
	}
	status, _, err := c.postForm(ctx, m.RevocationEndpoint, url.Values{"token": {token.Reveal()}, "token_type_hint": {hint}})
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("revocation endpoint answered status %d", status)
	}
	return nil
}
