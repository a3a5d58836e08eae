package upstreamtest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

func TestClientCredentials(t *testing.T) {
	clk := newClock()
	srv := newServer(t, upstreamtest.Config{Now: clk.Now, AccessTokenTTL: 5 * time.Minute, Clients: []upstreamtest.Client{
		{ID: clientID, Secret: clientSecret},
		{ID: "limited", Secret: "limited-secret", Scopes: []string{"read", "write"}},
		{ID: "code-only", Secret: "code-secret", GrantTypes: []string{"authorization_code", "refresh_token"}},
		{ID: "public"},
		{ID: "public-listed", AuthMethod: upstreamtest.None, GrantTypes: []string{"client_credentials"}},
	}})
	tests := []struct {
		name    string
		auth    clientAuth
		form    url.Values
		error   string
		wantAud string
		scope   string
	}{
		{name: "no parameters", auth: goodAuth, wantAud: clientID},
		{name: "scope echoed", auth: goodAuth, form: url.Values{"scope": {"read admin"}}, wantAud: clientID, scope: "read admin"},
		{name: "audience", auth: goodAuth, form: url.Values{"audience": {"https://api.example.com"}}, wantAud: "https://api.example.com"},
		{name: "resource wins over audience", auth: goodAuth, form: url.Values{"audience": {"api"}, "resource": {"https://rs.example.com/v1"}}, wantAud: "https://rs.example.com/v1"},
		{name: "relative resource", auth: goodAuth, form: url.Values{"resource": {"/v1"}}, error: "invalid_target"},
		{name: "resource with a fragment", auth: goodAuth, form: url.Values{"resource": {"https://rs.example.com/#x"}}, error: "invalid_target"},
		{name: "allowed scope", auth: clientAuth{id: "limited", secret: "limited-secret"}, form: url.Values{"scope": {"read"}}, wantAud: "limited", scope: "read"},
		{name: "scope beyond the allow-list", auth: clientAuth{id: "limited", secret: "limited-secret"}, form: url.Values{"scope": {"read admin"}}, error: "invalid_scope"},
		{name: "grant not registered", auth: clientAuth{id: "code-only", secret: "code-secret"}, error: "unauthorized_client"},
		{name: "public client", auth: clientAuth{id: "public"}, error: "unauthorized_client"},
		{name: "public client listing the grant", auth: clientAuth{id: "public-listed"}, error: "unauthorized_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := cloneValues(tt.form)
			form.Set("grant_type", "client_credentials")
			var res tokenResult
			if tt.auth.secret == "" && !tt.auth.basic {
				res = send(t, httpClient, srv.URL+"/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {tt.auth.id}}, nil)
			} else {
				res = token(t, srv, tt.auth, form)
			}
			if res.Error != tt.error {
				t.Fatalf("got %d %q (%s), want %q", res.Status, res.Error, res.ErrorDescription, tt.error)
			}
			if tt.error != "" {
				if res.Status != http.StatusBadRequest {
					t.Errorf("got status %d, want 400", res.Status)
				}
				return
			}
			if res.RefreshToken != "" || res.IDToken != "" || res.Scope != tt.scope || res.ExpiresIn != 300 {
				t.Errorf("got refresh %v, id_token %v, scope %q, expires_in %d; want none, none, %q, 300", res.RefreshToken != "", res.IDToken != "", res.Scope, res.ExpiresIn, tt.scope)
			}
			claims := jwt.MapClaims{}
			if _, err := jwt.ParseWithClaims(res.AccessToken, claims, func(*jwt.Token) (any, error) { return srv.PublicKey(), nil },
				jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(clk.Now)); err != nil {
				t.Fatalf("access token: %v", err)
			}
			id := tt.auth.id
			if claims["sub"] != id || claims["client_id"] != id || claims["aud"] != tt.wantAud || claims["iss"] != srv.Issuer() {
				t.Errorf("claims: got sub %v client_id %v aud %v iss %v, want %s, %s, %s, the issuer", claims["sub"], claims["client_id"], claims["aud"], claims["iss"], id, id, tt.wantAud)
			}
		})
	}
	// The raw answer has no refresh_token member at all.
	resp, body := postForm(t, srv.URL+"/token", url.Values{"grant_type": {"client_credentials"}}, basicHeader(clientID, clientSecret))
	if resp.StatusCode != http.StatusOK || strings.Contains(body, "refresh_token") || strings.Contains(body, "id_token") {
		t.Errorf("got %d %s, want 200 without refresh_token and id_token", resp.StatusCode, body)
	}
	if got, want := srv.GrantCount("client_credentials"), len(tests)+1; got != want {
		t.Errorf("GrantCount(client_credentials): got %d, want %d", got, want)
	}
}

func TestAuthorizeRefusesUnregisteredGrant(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{Clients: []upstreamtest.Client{{ID: clientID, Secret: clientSecret, GrantTypes: []string{"client_credentials"}}}})
	if q := authorize(t, srv, authParams(newPKCE())); q.Get("error") != "unauthorized_client" || q.Get("code") != "" {
		t.Errorf("got %v, want error=unauthorized_client and no code", q)
	}
}

// introspect asks srv about tok, as the default client.
func introspect(t *testing.T, srv *upstreamtest.Server, tok string) (int, map[string]any) {
	t.Helper()
	resp, body := postForm(t, srv.URL+"/introspect", url.Values{"token": {tok}}, basicHeader(clientID, clientSecret))
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("introspection %q: %v", body, err)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control: got %q, want no-store", cc)
	}
	return resp.StatusCode, got
}

func TestIntrospect(t *testing.T) {
	for _, opaque := range []bool{false, true} {
		t.Run(map[bool]string{false: "JWT", true: "opaque"}[opaque], func(t *testing.T) {
			clk := newClock()
			srv := newServer(t, upstreamtest.Config{Now: clk.Now, AccessTokenTTL: time.Minute, OpaqueAccessTokens: opaque})
			res := login(t, srv)
			if isJWT := strings.Count(res.AccessToken, ".") == 2; isJWT == opaque {
				t.Fatalf("OpaqueAccessTokens=%v: got access token JWT=%v", opaque, isJWT)
			}
			status, got := introspect(t, srv, res.AccessToken)
			want := map[string]any{
				"active":     true,
				"sub":        "user-alice",
				"client_id":  clientID,
				"scope":      "openid email profile groups",
				"aud":        clientID,
				"iss":        srv.Issuer(),
				"token_type": "Bearer",
				"iat":        float64(clk.Now().Unix()),
				"exp":        float64(clk.Now().Add(time.Minute).Unix()),
			}
			if status != http.StatusOK || !reflect.DeepEqual(got, want) {
				t.Errorf("got %d %v, want 200 %v", status, got, want)
			}
			if sub := subject(t, srv, res.AccessToken); sub != "user-alice" {
				t.Errorf("userinfo: got sub %q, want user-alice", sub)
			}

			inactive := map[string]any{"active": false}
			for name, tok := range map[string]string{"refresh token": res.RefreshToken, "ID token": res.IDToken, "garbage": "garbage", "dots": "a.b.c"} {
				if status, got := introspect(t, srv, tok); status != http.StatusOK || !reflect.DeepEqual(got, inactive) {
					t.Errorf("%s: got %d %v, want 200 %v", name, status, got, inactive)
				}
			}

			// Revoked, then expired.
			second := login(t, srv)
			if resp, _ := postForm(t, srv.URL+"/revoke", url.Values{"token": {res.AccessToken}}, basicHeader(clientID, clientSecret)); resp.StatusCode != http.StatusOK {
				t.Fatalf("revoke: got %d", resp.StatusCode)
			}
			if !srv.Revoked(res.AccessToken) {
				t.Errorf("Revoked: got false after /revoke, want true")
			}
			if _, got := introspect(t, srv, res.AccessToken); !reflect.DeepEqual(got, inactive) {
				t.Errorf("revoked: got %v, want inactive", got)
			}
			clk.Advance(time.Minute)
			if _, got := introspect(t, srv, second.AccessToken); !reflect.DeepEqual(got, inactive) {
				t.Errorf("expired: got %v, want inactive", got)
			}
			if got := srv.Count("introspect"); got != 7 {
				t.Errorf("Count(introspect): got %d, want 7", got)
			}
		})
	}
}

func TestIntrospectAuthenticatesClient(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	tok := login(t, srv).AccessToken
	tests := []struct {
		name   string
		form   url.Values
		header http.Header
		status int
		error  string
	}{
		{"no client authentication", url.Values{"token": {tok}}, nil, 401, "invalid_client"},
		{"wrong secret", url.Values{"token": {tok}}, basicHeader(clientID, "wrong"), 401, "invalid_client"},
		{"no token", url.Values{}, basicHeader(clientID, clientSecret), 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := send(t, httpClient, srv.URL+"/introspect", tt.form, tt.header)
			if res.Status != tt.status || res.Error != tt.error {
				t.Errorf("got %d %q, want %d %q", res.Status, res.Error, tt.status, tt.error)
			}
		})
	}
}

func TestOpaqueClientCredentialsToken(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{OpaqueAccessTokens: true})
	res := token(t, srv, goodAuth, url.Values{"grant_type": {"client_credentials"}, "resource": {"https://rs.example.com"}, "scope": {"read"}})
	if res.Status != http.StatusOK || strings.Contains(res.AccessToken, ".") {
		t.Fatalf("got %d %q, want 200 and an opaque token", res.Status, res.Error)
	}
	_, got := introspect(t, srv, res.AccessToken)
	if got["active"] != true || got["sub"] != clientID || got["aud"] != "https://rs.example.com" || got["scope"] != "read" {
		t.Errorf("got %v, want active, sub %s, aud the resource, scope read", got, clientID)
	}
}

func TestTokenEndpointDown(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	rt := login(t, srv).RefreshToken
	srv.SetTokenEndpointDown(http.StatusServiceUnavailable)
	if res := refresh(t, srv, goodAuth, rt); res.Status != http.StatusServiceUnavailable || res.Error != "temporarily_unavailable" {
		t.Errorf("down: got %d %q, want 503 temporarily_unavailable", res.Status, res.Error)
	}
	if got := srv.GrantCount("refresh_token"); got != 1 {
		t.Errorf("GrantCount(refresh_token): got %d, want 1", got)
	}
	srv.SetTokenEndpointDown(0)
	if res := refresh(t, srv, goodAuth, rt); res.Status != http.StatusOK {
		t.Errorf("back up: got %d %q, want 200 (the refresh token untouched while down)", res.Status, res.Error)
	}
}
