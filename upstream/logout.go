package upstream

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// EndSession is an RP-initiated logout request (OpenID Connect
// RP-Initiated Logout 1.0 §2).
type EndSession struct {
	// Endpoint is the server's end_session_endpoint.
	Endpoint string
	// Params are client_id and, when set, post_logout_redirect_uri.
	Params url.Values
	// IDTokenHint is the session's ID token, which several servers require
	// before they honour post_logout_redirect_uri (§2: RECOMMENDED); empty
	// when the session is gone.
	IDTokenHint Secret
}

// URL is the request as the browser's GET, the hint included. A GET it
// must be: the server finds its own login session by a cookie that
// browsers send cross-site on top-level GET navigations only
// (SameSite=Lax), which is why oidc-provider refuses POST here by default.
// The hint is an ID token for this client, not a credential for any API,
// and its session is already deleted when the browser goes there.
func (e *EndSession) URL() string {
	q := e.Params
	if !e.IDTokenHint.IsZero() {
		q = url.Values{}
		for k, v := range e.Params {
			q[k] = v
		}
		q.Set("id_token_hint", e.IDTokenHint.Reveal())
	}
	return appendQuery(e.Endpoint, q)
}

// EndSession returns the RP-initiated logout request for a session whose
// ID token is idToken (empty when unknown), or nil when the server has no
// end_session_endpoint.
func (c *Client) EndSession(ctx context.Context, postLogoutRedirect string, idToken Secret) (*EndSession, error) {
	m, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	if m.EndSessionEndpoint == "" {
		return nil, nil
	}
	q := url.Values{"client_id": {c.cfg.ClientID}}
	if postLogoutRedirect != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirect)
	}
	return &EndSession{Endpoint: m.EndSessionEndpoint, Params: q, IDTokenHint: idToken}, nil
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
	status, _, err := c.postForm(ctx, "revocation", m.RevocationEndpoint, url.Values{"token": {token.Reveal()}, "token_type_hint": {hint}})
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("revocation endpoint answered status %d", status)
	}
	return nil
}
