package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Userinfo fetches the identity from the userinfo endpoint (OpenID Connect
// Core §5.3) with the access token.
func (c *Client) Userinfo(ctx context.Context, accessToken Secret) (*Identity, error) {
	m, err := c.Metadata(ctx)
	if err != nil {
		return nil, err
	}
	if m.UserinfoEndpoint == "" {
		return nil, errors.New("the authorization server has no userinfo endpoint")
	}
	body, err := c.get(ctx, "userinfo", m.UserinfoEndpoint, "application/json", accessToken)
	if err != nil {
		return nil, fmt.Errorf("userinfo: %w", err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(body, &claims); err != nil {
		return nil, malformed("userinfo: answer is not a JSON object (signed userinfo is not supported)")
	}
	id := c.identityFrom(claims)
	if id.Subject == "" {
		return nil, errors.New("userinfo: answer has no sub")
	}
	return id, nil
}
