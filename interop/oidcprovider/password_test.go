package oidcprovider_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/interop/oidcprovider"
	"github.com/authgate/authgate/upstream"
)

const (
	ropcID     = "ropc"
	ropcSecret = "ropc-secret"
	alicePass  = "alice-password-3b9e"
	ropcScope  = "openid offline_access email profile groups"
)

// startPasswordServer runs oidc-provider with the password grant module,
// a client allowed it and the refresh grant, one allowed it alone with a
// scope allow-list, the default client (which may not use it), and alice
// and bob with passwords.
func startPasswordServer(t *testing.T) *oidcprovider.Server {
	t.Helper()
	accounts := oidcprovider.DefaultAccounts()
	accounts[0].Password = alicePass
	accounts[1].Password = "bob-password-77c1"
	return oidcprovider.Start(t, oidcprovider.Config{
		Grants: []string{"password"},
		Clients: []oidcprovider.Client{
			// response_types []: with the default, [code], oidc-provider
			// requires redirect_uris.
			{ID: ropcID, Secret: ropcSecret, GrantTypes: []string{"password", "refresh_token"}, Extra: map[string]any{"response_types": []string{}}},
			{ID: "ropc-narrow", Secret: ropcSecret, GrantTypes: []string{"password"}, Scope: "openid email", Extra: map[string]any{"response_types": []string{}}},
			oidcprovider.DefaultClient("http://127.0.0.1/callback"),
		},
		Accounts: accounts,
	})
}

// tokenAnswer is a token endpoint answer, success or error.
type tokenAnswer struct {
	status           int
	raw              string
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int    `json:"expires_in"`
	RefreshToken     string `json:"refresh_token"`
	IDToken          string `json:"id_token"`
	Scope            string `json:"scope"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// postToken posts form to op's token endpoint as client id/secret
// (client_secret_basic).
func postToken(t *testing.T, op *oidcprovider.Server, id, secret string, form url.Values) tokenAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, op.URL+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := tokenAnswer{status: resp.StatusCode, raw: string(body)}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("token answer %d %q: %v", resp.StatusCode, body, err)
	}
	return a
}

func passwordForm(username, password, scope string) url.Values {
	return url.Values{"grant_type": {"password"}, "username": {username}, "password": {password}, "scope": {scope}}
}

// payload decodes a JWT's claims without verifying it (upstream.Client
// verifies in TestPasswordGrantUpstreamClient).
func payload(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("ID token %q is not a compact JWS", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestPasswordGrant(t *testing.T) {
	op := startPasswordServer(t)

	start := time.Now().Unix()
	res := postToken(t, op, ropcID, ropcSecret, passwordForm("alice", alicePass, ropcScope))
	if res.status != http.StatusOK || res.AccessToken == "" || res.RefreshToken == "" || res.IDToken == "" {
		t.Fatalf("password grant: got %d %s, want 200 with access, refresh and ID tokens", res.status, res.raw)
	}
	if res.TokenType != "Bearer" || res.ExpiresIn <= 0 || res.Scope != ropcScope {
		t.Errorf("got token_type %q, expires_in %d, scope %q; want Bearer, > 0, %q", res.TokenType, res.ExpiresIn, res.Scope, ropcScope)
	}
	claims := payload(t, res.IDToken)
	for k, want := range map[string]any{"sub": "alice", "aud": ropcID, "iss": op.URL, "email": "alice@example.com", "preferred_username": "alice", "name": "Alice Example"} {
		if claims[k] != want {
			t.Errorf("ID token %s: got %v, want %v", k, claims[k], want)
		}
	}
	for _, k := range []string{"iat", "exp", "auth_time"} {
		if n, _ := claims[k].(float64); int64(n) < start-5 {
			t.Errorf("ID token %s: got %v, want a time from %d on", k, claims[k], start)
		}
	}
	if h, _ := claims["at_hash"].(string); h == "" {
		t.Errorf("ID token at_hash: got %v, want it set", claims["at_hash"])
	}
	if groups, _ := claims["groups"].([]any); len(groups) != 2 {
		t.Errorf("ID token groups: got %v, want [admins staff]", claims["groups"])
	}
	if _, ok := claims["password"]; ok || strings.Contains(res.raw, alicePass) {
		t.Errorf("token answer carries the password: %s", res.raw)
	}

	t.Run("another account", func(t *testing.T) {
		if got := postToken(t, op, ropcID, ropcSecret, passwordForm("bob", "bob-password-77c1", "openid")); got.status != http.StatusOK || payload(t, got.IDToken)["sub"] != "bob" {
			t.Errorf("bob: got %d %s, want 200 and sub bob", got.status, got.raw)
		}
	})

	t.Run("wrong password and unknown user answer alike", func(t *testing.T) {
		wrong := postToken(t, op, ropcID, ropcSecret, passwordForm("alice", "bob-password-77c1", ropcScope))
		unknown := postToken(t, op, ropcID, ropcSecret, passwordForm("mallory", alicePass, ropcScope))
		noPassword := postToken(t, op, ropcID, ropcSecret, passwordForm("alice", "", ropcScope))
		if wrong.status != http.StatusBadRequest || wrong.Error != "invalid_grant" || wrong.AccessToken != "" {
			t.Errorf("wrong password: got %d %s, want 400 invalid_grant", wrong.status, wrong.raw)
		}
		if unknown.raw != wrong.raw || unknown.status != wrong.status {
			t.Errorf("unknown user: got %d %s, want the wrong password's %d %s", unknown.status, unknown.raw, wrong.status, wrong.raw)
		}
		if noPassword.status != http.StatusBadRequest || noPassword.AccessToken != "" {
			t.Errorf("empty password: got %d %s, want 400", noPassword.status, noPassword.raw)
		}
	})

	t.Run("refresh", func(t *testing.T) {
		next := postToken(t, op, ropcID, ropcSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {res.RefreshToken}})
		if next.status != http.StatusOK || next.AccessToken == "" || next.AccessToken == res.AccessToken {
			t.Fatalf("refresh: got %d %s, want 200 with a new access token", next.status, next.raw)
		}
		if next.IDToken != "" && payload(t, next.IDToken)["sub"] != "alice" {
			t.Errorf("refreshed ID token sub: got %v, want alice", payload(t, next.IDToken)["sub"])
		}
		if got := userinfoSub(t, op, next.AccessToken); got != "alice" {
			t.Errorf("userinfo with the refreshed token: got sub %q, want alice", got)
		}
	})

	t.Run("no offline_access, no refresh token", func(t *testing.T) {
		got := postToken(t, op, ropcID, ropcSecret, passwordForm("alice", alicePass, "openid email"))
		if got.status != http.StatusOK || got.RefreshToken != "" || got.IDToken == "" {
			t.Errorf("got %d %s, want 200 with an ID token and no refresh token", got.status, got.raw)
		}
	})

	t.Run("scope beyond the client's", func(t *testing.T) {
		got := postToken(t, op, "ropc-narrow", ropcSecret, passwordForm("alice", alicePass, "openid groups"))
		if got.status != http.StatusBadRequest || got.Error != "invalid_scope" {
			t.Errorf("got %d %s, want 400 invalid_scope", got.status, got.raw)
		}
		if ok := postToken(t, op, "ropc-narrow", ropcSecret, passwordForm("alice", alicePass, "openid email")); ok.status != http.StatusOK || ok.RefreshToken != "" {
			t.Errorf("within the client's scope: got %d %s, want 200 without a refresh token (no refresh_token grant)", ok.status, ok.raw)
		}
	})

	t.Run("client without the grant", func(t *testing.T) {
		got := postToken(t, op, "authgate", "authgate-secret", passwordForm("alice", alicePass, ropcScope))
		if got.status != http.StatusBadRequest || got.AccessToken != "" {
			t.Errorf("got %d %s, want 400 and no token", got.status, got.raw)
		}
	})

	t.Run("discovery", func(t *testing.T) {
		resp, err := http.Get(op.URL + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var md struct {
			GrantTypes []string `json:"grant_types_supported"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(md.GrantTypes, "password") {
			t.Errorf("grant_types_supported: got %v, want password among them", md.GrantTypes)
		}
	})

	if strings.Contains(op.Log(), alicePass) {
		t.Errorf("the server's log contains the password")
	}
}

// userinfoSub returns the sub oidc-provider's userinfo endpoint reports for
// an access token.
func userinfoSub(t *testing.T, op *oidcprovider.Server, accessToken string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, op.URL+"/me", nil)
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo: got %d %s, want 200", resp.StatusCode, body)
	}
	var info struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatal(err)
	}
	return info.Sub
}

// TestPasswordGrantUpstreamClient runs the gateway's own client,
// upstream.Client.Password, against oidc-provider: discovery, client
// authentication, ID token verification (JWKS, iss, aud, at_hash),
// userinfo, then Refresh.
func TestPasswordGrantUpstreamClient(t *testing.T) {
	op := startPasswordServer(t)
	c, err := upstream.New(upstream.Config{
		Issuer:       op.URL,
		ClientID:     ropcID,
		ClientSecret: ropcSecret,
		Scopes:       strings.Fields(ropcScope),
		Timeout:      5 * time.Second,
	}, upstream.Deps{})
	if err != nil {
		t.Fatalf("upstream.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	l, err := c.Password(ctx, "alice", alicePass)
	if err != nil {
		t.Fatalf("Password: %v", err)
	}
	id := l.Identity
	if id.Subject != "alice" || id.Email != "alice@example.com" || !id.EmailVerified || id.PreferredUsername != "alice" || !slices.Equal(id.Groups, []string{"admins", "staff"}) {
		t.Errorf("Identity: got %+v, want alice with email, preferred_username and groups", id)
	}
	if l.Token.RefreshToken.IsZero() {
		t.Fatal("Password: got no refresh token, want one (offline_access)")
	}
	fresh, err := c.Refresh(ctx, *l.Token)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if fresh.AccessToken == l.Token.AccessToken {
		t.Errorf("Refresh: got the same access token, want a new one")
	}

	for _, creds := range [][2]string{{"alice", "wrong"}, {"mallory", alicePass}} {
		_, err := c.Password(ctx, creds[0], upstream.Secret(creds[1]))
		if !upstream.IsInvalidGrant(err) {
			t.Errorf("Password(%s, bad credentials): got %v, want invalid_grant", creds[0], err)
		}
		if err != nil && strings.Contains(err.Error(), creds[1]) {
			t.Errorf("error %q contains the password", err)
		}
	}
}
