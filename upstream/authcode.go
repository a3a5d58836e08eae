package upstream

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// AuthRequest is one authorization request of the code flow.
type AuthRequest struct {
	// RedirectURI is the gateway's callback URL, built from configuration,
	// never from request headers.
	RedirectURI string
	// State is the CSRF token bound to the browser (RFC 6749 §10.12).
	State string
	// Nonce binds the ID token to this login (OpenID Connect Core §3.1.2.1).
	Nonce Secret
	// Verifier is the PKCE code_verifier; only its S256 challenge is sent.
	Verifier Secret
	// Prompt is sent as the prompt parameter when set, replacing any
	// prompt of Config.AuthorizationParams: "none" asks the server to
	// answer without showing the user anything (OpenID Connect Core
	// §3.1.2.1), for a silent re-authentication.
	Prompt string
}

// NewVerifier returns a fresh PKCE code verifier: 32 random bytes,
// base64url, 43 characters (RFC 7636 §4.1).
func NewVerifier() Secret {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand, Go ≥1.24)
	return Secret(base64.RawURLEncoding.EncodeToString(b))
}

// S256 is the PKCE S256 challenge of verifier (RFC 7636 §4.2).
func S256(verifier Secret) string {
	sum := sha256.Sum256([]byte(verifier.Reveal()))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// AuthCodeURL returns the authorize endpoint URL that starts a login.
// PKCE is always S256; "plain" is never used.
func (c *Client) AuthCodeURL(ctx context.Context, r AuthRequest) (string, error) {
	m, err := c.Metadata(ctx)
	if err != nil {
		return "", err
	}
	q := url.Values{}
	for k, v := range c.cfg.AuthorizationParams {
		q.Set(k, v)
	}
	if r.Prompt != "" {
		q.Set("prompt", r.Prompt)
	}
	for k, v := range map[string]string{
		"response_type":         "code",
		"client_id":             c.cfg.ClientID,
		"redirect_uri":          r.RedirectURI,
		"scope":                 strings.Join(c.cfg.Scopes, " "),
		"state":                 r.State,
		"code_challenge":        S256(r.Verifier),
		"code_challenge_method": "S256",
	} {
		q.Set(k, v)
	}
	if !r.Nonce.IsZero() {
		q.Set("nonce", r.Nonce.Reveal())
	}
	return appendQuery(m.AuthorizationEndpoint, q), nil
}

// appendQuery adds q to endpoint, keeping any query it already has.
func appendQuery(endpoint string, q url.Values) string {
	sep := "?"
	if strings.Contains(endpoint, "?") {
		sep = "&"
	}
	return endpoint + sep + q.Encode()
}

// CheckIssuer applies RFC 9207 to the authorization response: an "iss"
// parameter must equal the issuer exactly; its absence is an error when the
// server advertises authorization_response_iss_parameter_supported.
func (c *Client) CheckIssuer(ctx context.Context, iss string, present bool) error {
	m, err := c.Metadata(ctx)
	if err != nil {
		return err
	}
	if present {
		if c.cfg.Issuer == "" || iss != c.cfg.Issuer {
			return ErrIssuerMismatch
		}
		return nil
	}
	if m.AuthorizationResponseIssParamSupported {
		return fmt.Errorf("%w: iss parameter missing", ErrIssuerMismatch)
	}
	return nil
}

// Login is the result of a completed code flow.
type Login struct {
	// Token holds the tokens the token endpoint issued.
	Token *Token
	// Identity is the verified ID token's identity, with the userinfo
	// endpoint's claims merged in.
	Identity *Identity
}

// Exchange redeems an authorization code (RFC 6749 §4.1.3 with the PKCE
// verifier), validates the ID token against nonce, and completes the
// identity from the userinfo endpoint when the server has one.
func (c *Client) Exchange(ctx context.Context, code string, r AuthRequest) (*Login, error) {
	tok, err := c.token(ctx, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {r.RedirectURI},
		"code_verifier": {r.Verifier.Reveal()},
	})
	if err != nil {
		return nil, err
	}
	id, err := c.identify(ctx, tok, r.Nonce)
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken.IsZero() && slices.Contains(c.cfg.Scopes, "offline_access") {
		c.noRefreshWarning.Do(func() {
			c.log.WarnContext(ctx, "the authorization server issued no refresh token although scope offline_access was requested: "+
				"sessions end when their access token expires, then a browser is signed in again silently (prompt=none). "+
				"Servers such as oidc-provider issue one only with prompt=consent, Google only with access_type=offline: "+
				"set upstream.authorization_params accordingly, or drop offline_access from upstream.scopes to silence this",
				"issuer", c.cfg.Issuer, "client_id", c.cfg.ClientID)
		})
	}
	return &Login{Token: tok, Identity: id}, nil
}

// identify builds the identity from the ID token and the userinfo endpoint.
func (c *Client) identify(ctx context.Context, tok *Token, nonce Secret) (*Identity, error) {
	var id *Identity
	if !tok.IDToken.IsZero() {
		var err error
		if id, err = c.VerifyIDToken(ctx, tok.IDToken, nonce, tok.AccessToken); err != nil {
			return nil, err
		}
	} else if c.isOpenID() {
		return nil, fmt.Errorf("%w: the token endpoint returned no id_token for scope openid", ErrInvalidIDToken)
	}
	m, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	if m.UserinfoEndpoint == "" {
		if id == nil {
			return nil, errors.New("no ID token and no userinfo endpoint: cannot tell who logged in")
		}
		return c.completeUser(id), nil
	}
	info, err := c.Userinfo(ctx, tok.AccessToken)
	if err != nil {
		return nil, err
	}
	if id == nil {
		return c.completeUser(info), nil
	}
	// OpenID Connect Core §5.3.2: a userinfo answer for another subject
	// must not be used (token substitution).
	if info.Subject != id.Subject {
		return nil, errors.New("userinfo subject differs from the ID token subject")
	}
	id.merge(info)
	return c.completeUser(id), nil
}

// completeUser falls back to the subject when the tokens lack the claim
// that names the user, warning once so the operator can fix the mapping.
func (c *Client) completeUser(id *Identity) *Identity {
	if c.cfg.Claims.User == c.cfg.Claims.Email && !id.EmailVerified {
		id.User = "" // an unverified address names no one (SECURITY.md 10)
	}
	if id.User == "" {
		id.User = id.Subject
		if c.cfg.Claims.User != "sub" {
			c.userClaimWarning.Do(func() {
				c.log.Warn("the claim upstream.claims.user names is missing from the ID token and userinfo (or is an unverified email address); using sub instead",
					"claim", c.cfg.Claims.User, "issuer", c.cfg.Issuer)
			})
		}
	}
	return id
}

func (c *Client) isOpenID() bool { return slices.Contains(c.cfg.Scopes, "openid") }

// Refresh redeems the refresh token of old (RFC 6749 §6). The result keeps
// old's refresh token when the server did not rotate it, and old's ID token
// when it sent none; a new ID token is validated and must name the same
// subject. An invalid_grant answer (IsInvalidGrant) means the user must log
// in again.
func (c *Client) Refresh(ctx context.Context, old Token) (*Token, error) {
	if old.RefreshToken.IsZero() {
		return nil, &TokenError{StatusCode: 400, Code: "invalid_grant", Description: "no refresh token"}
	}
	tok, err := c.token(ctx, url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {old.RefreshToken.Reveal()},
	})
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken.IsZero() {
		tok.RefreshToken = old.RefreshToken
	}
	if tok.IDToken.IsZero() {
		tok.IDToken = old.IDToken
	} else if !old.IDToken.IsZero() {
		// OpenID Connect Core §12.2: same iss, sub, aud; no nonce.
		fresh, err := c.VerifyIDToken(ctx, tok.IDToken, "", tok.AccessToken)
		if err != nil {
			return nil, err
		}
		if prev, err := subjectOf(old.IDToken); err == nil && prev != fresh.Subject {
			return nil, fmt.Errorf("%w: refreshed ID token names another subject", ErrInvalidIDToken)
		}
	}
	return tok, nil
}

// subjectOf reads "sub" of an ID token this gateway validated before.
func subjectOf(raw Secret) (string, error) {
	parts := strings.Split(raw.Reveal(), ".")
	if len(parts) != 3 {
		return "", errors.New("malformed ID token")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", err
	}
	return claims.Sub, nil
}
