package upstreamtest_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

func TestLogout(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{Clients: []upstreamtest.Client{
		{ID: clientID, Secret: clientSecret},
		{ID: "app", Secret: "s", RedirectURIs: []string{"https://app.example.com/oauth2/callback"}},
	}})
	idToken := login(t, srv).IDToken
	foreign, err := newServer(t, upstreamtest.Config{}).Sign(map[string]any{"iss": srv.Issuer(), "aud": clientID})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		params   url.Values
		status   int
		location string // with status 302
	}{
		{
			name:     "loopback target with state",
			params:   url.Values{"client_id": {clientID}, "post_logout_redirect_uri": {"http://localhost:4180/signed-out"}, "state": {"s1"}},
			status:   http.StatusFound,
			location: "http://localhost:4180/signed-out?state=s1",
		},
		{
			name:     "client from id_token_hint",
			params:   url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {"http://127.0.0.1:4180/"}},
			status:   http.StatusFound,
			location: "http://127.0.0.1:4180/",
		},
		{
			name:     "origin of a registered redirect URI",
			params:   url.Values{"client_id": {"app"}, "post_logout_redirect_uri": {"https://app.example.com/bye"}, "state": {"s2"}},
			status:   http.StatusFound,
			location: "https://app.example.com/bye?state=s2",
		},
		{name: "foreign target", params: url.Values{"client_id": {clientID}, "post_logout_redirect_uri": {"https://evil.com/"}}, status: http.StatusOK},
		{name: "registered host, other scheme", params: url.Values{"client_id": {"app"}, "post_logout_redirect_uri": {"http://app.example.com/bye"}}, status: http.StatusOK},
		{name: "look-alike host", params: url.Values{"client_id": {"app"}, "post_logout_redirect_uri": {"https://app.example.com.evil.com/"}}, status: http.StatusOK},
		{name: "userinfo trick", params: url.Values{"client_id": {"app"}, "post_logout_redirect_uri": {"https://app.example.com@evil.com/"}}, status: http.StatusOK},
		{name: "no client", params: url.Values{"post_logout_redirect_uri": {"http://localhost:4180/"}}, status: http.StatusOK},
		{name: "no target", params: url.Values{"client_id": {clientID}}, status: http.StatusOK},
		{name: "hint for another client", params: url.Values{"client_id": {"app"}, "id_token_hint": {idToken}}, status: http.StatusBadRequest},
		{name: "hint from another server", params: url.Values{"id_token_hint": {foreign}}, status: http.StatusBadRequest},
		{name: "garbage hint", params: url.Values{"id_token_hint": {"x.y.z"}}, status: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv.URL+"/logout?"+tt.params.Encode(), nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("got %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("Location"); got != tt.location {
				t.Errorf("got Location %q, want %q", got, tt.location)
			}
			if tt.status == http.StatusOK && !strings.Contains(body, "Signed out") {
				t.Errorf("got body %q, want the signed-out page", body)
			}
		})
	}
	if got := srv.Count("end_session"); got != len(tests) {
		t.Errorf("Count(end_session): got %d, want %d", got, len(tests))
	}
}

func TestRevoke(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{Clients: []upstreamtest.Client{{ID: clientID, Secret: clientSecret}, {ID: "other", Secret: "other-secret"}}})
	revoke := func(auth clientAuth, tok string) int {
		t.Helper()
		form := url.Values{"token": {tok}}
		header := http.Header{}
		if auth.basic {
			req, _ := http.NewRequest(http.MethodPost, "/", nil)
			req.SetBasicAuth(auth.id, auth.secret)
			header.Set("Authorization", req.Header.Get("Authorization"))
		} else {
			form.Set("client_id", auth.id)
			form.Set("client_secret", auth.secret)
		}
		resp, _ := postForm(t, srv.URL+"/revoke", form, header)
		return resp.StatusCode
	}

	t.Run("refresh token revokes the grant", func(t *testing.T) {
		res := login(t, srv)
		if got := revoke(goodAuth, res.RefreshToken); got != http.StatusOK {
			t.Fatalf("got %d, want 200", got)
		}
		if !srv.Revoked(res.RefreshToken) || !srv.Revoked(res.AccessToken) {
			t.Errorf("got Revoked(refresh) %v Revoked(access) %v, want true, true", srv.Revoked(res.RefreshToken), srv.Revoked(res.AccessToken))
		}
		if r := refresh(t, srv, goodAuth, res.RefreshToken); r.Error != "invalid_grant" {
			t.Errorf("refresh after revocation: got %q, want invalid_grant", r.Error)
		}
		if resp, _ := get(t, srv.URL+"/userinfo", bearer(res.AccessToken)); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("userinfo after revocation: got %d, want 401", resp.StatusCode)
		}
	})
	t.Run("access token only", func(t *testing.T) {
		res := login(t, srv)
		if got := revoke(clientAuth{id: clientID, secret: clientSecret}, res.AccessToken); got != http.StatusOK {
			t.Fatalf("got %d, want 200", got)
		}
		if !srv.Revoked(res.AccessToken) || srv.Revoked(res.RefreshToken) {
			t.Errorf("got Revoked(access) %v Revoked(refresh) %v, want true, false", srv.Revoked(res.AccessToken), srv.Revoked(res.RefreshToken))
		}
		if resp, _ := get(t, srv.URL+"/userinfo", bearer(res.AccessToken)); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("userinfo after revocation: got %d, want 401", resp.StatusCode)
		}
		if r := refresh(t, srv, goodAuth, res.RefreshToken); r.Status != http.StatusOK {
			t.Errorf("refresh: got %d %q, want 200", r.Status, r.Error)
		}
	})
	t.Run("another client's token", func(t *testing.T) {
		res := login(t, srv)
		if got := revoke(clientAuth{basic: true, id: "other", secret: "other-secret"}, res.RefreshToken); got != http.StatusOK {
			t.Fatalf("got %d, want 200", got)
		}
		if srv.Revoked(res.RefreshToken) {
			t.Errorf("got Revoked true, want false")
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		if got := revoke(goodAuth, "unknown"); got != http.StatusOK {
			t.Errorf("got %d, want 200", got)
		}
		if srv.Revoked("unknown") {
			t.Errorf("got Revoked true, want false")
		}
	})
	t.Run("bad client", func(t *testing.T) {
		res := login(t, srv)
		if got := revoke(clientAuth{basic: true, id: clientID, secret: "wrong"}, res.RefreshToken); got != http.StatusUnauthorized {
			t.Errorf("got %d, want 401", got)
		}
		if srv.Revoked(res.RefreshToken) {
			t.Errorf("got Revoked true, want false")
		}
	})
}

func TestCounters(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	get(t, srv.URL+"/.well-known/openid-configuration", nil)
	get(t, srv.URL+"/jwks", nil)
	res := login(t, srv)
	refresh(t, srv, goodAuth, res.RefreshToken)
	get(t, srv.URL+"/userinfo", bearer(res.AccessToken))
	get(t, srv.URL+"/logout", nil)
	postForm(t, srv.URL+"/revoke", url.Values{"token": {"x"}, "client_id": {clientID}, "client_secret": {clientSecret}}, nil)
	get(t, srv.URL+"/nowhere", nil)

	tests := []struct {
		endpoint string
		want     int
	}{
		{"discovery", 1}, {"jwks", 1}, {"authorize", 1}, {"token", 2}, {"userinfo", 1}, {"end_session", 1}, {"revoke", 1}, {"nowhere", 0},
	}
	for _, tt := range tests {
		if got := srv.Count(tt.endpoint); got != tt.want {
			t.Errorf("Count(%q): got %d, want %d", tt.endpoint, got, tt.want)
		}
	}
	if got := srv.GrantCount("authorization_code"); got != 1 {
		t.Errorf("GrantCount(authorization_code): got %d, want 1", got)
	}
	if got := srv.GrantCount("refresh_token"); got != 1 {
		t.Errorf("GrantCount(refresh_token): got %d, want 1", got)
	}
	if got := srv.TotalRequests(); got != 9 {
		t.Errorf("TotalRequests: got %d, want 9", got)
	}
}
