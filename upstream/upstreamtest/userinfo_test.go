package upstreamtest_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

// subject returns the sub /userinfo reports for an access token.
func subject(t *testing.T, srv *upstreamtest.Server, accessToken string) string {
	t.Helper()
	resp, body := get(t, srv.URL+"/userinfo", bearer(accessToken))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo: got %d %s, want 200", resp.StatusCode, body)
	}
	var info struct{ Sub string }
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatal(err)
	}
	return info.Sub
}

func TestUserinfo(t *testing.T) {
	for _, groupsInUserinfoOnly := range []bool{false, true} {
		srv := newServer(t, upstreamtest.Config{GroupsInUserinfoOnly: groupsInUserinfoOnly})
		res := login(t, srv)
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			req, _ := http.NewRequest(method, srv.URL+"/userinfo", nil)
			req.Header.Set("Authorization", "Bearer "+res.AccessToken)
			resp, body := do(t, req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: got %d, want 200", method, resp.StatusCode)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("%s: got Cache-Control %q, want no-store", method, got)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{
				"sub":                "user-alice",
				"email":              "alice@example.com",
				"email_verified":     true,
				"name":               "Alice Example",
				"preferred_username": "alice",
				"groups":             []any{"admins", "staff"},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("GroupsInUserinfoOnly=%v %s: got %v, want %v", groupsInUserinfoOnly, method, got, want)
			}
		}
	}
}

func TestUserinfoRejects(t *testing.T) {
	clk := newClock()
	srv := newServer(t, upstreamtest.Config{Now: clk.Now, AccessTokenTTL: time.Minute})
	res := login(t, srv)
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(res.AccessToken, claims); err != nil {
		t.Fatal(err)
	}

	withHeader := func(alg jwt.SigningMethod, key any, edit func(*jwt.Token)) string {
		tok := jwt.NewWithClaims(alg, claims)
		tok.Header["typ"] = "at+jwt"
		tok.Header["kid"] = srv.KeyID()
		if edit != nil {
			edit(tok)
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pubDER, err := x509.MarshalPKIXPublicKey(srv.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	foreign, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		header    http.Header
		wantError bool // error="invalid_token" in WWW-Authenticate
	}{
		{name: "no Authorization", header: nil},
		{name: "basic scheme", header: http.Header{"Authorization": {"Basic YTpi"}}},
		{name: "empty bearer", header: http.Header{"Authorization": {"Bearer "}}},
		{name: "garbage", header: bearer("garbage"), wantError: true},
		{name: "10000 dots", header: bearer(strings.Repeat(".", 10000)), wantError: true},
		{name: "50000 dots", header: bearer(strings.Repeat(".", 50000)), wantError: true},
		{name: "id_token as access token", header: bearer(res.IDToken), wantError: true},
		{name: "alg none", header: bearer(withHeader(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil)), wantError: true},
		{name: "HS256 with the public key", header: bearer(withHeader(jwt.SigningMethodHS256, pubPEM, nil)), wantError: true},
		{name: "foreign key, our kid", header: bearer(withHeader(jwt.SigningMethodRS256, foreign, nil)), wantError: true},
		{name: "jku elsewhere", header: bearer(withHeader(jwt.SigningMethodRS256, foreign, func(tok *jwt.Token) { tok.Header["jku"] = "https://evil.example/jwks" })), wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			resp, _ := get(t, srv.URL+"/userinfo", tt.header)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("got %d, want 401", resp.StatusCode)
			}
			wa := resp.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(wa, "Bearer") || strings.Contains(wa, `error="invalid_token"`) != tt.wantError {
				t.Errorf("got WWW-Authenticate %q, want Bearer with error=invalid_token %v", wa, tt.wantError)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %v, want a fast answer", took)
			}
		})
	}

	t.Run("expired", func(t *testing.T) {
		if sub := subject(t, srv, res.AccessToken); sub != "user-alice" {
			t.Fatalf("before expiry: got sub %q", sub)
		}
		clk.Advance(61 * time.Second)
		resp, _ := get(t, srv.URL+"/userinfo", bearer(res.AccessToken))
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("after expiry: got %d %q, want 401 invalid_token", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
}

func TestUserinfoAfterRefresh(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	first := login(t, srv)
	second := refresh(t, srv, goodAuth, first.RefreshToken)
	for name, at := range map[string]string{"old": first.AccessToken, "new": second.AccessToken} {
		if sub := subject(t, srv, at); sub != "user-alice" {
			t.Errorf("%s access token: got sub %q, want user-alice", name, sub)
		}
	}
}
