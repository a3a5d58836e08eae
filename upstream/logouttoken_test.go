package upstream_test

import (
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream"
)

// logoutClaims are a valid logout token's claims for e's client.
func logoutClaims(e *verifyEnv) jwt.MapClaims {
	now := e.clk.Now()
	return jwt.MapClaims{
		"iss": e.srv.Issuer(), "aud": clientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		"jti": "jti-1", "sub": "user-alice", "sid": "sid-1",
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}
}

// TestVerifyLogoutToken: OpenID Connect Back-Channel Logout 1.0 §2.6, each
// rule with the token that breaks it.
func TestVerifyLogoutToken(t *testing.T) {
	e := newVerifyEnv(t)
	sign := func(edit func(jwt.MapClaims), typ string) string {
		c := logoutClaims(e)
		if edit != nil {
			edit(c)
		}
		raw, err := e.srv.SignTyped(c, typ)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	good := sign(nil, "logout+jwt")
	lt, err := e.c.VerifyLogoutToken(ctx(t), upstream.Secret(good))
	if err != nil {
		t.Fatalf("a valid logout token: %v", err)
	}
	if lt.Subject != "user-alice" || lt.SessionID != "sid-1" || lt.ID != "jti-1" {
		t.Errorf("logout token: got %+v", lt)
	}
	for _, ok := range []struct {
		name  string
		token string
	}{
		{"sid only", sign(func(c jwt.MapClaims) { delete(c, "sub") }, "logout+jwt")},
		{"sub only", sign(func(c jwt.MapClaims) { delete(c, "sid") }, "logout+jwt")},
		{"typ JWT", sign(nil, "JWT")},
	} {
		if _, err := e.c.VerifyLogoutToken(ctx(t), upstream.Secret(ok.token)); err != nil {
			t.Errorf("%s: got %v, want valid", ok.name, err)
		}
	}
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"with a nonce", sign(func(c jwt.MapClaims) { c["nonce"] = "n" }, "logout+jwt")},
		{"another audience", sign(func(c jwt.MapClaims) { c["aud"] = "someone-else" }, "logout+jwt")},
		{"another issuer", sign(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }, "logout+jwt")},
		{"no events", sign(func(c jwt.MapClaims) { delete(c, "events") }, "logout+jwt")},
		{"another event", sign(func(c jwt.MapClaims) { c["events"] = map[string]any{"urn:other": map[string]any{}} }, "logout+jwt")},
		{"event not an object", sign(func(c jwt.MapClaims) {
			c["events"] = map[string]any{"http://schemas.openid.net/event/backchannel-logout": "yes"}
		}, "logout+jwt")},
		{"no iat", sign(func(c jwt.MapClaims) { delete(c, "iat") }, "logout+jwt")},
		{"no exp", sign(func(c jwt.MapClaims) { delete(c, "exp") }, "logout+jwt")},
		{"issued long ago", sign(func(c jwt.MapClaims) {
			c["iat"] = e.clk.Now().Add(-time.Hour).Unix()
		}, "logout+jwt")},
		{"expired", sign(func(c jwt.MapClaims) { c["exp"] = e.clk.Now().Add(-time.Hour).Unix() }, "logout+jwt")},
		{"no jti", sign(func(c jwt.MapClaims) { delete(c, "jti") }, "logout+jwt")},
		{"neither sub nor sid", sign(func(c jwt.MapClaims) { delete(c, "sub"); delete(c, "sid") }, "logout+jwt")},
		{"an access token's typ", sign(nil, "at+jwt")},
		{"unsigned", signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, logoutClaims(e), map[string]any{"kid": e.srv.KeyID()})},
		{"signed by another key", signWith(t, jwt.SigningMethodRS256, foreignKey(), logoutClaims(e), map[string]any{"kid": e.srv.KeyID()})},
		{"an ID token", e.sign(t, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.c.VerifyLogoutToken(ctx(t), upstream.Secret(tc.token)); !errors.Is(err, upstream.ErrInvalidLogoutToken) {
				t.Errorf("got %v, want ErrInvalidLogoutToken", err)
			}
		})
	}
}
