package upstream

import (
	"context"
	"net/url"
	"strings"
)

// ClientCredentialsRequest is what a client credentials token is for.
// Everything in it comes from configuration, never from a request
// (SECURITY.md 37).
type ClientCredentialsRequest struct {
	// Scopes are requested as "scope"; none when empty.
	Scopes []string
	// Audience is sent as "audience" when set (Auth0, Okta, and other
	// servers that name the API that way).
	Audience string
	// Resource is sent as the RFC 8707 resource indicator when set.
	Resource string
}

// ClientCredentials obtains the gateway's own access token (RFC 6749 §4.4),
// authenticating as configured. The token has no refresh token: renew it
// by asking again.
func (c *Client) ClientCredentials(ctx context.Context, r ClientCredentialsRequest) (*Token, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(r.Scopes) > 0 {
		form.Set("scope", strings.Join(r.Scopes, " "))
	}
	if r.Audience != "" {
		form.Set("audience", r.Audience)
	}
	if r.Resource != "" {
		form.Set("resource", r.Resource)
	}
	tok, err := c.token(ctx, form)
	if err != nil {
		return nil, err
	}
	tok.RefreshToken, tok.IDToken = "", ""
	return tok, nil
}

// ForClient returns a Client for another registration (id and secret) at
// the same authorization server: one gateway, several service identities.
// It authenticates with the secret, as c does when c uses one (basic or
// post), else with client_secret_basic.
func (c *Client) ForClient(id string, secret Secret) (*Client, error) {
	cfg := c.cfg
	if cfg.ClientAuth != ClientSecretPost {
		cfg.ClientAuth = ClientSecretBasic
	}
	cfg.ClientID, cfg.ClientSecret = id, secret
	cfg.PrivateKeyFile, cfg.PrivateKeyID, cfg.PrivateKeyAlgorithm, cfg.ClientAssertionFile, cfg.ClientAssertionAudience = "", "", "", "", ""
	cfg.TLSClientCertFile, cfg.TLSClientKeyFile = "", ""
	other, err := New(cfg, Deps{HTTPClient: c.http, Now: c.now, Logger: c.log, Observer: c.obs, TracerProvider: c.tp})
	if err != nil {
		return nil, err
	}
	other.srv = c.srv // the same server: one discovery, one key set
	return other, nil
}
