package upstreamtest_test

import (
	"encoding/json"
	"net"
	"net/http"
	"reflect"
	"testing"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

func TestDiscovery(t *testing.T) {
	for _, omitIss := range []bool{false, true} {
		srv := newServer(t, upstreamtest.Config{OmitIssParameter: omitIss})
		for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
			resp, body := get(t, srv.URL+path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: got status %d, want 200", path, resp.StatusCode)
			}
			var md map[string]any
			if err := json.Unmarshal([]byte(body), &md); err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				field string
				want  any
			}{
				{"issuer", srv.Issuer()},
				{"authorization_endpoint", srv.URL + "/authorize"},
				{"token_endpoint", srv.URL + "/token"},
				{"jwks_uri", srv.URL + "/jwks"},
				{"userinfo_endpoint", srv.URL + "/userinfo"},
				{"end_session_endpoint", srv.URL + "/logout"},
				{"revocation_endpoint", srv.URL + "/revoke"},
				{"introspection_endpoint", srv.URL + "/introspect"},
				{"response_types_supported", []any{"code"}},
				{"grant_types_supported", []any{"authorization_code", "refresh_token", "client_credentials"}},
				{"code_challenge_methods_supported", []any{"S256"}},
				{"id_token_signing_alg_values_supported", []any{"RS256"}},
				{"token_endpoint_auth_methods_supported", []any{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}},
				{"introspection_endpoint_auth_methods_supported", []any{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}},
				{"authorization_response_iss_parameter_supported", !omitIss},
			}
			for _, tt := range tests {
				if got := md[tt.field]; !reflect.DeepEqual(got, tt.want) {
					t.Errorf("OmitIssParameter=%v %s: %s: got %v, want %v", omitIss, path, tt.field, got, tt.want)
				}
			}
			for _, field := range []string{"scopes_supported", "claims_supported"} {
				if list, _ := md[field].([]any); len(list) == 0 {
					t.Errorf("%s: %s: got %v, want a non-empty list", path, field, md[field])
				}
			}
		}
		if got := srv.Count("discovery"); got != 2 {
			t.Errorf("Count(discovery): got %d, want 2", got)
		}
	}
}

func TestIssuerIsURL(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, upstreamtest.Config{Listener: l})
	if want := "http://" + l.Addr().String(); srv.URL != want || srv.Issuer() != want {
		t.Errorf("got URL %q, Issuer %q; want both %q", srv.URL, srv.Issuer(), want)
	}
	if resp, _ := get(t, srv.URL+"/jwks", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /jwks on the given listener: got %d, want 200", resp.StatusCode)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	tests := []struct{ method, path, allow string }{
		{http.MethodGet, "/token", "POST"},
		{http.MethodGet, "/revoke", "POST"},
		{http.MethodPost, "/jwks", "GET"},
		{http.MethodDelete, "/authorize", "GET, POST"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		resp, _ := do(t, req)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: got %d Allow %q, want 405 Allow %q", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Allow"), tt.allow)
		}
	}
}

func TestDefaultUsers(t *testing.T) {
	users := upstreamtest.DefaultUsers()
	want := []upstreamtest.User{
		{Subject: "user-alice", Username: "alice", Password: "alice-password", Email: "alice@example.com", Name: "Alice Example", EmailVerified: true, Groups: []string{"admins", "staff"}},
		{Subject: "user-bob", Username: "bob", Password: "bob-password", Email: "bob@example.org", Name: "Bob Example", EmailVerified: true, Groups: []string{"staff"}},
	}
	if !reflect.DeepEqual(users, want) {
		t.Fatalf("got %+v, want %+v", users, want)
	}
	users[0].Groups[0] = "changed"
	if got := upstreamtest.DefaultUsers()[0].Groups[0]; got != "admins" {
		t.Errorf("after editing a returned copy: got %q, want %q", got, "admins")
	}
}
