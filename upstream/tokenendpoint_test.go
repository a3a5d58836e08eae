package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream"
)

const (
	secretCanary  = "canary-client-secret-c0ffee"
	codeCanary    = "canary-code-deadbeef"
	refreshCanary = "canary-refresh-token-f00d"
)

// tokenClient is a client whose token endpoint is h, with no issuer and no
// network call besides the token endpoint.
func tokenClient(t *testing.T, auth string, h http.HandlerFunc) (*upstream.Client, *fake, *clock) {
	t.Helper()
	f := newFake(t, h)
	clk := newClock()
	c := newClient(t, upstream.Config{
		ClientID:              clientID,
		ClientSecret:          secretCanary,
		ClientAuth:            auth,
		Scopes:                []string{"profile"},
		AuthorizationEndpoint: f.URL + "/authorize",
		TokenEndpoint:         f.URL + "/token",
		Timeout:               time.Second,
	}, upstream.Deps{Now: clk.Now})
	return c, f, clk
}

// hang never answers. It reads the form first: net/http notices a client
// that hangs up only once the request body is consumed.
func hang(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

// reply answers with status and body as JSON.
func reply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(body))
	}
}

func TestTokenEndpointAnswers(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		check   func(t *testing.T, tok *upstream.Token, err error, clk *clock)
	}{
		{"500 is unavailable", reply(500, `{"error":"server_error"}`), func(t *testing.T, _ *upstream.Token, err error, _ *clock) {
			if !errors.Is(err, upstream.ErrUnavailable) {
				t.Errorf("got %v, want ErrUnavailable", err)
			}
			var te *upstream.TokenError
			if !errors.As(err, &te) || te.StatusCode != 500 || te.Code != "server_error" {
				t.Errorf("got %v, want a *TokenError with status 500 and code server_error", err)
			}
			if upstream.IsInvalidGrant(err) {
				t.Error("IsInvalidGrant: got true for a 500, want false")
			}
		}},
		{"503 without body is unavailable", reply(503, ``), func(t *testing.T, _ *upstream.Token, err error, _ *clock) {
			if !errors.Is(err, upstream.ErrUnavailable) {
				t.Errorf("got %v, want ErrUnavailable", err)
			}
		}},
		{"400 with a non-JSON body", reply(400, `<html>Bad Request</html>`), func(t *testing.T, _ *upstream.Token, err error, _ *clock) {
			var te *upstream.TokenError
			if !errors.As(err, &te) || te.StatusCode != 400 || te.Code != "" {
				t.Fatalf("got %v, want a *TokenError with status 400 and no code", err)
			}
			if errors.Is(err, upstream.ErrUnavailable) || upstream.IsInvalidGrant(err) {
				t.Errorf("got %v, want neither ErrUnavailable nor invalid_grant", err)
			}
		}},
		{"400 invalid_grant", reply(400, `{"error":"invalid_grant","error_description":"expired"}`), func(t *testing.T, _ *upstream.Token, err error, _ *clock) {
			var te *upstream.TokenError
			if !errors.As(err, &te) || te.Code != "invalid_grant" || te.Description != "expired" || te.StatusCode != 400 {
				t.Errorf("got %#v, want invalid_grant/expired/400", err)
			}
			if !upstream.IsInvalidGrant(err) {
				t.Error("IsInvalidGrant: got false, want true")
			}
		}},
		{"401 invalid_client", reply(401, `{"error":"invalid_client"}`), func(t *testing.T, _ *upstream.Token, err error, _ *clock) {
			if upstream.IsInvalidGrant(err) || errors.Is(err, upstream.ErrUnavailable) {
				t.Errorf("got %v, want a plain *TokenError", err)
			}
		}},
		{"long error_description truncated", reply(400, `{"error":"invalid_request","error_description":"`+strings.Repeat("x", 5000)+`"}`), func(t *testing.T, _ *upstream.Token, err error, _ *clock) {
			if err == nil || len(err.Error()) > 400 {
				t.Errorf("got an error of %d bytes, want it truncated", len(err.Error()))
			}
		}},
		{"200 without access_token", reply(200, `{"token_type":"Bearer","expires_in":3600}`), wantError},
		{"200 with an empty access_token", reply(200, `{"access_token":"","token_type":"Bearer"}`), wantError},
		{"200 not JSON", reply(200, `access_token=x&token_type=bearer`), wantError},
		{"200 JSON array", reply(200, `[]`), wantError},
		{"token_type mac", reply(200, `{"access_token":"at","token_type":"mac"}`), wantError},
		{"token_type DPoP", reply(200, `{"access_token":"at","token_type":"DPoP"}`), wantError},
		{"token_type bearer, any case", reply(200, `{"access_token":"at","token_type":"bEaReR"}`), func(t *testing.T, tok *upstream.Token, err error, _ *clock) {
			if err != nil || tok.TokenType != "Bearer" {
				t.Errorf("got %+v, %v, want TokenType Bearer", tok, err)
			}
		}},
		{"expires_in as a number", reply(200, `{"access_token":"at","token_type":"Bearer","expires_in":3600}`), wantExpiry(3600 * time.Second)},
		{"expires_in as a string", reply(200, `{"access_token":"at","token_type":"Bearer","expires_in":"3600"}`), wantExpiry(3600 * time.Second)},
		{"expires_in absent", reply(200, `{"access_token":"at","token_type":"Bearer"}`), wantExpiry(0)},
		{"expires_in negative", reply(200, `{"access_token":"at","token_type":"Bearer","expires_in":-5}`), wantExpiry(0)},
		{"expires_in garbage", reply(200, `{"access_token":"at","token_type":"Bearer","expires_in":"soon"}`), wantExpiry(0)},
		{"expires_in absurd", reply(200, `{"access_token":"at","token_type":"Bearer","expires_in":99999999999999}`), wantExpiry(0)},
		{"2 MB body", reply(200, `{"access_token":"`+strings.Repeat("a", 2<<20)+`","token_type":"Bearer"}`), wantError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, clk := tokenClient(t, upstream.ClientSecretBasic, tt.handler)
			tok, err := c.Refresh(ctx(t), upstream.Token{RefreshToken: refreshCanary})
			if err != nil && tok != nil {
				t.Errorf("got token %+v with error %v, want nil", tok, err)
			}
			if err != nil {
				assertNoSecrets(t, err)
			}
			tt.check(t, tok, err, clk)
		})
	}
}

func wantError(t *testing.T, tok *upstream.Token, err error, _ *clock) {
	t.Helper()
	if err == nil {
		t.Errorf("got %+v, want an error", tok)
	}
}

// wantExpiry checks the token expires d after the request (0: unknown).
func wantExpiry(d time.Duration) func(*testing.T, *upstream.Token, error, *clock) {
	return func(t *testing.T, tok *upstream.Token, err error, clk *clock) {
		t.Helper()
		if err != nil {
			t.Fatalf("got %v, want a token", err)
		}
		want := time.Time{}
		if d > 0 {
			want = clk.Now().Add(d)
		}
		if !tok.Expiry.Equal(want) {
			t.Errorf("Expiry: got %v, want %v", tok.Expiry, want)
		}
		if got := tok.AccessToken.Reveal(); got != "at" {
			t.Errorf("AccessToken: got %q, want at", got)
		}
		if got := tok.RefreshToken.Reveal(); got != refreshCanary {
			t.Errorf("RefreshToken: got %q, want the old one kept", got)
		}
	}
}

// assertNoSecrets fails if err's message contains the client secret, the
// code or the refresh token (SECURITY.md 32).
func assertNoSecrets(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	for _, s := range []string{secretCanary, url.QueryEscape(secretCanary), codeCanary, refreshCanary} {
		if strings.Contains(msg, s) {
			t.Errorf("error %q contains the secret value %q", msg, s)
		}
	}
}

func TestTokenEndpointRedirectNotFollowed(t *testing.T) {
	// The attack: a token endpoint (or something in front of it) redirecting
	// the POST, client secret and code included, to another host.
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, auth := range []string{upstream.ClientSecretBasic, upstream.ClientSecretPost} {
			t.Run(http.StatusText(status)+" "+auth, func(t *testing.T) {
				target := newFake(t, reply(200, `{"access_token":"at","token_type":"Bearer"}`))
				c, f, _ := tokenClient(t, auth, func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, target.URL+"/steal", status)
				})
				_, err := c.Exchange(ctx(t), codeCanary, newAuthRequest())
				var te *upstream.TokenError
				if !errors.As(err, &te) || te.StatusCode != status {
					t.Errorf("Exchange: got %v, want a *TokenError with status %d", err, status)
				}
				if got := target.Hits(); got != 0 {
					t.Errorf("requests to the redirect target: got %d, want 0", got)
				}
				if got := f.Hits(); got != 1 {
					t.Errorf("requests to the token endpoint: got %d, want 1", got)
				}
				assertNoSecrets(t, err)
			})
		}
	}
}

func TestTokenEndpointEncodedEchoesScrubbed(t *testing.T) {
	// The echo may come re-encoded: the raw form body, or the Basic
	// credential as sent.
	const oddRefresh = "rt+abc/def=="
	var body, authz string
	c, _, _ := tokenClient(t, upstream.ClientSecretBasic, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body, authz = string(b), r.Header.Get("Authorization")
		reply(400, `{"error":"invalid_request","error_description":"got `+body+` with `+authz+`"}`)(w, r)
	})
	_, err := c.Refresh(ctx(t), upstream.Token{RefreshToken: oddRefresh})
	if err == nil {
		t.Fatal("Refresh: got nil error, want one")
	}
	cred := strings.TrimPrefix(authz, "Basic ")
	for _, leak := range []string{url.QueryEscape(oddRefresh), oddRefresh, cred} {
		if cred == "" || strings.Contains(err.Error(), leak) {
			t.Errorf("error %q contains %q", err, leak)
		}
	}
	if !upstream.IsRefused(err) {
		t.Errorf("IsRefused(400 invalid_request): got false, want true")
	}
}

func TestIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"invalid_grant", &upstream.TokenError{StatusCode: 400, Code: "invalid_grant"}, true},
		{"invalid_client", &upstream.TokenError{StatusCode: 401, Code: "invalid_client"}, true},
		{"400 without a body", &upstream.TokenError{StatusCode: 400}, true},
		{"408", &upstream.TokenError{StatusCode: 408}, false},
		{"404 from a load balancer", &upstream.TokenError{StatusCode: 404}, false},
		{"403 with an OAuth error", &upstream.TokenError{StatusCode: 403, Code: "unauthorized_client"}, true},
		{"429 slow down", &upstream.TokenError{StatusCode: 429, Code: "slow_down"}, false},
		{"500", fmt.Errorf("%w: %w", upstream.ErrUnavailable, &upstream.TokenError{StatusCode: 500}), false},
		{"bad ID token", fmt.Errorf("%w: wrong sub", upstream.ErrInvalidIDToken), true},
		{"JWKS unreachable while verifying", fmt.Errorf("%w: %w", upstream.ErrInvalidIDToken, upstream.ErrUnavailable), false},
		{"timeout", fmt.Errorf("%w: %w", upstream.ErrUnavailable, context.DeadlineExceeded), false},
	} {
		if got := upstream.IsRefused(tc.err); got != tc.want {
			t.Errorf("IsRefused(%s): got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTokenEndpointErrorsNeverContainSecrets(t *testing.T) {
	// A server that echoes what it was sent, as some do in
	// error_description: the error must still not carry the secret, the
	// code or the refresh token into a log line.
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			r.ParseForm()
			_, pass, _ := r.BasicAuth()
			pass, _ = url.QueryUnescape(pass)
			desc := "bad request code=" + r.PostForm.Get("code") + " refresh_token=" + r.PostForm.Get("refresh_token") +
				" secret=" + pass + r.PostForm.Get("client_secret") + " verifier=" + r.PostForm.Get("code_verifier")
			reply(status, `{"error":"invalid_grant","error_description":"`+desc+`"}`)(w, r)
		}
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"400 echoing", echo(400)},
		{"500 echoing", echo(500)},
		{"token_type echoing", func(w http.ResponseWriter, r *http.Request) {
			r.ParseForm()
			reply(200, `{"access_token":"at","token_type":"`+r.PostForm.Get("code")+r.PostForm.Get("refresh_token")+`"}`)(w, r)
		}},
	}
	for _, tt := range tests {
		for _, auth := range []string{upstream.ClientSecretBasic, upstream.ClientSecretPost} {
			t.Run(tt.name+" "+auth, func(t *testing.T) {
				c, _, _ := tokenClient(t, auth, tt.handler)
				r := newAuthRequest()
				_, err := c.Exchange(ctx(t), codeCanary, r)
				if err == nil {
					t.Fatal("Exchange: got nil error, want one")
				}
				assertNoSecrets(t, err)
				if strings.Contains(err.Error(), r.Verifier.Reveal()) {
					t.Errorf("error %q contains the PKCE verifier", err)
				}
				_, err = c.Refresh(ctx(t), upstream.Token{RefreshToken: refreshCanary})
				if err == nil {
					t.Fatal("Refresh: got nil error, want one")
				}
				assertNoSecrets(t, err)
			})
		}
	}
}

func TestTokenEndpointTimeout(t *testing.T) {
	c, _, _ := tokenClient(t, upstream.ClientSecretBasic, hang)
	start := time.Now()
	_, err := c.Refresh(context.Background(), upstream.Token{RefreshToken: refreshCanary})
	elapsed := time.Since(start)
	if !errors.Is(err, upstream.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Refresh: got %v, want ErrUnavailable and context.DeadlineExceeded", err)
	}
	if elapsed > 1500*time.Millisecond {
		t.Errorf("Refresh took %v, want about the 1s timeout", elapsed)
	}
	assertNoSecrets(t, err)
}

func TestTokenEndpointCallerCancellation(t *testing.T) {
	c, _, _ := tokenClient(t, upstream.ClientSecretBasic, hang)
	cx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Refresh(cx, upstream.Token{RefreshToken: refreshCanary})
	if err == nil || time.Since(start) > 600*time.Millisecond {
		t.Errorf("Refresh: got %v after %v, want an error soon after the caller's 100ms deadline", err, time.Since(start))
	}
}

func TestTokenRequestForm(t *testing.T) {
	// Client authentication per RFC 6749 §2.3.1, for a confidential and a
	// public client; the secret is form-urlencoded inside Basic.
	const oddSecret = "s3cr:t/+&="
	tests := []struct {
		name       string
		secret     upstream.Secret
		auth       string
		wantBasic  bool
		wantSecret bool // client_secret in the body
	}{
		{"basic", oddSecret, upstream.ClientSecretBasic, true, false},
		{"post", oddSecret, upstream.ClientSecretPost, false, true},
		{"public client", "", upstream.ClientAuthNone, false, false},
		{"client_auth unset without a secret is a public client", "", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqs := make(chan *http.Request, 1)
			forms := make(chan url.Values, 1)
			f := newFake(t, func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				reqs <- &http.Request{Header: r.Header.Clone(), URL: &url.URL{RawQuery: r.URL.RawQuery}}
				forms <- r.PostForm
				reply(200, `{"access_token":"at","token_type":"Bearer"}`)(w, r)
			})
			c := newClient(t, upstream.Config{ClientID: "gw:1", ClientSecret: tt.secret, ClientAuth: tt.auth, Scopes: []string{"profile"},
				AuthorizationEndpoint: f.URL + "/a", TokenEndpoint: f.URL + "/t", Timeout: time.Second}, upstream.Deps{})
			if _, err := c.Refresh(ctx(t), upstream.Token{RefreshToken: "rt"}); err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			r, form := <-reqs, <-forms
			if got := r.Header.Get("Content-Type"); got != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type: got %q, want application/x-www-form-urlencoded", got)
			}
			if r.URL.RawQuery != "" {
				t.Errorf("query: got %q, want parameters only in the body", r.URL.RawQuery)
			}
			user, pass, ok := r.BasicAuth()
			if ok != tt.wantBasic {
				t.Fatalf("Basic auth: got %v, want %v", ok, tt.wantBasic)
			}
			if ok {
				u, _ := url.QueryUnescape(user)
				p, _ := url.QueryUnescape(pass)
				if u != "gw:1" || p != oddSecret {
					t.Errorf("Basic auth: got %q:%q after unescaping, want %q:%q", u, p, "gw:1", oddSecret)
				}
			} else if form.Get("client_id") != "gw:1" {
				t.Errorf("client_id: got %q, want gw:1 in the body", form.Get("client_id"))
			}
			if got := form.Get("client_secret"); (got != "") != tt.wantSecret || (tt.wantSecret && got != oddSecret) {
				t.Errorf("client_secret in body: got %q, want present=%v", got, tt.wantSecret)
			}
		})
	}
}

func TestTokenEndpointEchoRedactionBounded(t *testing.T) {
	// Regression: one-letter credentials echoed into a 1 MiB description
	// made the redaction rescan its own output: 8.5 GB and 52 s.
	c, _, _ := tokenClient(t, upstream.ClientSecretPost, func(w http.ResponseWriter, r *http.Request) {
		reply(400, `{"error":"invalid_grant","error_description":"`+strings.Repeat("a", 1<<20-100)+`"}`)(w, r)
	})
	start := time.Now()
	_, err := c.Refresh(ctx(t), upstream.Token{RefreshToken: "a"})
	if err == nil {
		t.Fatal("Refresh: got nil error, want one")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Refresh took %v, want the redaction bounded", d)
	}
	if len(err.Error()) > 4096 {
		t.Errorf("error is %d bytes long, want it bounded", len(err.Error()))
	}

	// A secret that starts before the cut is replaced whole, not left half.
	long := strings.Repeat("r", 300)
	c, _, _ = tokenClient(t, upstream.ClientSecretPost, func(w http.ResponseWriter, r *http.Request) {
		reply(400, `{"error":"invalid_grant","error_description":"`+strings.Repeat("x", 190)+long+`"}`)(w, r)
	})
	_, err = c.Refresh(ctx(t), upstream.Token{RefreshToken: upstream.Secret(long)})
	if err == nil || strings.Contains(err.Error(), "rrrr") {
		t.Errorf("error %q holds part of the refresh token", err)
	}
}

// TestMalformedAnswersAreUnavailable is the regression test of a bug the
// reliability suite found (issue 22): a token, introspection or userinfo
// endpoint answering an HTML page or broken JSON with 200, or a redirect,
// was a plain error, so the gateway answered 500 "internal error" (refresh,
// password sign-in, introspection) or 400 "sign-in failed" (code
// exchange, implicit) instead of 502, for a server that is broken rather
// than refusing. Each must wrap ErrUnavailable and be no refusal.
func TestMalformedAnswersAreUnavailable(t *testing.T) {
	html := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(status)
			w.Write([]byte("<html><body>Maintenance</body></html>"))
		}
	}
	redirect := func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/sso", http.StatusFound)
	}
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"garbage JSON with 200", reply(200, `{"access_token": "tr`)},
		{"JSON without access_token", reply(200, `{"token_type":"Bearer"}`)},
		{"HTML with 200", html(200)},
		{"HTML 404 from a load balancer", html(404)},
		{"redirect", redirect},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, _ := tokenClient(t, upstream.ClientSecretBasic, tc.h)
			_, err := c.Refresh(ctx(t), upstream.Token{RefreshToken: refreshCanary})
			if !errors.Is(err, upstream.ErrUnavailable) || upstream.IsRefused(err) {
				t.Errorf("Refresh: got %v, want ErrUnavailable and no refusal", err)
			}
			_, err = c.ClientCredentials(ctx(t), upstream.ClientCredentialsRequest{})
			if !errors.Is(err, upstream.ErrUnavailable) || upstream.IsRefused(err) {
				t.Errorf("ClientCredentials: got %v, want ErrUnavailable and no refusal", err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
	}{
		{"HTML with 200", html(200)},
		{"redirect", redirect},
	} {
		t.Run("introspection and userinfo: "+tc.name, func(t *testing.T) {
			f := newFake(t, tc.h)
			c := newClient(t, upstream.Config{
				ClientID: clientID, ClientSecret: secretCanary, Scopes: []string{"profile"},
				AuthorizationEndpoint: f.URL + "/authorize", TokenEndpoint: f.URL + "/token",
				IntrospectionEndpoint: f.URL + "/introspect", UserinfoEndpoint: f.URL + "/userinfo", Timeout: time.Second,
			}, upstream.Deps{})
			if _, err := c.Introspect(ctx(t), "opaque-token", ""); !errors.Is(err, upstream.ErrUnavailable) {
				t.Errorf("Introspect: got %v, want ErrUnavailable", err)
			}
			if _, err := c.Userinfo(ctx(t), "opaque-token"); !errors.Is(err, upstream.ErrUnavailable) {
				t.Errorf("Userinfo: got %v, want ErrUnavailable", err)
			}
		})
	}
}
