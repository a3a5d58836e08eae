package proxy_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// longIdle keeps sessions alive while a test moves the clock by hours.
func longIdle(_ *proxy.Config, sc *session.Config, _ *upstream.Config) {
	sc.IdleTimeout = 6 * time.Hour
	sc.MaxLifetime = 12 * time.Hour
}

// bearer returns the token the backend's request carried.
func bearer(r *http.Request) string {
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// TestRefreshOncePerSessionAcrossGateways: rotating refresh tokens and many
// parallel requests at expiry on two gateways → exactly one refresh, every
// request served with the new token (the peers' logout-on-race bug).
func TestRefreshOncePerSessionAcrossGateways(t *testing.T) {
	for _, tc := range []struct {
		name    string
		advance time.Duration
	}{
		{"about to expire", 59*time.Minute + 30*time.Second},
		{"already expired", 2 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{redis: true})
			a := e.gateway(gatewayOptions{mutate: longIdle})
			b := e.gateway(gatewayOptions{mutate: longIdle})
			br := newBrowser(t)
			br.login(t, a, "/")
			old := bearer(e.backend.last(t))
			e.clock.Advance(tc.advance)
			e.idp.SetTokenDelay(150 * time.Millisecond) // a wide race window
			before := e.backend.count()

			const n = 50
			var wg sync.WaitGroup
			statuses := make(chan int, n)
			for i := 0; i < n; i++ {
				gw := a
				if i%2 == 1 {
					gw = b
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api", nil)
					req.Header.Set("Accept", "application/json")
					resp, err := br.noFollow().Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					statuses <- resp.StatusCode
				}()
			}
			wg.Wait()
			close(statuses)
			for s := range statuses {
				if s != http.StatusOK {
					t.Errorf("a parallel request got %d, want 200", s)
				}
			}
			if got := e.idp.GrantCount("refresh_token"); got != 1 {
				t.Fatalf("refresh_token grants = %d, want exactly 1 for %d parallel requests", got, n)
			}
			e.backend.mu.Lock()
			reqs := e.backend.reqs[before:]
			e.backend.mu.Unlock()
			if len(reqs) != n {
				t.Fatalf("backend saw %d requests, want %d", len(reqs), n)
			}
			fresh := bearer(reqs[0])
			for _, r := range reqs {
				if bearer(r) == old || bearer(r) != fresh {
					t.Fatalf("a request went out with a stale or different token; want every request on the one refreshed token")
				}
			}
			// The rotated refresh token was stored: the next refresh works.
			// (upstreamtest refuses a used refresh token and revokes the grant.)
			e.idp.SetTokenDelay(0)
			e.clock.Advance(time.Hour)
			resp, _ := br.noFollow().get(t, b.URL+"/again")
			if resp.StatusCode != http.StatusOK || e.idp.GrantCount("refresh_token") != 2 {
				t.Errorf("second refresh: got %d with %d refresh grants, want 200 and 2", resp.StatusCode, e.idp.GrantCount("refresh_token"))
			}
		})
	}
}

// TestRevokedRefreshTokenEndsSession pins SECURITY.md 20: a refresh
// answered invalid_grant deletes the session and sends the user to login.
func TestRevokedRefreshTokenEndsSession(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	g := e.gateway(gatewayOptions{mutate: longIdle})
	b := newBrowser(t)
	b.login(t, g, "/")
	revokeRefreshToken(t, e, g, b)
	e.clock.Advance(2 * time.Hour)
	resp, _ := b.noFollow().get(t, g.URL+"/")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), e.idp.URL+"/authorize") {
		t.Fatalf("after invalid_grant: got %d to %q, want 302 to the authorization server", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The session is gone server-side, not only from this browser.
	keys, err := e.redis.Client(t).Keys(t.Context(), "*s:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("session record still in Redis after invalid_grant: %v", keys)
	}
}

// revokeRefreshToken revokes, at the authorization server, the refresh
// token of b's session, as an administrator would.
func revokeRefreshToken(t *testing.T, e *env, g *gateway, b *browser) {
	t.Helper()
	ticket, err := g.sessions.DecodeTicket(b.cookie(t, g.URL, "_authgate"))
	if err != nil {
		t.Fatal(err)
	}
	sess, _, err := g.sessions.Load(t.Context(), ticket)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"token": {sess.Token.RefreshToken.Reveal()}, "token_type_hint": {"refresh_token"}}
	req := mustRequest(t, http.MethodPost, e.idp.URL+"/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("authgate", clientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !e.idp.Revoked(sess.Token.RefreshToken.Reveal()) {
		t.Fatal("upstreamtest did not revoke the refresh token")
	}
}

// TestRefreshFailureWithValidToken: the authorization server is down, but
// the access token still has a few seconds: the request is served.
func TestRefreshFailureWithValidToken(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: longIdle})
	b := newBrowser(t)
	b.login(t, g, "/")
	e.idp.Close()
	e.clock.Advance(59*time.Minute + 30*time.Second)
	if resp, _ := b.noFollow().get(t, g.URL+"/"); resp.StatusCode != http.StatusOK {
		t.Errorf("token valid, refresh impossible: got %d, want 200", resp.StatusCode)
	}
	e.clock.Advance(time.Hour)
	resp, body := b.noFollow().get(t, g.URL+"/")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("token expired, refresh impossible: got %d, want 502; %.200s", resp.StatusCode, body)
	}
}

// TestTimeouts pins SECURITY.md 15 with a fake clock.
func TestTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []time.Duration // requests after each advance
		want  int
	}{
		{"active within idle", []time.Duration{20 * time.Minute, 20 * time.Minute, 20 * time.Minute}, 200},
		{"idle+1s", []time.Duration{30*time.Minute + time.Second}, 302},
		{"absolute+1s despite activity", []time.Duration{25 * time.Minute, 25 * time.Minute, 25 * time.Minute, 25 * time.Minute, 25 * time.Minute, 25*time.Minute + time.Second}, 302},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			g := e.gateway(gatewayOptions{mutate: func(_ *proxy.Config, sc *session.Config, _ *upstream.Config) {
				sc.IdleTimeout = 30 * time.Minute
				sc.MaxLifetime = 2 * time.Hour
			}})
			b := newBrowser(t)
			b.login(t, g, "/")
			var resp *http.Response
			for _, d := range tc.steps {
				e.clock.Advance(d)
				resp, _ = b.noFollow().get(t, g.URL+"/")
			}
			if resp.StatusCode != tc.want {
				t.Errorf("got %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// TestShortLivedTokensRefreshOnce: tokens that live less than the refresh
// window are renewed once for a burst of requests, not once per request
// (waiters adopt the new token even though it is itself "about to expire").
func TestShortLivedTokensRefreshOnce(t *testing.T) {
	e := newEnv(t, envOptions{redis: true, idp: upstreamtest.Config{AccessTokenTTL: 30 * time.Second}})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	b.login(t, g, "/")
	e.clock.Advance(25 * time.Second) // inside a quarter of the 30s lifetime
	e.idp.SetTokenDelay(100 * time.Millisecond)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := b.noFollow().Get(g.URL + "/burst")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("got %d, want 200", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if got := e.idp.GrantCount("refresh_token"); got != 1 {
		t.Errorf("refresh grants for a burst of 20 = %d, want 1", got)
	}
	// Requests after the refresh use the new token without renewing it.
	for i := 0; i < 5; i++ {
		if resp, _ := b.noFollow().get(t, g.URL+"/after"); resp.StatusCode != http.StatusOK {
			t.Fatalf("after refresh: got %d", resp.StatusCode)
		}
	}
	if got := e.idp.GrantCount("refresh_token"); got != 1 {
		t.Errorf("refresh grants after the burst = %d, want still 1", got)
	}
}

func TestRefusedRefreshEndsSession(t *testing.T) {
	// Regression: a refusal other than invalid_grant (here invalid_client,
	// from a replica whose client secret is wrong) answered 500 on every
	// request and asked the server again each time.
	e := newEnv(t, envOptions{redis: true})
	a := e.gateway(gatewayOptions{mutate: longIdle})
	bad := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		longIdle(pc, sc, uc)
		uc.ClientSecret = "wrong-secret"
	}})
	b := newBrowser(t)
	b.login(t, a, "/")
	e.clock.Advance(2 * time.Hour) // the access token has expired
	req := mustRequest(t, http.MethodGet, bad.URL+"/", nil)
	req.Header.Set("Cookie", "_authgate="+b.cookie(t, a.URL, "_authgate"))
	before := e.idp.Count("token")
	resp, _ := b.noFollow().do(t, req)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), e.idp.URL+"/authorize") {
		t.Fatalf("after invalid_client on refresh: got %d to %q, want 302 to the authorization server", resp.StatusCode, resp.Header.Get("Location"))
	}
	keys, err := e.redis.Client(t).Keys(t.Context(), "*s:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("session record still in Redis after a refused refresh: %v", keys)
	}
	if got := e.idp.Count("token") - before; got != 1 {
		t.Errorf("token requests: got %d, want 1", got)
	}
}
