package upstreamtest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

// passwordClients are the registrations of the password grant tests.
var passwordClients = []upstreamtest.Client{
	{ID: clientID, Secret: clientSecret, GrantTypes: []string{"authorization_code", "refresh_token", "password"}},
	{ID: "password-only", Secret: "password-only-secret", GrantTypes: []string{"password"}},
	{ID: "default-grants", Secret: "default-secret"},
	{ID: "public", AuthMethod: upstreamtest.None, GrantTypes: []string{"password", "refresh_token"}},
}

// passwordUsers are DefaultUsers plus carol, who has no password.
func passwordUsers() []upstreamtest.User {
	return append(upstreamtest.DefaultUsers(), upstreamtest.User{Subject: "user-carol", Username: "carol", Email: "carol@example.com"})
}

// passwordForm is a password grant request.
func passwordForm(username, password, scope string) url.Values {
	form := url.Values{"grant_type": {"password"}, "username": {username}, "password": {password}}
	if scope != "" {
		form.Set("scope", scope)
	}
	return form
}

func TestPasswordGrant(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{Clients: passwordClients, Users: passwordUsers()})
	const badCredentials = "invalid username or password"
	tests := []struct {
		name        string
		auth        clientAuth
		form        url.Values
		error       string
		description string
		wantSub     string
	}{
		{name: "username", auth: goodAuth, form: passwordForm("alice", "alice-password", "openid email profile"), wantSub: "user-alice"},
		{name: "email", auth: goodAuth, form: passwordForm("bob@example.org", "bob-password", "openid"), wantSub: "user-bob"},
		{name: "client_secret_post", auth: clientAuth{id: "password-only", secret: "password-only-secret"}, form: passwordForm("alice", "alice-password", "openid"), wantSub: "user-alice"},
		{name: "wrong password", auth: goodAuth, form: passwordForm("alice", "bob-password", "openid"), error: "invalid_grant", description: badCredentials},
		{name: "unknown user", auth: goodAuth, form: passwordForm("mallory", "alice-password", "openid"), error: "invalid_grant", description: badCredentials},
		{name: "user without a password", auth: goodAuth, form: passwordForm("carol", "x", "openid"), error: "invalid_grant", description: badCredentials},
		{name: "password of the email's owner under another username", auth: goodAuth, form: passwordForm("alice@example.com", "bob-password", ""), error: "invalid_grant", description: badCredentials},
		{name: "username differs in case", auth: goodAuth, form: passwordForm("Alice", "alice-password", ""), error: "invalid_grant", description: badCredentials},
		{name: "empty password", auth: goodAuth, form: passwordForm("carol", "", "openid"), error: "invalid_request"},
		{name: "no username", auth: goodAuth, form: url.Values{"grant_type": {"password"}, "password": {"alice-password"}}, error: "invalid_request"},
		{name: "client without the grant", auth: clientAuth{id: "default-grants", secret: "default-secret"}, form: passwordForm("alice", "alice-password", "openid"), error: "unauthorized_client"},
		{name: "wrong client secret", auth: clientAuth{basic: true, id: clientID, secret: "wrong"}, form: passwordForm("alice", "alice-password", "openid"), error: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := token(t, srv, tt.auth, tt.form)
			if res.Error != tt.error {
				t.Fatalf("got %d %q (%s), want %q", res.Status, res.Error, res.ErrorDescription, tt.error)
			}
			if tt.error != "" {
				if tt.error != "invalid_client" && res.Status != http.StatusBadRequest {
					t.Errorf("got status %d, want 400", res.Status)
				}
				if tt.description != "" && res.ErrorDescription != tt.description {
					t.Errorf("error_description: got %q, want %q", res.ErrorDescription, tt.description)
				}
				if res.AccessToken != "" {
					t.Errorf("got an access token with error %s, want none", res.Error)
				}
				return
			}
			if res.Status != http.StatusOK || res.RefreshToken == "" || res.IDToken == "" {
				t.Fatalf("got %d, refresh token %v, ID token %v; want 200 with both", res.Status, res.RefreshToken != "", res.IDToken != "")
			}
			if got := res.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control: got %q, want no-store", got)
			}
			if got := subject(t, srv, res.AccessToken); got != tt.wantSub {
				t.Errorf("userinfo sub: got %q, want %q", got, tt.wantSub)
			}
			if got, want := res.Scope, tt.form.Get("scope"); got != want {
				t.Errorf("scope: got %q, want %q", got, want)
			}
		})
	}
	if got, want := srv.GrantCount("password"), len(tests); got != want {
		t.Errorf("GrantCount(password): got %d, want %d", got, want)
	}
}

func TestPasswordGrantIDToken(t *testing.T) {
	clk := newClock()
	srv := newServer(t, upstreamtest.Config{Clients: passwordClients, Now: clk.Now})
	res := token(t, srv, goodAuth, passwordForm("alice", "alice-password", "openid email profile groups"))
	if res.Status != http.StatusOK {
		t.Fatalf("got %d %s (%s), want 200", res.Status, res.Error, res.ErrorDescription)
	}
	_, claims := parseIDToken(t, srv, res.IDToken)
	// No authorization request, so no nonce (OpenID Connect Core §3.1.2.1);
	// the user authenticated just now.
	if _, ok := claims["nonce"]; ok {
		t.Errorf("nonce: got %v, want none", claims["nonce"])
	}
	want := map[string]any{
		"sub": "user-alice", "aud": clientID, "iss": srv.Issuer(), "preferred_username": "alice",
		"email": "alice@example.com", "auth_time": float64(clk.Now().Unix()),
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("%s: got %v, want %v", k, claims[k], v)
		}
	}
	if groups, _ := claims["groups"].([]any); len(groups) != 2 {
		t.Errorf("groups: got %v, want [admins staff]", claims["groups"])
	}

	t.Run("no openid scope", func(t *testing.T) {
		res := token(t, srv, goodAuth, passwordForm("alice", "alice-password", "api"))
		if res.Status != http.StatusOK || res.IDToken != "" || res.AccessToken == "" {
			t.Errorf("got %d, ID token %v, access token %v; want 200 with an access token alone", res.Status, res.IDToken != "", res.AccessToken != "")
		}
	})

	t.Run("refresh", func(t *testing.T) {
		clk.Advance(time.Minute)
		next := refresh(t, srv, goodAuth, res.RefreshToken)
		if next.Status != http.StatusOK {
			t.Fatalf("refresh: got %d %s (%s), want 200", next.Status, next.Error, next.ErrorDescription)
		}
		if got := subject(t, srv, next.AccessToken); got != "user-alice" {
			t.Errorf("refreshed token's sub: got %q, want user-alice", got)
		}
		if again := refresh(t, srv, goodAuth, res.RefreshToken); again.Error != "invalid_grant" {
			t.Errorf("rotated refresh token reused: got %d %q, want invalid_grant", again.Status, again.Error)
		}
	})

	t.Run("client without refresh_token", func(t *testing.T) {
		auth := clientAuth{id: "password-only", secret: "password-only-secret"}
		res := token(t, srv, auth, passwordForm("alice", "alice-password", "openid"))
		if got := refresh(t, srv, auth, res.RefreshToken); got.Error != "unauthorized_client" {
			t.Errorf("got %d %q, want unauthorized_client", got.Status, got.Error)
		}
	})
}

// TestPasswordGrantUserEnumeration pins that the answers to an unknown user
// and to a wrong password cannot be told apart (SECURITY.md 35): same
// status, same headers, same body.
func TestPasswordGrantUserEnumeration(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{Clients: passwordClients})
	answer := func(username, password string) (int, http.Header, string) {
		resp, body := postForm(t, srv.URL+"/token", passwordForm(username, password, "openid"), basicHeader(clientID, clientSecret))
		h := resp.Header.Clone()
		h.Del("Date")
		return resp.StatusCode, h, body
	}
	s1, h1, b1 := answer("alice", "not-alices-password")
	s2, h2, b2 := answer("nobody-by-this-name", "not-alices-password")
	if s1 != http.StatusBadRequest || s1 != s2 || b1 != b2 {
		t.Errorf("wrong password: got %d %s; unknown user: got %d %s; want the same 400", s1, b1, s2, b2)
	}
	if !reflect.DeepEqual(h1, h2) {
		t.Errorf("headers: got %v for a wrong password, %v for an unknown user, want the same", h1, h2)
	}
}

// TestPasswordGrantOptIn pins that no client gets the password grant
// without listing it, and that the server advertises and accepts it only
// when one does.
func TestPasswordGrantOptIn(t *testing.T) {
	grantTypes := func(srv *upstreamtest.Server) []string {
		resp, body := get(t, srv.URL+"/.well-known/openid-configuration", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("discovery: got %d", resp.StatusCode)
		}
		var md struct {
			GrantTypes []string `json:"grant_types_supported"`
		}
		if err := json.Unmarshal([]byte(body), &md); err != nil {
			t.Fatal(err)
		}
		return md.GrantTypes
	}

	t.Run("no client lists it", func(t *testing.T) {
		srv := newServer(t, upstreamtest.Config{})
		if got := grantTypes(srv); slices.Contains(got, "password") {
			t.Errorf("grant_types_supported: got %v, want no password", got)
		}
		if res := token(t, srv, goodAuth, passwordForm("alice", "alice-password", "openid")); res.Error != "unsupported_grant_type" {
			t.Errorf("got %d %q, want unsupported_grant_type", res.Status, res.Error)
		}
	})

	t.Run("a client lists it", func(t *testing.T) {
		srv := newServer(t, upstreamtest.Config{Clients: passwordClients})
		if got := grantTypes(srv); !slices.Contains(got, "password") {
			t.Errorf("grant_types_supported: got %v, want password among them", got)
		}
	})

	t.Run("public client", func(t *testing.T) {
		srv := newServer(t, upstreamtest.Config{Clients: passwordClients})
		form := passwordForm("bob", "bob-password", "openid")
		form.Set("client_id", "public")
		res := send(t, httpClient, srv.URL+"/token", form, nil)
		if res.Status != http.StatusOK || res.AccessToken == "" {
			t.Errorf("got %d %q (%s), want 200 with an access token", res.Status, res.Error, res.ErrorDescription)
		}
	})
}
