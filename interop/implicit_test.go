package interop_test

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authgate/authgate/interop/oidcprovider"
)

// implicitOP runs oidc-provider with an implicit client for a gateway at
// publicURL; omitFormPost makes it a server without form_post.
func implicitOP(t *testing.T, publicURL string, omitFormPost bool) *oidcprovider.Server {
	t.Helper()
	return oidcprovider.Start(t, oidcprovider.Config{
		OmitFormPost: omitFormPost,
		Clients: []oidcprovider.Client{{ID: "authgate", Secret: "authgate-secret", GrantTypes: []string{"implicit"},
			ResponseTypes: []string{"id_token token"}, RedirectURIs: []string{publicURL + "/oauth2/callback"}}},
		// Stock oidc-provider offers no "id_token token" response type.
		Extra: map[string]any{"responseTypes": []string{"code", "id_token token"}},
	})
}

// TestOIDCProviderImplicit: the implicit grant end to end against
// oidc-provider in both delivery modes, through an authgate process: the
// tokens come back by form_post (relayed same-origin by the gateway's
// page) or in the fragment (posted by the page's script, as a test client
// does here), and become a server-side session; the backend gets the
// access token, no URL the gateway builds carries it.
func TestOIDCProviderImplicit(t *testing.T) {
	for _, mode := range []string{"form_post", "fragment"} {
		t.Run(mode, func(t *testing.T) {
			addr := freeAddr(t)
			op := implicitOP(t, "http://"+addr, mode == "fragment")
			be := newBackend(t)
			g := startGatewayAt(t, addr, "authgate-secret", func(string) string {
				return fmt.Sprintf(`upstream:
  issuer: %q
  client_id: authgate
  client_secret: "${CLIENT_SECRET}"
  scopes: [openid, email, profile]
session:
  cookie: { secret: "${COOKIE_SECRET}", secure: false }
routes:
  - backend: %q
    grant: implicit
`, op.URL, be.URL)
			})
			if len(g.logLines("level=WARN", "implicit grant", "RFC 9700")) != 1 {
				t.Errorf("no start-up warning naming RFC 9700")
			}
			b := newBrowser()
			resp, _ := b.get(t, g.URL+"/app?x=1")
			au, _ := url.Parse(resp.Header.Get("Location"))
			if got := au.Query().Get("response_mode"); (mode == "form_post") != (got == "form_post") {
				t.Fatalf("authorization request response_mode=%q in %s mode", got, mode)
			}
			var fields url.Values
			if mode == "form_post" {
				fp := op.AuthorizeFormPost(t, b.Client, au.String(), "alice")
				if fp.Action.String() != g.URL+"/oauth2/callback" {
					t.Fatalf("form_post to %s, want the gateway's callback", fp.Action)
				}
				req, _ := http.NewRequest(http.MethodPost, fp.Action.String(), strings.NewReader(fp.Fields.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, relay := b.do(t, req)
				if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'nonce-") {
					t.Fatalf("relay page: %d %s", resp.StatusCode, relay)
				}
				fields = url.Values{}
				for _, m := range hidden.FindAllStringSubmatch(relay, -1) {
					fields.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
				}
			} else {
				cb := op.Authorize(t, b.Client, au.String(), "alice")
				if cb.Fragment == "" || cb.Query().Has("access_token") {
					t.Fatalf("fragment mode: back at %s, want the tokens in the fragment only", cb)
				}
				page := *cb
				page.Fragment = ""
				if resp, body := b.get(t, page.String()); resp.StatusCode != 200 || !strings.Contains(body, "history.replaceState") {
					t.Fatalf("fragment page: %d %s", resp.StatusCode, body)
				}
				fields, _ = url.ParseQuery(cb.Fragment)
			}
			if fields.Get("access_token") == "" || fields.Get("id_token") == "" {
				t.Fatalf("oidc-provider's response lacks tokens: %v", fields)
			}
			req, _ := http.NewRequest(http.MethodPost, g.URL+"/oauth2/implicit", strings.NewReader(fields.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, body := b.do(t, req)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app?x=1" {
				t.Fatalf("implicit POST: %d to %q, want 303 to /app?x=1; %s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
			if resp, _ := b.get(t, g.URL+"/app?x=1"); resp.StatusCode != 200 {
				t.Fatalf("with the session: %d", resp.StatusCode)
			}
			h := be.lastHeader(t)
			if h.Get("Authorization") != "Bearer "+fields.Get("access_token") || h.Get("X-Forwarded-User") != "alice" {
				t.Errorf("backend got %.20q as %q, want the implicit access token for alice", h.Get("Authorization"), h.Get("X-Forwarded-User"))
			}
			if strings.Contains(g.Logs(), fields.Get("access_token")) {
				t.Errorf("the access token reached the gateway's log")
			}
			// A replayed response: the state is spent.
			req, _ = http.NewRequest(http.MethodPost, g.URL+"/oauth2/implicit", strings.NewReader(fields.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if resp, _ := b.do(t, req); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("replayed implicit response: %d, want 400", resp.StatusCode)
			}
		})
	}
}
