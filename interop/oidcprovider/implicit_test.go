package oidcprovider

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// implicitRedirectURI is a loopback http callback, the kind oidc-provider
// refuses for implicit web clients unless server.mjs relaxes it.
func implicitRedirectURI(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String() + "/oauth2/callback"
}

// startImplicit starts a server with one implicit client for uri.
func startImplicit(t *testing.T, uri string, omitFormPost bool) *Server {
	t.Helper()
	return start(t, Config{
		Clients: []Client{{
			ID: "implicit-spa", RedirectURIs: []string{uri},
			GrantTypes: []string{"implicit"}, ResponseTypes: []string{"id_token token"},
			TokenEndpointAuthMethod: "none",
		}},
		OmitFormPost: omitFormPost,
		// oidc-provider's default response types lack id_token token.
		Extra: map[string]any{"responseTypes": []string{"code", "id_token token"}},
	})
}

func implicitURL(s *Server, uri, mode string) string {
	q := url.Values{
		"client_id": {"implicit-spa"}, "redirect_uri": {uri}, "response_type": {"id_token token"},
		"scope": {"openid email"}, "state": {"implicit-state"}, "nonce": {"implicit-nonce"},
	}
	if mode != "" {
		q.Set("response_mode", mode)
	}
	return s.URL + "/auth?" + q.Encode()
}

// checkImplicit checks an id_token token response: the tokens, the state
// and an ID token with the nonce and the access token's at_hash.
func checkImplicit(t *testing.T, got url.Values) {
	t.Helper()
	access, idToken := got.Get("access_token"), got.Get("id_token")
	if access == "" || idToken == "" || got.Get("state") != "implicit-state" || got.Has("code") {
		t.Fatalf("got %v, want access_token, id_token and state, no code", got)
	}
	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q is not a JWS", idToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Nonce  string `json:"nonce"`
		AtHash string `json:"at_hash"`
		Aud    any    `json:"aud"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(access))
	if want := base64.RawURLEncoding.EncodeToString(sum[:16]); claims.Nonce != "implicit-nonce" || claims.AtHash != want {
		t.Errorf("id_token: got nonce %q at_hash %q, want implicit-nonce %s", claims.Nonce, claims.AtHash, want)
	}
}

func TestImplicitFragment(t *testing.T) {
	uri := implicitRedirectURI(t)
	s := startImplicit(t, uri, false)
	loc := s.Authorize(t, newBrowser(), implicitURL(s, uri, "fragment"), "alice")
	if loc.RawQuery != "" || !strings.HasPrefix(loc.String(), uri+"#") {
		t.Fatalf("got redirect %s, want %s#…", loc, uri)
	}
	got, err := url.ParseQuery(loc.Fragment)
	if err != nil {
		t.Fatal(err)
	}
	checkImplicit(t, got)
}

func TestImplicitFormPost(t *testing.T) {
	uri := implicitRedirectURI(t)
	s := startImplicit(t, uri, false)
	fp := s.AuthorizeFormPost(t, newBrowser(), implicitURL(s, uri, "form_post"), "alice")
	if fp.Status != http.StatusOK || fp.Action.String() != uri {
		t.Fatalf("got status %d action %s, want 200 %s", fp.Status, fp.Action, uri)
	}
	checkImplicit(t, fp.Fields)
}

func TestImplicitOmitFormPost(t *testing.T) {
	uri := implicitRedirectURI(t)
	for _, omit := range []bool{false, true} {
		s := startImplicit(t, uri, omit)
		for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
			resp, err := http.Get(s.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			var md struct {
				Modes []string `json:"response_modes_supported"`
				Types []string `json:"response_types_supported"`
			}
			err = json.NewDecoder(resp.Body).Decode(&md)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(md.Modes, "form_post"); got == omit || !slices.Contains(md.Modes, "fragment") {
				t.Errorf("OmitFormPost=%v %s: got response_modes_supported %v, want form_post listed %v and fragment", omit, path, md.Modes, !omit)
			}
			if !slices.Contains(md.Types, "id_token token") {
				t.Errorf("OmitFormPost=%v %s: got response_types_supported %v, want id_token token", omit, path, md.Types)
			}
		}
		if !omit {
			continue
		}
		// The refusal comes back the default way, by fragment, before any
		// sign-in.
		loc := s.Authorize(t, newBrowser(), implicitURL(s, uri, "form_post"), "alice")
		got, _ := url.ParseQuery(loc.Fragment)
		if got.Get("error") != "unsupported_response_mode" || got.Get("state") != "implicit-state" || got.Has("access_token") {
			t.Errorf("form_post with OmitFormPost: got %s, want %s#error=unsupported_response_mode with state", loc, uri)
		}
	}
}
