package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// opaqueUser is an account as one server reported it: an opaque encoded
// sub, name but no preferred_username, and roles nested under
// realm_access (Keycloak's shape) instead of groups.
var opaqueUser = upstreamtest.User{
	Subject:       "CiQwYjJkNmQ0Ny1hNDhmLTQ3NDYtOTY1Yy1iNmJhYjg5YmU1ZjcSBWxvY2Fs",
	Password:      "pw",
	Email:         "carol@corp.example",
	EmailVerified: true,
	Name:          "Carol Corp",
	Claims: map[string]any{
		"realm_access": map[string]any{"roles": []string{"app-admin", "viewer"}},
		"roles":        []string{"top-level-role"},
	},
}

// TestClaimMapping: upstream.claims picks the claims that name the user and
// list the groups, for the identity headers, allow rules and
// /oauth2/userinfo alike.
func TestClaimMapping(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		mapping              upstream.ClaimMapping
		allow                []string
		wantUser, wantGroups string
	}{
		{"email and nested roles", upstream.ClaimMapping{User: "email", Groups: "realm_access.roles"}, []string{"app-admin"}, "carol@corp.example", "app-admin,viewer"},
		{"name and top-level roles", upstream.ClaimMapping{User: "name", Groups: "roles"}, []string{"top-level-role"}, "Carol Corp", "top-level-role"},
		{"defaults", upstream.ClaimMapping{}, nil, opaqueUser.Subject, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{idp: upstreamtest.Config{Users: []upstreamtest.User{opaqueUser}}})
			g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, uc *upstream.Config) {
				uc.Claims = tc.mapping
				pc.Routes[0].Allow.Groups = tc.allow
			}})
			b := newBrowser(t)
			b.login(t, g, "/")
			req := e.backend.last(t)
			if got := req.Header.Get("X-Forwarded-User"); got != tc.wantUser {
				t.Errorf("X-Forwarded-User = %q, want %q", got, tc.wantUser)
			}
			if got := req.Header.Get("X-Forwarded-Groups"); got != tc.wantGroups {
				t.Errorf("X-Forwarded-Groups = %q, want %q", got, tc.wantGroups)
			}
			if got := req.Header.Get("X-Forwarded-Preferred-Username"); got != "" {
				t.Errorf("X-Forwarded-Preferred-Username = %q, want none (the server sent no such claim)", got)
			}
			resp, body := b.get(t, g.URL+"/oauth2/userinfo")
			var info map[string]any
			if err := json.Unmarshal([]byte(body), &info); err != nil || resp.StatusCode != 200 {
				t.Fatalf("userinfo: %d %q", resp.StatusCode, body)
			}
			if info["user"] != tc.wantUser {
				t.Errorf("userinfo user = %v, want %q", info["user"], tc.wantUser)
			}
		})
	}
}

// TestClaimMappingAllowRulesUseMappedGroups: a user outside the mapped
// groups is refused although the unmapped "groups" claim would pass.
func TestClaimMappingAllowRulesUseMappedGroups(t *testing.T) {
	e := newEnv(t, envOptions{idp: upstreamtest.Config{Users: []upstreamtest.User{opaqueUser}}})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, uc *upstream.Config) {
		uc.Claims.Groups = "realm_access.roles"
		pc.Routes[0].Allow.Groups = []string{"top-level-role"}
	}})
	resp, _ := newBrowser(t).get(t, g.URL+"/")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("user without the mapped group: got %d, want 403", resp.StatusCode)
	}
}

// TestUnverifiedEmailIsNoUser: claims.user: email with an unverified
// address names the user by sub (SECURITY.md 10).
func TestUnverifiedEmailIsNoUser(t *testing.T) {
	u := opaqueUser
	u.EmailVerified = false
	e := newEnv(t, envOptions{idp: upstreamtest.Config{Users: []upstreamtest.User{u}}})
	g := e.gateway(gatewayOptions{mutate: func(_ *proxy.Config, _ *session.Config, uc *upstream.Config) { uc.Claims.User = "email" }})
	newBrowser(t).login(t, g, "/")
	if got := e.backend.last(t).Header.Get("X-Forwarded-User"); got != u.Subject {
		t.Errorf("X-Forwarded-User = %q, want the sub: the address is unverified", got)
	}
}

// TestMissingUserClaimFallsBackToSub: a mapping naming a claim the tokens
// lack uses sub, with one warning however many logins.
func TestMissingUserClaimFallsBackToSub(t *testing.T) {
	e := newEnv(t, envOptions{idp: upstreamtest.Config{Users: []upstreamtest.User{opaqueUser}}})
	g := e.gateway(gatewayOptions{mutate: func(_ *proxy.Config, _ *session.Config, uc *upstream.Config) {
		uc.Claims.User = "preferred_username"
	}})
	for range 3 {
		newBrowser(t).login(t, g, "/")
		if got := e.backend.last(t).Header.Get("X-Forwarded-User"); got != opaqueUser.Subject {
			t.Fatalf("X-Forwarded-User = %q, want the sub %q", got, opaqueUser.Subject)
		}
	}
	if n := strings.Count(e.logs.String(), "upstream.claims.user names is missing"); n != 1 {
		t.Errorf("warnings about the missing user claim after 3 logins: %d, want 1", n)
	}
}
