package proxy_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

const adminToken = "admin-token-0123456789abcdefghijklmnop"

// TestAdminRevoke: an operator ends every session of one user across the
// fleet (several browsers, both gateways) and no one else's; the API wants
// its token and a target.
func TestAdminRevoke(t *testing.T) {
	w := newLogoutWorld(t)
	alice1, _ := w.signIn(t, "alice", "user-alice")
	alice2, _ := w.signIn(t, "alice", "user-alice")
	bob, _ := w.signIn(t, "bob", "user-bob")
	withAdmin := w.e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Admin.Token = adminToken
	}})
	admin := httptest.NewServer(withAdmin.srv.AdminHandler())
	defer admin.Close()
	call := func(method, token string, form url.Values) (int, map[string]any) {
		req := mustRequest(t, method, admin.URL+"/admin/revoke", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v
	}
	for _, tc := range []struct {
		name, method, token string
		form                url.Values
		want                int
	}{
		{"no token", http.MethodPost, "", url.Values{"sub": {"user-alice"}}, http.StatusUnauthorized},
		{"wrong token", http.MethodPost, adminToken + "x", url.Values{"sub": {"user-alice"}}, http.StatusUnauthorized},
		{"GET", http.MethodGet, adminToken, nil, http.StatusMethodNotAllowed},
		{"no target", http.MethodPost, adminToken, url.Values{}, http.StatusBadRequest},
		{"unknown upstream", http.MethodPost, adminToken, url.Values{"sub": {"user-alice"}, "upstream": {"nope"}}, http.StatusBadRequest},
	} {
		if got, _ := call(tc.method, tc.token, tc.form); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if w.status(t, w.a, alice1) != 200 || w.status(t, w.b, alice2) != 200 {
		t.Fatal("a refused admin call ended a session")
	}
	status, v := call(http.MethodPost, adminToken, url.Values{"sub": {"user-alice"}, "upstream": {"default"}})
	if status != http.StatusOK || v["ended"] != float64(2) {
		t.Fatalf("revoke alice: %d %v, want 200 with 2 ended", status, v)
	}
	for _, c := range []string{alice1, alice2} {
		if !w.endsWithin(t, c, time.Second) {
			t.Error("one of alice's sessions still works 1 s after the revocation")
		}
	}
	if w.status(t, w.b, bob) != 200 {
		t.Error("revoking alice ended bob's session")
	}
	if w.e.idp.Count("revoke") != 2 {
		t.Errorf("refresh tokens revoked: %d, want 2", w.e.idp.Count("revoke"))
	}
	if w.a.srv.AdminHandler() != nil {
		t.Error("a gateway without admin.token serves an admin API")
	}
}
