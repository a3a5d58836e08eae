package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// ErrNoIntrospection means the server has no introspection endpoint, so
// opaque caller tokens cannot be validated.
var ErrNoIntrospection = errors.New("the authorization server has no introspection_endpoint")

// Introspect asks the server about an opaque access token (RFC 7662),
// authenticating as configured, and applies the checks a resource server
// owes: active, not expired, and (when audience is set) issued for it; a
// token the server calls inactive, or that fails a check, wraps
// ErrInvalidToken. A server that cannot be reached wraps ErrUnavailable;
// one that refuses the gateway's own authentication is a *TokenError.
func (c *Client) Introspect(ctx context.Context, token Secret, audience string) (*AccessToken, error) {
	m, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	if m.IntrospectionEndpoint == "" {
		return nil, ErrNoIntrospection
	}
	form := url.Values{"token": {token.Reveal()}, "token_type_hint": {"access_token"}}
	status, body, err := c.postForm(ctx, "introspection", m.IntrospectionEndpoint, form)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		te := &TokenError{StatusCode: status}
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil {
			te.Code = c.redact(e.Error, form, 60)
		}
		if !protocolStatus(status, te.Code) {
			return nil, fmt.Errorf("%w: introspection: %w", ErrUnavailable, te)
		}
		return nil, fmt.Errorf("introspection: %w", te)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(body, &claims); err != nil {
		return nil, malformed("introspection: answer is not a JSON object")
	}
	if active, _ := claims["active"].(bool); !active {
		return nil, fmt.Errorf("%w: inactive", ErrInvalidToken)
	}
	at := &AccessToken{Scope: scopeOf(claims["scope"])}
	at.ClientID, _ = claims["client_id"].(string)
	if exp, ok := claims["exp"].(float64); ok {
		at.Expiry = time.Unix(int64(exp), 0)
		if !c.now().Before(at.Expiry.Add(min(c.cfg.ClockSkew, maxAccessTokenLeeway))) {
			return nil, fmt.Errorf("%w: expired", ErrInvalidToken)
		}
	}
	if iss, ok := claims["iss"].(string); ok && c.cfg.Issuer != "" && iss != c.cfg.Issuer {
		return nil, fmt.Errorf("%w: issued by another server", ErrInvalidToken)
	}
	if audience != "" {
		// RFC 7662 §2.2: aud is optional; a token without one passes only
		// when it was issued to the audience as a client.
		if aud, ok := claims["aud"]; ok && !hasAudience(aud, audience) || !ok && at.ClientID != audience {
			return nil, fmt.Errorf("%w: not issued for this audience", ErrInvalidToken)
		}
	}
	if _, ok := claims["sub"]; !ok && at.ClientID != "" {
		claims["sub"] = at.ClientID // a client credentials token names no user
	}
	at.Identity = c.completeUser(c.identityFrom(claims))
	if at.Identity.Subject == "" {
		return nil, fmt.Errorf("%w: introspection names no subject", ErrInvalidToken)
	}
	return at, nil
}
