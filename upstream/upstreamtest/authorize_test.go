package upstreamtest_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

func TestAuthorizeRefusedWithoutRedirect(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{Clients: []upstreamtest.Client{
		{ID: "loopback", Secret: "s"},
		{ID: "registered", Secret: "s", RedirectURIs: []string{"https://app.example.com/oauth2/callback"}},
	}})
	p := newPKCE()
	tests := []struct {
		name, clientID, redirectURI string
	}{
		{"unknown client", "nobody", redirectURI},
		{"missing client", "", redirectURI},
		{"missing redirect_uri", "loopback", ""},
		{"foreign host", "loopback", "https://evil.com/cb"},
		{"loopback-looking suffix", "loopback", "http://localhost.evil.com/cb"},
		{"userinfo smuggling", "loopback", "http://127.0.0.1@evil.com/cb"},
		{"backslash", "loopback", `http://127.0.0.1\@evil.com/cb`},
		{"fragment", "loopback", "http://127.0.0.1/cb#x"},
		{"javascript scheme", "loopback", "javascript:alert(1)"},
		{"relative", "loopback", "/cb"},
		{"not the registered uri", "registered", "https://app.example.com/oauth2/callback/"},
		{"registered client, loopback uri", "registered", redirectURI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := authParams(p)
			q.Set("client_id", tt.clientID)
			q.Set("redirect_uri", tt.redirectURI)
			resp, body := get(t, srv.URL+"/authorize?"+q.Encode(), nil)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("got status %d, want 400", resp.StatusCode)
			}
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("got Location %q, want none", loc)
			}
			if !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "Request refused") {
				t.Errorf("got %q %q, want the HTML error page", resp.Header.Get("Content-Type"), body)
			}
		})
	}
}

func TestAuthorizeErrorRedirect(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	p := newPKCE()
	tests := []struct {
		name  string
		edit  func(url.Values)
		error string
	}{
		{"token response type", func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		{"missing response type", func(q url.Values) { q.Del("response_type") }, "invalid_request"},
		{"missing code_challenge", func(q url.Values) { q.Del("code_challenge") }, "invalid_request"},
		{"plain method", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"missing method means plain", func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request"},
		{"malformed challenge", func(q url.Values) { q.Set("code_challenge", "short") }, "invalid_request"},
		{"repeated nonce", func(q url.Values) { q.Add("nonce", "other") }, "invalid_request"},
		{"unknown login_hint", func(q url.Values) { q.Set("login_hint", "mallory") }, "access_denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := authParams(p)
			tt.edit(q)
			got := authorize(t, srv, q)
			if got.Get("error") != tt.error || got.Get("error_description") == "" {
				t.Errorf("got error %q (%q), want %q with a description", got.Get("error"), got.Get("error_description"), tt.error)
			}
			if got.Get("state") != "state-123" || got.Get("iss") != srv.Issuer() || got.Has("code") {
				t.Errorf("got state %q iss %q code %q, want state-123, %s, no code", got.Get("state"), got.Get("iss"), got.Get("code"), srv.Issuer())
			}
		})
	}
}

func TestAuthorizeSuccess(t *testing.T) {
	p := newPKCE()
	tests := []struct {
		name     string
		cfg      upstreamtest.Config
		edit     func(url.Values)
		wantIss  bool
		wantSub  string
		wantKeep string // a parameter of redirect_uri's own query that must survive
	}{
		{name: "defaults", wantIss: true, wantSub: "user-alice"},
		{name: "OmitIssParameter", cfg: upstreamtest.Config{OmitIssParameter: true}, wantSub: "user-alice"},
		{name: "login_hint username", edit: func(q url.Values) { q.Set("login_hint", "bob") }, wantIss: true, wantSub: "user-bob"},
		{name: "login_hint email", edit: func(q url.Values) { q.Set("login_hint", "bob@example.org") }, wantIss: true, wantSub: "user-bob"},
		{
			name:    "configured users",
			cfg:     upstreamtest.Config{Users: []upstreamtest.User{{Subject: "s-carol", Username: "carol"}}},
			wantIss: true, wantSub: "s-carol",
		},
		{
			name:     "redirect_uri with a query",
			edit:     func(q url.Values) { q.Set("redirect_uri", "http://localhost:8080/cb?tenant=t1") },
			wantIss:  true,
			wantSub:  "user-alice",
			wantKeep: "tenant",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.cfg)
			q := authParams(p)
			if tt.edit != nil {
				tt.edit(q)
			}
			got := authorize(t, srv, q)
			if got.Get("code") == "" || got.Get("state") != "state-123" {
				t.Fatalf("got %v, want a code and state-123", got)
			}
			if gotIss := got.Has("iss"); gotIss != tt.wantIss || (gotIss && got.Get("iss") != srv.Issuer()) {
				t.Errorf("got iss %q (present %v), want present %v", got.Get("iss"), gotIss, tt.wantIss)
			}
			if tt.wantKeep != "" && got.Get(tt.wantKeep) == "" {
				t.Errorf("got %v, want %s kept", got, tt.wantKeep)
			}
			res := token(t, srv, goodAuth, url.Values{
				"grant_type":    {"authorization_code"},
				"code":          {got.Get("code")},
				"redirect_uri":  {q.Get("redirect_uri")},
				"code_verifier": {p.verifier},
			})
			if res.Status != http.StatusOK {
				t.Fatalf("exchange: got %d %s, want 200", res.Status, res.Error)
			}
			if sub := subject(t, srv, res.AccessToken); sub != tt.wantSub {
				t.Errorf("got sub %q, want %q", sub, tt.wantSub)
			}
		})
	}
}

func TestAuthorizeRegisteredRedirectURI(t *testing.T) {
	const cb = "https://app.example.com/oauth2/callback"
	srv := newServer(t, upstreamtest.Config{Clients: []upstreamtest.Client{{ID: "app", Secret: "s", RedirectURIs: []string{cb}}}})
	q := authParams(newPKCE())
	q.Set("client_id", "app")
	q.Set("redirect_uri", cb)
	resp, _ := get(t, srv.URL+"/authorize?"+q.Encode(), nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, cb+"?") {
		t.Errorf("got %d Location %q, want 302 to %s", resp.StatusCode, loc, cb)
	}
}

func TestAuthorizeResponseHook(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	srv.SetAuthorizeResponseHook(func(q url.Values) {
		q.Set("iss", "https://evil.example")
		q.Del("state")
	})
	got := authorize(t, srv, authParams(newPKCE()))
	if got.Get("iss") != "https://evil.example" || got.Has("state") || got.Get("code") == "" {
		t.Errorf("with hook: got %v, want iss https://evil.example, no state, a code", got)
	}
	srv.SetAuthorizeResponseHook(nil)
	got = authorize(t, srv, authParams(newPKCE()))
	if got.Get("iss") != srv.Issuer() || got.Get("state") != "state-123" {
		t.Errorf("hook removed: got %v, want iss %s and state-123", got, srv.Issuer())
	}
}

func TestInteractiveLogin(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{Interactive: true})
	p := newPKCE()
	q := authParams(p)
	q.Set("state", `<script>alert(1)</script>`)

	resp, body := get(t, srv.URL+"/authorize?"+q.Encode(), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: got status %d, want 200", resp.StatusCode)
	}
	for _, want := range []string{`<form method="post" action="/authorize">`, `name="password"`, "alice-password", "bob-password", `value="` + p.challenge + `"`, "&lt;script&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("GET: body lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Errorf("GET: body contains the unescaped state")
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("GET: got no %s header", h)
		}
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("GET: got Cache-Control %q, want no-store", got)
	}

	submit := func(username, password string) (*http.Response, string) {
		form := cloneValues(q)
		form.Set("username", username)
		form.Set("password", password)
		return postForm(t, srv.URL+"/authorize", form, nil)
	}
	for _, bad := range []struct{ username, password string }{{"bob", "alice-password"}, {"mallory", "bob-password"}, {"bob", ""}} {
		resp, body = submit(bad.username, bad.password)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" || !strings.Contains(body, "Invalid username or password.") {
			t.Errorf("POST %s/%s: got %d Location %q, want 200, the form with an error", bad.username, bad.password, resp.StatusCode, resp.Header.Get("Location"))
		}
	}

	resp, _ = submit("bob", "bob-password")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST right password: got status %d, want 303", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), redirectURI+"?") {
		t.Fatalf("POST right password: got Location %q, want %s?…", resp.Header.Get("Location"), redirectURI)
	}
	if got := loc.Query().Get("state"); got != q.Get("state") {
		t.Errorf("got state %q, want %q", got, q.Get("state"))
	}
	res := exchange(t, srv, loc.Query().Get("code"), p.verifier)
	if sub := subject(t, srv, res.AccessToken); sub != "user-bob" {
		t.Errorf("got sub %q, want user-bob", sub)
	}

	q.Set("prompt", "none")
	got := authorize(t, srv, q)
	if got.Get("error") != "login_required" {
		t.Errorf("prompt=none: got error %q, want login_required", got.Get("error"))
	}
}
