package upstreamtest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/authgate/authgate/upstream/upstreamtest"
	"github.com/golang-jwt/jwt/v5"
)

const implicitClientID = "implicit-spa"

// implicitConfig has the default client and a public one allowed the
// implicit grant only.
func implicitConfig() upstreamtest.Config {
	return upstreamtest.Config{Clients: []upstreamtest.Client{
		{ID: clientID, Secret: clientSecret},
		{ID: implicitClientID, AuthMethod: upstreamtest.None, GrantTypes: []string{"implicit"}},
	}}
}

// implicitParams returns a valid id_token token request of the implicit
// client, without PKCE.
func implicitParams() url.Values {
	return url.Values{
		"client_id":     {implicitClientID},
		"redirect_uri":  {redirectURI},
		"response_type": {"id_token token"},
		"scope":         {"openid email"},
		"state":         {"state-123"},
		"nonce":         {"nonce-456"},
	}
}

// fragment sends an authorization request and returns the parameters in
// the redirect's fragment, failing the test when the redirect has a query.
func fragment(t *testing.T, srv *upstreamtest.Server, params url.Values) url.Values {
	t.Helper()
	resp, body := get(t, srv.URL+"/authorize?"+params.Encode(), nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: got status %d, want 302; body %q", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if loc.RawQuery != "" || !strings.HasPrefix(loc.String(), redirectURI+"#") {
		t.Fatalf("authorize: got Location %q, want %s#…", loc, redirectURI)
	}
	q, err := url.ParseQuery(loc.Fragment)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

var (
	formTag   = regexp.MustCompile(`<form method="post" action="([^"]*)">`)
	hiddenTag = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
	scriptTag = regexp.MustCompile(`<script nonce="([^"]*)">document.forms\[0\].submit\(\);</script>`)
)

// formPost sends an authorization request answered in form_post mode and
// returns the form's action and fields.
func formPost(t *testing.T, srv *upstreamtest.Server, params url.Values) (string, url.Values) {
	t.Helper()
	resp, body := get(t, srv.URL+"/authorize?"+params.Encode(), nil)
	return readFormPost(t, resp, body)
}

func readFormPost(t *testing.T, resp *http.Response, body string) (string, url.Values) {
	t.Helper()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("form_post: got status %d %q, want 200 text/html; body %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	m := formTag.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("form_post: no form in %q", body)
	}
	fields := url.Values{}
	for _, f := range hiddenTag.FindAllStringSubmatch(body, -1) {
		fields.Add(html.UnescapeString(f[1]), html.UnescapeString(f[2]))
	}
	script := scriptTag.FindStringSubmatch(body)
	if script == nil {
		t.Errorf("form_post: no auto-submit script in %q", body)
	} else if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'nonce-"+script[1]+"'") {
		t.Errorf("form_post: got Content-Security-Policy %q, want it to allow the script's nonce %q", csp, script[1])
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("form_post: got Cache-Control %q, want no-store", got)
	}
	return html.UnescapeString(m[1]), fields
}

// atHashOf is the at_hash of an access token (OpenID Connect Core §3.2.2.9).
func atHashOf(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// checkImplicitTokens checks the tokens of a successful id_token token
// response to implicitParams.
func checkImplicitTokens(t *testing.T, srv *upstreamtest.Server, got url.Values, wantIDToken bool) {
	t.Helper()
	for _, tt := range []struct{ name, want string }{
		{"token_type", "Bearer"},
		{"expires_in", "3600"},
		{"state", "state-123"},
		{"iss", srv.Issuer()},
		{"refresh_token", ""},
		{"code", ""},
	} {
		if got := got.Get(tt.name); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	access := got.Get("access_token")
	if sub := subject(t, srv, access); sub != "user-alice" {
		t.Errorf("access token at userinfo: got sub %q, want user-alice", sub)
	}
	if !wantIDToken {
		if got.Has("id_token") {
			t.Errorf("got an id_token for response_type token")
		}
		return
	}
	claims := implicitIDToken(t, srv, got.Get("id_token"))
	if claims["nonce"] != "nonce-456" || claims["sub"] != "user-alice" {
		t.Errorf("id_token: got nonce %v sub %v, want nonce-456 user-alice", claims["nonce"], claims["sub"])
	}
	if want := atHashOf(access); claims["at_hash"] != want {
		t.Errorf("id_token at_hash: got %v, want %s", claims["at_hash"], want)
	}
}

// implicitIDToken verifies an ID token issued to the implicit client.
func implicitIDToken(t *testing.T, srv *upstreamtest.Server, raw string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return srv.PublicKey(), nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(srv.Issuer()), jwt.WithAudience(implicitClientID), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("id_token: %v", err)
	}
	return claims
}

func TestImplicitFragment(t *testing.T) {
	srv := newServer(t, implicitConfig())
	tests := []struct {
		responseType, mode string
		wantIDToken        bool
	}{
		{"id_token token", "", true},
		{"token id_token", "fragment", true},
		{"token", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.responseType+"/"+tt.mode, func(t *testing.T) {
			q := implicitParams()
			q.Set("response_type", tt.responseType)
			if tt.mode != "" {
				q.Set("response_mode", tt.mode)
			}
			if !tt.wantIDToken {
				q.Del("nonce")
			}
			checkImplicitTokens(t, srv, fragment(t, srv, q), tt.wantIDToken)
		})
	}
	if got := srv.Count("token"); got != 0 {
		t.Errorf("Count(token): got %d, want 0", got)
	}
}

func TestImplicitFormPost(t *testing.T) {
	srv := newServer(t, implicitConfig())
	q := implicitParams()
	q.Set("response_mode", "form_post")
	q.Set("state", `"><script>alert(1)</script>`)
	resp, body := get(t, srv.URL+"/authorize?"+q.Encode(), nil)
	if strings.Contains(body, "<script>alert") {
		t.Fatalf("the state is not escaped: %q", body)
	}
	action, fields := readFormPost(t, resp, body)
	if action != redirectURI {
		t.Errorf("form action: got %q, want %q", action, redirectURI)
	}
	if got := fields.Get("state"); got != q.Get("state") {
		t.Errorf("state: got %q, want %q", got, q.Get("state"))
	}
	fields.Set("state", "state-123")
	checkImplicitTokens(t, srv, fields, true)
}

// TestImplicitCodeFlowResponseModes pins that the advertised response modes
// hold for the code flow too.
func TestImplicitCodeFlowResponseModes(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	q := authParams(newPKCE())
	q.Set("response_mode", "fragment")
	if got := fragment(t, srv, q); got.Get("code") == "" || got.Get("state") != "state-123" {
		t.Errorf("fragment: got %v, want a code and state", got)
	}
	q.Set("response_mode", "form_post")
	if action, got := formPost(t, srv, q); action != redirectURI || got.Get("code") == "" {
		t.Errorf("form_post: got action %q fields %v, want %s and a code", action, got, redirectURI)
	}
}

func TestImplicitErrors(t *testing.T) {
	tests := []struct {
		name   string
		cfg    func(*upstreamtest.Config)
		silent string
		edit   func(url.Values)
		want   string
	}{
		{name: "unknown login_hint", edit: func(q url.Values) { q.Set("login_hint", "mallory") }, want: "access_denied"},
		{name: "silent login refused", silent: "login_required", edit: func(q url.Values) { q.Set("prompt", "none") }, want: "login_required"},
		{name: "id_token token without nonce", edit: func(q url.Values) { q.Del("nonce") }, want: "invalid_request"},
		{name: "id_token token without openid", edit: func(q url.Values) { q.Set("scope", "email") }, want: "invalid_scope"},
		{name: "client without implicit", edit: func(q url.Values) { q.Set("client_id", clientID) }, want: "unauthorized_client"},
		{name: "tokens in the query", edit: func(q url.Values) { q.Set("response_mode", "query") }, want: "invalid_request"},
		{name: "unknown response mode", edit: func(q url.Values) { q.Set("response_mode", "web_message") }, want: "invalid_request"},
		{name: "repeated response mode", edit: func(q url.Values) { q["response_mode"] = []string{"fragment", "fragment"} }, want: "invalid_request"},
		{name: "form_post with NoFormPost", cfg: func(c *upstreamtest.Config) { c.NoFormPost = true }, edit: func(q url.Values) { q.Set("response_mode", "form_post") }, want: "invalid_request"},
		{name: "implicit client asks for a code", edit: func(q url.Values) { q.Set("response_type", "code") }, want: "unauthorized_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := implicitConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			srv := newServer(t, cfg)
			srv.SetSilentLoginError(tt.silent)
			q := implicitParams()
			tt.edit(q)
			var got url.Values
			if q.Get("response_type") == "code" {
				got = authorize(t, srv, q)
			} else {
				got = fragment(t, srv, q)
			}
			if got.Get("error") != tt.want || got.Get("state") != "state-123" || got.Get("iss") != srv.Issuer() || got.Has("access_token") {
				t.Errorf("got %v, want error %s with state and iss and no access_token", got, tt.want)
			}
		})
	}

	t.Run("by form_post", func(t *testing.T) {
		srv := newServer(t, implicitConfig())
		q := implicitParams()
		q.Set("response_mode", "form_post")
		q.Set("login_hint", "mallory")
		action, got := formPost(t, srv, q)
		if action != redirectURI || got.Get("error") != "access_denied" || got.Get("state") != "state-123" {
			t.Errorf("got action %q fields %v, want %s error access_denied with state", action, got, redirectURI)
		}
	})
	t.Run("no implicit client", func(t *testing.T) {
		srv := newServer(t, upstreamtest.Config{})
		q := implicitParams()
		q.Set("client_id", clientID)
		if got := authorize(t, srv, q); got.Get("error") != "unsupported_response_type" {
			t.Errorf("got %v, want error unsupported_response_type in the query", got)
		}
	})
}

// TestImplicitBadAtHash shows how a test makes the server issue an ID
// token whose at_hash does not match its access token, for the gateway's
// token substitution check (OpenID Connect Core §3.2.2.9).
func TestImplicitBadAtHash(t *testing.T) {
	srv := newServer(t, implicitConfig())
	srv.SetIDTokenSigner(func(claims jwt.MapClaims) (string, error) {
		claims["at_hash"] = atHashOf("another access token")
		return srv.Sign(claims)
	})
	got := fragment(t, srv, implicitParams())
	claims := implicitIDToken(t, srv, got.Get("id_token"))
	if claims["at_hash"] == atHashOf(got.Get("access_token")) {
		t.Errorf("got the right at_hash, want a tampered one")
	}
}

func TestImplicitInteractive(t *testing.T) {
	cfg := implicitConfig()
	cfg.Interactive = true
	srv := newServer(t, cfg)
	q := implicitParams()
	q.Set("response_mode", "form_post")
	resp, body := get(t, srv.URL+"/authorize?"+q.Encode(), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="response_mode" value="form_post"`) {
		t.Fatalf("login page: got %d, want 200 and response_mode carried through; body %q", resp.StatusCode, body)
	}
	form := cloneValues(q)
	form.Set("username", "alice")
	form.Set("password", "alice-password")
	resp, body = postForm(t, srv.URL+"/authorize", form, nil)
	_, fields := readFormPost(t, resp, body)
	checkImplicitTokens(t, srv, fields, true)
}

func TestImplicitDiscovery(t *testing.T) {
	tests := []struct {
		name                   string
		cfg                    upstreamtest.Config
		wantTypes, wantModes   []any
		wantImplicitGrantLists bool
	}{
		{"no implicit client", upstreamtest.Config{}, []any{"code"}, []any{"query", "fragment", "form_post"}, false},
		{"implicit client", implicitConfig(), []any{"code", "token", "id_token token"}, []any{"query", "fragment", "form_post"}, true},
		{"NoFormPost", func() upstreamtest.Config { c := implicitConfig(); c.NoFormPost = true; return c }(), []any{"code", "token", "id_token token"}, []any{"query", "fragment"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.cfg)
			_, body := get(t, srv.URL+"/.well-known/openid-configuration", nil)
			var md struct {
				Types  []any    `json:"response_types_supported"`
				Modes  []any    `json:"response_modes_supported"`
				Grants []string `json:"grant_types_supported"`
			}
			if err := json.Unmarshal([]byte(body), &md); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(md.Types, tt.wantTypes) || !reflect.DeepEqual(md.Modes, tt.wantModes) {
				t.Errorf("got response types %v modes %v, want %v %v", md.Types, md.Modes, tt.wantTypes, tt.wantModes)
			}
			if got := strings.Contains(" "+strings.Join(md.Grants, " ")+" ", " implicit "); got != tt.wantImplicitGrantLists {
				t.Errorf("grant_types_supported %v: got implicit %v, want %v", md.Grants, got, tt.wantImplicitGrantLists)
			}
		})
	}
}
