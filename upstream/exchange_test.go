package upstream_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

func TestAuthCodeURL(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	c := newClient(t, configFor(srv), upstream.Deps{})
	r := newAuthRequest()
	raw, err := c.AuthCodeURL(ctx(t), r)
	if err != nil {
		t.Fatalf("AuthCodeURL: %v", err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("AuthCodeURL: got unparsable %q: %v", raw, err)
	}
	if got, want := u.Scheme+"://"+u.Host+u.Path, srv.URL+"/authorize"; got != want {
		t.Errorf("endpoint: got %q, want %q", got, want)
	}
	sum := sha256.Sum256([]byte(r.Verifier.Reveal()))
	q := u.Query()
	tests := []struct{ param, want string }{
		{"response_type", "code"},
		{"client_id", clientID},
		{"redirect_uri", redirectURI},
		{"scope", "openid email profile"},
		{"state", r.State},
		{"nonce", r.Nonce.Reveal()},
		{"code_challenge", base64.RawURLEncoding.EncodeToString(sum[:])},
		{"code_challenge_method", "S256"},
	}
	for _, tt := range tests {
		if got := q[tt.param]; len(got) != 1 || got[0] != tt.want {
			t.Errorf("%s: got %q, want [%q]", tt.param, got, tt.want)
		}
	}
	if got, want := q.Get("code_challenge"), upstream.S256(r.Verifier); got != want {
		t.Errorf("code_challenge: got %q, want S256(verifier) %q", got, want)
	}
	// RFC 7636 §4.2 and SECURITY.md 5: never "plain", never the verifier.
	if strings.Contains(strings.ToLower(raw), "plain") {
		t.Errorf("AuthCodeURL: got %q, want no \"plain\"", raw)
	}
	if strings.Contains(raw, r.Verifier.Reveal()) {
		t.Errorf("AuthCodeURL: got %q, want the verifier absent", raw)
	}

	t.Run("no nonce", func(t *testing.T) {
		r := newAuthRequest()
		r.Nonce = ""
		raw, err := c.AuthCodeURL(ctx(t), r)
		if err != nil {
			t.Fatalf("AuthCodeURL: %v", err)
		}
		if u, _ := url.Parse(raw); u.Query().Has("nonce") {
			t.Errorf("AuthCodeURL: got %q, want no nonce parameter", raw)
		}
	})

	t.Run("endpoint with a query", func(t *testing.T) {
		cfg := configFor(srv)
		cfg.AuthorizationEndpoint = srv.URL + "/authorize?tenant=a"
		c := newClient(t, cfg, upstream.Deps{})
		raw, err := c.AuthCodeURL(ctx(t), newAuthRequest())
		if err != nil {
			t.Fatalf("AuthCodeURL: %v", err)
		}
		u, _ := url.Parse(raw)
		if u.Query().Get("tenant") != "a" || u.Query().Get("response_type") != "code" {
			t.Errorf("AuthCodeURL: got %q, want tenant=a kept and the request appended", raw)
		}
	})
}

func TestAuthCodeURLParams(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	cfg := configFor(srv)
	cfg.AuthorizationParams = map[string]string{"prompt": "consent", "access_type": "offline", "acr_values": "urn:mfa"}
	c := newClient(t, cfg, upstream.Deps{})
	for _, tc := range []struct{ prompt, want string }{{"", "consent"}, {"none", "none"}} {
		r := newAuthRequest()
		r.Prompt = tc.prompt
		raw, err := c.AuthCodeURL(ctx(t), r)
		if err != nil {
			t.Fatalf("AuthCodeURL: %v", err)
		}
		q := mustQuery(t, raw)
		if got := q["prompt"]; len(got) != 1 || got[0] != tc.want {
			t.Errorf("Prompt %q: prompt=%q, want exactly %q", tc.prompt, got, tc.want)
		}
		if q.Get("access_type") != "offline" || q.Get("acr_values") != "urn:mfa" || q.Get("code_challenge_method") != "S256" || q.Get("state") != r.State {
			t.Errorf("Prompt %q: got %v, want the configured parameters beside the gateway's own", tc.prompt, q)
		}
	}
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func TestS256(t *testing.T) {
	// RFC 7636 Appendix B.
	got := upstream.S256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
	if want := "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"; got != want {
		t.Errorf("S256: got %q, want %q", got, want)
	}
}

func TestNewVerifier(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		v := upstream.NewVerifier().Reveal()
		if len(v) != 43 {
			t.Fatalf("NewVerifier: got %d characters (%q), want 43", len(v), v)
		}
		for _, r := range v {
			if !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_') {
				t.Fatalf("NewVerifier: got %q, want base64url characters only", v)
			}
		}
		if seen[v] {
			t.Fatalf("NewVerifier: got %q twice, want fresh random values", v)
		}
		seen[v] = true
	}
}

func TestCheckIssuer(t *testing.T) {
	advertised := newServer(t, upstreamtest.Config{})
	omitted := newServer(t, upstreamtest.Config{OmitIssParameter: true})
	tests := []struct {
		name    string
		srv     *upstreamtest.Server
		iss     func(srv *upstreamtest.Server) string
		present bool
		wantErr bool
	}{
		{"present and equal", advertised, (*upstreamtest.Server).Issuer, true, false},
		{"present and different (mix-up)", advertised, func(*upstreamtest.Server) string { return "https://evil.example" }, true, true},
		{"present with trailing slash", advertised, func(s *upstreamtest.Server) string { return s.Issuer() + "/" }, true, true},
		{"present and empty", advertised, func(*upstreamtest.Server) string { return "" }, true, true},
		{"absent though advertised", advertised, func(*upstreamtest.Server) string { return "" }, false, true},
		{"absent, not advertised", omitted, func(*upstreamtest.Server) string { return "" }, false, false},
		{"present and different, not advertised", omitted, func(*upstreamtest.Server) string { return "https://evil.example" }, true, true},
		{"present and equal, not advertised", omitted, (*upstreamtest.Server).Issuer, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, configFor(tt.srv), upstream.Deps{})
			err := c.CheckIssuer(ctx(t), tt.iss(tt.srv), tt.present)
			if !tt.wantErr {
				if err != nil {
					t.Errorf("CheckIssuer: got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, upstream.ErrIssuerMismatch) {
				t.Errorf("CheckIssuer: got %v, want ErrIssuerMismatch", err)
			}
		})
	}

	t.Run("real authorization response", func(t *testing.T) {
		for _, srv := range []*upstreamtest.Server{advertised, omitted} {
			c := newClient(t, configFor(srv), upstream.Deps{})
			q := authorize(t, c, newAuthRequest())
			if err := c.CheckIssuer(ctx(t), q.Get("iss"), q.Has("iss")); err != nil {
				t.Errorf("CheckIssuer(%q, %v): got %v, want nil", q.Get("iss"), q.Has("iss"), err)
			}
		}
	})
}

func TestExchange(t *testing.T) {
	clk := newClock()
	srv := newServer(t, upstreamtest.Config{Now: clk.Now, AccessTokenTTL: 10 * time.Minute})
	for _, auth := range []string{upstream.ClientSecretBasic, upstream.ClientSecretPost} {
		t.Run(auth, func(t *testing.T) {
			hc, rec := recordingClient(t)
			cfg := configFor(srv)
			cfg.ClientAuth = auth
			c := newClient(t, cfg, upstream.Deps{HTTPClient: hc, Now: clk.Now})
			r := newAuthRequest()
			q := authorize(t, c, r)
			if q.Get("state") != r.State {
				t.Errorf("state: got %q, want %q", q.Get("state"), r.State)
			}
			l, err := c.Exchange(ctx(t), q.Get("code"), r)
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			tok := l.Token
			if tok.AccessToken.IsZero() || tok.RefreshToken.IsZero() || tok.IDToken.IsZero() {
				t.Errorf("Token: got access %v, refresh %v, id %v set, want all three",
					!tok.AccessToken.IsZero(), !tok.RefreshToken.IsZero(), !tok.IDToken.IsZero())
			}
			if tok.TokenType != "Bearer" {
				t.Errorf("TokenType: got %q, want Bearer", tok.TokenType)
			}
			if got, want := tok.Expiry, clk.Now().Add(10*time.Minute); !got.Equal(want) {
				t.Errorf("Expiry: got %v, want %v", got, want)
			}
			id := l.Identity
			want := upstream.Identity{Subject: "user-alice", Email: "alice@example.com", EmailVerified: true, Name: "Alice Example", PreferredUsername: "alice"}
			if id.Subject != want.Subject || id.Email != want.Email || id.EmailVerified != want.EmailVerified ||
				id.Name != want.Name || id.PreferredUsername != want.PreferredUsername {
				t.Errorf("Identity: got %+v, want %+v", id, want)
			}
			if got := id.Groups; !slices.Equal(got, []string{"admins", "staff"}) {
				t.Errorf("Groups: got %q, want [admins staff]", got)
			}
			for _, k := range []string{"iss", "aud", "nonce", "at_hash", "exp", "sub", "email"} {
				if _, ok := id.Claims[k]; ok {
					t.Errorf("Claims: got %q, want protocol and identity claims removed", k)
				}
			}

			var tokenReq *recorded
			for _, req := range rec.Requests() {
				if strings.HasSuffix(req.URL, "/token") {
					tokenReq = &req
				}
			}
			if tokenReq == nil {
				t.Fatal("no token request recorded")
			}
			form, _ := url.ParseQuery(tokenReq.Body)
			basic := tokenReq.Header.Get("Authorization")
			switch auth {
			case upstream.ClientSecretBasic:
				u, p, ok := (&http.Request{Header: tokenReq.Header}).BasicAuth()
				if !ok || u != clientID || p != clientSecret {
					t.Errorf("Basic auth: got %q, %q, %v, want %q, %q", u, p, ok, clientID, clientSecret)
				}
				if form.Has("client_secret") {
					t.Errorf("body: got client_secret, want it only in the Authorization header")
				}
			case upstream.ClientSecretPost:
				if basic != "" {
					t.Errorf("Authorization: got %q, want none", basic)
				}
				if form.Get("client_id") != clientID || form.Get("client_secret") != clientSecret {
					t.Errorf("body: got client_id %q, client_secret set %v, want both", form.Get("client_id"), form.Has("client_secret"))
				}
			}
			if form.Get("code_verifier") != r.Verifier.Reveal() || form.Get("redirect_uri") != redirectURI || form.Get("grant_type") != "authorization_code" {
				t.Errorf("body: got %v, want the verifier, redirect_uri and grant_type", form)
			}
		})
	}
}

func TestExchangeFailures(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	c := newClient(t, configFor(srv), upstream.Deps{})

	t.Run("wrong verifier", func(t *testing.T) {
		// The attack: a stolen code redeemed without the browser's verifier.
		r := newAuthRequest()
		q := authorize(t, c, r)
		r.Verifier = upstream.NewVerifier()
		_, err := c.Exchange(ctx(t), q.Get("code"), r)
		var te *upstream.TokenError
		if !errors.As(err, &te) || te.Code != "invalid_grant" || te.StatusCode != http.StatusBadRequest {
			t.Fatalf("Exchange: got %v, want *TokenError invalid_grant 400", err)
		}
		if !upstream.IsInvalidGrant(err) {
			t.Errorf("IsInvalidGrant(%v): got false, want true", err)
		}
	})

	t.Run("code replay", func(t *testing.T) {
		r := newAuthRequest()
		q := authorize(t, c, r)
		if _, err := c.Exchange(ctx(t), q.Get("code"), r); err != nil {
			t.Fatalf("first Exchange: %v", err)
		}
		if _, err := c.Exchange(ctx(t), q.Get("code"), r); !upstream.IsInvalidGrant(err) {
			t.Errorf("second Exchange: got %v, want invalid_grant", err)
		}
	})

	t.Run("wrong nonce", func(t *testing.T) {
		// The attack: an ID token injected from another login session.
		r := newAuthRequest()
		q := authorize(t, c, r)
		r.Nonce = "another-nonce"
		l, err := c.Exchange(ctx(t), q.Get("code"), r)
		if !errors.Is(err, upstream.ErrInvalidIDToken) {
			t.Errorf("Exchange: got %+v, %v, want ErrInvalidIDToken", l, err)
		}
	})

	t.Run("no id_token for openid", func(t *testing.T) {
		// The ID token is dropped from the answer, as a downgrade attempt.
		f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"access_token":"at","token_type":"Bearer"}`))
		})
		cfg := configFor(srv)
		cfg.TokenEndpoint = f.URL + "/token"
		c := newClient(t, cfg, upstream.Deps{})
		if _, err := c.Exchange(ctx(t), "code", newAuthRequest()); !errors.Is(err, upstream.ErrInvalidIDToken) {
			t.Errorf("Exchange: got %v, want ErrInvalidIDToken", err)
		}
	})
}

func TestExchangeGroupsFromUserinfo(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{GroupsInUserinfoOnly: true})
	c := newClient(t, configFor(srv), upstream.Deps{})
	l, _ := login(t, c)
	if got := l.Identity.Groups; !slices.Equal(got, []string{"admins", "staff"}) {
		t.Errorf("Groups: got %q, want [admins staff] merged from userinfo", got)
	}
	if got := srv.Count("userinfo"); got != 1 {
		t.Errorf("userinfo requests: got %d, want 1", got)
	}
}

func TestExchangeUserinfoSubjectMismatch(t *testing.T) {
	// The attack: token substitution, a userinfo answer about someone else
	// (OpenID Connect Core §5.3.2).
	srv := newServer(t, upstreamtest.Config{GroupsInUserinfoOnly: true})
	bearers := make(chan string, 10)
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		bearers <- r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"sub":"user-mallory","email":"mallory@example.com","email_verified":true,"groups":["admins"]}`))
	})
	cfg := configFor(srv)
	cfg.UserinfoEndpoint = f.URL + "/userinfo"
	c := newClient(t, cfg, upstream.Deps{})
	r := newAuthRequest()
	q := authorize(t, c, r)
	l, err := c.Exchange(ctx(t), q.Get("code"), r)
	if err == nil {
		t.Fatalf("Exchange: got identity %+v, want an error", l.Identity)
	}
	if !strings.Contains(err.Error(), "subject") {
		t.Errorf("Exchange: got %q, want a subject mismatch error", err)
	}
	if got := f.Hits(); got != 1 {
		t.Fatalf("userinfo requests: got %d, want 1", got)
	}
	if got := <-bearers; !strings.HasPrefix(got, "Bearer ") {
		t.Errorf("userinfo Authorization: got %q, want a bearer token", got)
	}
}

func TestUserinfoFailures(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr error
	}{
		{"no sub", 200, `{"email":"a@example.com"}`, nil},
		{"not JSON (signed userinfo)", 200, `eyJhbGciOiJSUzI1NiJ9.e30.sig`, nil},
		{"401", 401, `{"error":"invalid_token"}`, nil},
		{"503", 503, ``, upstream.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			})
			c := newClient(t, upstream.Config{ClientID: clientID, Scopes: []string{"profile"}, AuthorizationEndpoint: f.URL + "/a",
				TokenEndpoint: f.URL + "/t", UserinfoEndpoint: f.URL + "/u", Timeout: time.Second}, upstream.Deps{})
			id, err := c.Userinfo(ctx(t), "at")
			if err == nil {
				t.Fatalf("Userinfo: got %+v, want an error", id)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Userinfo: got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestRefreshRotation(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	c := newClient(t, configFor(srv), upstream.Deps{})
	l, _ := login(t, c)
	old := *l.Token

	fresh, err := c.Refresh(ctx(t), old)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if fresh.RefreshToken.IsZero() || fresh.RefreshToken == old.RefreshToken {
		t.Errorf("Refresh: got the same or no refresh token, want a rotated one")
	}
	if fresh.AccessToken == old.AccessToken || fresh.IDToken.IsZero() {
		t.Errorf("Refresh: want a new access token and an ID token")
	}

	// The attack: replay of a rotated (stolen) refresh token.
	_, err = c.Refresh(ctx(t), old)
	if !upstream.IsInvalidGrant(err) {
		t.Errorf("Refresh with the rotated-out token: got %v, want invalid_grant", err)
	}
	if _, err := c.Refresh(ctx(t), upstream.Token{}); !upstream.IsInvalidGrant(err) {
		t.Errorf("Refresh without a refresh token: got %v, want invalid_grant", err)
	}
	if got, want := srv.GrantCount("refresh_token"), 2; got != want {
		t.Errorf("refresh requests: got %d, want %d (none without a refresh token)", got, want)
	}
}

func TestRefreshKeepsOldRefreshToken(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	forms := make(chan url.Values, 10)
	f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		forms <- r.PostForm
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"at-2","token_type":"bearer","expires_in":60}`))
	})
	cfg := configFor(srv)
	cfg.TokenEndpoint = f.URL + "/token"
	c := newClient(t, cfg, upstream.Deps{})
	old := upstream.Token{AccessToken: "at-1", RefreshToken: "rt-1", IDToken: "id-1"}
	tok, err := c.Refresh(ctx(t), old)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if got := tok.RefreshToken.Reveal(); got != "rt-1" {
		t.Errorf("RefreshToken: got %q, want the old rt-1 kept", got)
	}
	if got := tok.IDToken.Reveal(); got != "id-1" {
		t.Errorf("IDToken: got %q, want the old id-1 kept", got)
	}
	if got := tok.AccessToken.Reveal(); got != "at-2" {
		t.Errorf("AccessToken: got %q, want at-2", got)
	}
	form := <-forms
	if form.Get("grant_type") != "refresh_token" || form.Get("refresh_token") != "rt-1" {
		t.Errorf("refresh request: got %v, want grant_type=refresh_token&refresh_token=rt-1", form)
	}
}

func TestRefreshAnotherSubject(t *testing.T) {
	// The attack: a refreshed ID token that swaps the session's user.
	srv := newServer(t, upstreamtest.Config{})
	c := newClient(t, configFor(srv), upstream.Deps{})
	l, _ := login(t, c)
	srv.SetIDTokenSigner(func(claims jwt.MapClaims) (string, error) {
		claims["sub"] = "user-bob"
		return srv.Sign(claims)
	})
	tok, err := c.Refresh(ctx(t), *l.Token)
	if !errors.Is(err, upstream.ErrInvalidIDToken) {
		t.Errorf("Refresh: got %+v, %v, want ErrInvalidIDToken", tok, err)
	}
}

func TestRefreshInvalidIDToken(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	c := newClient(t, configFor(srv), upstream.Deps{})
	l, _ := login(t, c)
	srv.SetIDTokenSigner(func(claims jwt.MapClaims) (string, error) {
		claims["aud"] = "another-client"
		return srv.Sign(claims)
	})
	if tok, err := c.Refresh(ctx(t), *l.Token); !errors.Is(err, upstream.ErrInvalidIDToken) {
		t.Errorf("Refresh: got %+v, %v, want ErrInvalidIDToken", tok, err)
	}
}

func TestFlowsNeverLogSecrets(t *testing.T) {
	// SECURITY.md 32: canaries planted in every secret, every flow run at
	// debug level, the log searched.
	const secret = "canary-client-secret-5d1e"
	srv := newServer(t, upstreamtest.Config{Clients: []upstreamtest.Client{{ID: clientID, Secret: secret}}})
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := configFor(srv)
	cfg.ClientSecret = secret
	c := newClient(t, cfg, upstream.Deps{Logger: log})

	r := newAuthRequest()
	q := authorize(t, c, r)
	l, err := c.Exchange(ctx(t), q.Get("code"), r)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	fresh, err := c.Refresh(ctx(t), *l.Token)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	_, staleErr := c.Refresh(ctx(t), *l.Token)
	if _, err := c.Userinfo(ctx(t), fresh.AccessToken); err != nil {
		t.Fatalf("Userinfo: %v", err)
	}
	if _, err := c.EndSession(ctx(t), "http://127.0.0.1/bye", l.Token.IDToken); err != nil {
		t.Fatalf("EndSession: %v", err)
	}
	if err := c.Revoke(ctx(t), fresh.RefreshToken, "refresh_token"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	_, replayErr := c.Exchange(ctx(t), q.Get("code"), r)
	log.Info("errors", "replay", replayErr, "stale", staleErr, "token", fresh, "login", l)

	out := buf.String() + replayErr.Error() + staleErr.Error()
	if !strings.Contains(out, "authorization server metadata loaded") {
		t.Errorf("log: got %q, want the discovery event (is the logger used?)", out)
	}
	canaries := map[string]string{
		"client secret":         secret,
		"code":                  q.Get("code"),
		"verifier":              r.Verifier.Reveal(),
		"nonce":                 r.Nonce.Reveal(),
		"access token":          l.Token.AccessToken.Reveal(),
		"refresh token":         l.Token.RefreshToken.Reveal(),
		"ID token":              l.Token.IDToken.Reveal(),
		"rotated access token":  fresh.AccessToken.Reveal(),
		"rotated refresh token": fresh.RefreshToken.Reveal(),
	}
	for name, v := range canaries {
		if v == "" {
			t.Fatalf("canary %s is empty", name)
		}
		if strings.Contains(out, v) {
			t.Errorf("log or error contains the %s", name)
		}
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(buf.String(), "\n", 2)[0]), &line); err != nil {
		t.Errorf("log is not JSON lines: %v", err)
	}
}
