package upstream_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// passwordServer is an authorization server whose default client may use
// the password grant.
func passwordServer(t *testing.T, cfg upstreamtest.Config) *upstreamtest.Server {
	t.Helper()
	cfg.Clients = []upstreamtest.Client{{ID: clientID, Secret: clientSecret, GrantTypes: []string{"authorization_code", "refresh_token", "password"}}}
	return newServer(t, cfg)
}

func TestPassword(t *testing.T) {
	clk := newClock()
	srv := passwordServer(t, upstreamtest.Config{Now: clk.Now, AccessTokenTTL: 10 * time.Minute})
	for _, auth := range []string{upstream.ClientSecretBasic, upstream.ClientSecretPost} {
		t.Run(auth, func(t *testing.T) {
			hc, rec := recordingClient(t)
			cfg := configFor(srv)
			cfg.ClientAuth = auth
			c := newClient(t, cfg, upstream.Deps{HTTPClient: hc, Now: clk.Now})
			l, err := c.Password(ctx(t), "alice", "alice-password")
			if err != nil {
				t.Fatalf("Password: %v", err)
			}
			tok := l.Token
			if tok.AccessToken.IsZero() || tok.RefreshToken.IsZero() || tok.IDToken.IsZero() {
				t.Errorf("Token: got access %v, refresh %v, id %v set, want all three",
					!tok.AccessToken.IsZero(), !tok.RefreshToken.IsZero(), !tok.IDToken.IsZero())
			}
			if got, want := tok.Expiry, clk.Now().Add(10*time.Minute); !got.Equal(want) {
				t.Errorf("Expiry: got %v, want %v", got, want)
			}

			// The identity is built exactly as the code flow builds it.
			code, _ := login(t, c)
			if l.Identity.SessionID == "" || l.Identity.SessionID == code.Identity.SessionID {
				t.Errorf("SessionID: password %q, code flow %q; want two login sessions", l.Identity.SessionID, code.Identity.SessionID)
			}
			l.Identity.SessionID = code.Identity.SessionID // each login its own
			if !reflect.DeepEqual(l.Identity, code.Identity) {
				t.Errorf("Identity: got %+v, want the code flow's %+v", l.Identity, code.Identity)
			}
			if l.Identity.Subject != "user-alice" || l.Identity.User == "" {
				t.Errorf("Identity: got subject %q, user %q, want user-alice and a user name", l.Identity.Subject, l.Identity.User)
			}

			var tokenReq *recorded
			for _, req := range rec.Requests() {
				if strings.HasSuffix(req.URL, "/token") {
					tokenReq = &req
					break
				}
			}
			if tokenReq == nil {
				t.Fatal("no token request recorded")
			}
			if tokenReq.Method != http.MethodPost || strings.Contains(tokenReq.URL, "alice-password") {
				t.Errorf("token request: got %s %s, want a POST with the password in the body only", tokenReq.Method, tokenReq.URL)
			}
			form, _ := url.ParseQuery(tokenReq.Body)
			want := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-password"}, "scope": {"openid email profile"}}
			if auth == upstream.ClientSecretPost {
				want.Set("client_id", clientID)
				want.Set("client_secret", clientSecret)
			} else if u, p, ok := (&http.Request{Header: tokenReq.Header}).BasicAuth(); !ok || u != clientID || p != clientSecret {
				t.Errorf("Basic auth: got %q, %q, %v, want %q, %q", u, p, ok, clientID, clientSecret)
			}
			if !reflect.DeepEqual(form, want) {
				t.Errorf("body: got %v, want %v", form, want)
			}
		})
	}
	if got := srv.GrantCount("password"); got != 2 {
		t.Errorf("GrantCount(password): got %d, want 2", got)
	}
}

func TestPasswordRefused(t *testing.T) {
	srv := passwordServer(t, upstreamtest.Config{})
	c := newClient(t, configFor(srv), upstream.Deps{})
	for _, tt := range []struct{ name, username, password string }{
		{"wrong password", "alice", "bob-password"},
		{"unknown user", "mallory", "bob-password"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := c.Password(ctx(t), tt.username, upstream.Secret(tt.password))
			if l != nil || !upstream.IsInvalidGrant(err) || !upstream.IsRefused(err) {
				t.Fatalf("Password: got %v, %v, want an invalid_grant refusal", l, err)
			}
			if strings.Contains(err.Error(), tt.password) {
				t.Errorf("error %q contains the password", err)
			}
		})
	}

	t.Run("client without the grant", func(t *testing.T) {
		srv := newServer(t, upstreamtest.Config{})
		c := newClient(t, configFor(srv), upstream.Deps{})
		_, err := c.Password(ctx(t), "alice", "alice-password")
		var te *upstream.TokenError
		if !errors.As(err, &te) || te.Code != "unsupported_grant_type" || upstream.IsInvalidGrant(err) {
			t.Errorf("Password: got %v, want unsupported_grant_type and not IsInvalidGrant", err)
		}
	})

	t.Run("empty credentials", func(t *testing.T) {
		c := newClient(t, configFor(srv), upstream.Deps{HTTPClient: noNetwork(t)})
		for _, creds := range [][2]string{{"", "alice-password"}, {"alice", ""}} {
			if _, err := c.Password(ctx(t), creds[0], upstream.Secret(creds[1])); !errors.Is(err, upstream.ErrNoCredentials) {
				t.Errorf("Password(%q, len %d): got %v, want ErrNoCredentials", creds[0], len(creds[1]), err)
			}
		}
	})
}

func TestPasswordVerifiesIDToken(t *testing.T) {
	srv := passwordServer(t, upstreamtest.Config{})
	c := newClient(t, configFor(srv), upstream.Deps{})
	srv.SetIDTokenSigner(func(claims jwt.MapClaims) (string, error) {
		claims["aud"] = "someone-else"
		return srv.Sign(claims)
	})
	if l, err := c.Password(ctx(t), "alice", "alice-password"); !errors.Is(err, upstream.ErrInvalidIDToken) {
		t.Errorf("Password with an ID token for another audience: got %v, %v, want ErrInvalidIDToken", l, err)
	}

	// A nonce in the ID token is not checked: the grant sent none.
	srv.SetIDTokenSigner(func(claims jwt.MapClaims) (string, error) {
		claims["nonce"] = "unrelated"
		return srv.Sign(claims)
	})
	if _, err := c.Password(ctx(t), "alice", "alice-password"); err != nil {
		t.Errorf("Password with a nonce in the ID token: got %v, want success", err)
	}
}

func TestPasswordWithoutOpenID(t *testing.T) {
	srv := passwordServer(t, upstreamtest.Config{})
	cfg := configFor(srv)
	cfg.Scopes = []string{"email", "profile"}
	c := newClient(t, cfg, upstream.Deps{})
	l, err := c.Password(ctx(t), "bob@example.org", "bob-password")
	if err != nil {
		t.Fatalf("Password: %v", err)
	}
	if !l.Token.IDToken.IsZero() {
		t.Errorf("IDToken: got one, want none without scope openid")
	}
	if l.Identity.Subject != "user-bob" || l.Identity.Email != "bob@example.org" {
		t.Errorf("Identity from userinfo: got %+v, want user-bob, bob@example.org", l.Identity)
	}
}

// TestPasswordEchoedNeverInErrors plants a unique password and has the
// token endpoint echo it, as sent and URL-encoded, in error and
// error_description: the error must not carry it to a log line
// (SECURITY.md 32, 35).
func TestPasswordEchoedNeverInErrors(t *testing.T) {
	const password = "canary-pass word+/=&%-7f3a"
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusInternalServerError} {
		for _, auth := range []string{upstream.ClientSecretBasic, upstream.ClientSecretPost} {
			t.Run(http.StatusText(status)+" "+auth, func(t *testing.T) {
				var seen string
				c, _, _ := tokenClient(t, auth, func(w http.ResponseWriter, r *http.Request) {
					b, _ := io.ReadAll(r.Body)
					form, _ := url.ParseQuery(string(b))
					seen = form.Get("password")
					desc := "no user " + form.Get("username") + " with password " + seen + " (raw body: " + string(b) + ")"
					reply(status, `{"error":"invalid_grant `+seen+`","error_description":"`+strings.ReplaceAll(desc, `"`, `\"`)+`"}`)(w, r)
				})
				_, err := c.Password(ctx(t), "alice", password)
				if err == nil {
					t.Fatal("Password: got nil error, want one")
				}
				if seen != password {
					t.Fatalf("the server saw password %q, want the canary", seen)
				}
				msg := err.Error()
				for _, leak := range []string{password, url.QueryEscape(password), url.PathEscape(password)} {
					if strings.Contains(msg, leak) {
						t.Errorf("error %q contains the password as %q", msg, leak)
					}
				}
				if !strings.Contains(msg, "[redacted]") || !strings.Contains(msg, "alice") {
					t.Errorf("error %q: want the echo kept with the password redacted", msg)
				}
				assertNoSecrets(t, err)
			})
		}
	}
}

func TestPasswordNeverLogged(t *testing.T) {
	// SECURITY.md 32: a canary password, the flow run at debug level, the
	// log and the errors searched.
	const password = "canary-password-91c4"
	srv := passwordServer(t, upstreamtest.Config{Users: []upstreamtest.User{{Subject: "user-dana", Username: "dana", Password: password}}})
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := newClient(t, configFor(srv), upstream.Deps{Logger: log})
	l, err := c.Password(ctx(t), "dana", password)
	if err != nil {
		t.Fatalf("Password: %v", err)
	}
	_, wrong := c.Password(ctx(t), "dana", password+"x")
	log.Info("results", "login", l, "wrong", wrong, "password", upstream.Secret(password))
	out := buf.String() + wrong.Error()
	if !strings.Contains(out, "authorization server metadata loaded") {
		t.Errorf("log: got %q, want the discovery event (is the logger used?)", out)
	}
	for name, v := range map[string]string{
		"password":      password,
		"access token":  l.Token.AccessToken.Reveal(),
		"refresh token": l.Token.RefreshToken.Reveal(),
		"ID token":      l.Token.IDToken.Reveal(),
	} {
		if v == "" {
			t.Fatalf("canary %s is empty", name)
		}
		if strings.Contains(out, v) {
			t.Errorf("log or error contains the %s", name)
		}
	}
}
