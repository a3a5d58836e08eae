package upstream

import "time"

// Token is what the authorization server's token endpoint returned
// (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
type Token struct {
	// AccessToken is sent to the backend as "Authorization: Bearer".
	AccessToken Secret
	// TokenType is the token_type the server returned, usually "Bearer".
	TokenType string
	// RefreshToken renews the access token; empty when the server issued none.
	RefreshToken Secret
	// IDToken is the raw OpenID Connect ID token; empty for plain OAuth 2.0.
	IDToken Secret
	// Expiry is when the access token expires; the zero time means the server
	// did not say (expires_in absent).
	Expiry time.Time
	// Scope is the granted scope when the server reported it.
	Scope string
	// Issued is when the token was requested; with Expiry it gives the
	// token's lifetime. The zero time means unknown.
	Issued time.Time
}

// RenewWithin reports whether the access token should be renewed now: when
// it expires within window, or within a quarter of its lifetime if that is
// shorter, so a token that lives less than window is not renewed on every
// request.
func (t *Token) RenewWithin(now time.Time, window time.Duration) bool {
	if !t.Issued.IsZero() && !t.Expiry.IsZero() {
		window = min(window, t.Expiry.Sub(t.Issued)/4)
	}
	return t.ExpiresWithin(now, window)
}

// ExpiresWithin reports whether the access token expires before now+d.
// A token without a known expiry never does.
func (t *Token) ExpiresWithin(now time.Time, d time.Duration) bool {
	return !t.Expiry.IsZero() && !now.Add(d).Before(t.Expiry)
}
