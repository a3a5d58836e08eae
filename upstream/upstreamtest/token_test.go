package upstreamtest_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

func TestCodeExchange(t *testing.T) {
	const oddSecret = "s3cr:t/+&= %"
	clk := newClock()
	srv := newServer(t, upstreamtest.Config{
		Now: clk.Now,
		Clients: []upstreamtest.Client{
			{ID: clientID, Secret: clientSecret},
			{ID: "odd:client", Secret: oddSecret},
		},
	})
	tests := []struct {
		name     string
		clientID string // the client the code is issued to; default clientID
		auth     clientAuth
		edit     func(url.Values)
		before   func() // runs between authorization and exchange
		status   int
		error    string
	}{
		{name: "client_secret_basic", auth: goodAuth, status: 200},
		{name: "client_secret_post", auth: clientAuth{id: clientID, secret: clientSecret}, status: 200},
		{name: "basic with form-urlencoded id and secret", clientID: "odd:client", auth: clientAuth{basic: true, id: "odd:client", secret: oddSecret}, status: 200},
		{name: "post with odd secret", clientID: "odd:client", auth: clientAuth{id: "odd:client", secret: oddSecret}, status: 200},
		{name: "wrong verifier", auth: goodAuth, edit: func(f url.Values) { f.Set("code_verifier", newPKCE().verifier) }, status: 400, error: "invalid_grant"},
		{name: "malformed verifier", auth: goodAuth, edit: func(f url.Values) { f.Set("code_verifier", "short") }, status: 400, error: "invalid_grant"},
		{name: "missing verifier", auth: goodAuth, edit: func(f url.Values) { f.Del("code_verifier") }, status: 400, error: "invalid_request"},
		{name: "wrong redirect_uri", auth: goodAuth, edit: func(f url.Values) { f.Set("redirect_uri", redirectURI+"/x") }, status: 400, error: "invalid_grant"},
		{name: "missing redirect_uri", auth: goodAuth, edit: func(f url.Values) { f.Del("redirect_uri") }, status: 400, error: "invalid_grant"},
		{name: "unknown code", auth: goodAuth, edit: func(f url.Values) { f.Set("code", "nope") }, status: 400, error: "invalid_grant"},
		{name: "missing code", auth: goodAuth, edit: func(f url.Values) { f.Del("code") }, status: 400, error: "invalid_request"},
		{name: "code of another client", clientID: "odd:client", auth: goodAuth, status: 400, error: "invalid_grant"},
		{name: "expired code", auth: goodAuth, before: func() { clk.Advance(61 * time.Second) }, status: 400, error: "invalid_grant"},
		{name: "wrong secret basic", auth: clientAuth{basic: true, id: clientID, secret: "wrong"}, status: 401, error: "invalid_client"},
		{name: "wrong secret post", auth: clientAuth{id: clientID, secret: "wrong"}, status: 401, error: "invalid_client"},
		{name: "unknown client", auth: clientAuth{basic: true, id: "nobody", secret: clientSecret}, status: 401, error: "invalid_client"},
		{name: "no client authentication", auth: clientAuth{}, status: 401, error: "invalid_client"},
		{name: "basic and post at once", auth: goodAuth, edit: func(f url.Values) { f.Set("client_secret", clientSecret) }, status: 400, error: "invalid_request"},
		{name: "repeated parameter", auth: goodAuth, edit: func(f url.Values) { f.Add("code_verifier", "x") }, status: 400, error: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPKCE()
			q := authParams(p)
			if tt.clientID != "" {
				q.Set("client_id", tt.clientID)
			}
			form := url.Values{
				"grant_type":    {"authorization_code"},
				"code":          {code(t, srv, q)},
				"redirect_uri":  {redirectURI},
				"code_verifier": {p.verifier},
			}
			if tt.edit != nil {
				tt.edit(form)
			}
			if tt.before != nil {
				tt.before()
			}
			res := token(t, srv, tt.auth, form)
			if res.Status != tt.status || res.Error != tt.error {
				t.Fatalf("got %d %q (%s), want %d %q", res.Status, res.Error, res.ErrorDescription, tt.status, tt.error)
			}
			if got := res.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("got Cache-Control %q, want no-store", got)
			}
			if tt.status == http.StatusUnauthorized && res.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			if tt.status != http.StatusOK {
				return
			}
			if res.AccessToken == "" || res.TokenType != "Bearer" || res.ExpiresIn != 3600 || len(res.RefreshToken) < 22 || res.IDToken == "" || res.Scope != q.Get("scope") {
				t.Errorf("got %+v, want access, Bearer, 3600, refresh, id_token, scope", res)
			}
		})
	}
}

// TestCodeReplay pins RFC 6749 §4.1.2: a code works once, and a second use
// revokes what the first produced.
func TestCodeReplay(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	p := newPKCE()
	c := code(t, srv, authParams(p))
	first := exchange(t, srv, c, p.verifier)
	res := token(t, srv, goodAuth, url.Values{
		"grant_type": {"authorization_code"}, "code": {c}, "redirect_uri": {redirectURI}, "code_verifier": {p.verifier},
	})
	if res.Status != http.StatusBadRequest || res.Error != "invalid_grant" {
		t.Fatalf("replay: got %d %q, want 400 invalid_grant", res.Status, res.Error)
	}
	if !srv.Revoked(first.RefreshToken) || !srv.Revoked(first.AccessToken) {
		t.Errorf("after replay: got Revoked(refresh) %v, Revoked(access) %v, want both true", srv.Revoked(first.RefreshToken), srv.Revoked(first.AccessToken))
	}
	if res := refresh(t, srv, goodAuth, first.RefreshToken); res.Error != "invalid_grant" {
		t.Errorf("refresh after replay: got %q, want invalid_grant", res.Error)
	}
}

// TestCodeUsedUpByFailedAttempt pins that a wrong verifier burns the code,
// so verifiers cannot be guessed by retrying.
func TestCodeUsedUpByFailedAttempt(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	p := newPKCE()
	c := code(t, srv, authParams(p))
	form := url.Values{"grant_type": {"authorization_code"}, "code": {c}, "redirect_uri": {redirectURI}, "code_verifier": {newPKCE().verifier}}
	if res := token(t, srv, goodAuth, form); res.Error != "invalid_grant" {
		t.Fatalf("wrong verifier: got %q, want invalid_grant", res.Error)
	}
	form.Set("code_verifier", p.verifier)
	if res := token(t, srv, goodAuth, form); res.Error != "invalid_grant" {
		t.Errorf("right verifier after a wrong one: got %q, want invalid_grant", res.Error)
	}
}

func TestRefreshRotation(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{Clients: []upstreamtest.Client{{ID: clientID, Secret: clientSecret}, {ID: "other", Secret: "other-secret"}}})
	first := login(t, srv)

	second := refresh(t, srv, goodAuth, first.RefreshToken)
	if second.Status != http.StatusOK {
		t.Fatalf("refresh: got %d %q, want 200", second.Status, second.Error)
	}
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Errorf("refresh: got refresh %q access equal %v, want new tokens", second.RefreshToken, second.AccessToken == first.AccessToken)
	}
	if second.IDToken == "" {
		t.Errorf("refresh: got no id_token, want one for scope openid")
	}
	if srv.Revoked(first.RefreshToken) {
		t.Errorf("a rotated refresh token is reported revoked")
	}

	tests := []struct {
		name  string
		auth  clientAuth
		token string
		scope string
		error string
	}{
		{name: "reuse of the rotated token", auth: goodAuth, token: first.RefreshToken, error: "invalid_grant"},
		{name: "another client's token", auth: clientAuth{basic: true, id: "other", secret: "other-secret"}, token: second.RefreshToken, error: "invalid_grant"},
		{name: "unknown token", auth: goodAuth, token: "nope", error: "invalid_grant"},
		{name: "missing token", auth: goodAuth, error: "invalid_request"},
		{name: "wider scope", auth: goodAuth, token: second.RefreshToken, scope: "openid admin", error: "invalid_scope"},
		{name: "narrower scope", auth: goodAuth, token: second.RefreshToken, scope: "email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"grant_type": {"refresh_token"}}
			if tt.token != "" {
				form.Set("refresh_token", tt.token)
			}
			if tt.scope != "" {
				form.Set("scope", tt.scope)
			}
			res := token(t, srv, tt.auth, form)
			if res.Error != tt.error {
				t.Fatalf("got %d %q, want %q", res.Status, res.Error, tt.error)
			}
			if tt.error == "" && (res.Scope != tt.scope || res.IDToken != "") {
				t.Errorf("got scope %q id_token %v, want %q and no id_token without openid", res.Scope, res.IDToken != "", tt.scope)
			}
		})
	}
	if got := srv.GrantCount("refresh_token"); got != 1+len(tests) {
		t.Errorf("GrantCount(refresh_token): got %d, want %d", got, 1+len(tests))
	}
	if got := srv.GrantCount("authorization_code"); got != 1 {
		t.Errorf("GrantCount(authorization_code): got %d, want 1", got)
	}
	// Only the rotated token was a reuse: not the unknown or missing one.
	if got := srv.RefreshTokenReuses(); got != 1 {
		t.Errorf("RefreshTokenReuses: got %d, want 1", got)
	}
}

// TestConcurrentRefresh pins that of many parallel refreshes with one token
// exactly one wins: the race a gateway must single-flight.
func TestConcurrentRefresh(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	rt := login(t, srv).RefreshToken
	srv.SetTokenDelay(20 * time.Millisecond)
	const n = 8
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/token", strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(clientID, clientSecret)
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	ok := 0
	for s := range statuses {
		if s == http.StatusOK {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("got %d successful refreshes, want 1", ok)
	}
	if got := srv.GrantCount("refresh_token"); got != n {
		t.Errorf("GrantCount(refresh_token): got %d, want %d", got, n)
	}
}

func TestTokenDelay(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	const d = 150 * time.Millisecond
	srv.SetTokenDelay(d)
	start := time.Now()
	login(t, srv)
	if took := time.Since(start); took < d {
		t.Errorf("got a token in %v, want at least %v", took, d)
	}
	srv.SetTokenDelay(0)
}

func TestUnsupportedGrant(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	tests := []struct {
		grantType, error string
	}{
		{"password", "unsupported_grant_type"},
		{"urn:ietf:params:oauth:grant-type:jwt-bearer", "unsupported_grant_type"},
		{"", "invalid_request"},
	}
	for _, tt := range tests {
		form := url.Values{}
		if tt.grantType != "" {
			form.Set("grant_type", tt.grantType)
		}
		res := token(t, srv, goodAuth, form)
		if res.Status != http.StatusBadRequest || res.Error != tt.error {
			t.Errorf("grant_type %q: got %d %q, want 400 %q", tt.grantType, res.Status, res.Error, tt.error)
		}
	}
	if got := srv.GrantCount("password"); got != 1 {
		t.Errorf("GrantCount(password): got %d, want 1", got)
	}
}

func TestTokenBodyLimit(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {strings.Repeat("a", 100<<10)}}
	resp, _ := postForm(t, srv.URL+"/token", form, nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("got status %d, want 413", resp.StatusCode)
	}
}

func TestAccessToken(t *testing.T) {
	clk := newClock()
	srv := newServer(t, upstreamtest.Config{Now: clk.Now, AccessTokenTTL: 10 * time.Minute})
	check := func(res tokenResult, ttl time.Duration) {
		t.Helper()
		claims := jwt.MapClaims{}
		tok, err := jwt.ParseWithClaims(res.AccessToken, claims, func(*jwt.Token) (any, error) { return srv.PublicKey(), nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(clk.Now))
		if err != nil {
			t.Fatalf("access token: %v", err)
		}
		if got := tok.Header["typ"]; got != "at+jwt" {
			t.Errorf("typ: got %v, want at+jwt", got)
		}
		want := map[string]any{
			"iss":       srv.Issuer(),
			"sub":       "user-alice",
			"aud":       clientID,
			"client_id": clientID,
			"scope":     "openid email profile groups",
			"iat":       float64(clk.Now().Unix()),
			"exp":       float64(clk.Now().Add(ttl).Unix()),
		}
		for k, v := range want {
			if claims[k] != v {
				t.Errorf("claim %s: got %v, want %v", k, claims[k], v)
			}
		}
		if jti, _ := claims["jti"].(string); jti == "" {
			t.Errorf("claim jti: got none, want one")
		}
		if res.ExpiresIn != int64(ttl/time.Second) {
			t.Errorf("expires_in: got %d, want %d", res.ExpiresIn, int64(ttl/time.Second))
		}
	}
	check(login(t, srv), 10*time.Minute)
	srv.SetAccessTokenTTL(30 * time.Second)
	check(login(t, srv), 30*time.Second)
}
