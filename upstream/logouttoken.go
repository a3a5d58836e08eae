package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrInvalidLogoutToken wraps every reason to refuse a logout token.
var ErrInvalidLogoutToken = errors.New("invalid logout token")

// backChannelLogoutEvent is the member of a logout token's "events" claim
// that makes it one (OpenID Connect Back-Channel Logout 1.0 §2.4).
const backChannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// MaxLogoutTokenAge is how old a logout token's iat may be: a token is
// delivered at once, so an old one is a replay that outlived the replay
// cache, or a server whose clock is off.
const MaxLogoutTokenAge = 5 * time.Minute

// LogoutToken is a validated logout token: the server ended the login
// session SessionID of Subject (either may be empty, not both).
type LogoutToken struct {
	// Subject is the "sub" claim; empty when the token names only a sid.
	Subject string
	// SessionID is the "sid" claim; empty when the token names only a sub.
	SessionID string
	// ID is the "jti" claim, for the replay check.
	ID string
	// IssuedAt is the "iat" claim.
	IssuedAt time.Time
}

// VerifyLogoutToken validates a back-channel logout token (OpenID Connect
// Back-Channel Logout 1.0 §2.6): signed by a key of the server's JWKS with
// an allowed algorithm, typ absent, JWT or logout+jwt, iss the issuer, aud
// containing the client id, iat present and at most MaxLogoutTokenAge old
// (plus the clock skew), exp present and not passed (§2.4 requires it), a
// jti, sub or sid or both, the back-channel logout event, and no nonce (so
// an ID token cannot pass for one). Remembering jti is the caller's part. Every failure
// wraps ErrInvalidLogoutToken.
func (c *Client) VerifyLogoutToken(ctx context.Context, raw Secret) (*LogoutToken, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidLogoutToken}, args...)...)
	}
	if c.cfg.Issuer == "" {
		return nil, bad("the upstream has no issuer configured")
	}
	var typ any
	claims, _, err := c.parseJWTWith(ctx, raw.Reveal(), jwt.WithIssuedAt(), jwt.WithExpirationRequired())
	if err != nil {
		return nil, bad("%w", err)
	}
	if typ, err = headerTyp(raw.Reveal()); err != nil {
		return nil, bad("%w", err)
	}
	if t, _ := typ.(string); typ != nil && !strings.EqualFold(t, "logout+jwt") && !strings.EqualFold(t, "application/logout+jwt") && !strings.EqualFold(t, "JWT") {
		return nil, bad("typ %q is not logout+jwt", t)
	}
	if _, ok := claims["nonce"]; ok {
		return nil, bad("it carries a nonce (an ID token, not a logout token)")
	}
	events, _ := claims["events"].(map[string]any)
	if _, ok := events[backChannelLogoutEvent].(map[string]any); !ok {
		return nil, bad("no %s event", backChannelLogoutEvent)
	}
	iat, err := claims.GetIssuedAt()
	if err != nil || iat == nil {
		return nil, bad("no iat")
	}
	if age := c.now().Sub(iat.Time); age > MaxLogoutTokenAge+c.cfg.ClockSkew {
		return nil, bad("issued %s ago, more than %s", age.Round(time.Second), MaxLogoutTokenAge)
	}
	lt := &LogoutToken{IssuedAt: iat.Time}
	lt.Subject, _ = claims["sub"].(string)
	lt.SessionID, _ = claims["sid"].(string)
	lt.ID, _ = claims["jti"].(string)
	if lt.ID == "" {
		return nil, bad("no jti")
	}
	if lt.Subject == "" && lt.SessionID == "" {
		return nil, bad("neither sub nor sid")
	}
	return lt, nil
}

// headerTyp returns a compact JWS's "typ" header parameter (nil when
// absent), read after its signature was verified.
func headerTyp(raw string) (any, error) {
	tok, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		return nil, err
	}
	return tok.Header["typ"], nil
}
