package upstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The implicit grant (RFC 6749 §4.2, OpenID Connect Core §3.2) hands the
// tokens to the browser in the authorization response. RFC 9700 §2.1.2
// says clients should not use it; the gateway supports it for servers and
// registrations that allow nothing else, keeps the tokens out of URLs it
// builds, and turns them into a server-side session at once.

// ImplicitURL returns the authorize endpoint URL of an implicit login:
// response_type "id_token token" with scope openid (else "token"), the
// state and nonce of r, and response_mode=form_post when the server lists
// it (formPost reports that), else the fragment.
func (c *Client) ImplicitURL(ctx context.Context, r AuthRequest) (authURL string, formPost bool, err error) {
	m, err := c.Metadata(ctx)
	if err != nil {
		return "", false, err
	}
	q := url.Values{}
	for k, v := range c.cfg.AuthorizationParams {
		q.Set(k, v)
	}
	if r.Prompt != "" {
		q.Set("prompt", r.Prompt)
	}
	rt := "token"
	if c.isOpenID() {
		rt = "id_token token"
	}
	q.Set("response_type", rt)
	q.Set("client_id", c.cfg.ClientID)
	q.Set("redirect_uri", r.RedirectURI)
	q.Set("scope", strings.Join(c.cfg.Scopes, " "))
	q.Set("state", r.State)
	if !r.Nonce.IsZero() {
		q.Set("nonce", r.Nonce.Reveal())
	}
	formPost = slices.Contains(m.ResponseModesSupported, "form_post")
	if formPost {
		q.Set("response_mode", "form_post")
	}
	return appendQuery(m.AuthorizationEndpoint, q), formPost, nil
}

// ImplicitParams are the authorization response parameters of the
// implicit grant the gateway reads (OpenID Connect Core §3.2.2.5).
var ImplicitParams = []string{"access_token", "token_type", "expires_in", "scope", "id_token", "state", "iss", "error", "error_description"}

// CompleteImplicit verifies the tokens of a successful implicit response
// (OpenID Connect Core §3.2.2.8–11): an access token of type Bearer; with
// scope openid an ID token signed by the server's key, for this client,
// with nonce and an at_hash that matches the access token (required here:
// it is what ties the access token to the ID token); then the identity as
// the code flow builds it, userinfo merged. There is no refresh token.
func (c *Client) CompleteImplicit(ctx context.Context, p url.Values, nonce Secret) (*Login, error) {
	now := c.now()
	at := p.Get("access_token")
	if at == "" {
		return nil, errors.New("implicit response: no access_token")
	}
	if tt := p.Get("token_type"); tt != "" && !strings.EqualFold(tt, "bearer") {
		return nil, fmt.Errorf("implicit response: unsupported token_type %q", truncate(tt, 20))
	}
	tok := &Token{AccessToken: Secret(at), TokenType: "Bearer", IDToken: Secret(p.Get("id_token")), Scope: p.Get("scope"), Issued: now}
	if secs := parseExpiresIn(json.RawMessage(p.Get("expires_in"))); secs > 0 {
		tok.Expiry = now.Add(time.Duration(secs) * time.Second)
	}
	if c.isOpenID() {
		if tok.IDToken.IsZero() {
			return nil, fmt.Errorf("%w: the implicit response has no id_token for scope openid", ErrInvalidIDToken)
		}
		if !hasStringClaim(tok.IDToken.Reveal(), "at_hash") {
			return nil, fmt.Errorf("%w: no at_hash binds the access token to the ID token", ErrInvalidIDToken)
		}
	}
	id, err := c.identify(ctx, tok, nonce) // signature, iss, aud, exp, nonce, at_hash
	if err != nil {
		return nil, err
	}
	if tok.Expiry.IsZero() && !tok.IDToken.IsZero() {
		// No expires_in: the access token lives no longer than the ID
		// token that vouches for it, so the session renews in time.
		if exp := numericClaim(tok.IDToken.Reveal(), "exp"); exp > 0 {
			tok.Expiry = time.Unix(exp, 0)
		}
	}
	return &Login{Token: tok, Identity: id}, nil
}

// numericClaim reads a numeric claim of a JWT already verified; 0 when
// absent.
func numericClaim(raw, k string) int64 {
	claims := payloadClaims(raw)
	var v float64
	if json.Unmarshal(claims[k], &v) != nil {
		return 0
	}
	return int64(v)
}

// payloadClaims decodes a compact JWT's payload, unverified; nil when it
// is not one.
func payloadClaims(raw string) map[string]json.RawMessage {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || len(raw) > maxTokenSize {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims map[string]json.RawMessage
	if json.Unmarshal(b, &claims) != nil {
		return nil
	}
	return claims
}

// hasStringClaim reports whether a compact JWT's payload has claim k as a
// non-empty string (unverified: the signature is checked afterwards, with
// the claim's value).
func hasStringClaim(raw, k string) bool {
	var v string
	return json.Unmarshal(payloadClaims(raw)[k], &v) == nil && v != ""
}
