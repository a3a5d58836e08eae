package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// logoutWorld is two gateways on one Redis and one authorization server,
// with sessions cached on both (a minute's TTL, so only the invalidation
// channel can end them in time).
type logoutWorld struct {
	e    *env
	a, b *gateway
}

func newLogoutWorld(t *testing.T) *logoutWorld {
	t.Helper()
	e := newEnv(t, envOptions{redis: true})
	long := func(_ *proxy.Config, sc *session.Config, uc *upstream.Config) {
		sc.Cache.TTL = time.Minute
		uc.FrontChannelLogout = true
	}
	w := &logoutWorld{e: e, a: e.gateway(gatewayOptions{mutate: long}), b: e.gateway(gatewayOptions{mutate: long})}
	for _, g := range []*gateway{w.a, w.b} {
		deadline := time.Now().Add(5 * time.Second)
		for !g.sessions.CacheInUse() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return w
}

// signIn logs a new browser in at A as user (a login_hint for
// upstreamtest) and warms B's cache with its cookie; it returns the cookie
// and the login session's sid.
func (w *logoutWorld) signIn(t *testing.T, user, subject string) (string, string) {
	t.Helper()
	br := newBrowser(t)
	au := br.startLogin(t, w.a, "/")
	q := au.Query()
	q.Set("login_hint", user)
	au.RawQuery = q.Encode()
	cb := br.authorize(t, au)
	if resp, body := br.get(t, cb.String()); resp.StatusCode != http.StatusOK {
		t.Fatalf("login as %s: %d %s", user, resp.StatusCode, body)
	}
	cookie := br.cookie(t, w.a.URL, "_authgate")
	for range 2 {
		if w.status(t, w.b, cookie) != http.StatusOK {
			t.Fatalf("gateway B with %s's session: refused", user)
		}
	}
	sids := w.e.idp.SessionIDs(subject)
	return cookie, sids[len(sids)-1]
}

// status is what g answers an API request with cookie.
func (w *logoutWorld) status(t *testing.T, g *gateway, cookie string) int {
	t.Helper()
	req := mustRequest(t, http.MethodGet, g.URL+"/x", nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", "_authgate="+cookie)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// endsWithin reports whether cookie is refused on both gateways within d.
func (w *logoutWorld) endsWithin(t *testing.T, cookie string, d time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if w.status(t, w.a, cookie) == http.StatusUnauthorized && w.status(t, w.b, cookie) == http.StatusUnauthorized {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logoutToken signs a logout token of e's server; edit changes its claims.
func logoutToken(t *testing.T, e *env, sub, sid, jti string, edit func(jwt.MapClaims)) string {
	t.Helper()
	now := e.clock.Now()
	c := jwt.MapClaims{"iss": e.idp.Issuer(), "aud": "authgate", "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(), "jti": jti,
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	if sub != "" {
		c["sub"] = sub
	}
	if sid != "" {
		c["sid"] = sid
	}
	if edit != nil {
		edit(c)
	}
	raw, err := e.idp.SignTyped(c, "logout+jwt")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func postLogout(t *testing.T, g *gateway, form url.Values) (int, http.Header, map[string]string) {
	t.Helper()
	resp, err := http.PostForm(g.URL+"/oauth2/backchannel_logout", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, resp.Header, v
}

// TestBackChannelLogout: a valid logout token ends the sessions of its sid
// on both gateways within a second and revokes their refresh tokens; every
// bad token, a replay included, gets 400 and ends nothing; a token naming
// only the user ends all of that user's sessions and no one else's
// (SECURITY.md 45).
func TestBackChannelLogout(t *testing.T) {
	w := newLogoutWorld(t)
	e := w.e
	alice1, sid1 := w.signIn(t, "alice", "user-alice")
	alice2, _ := w.signIn(t, "alice", "user-alice")
	bob, bobSID := w.signIn(t, "bob", "user-bob")

	good := logoutToken(t, e, "user-alice", sid1, "jti-1", nil)
	status, h, _ := postLogout(t, w.a, url.Values{"logout_token": {good}})
	if status != http.StatusOK || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("back-channel logout: %d (Cache-Control %q), want 200 no-store", status, h.Get("Cache-Control"))
	}
	if !w.endsWithin(t, alice1, time.Second) {
		t.Error("alice's session of sid-1 still works 1 s after the back-channel logout")
	}
	if w.status(t, w.a, alice2) != 200 || w.status(t, w.b, bob) != 200 {
		t.Error("the logout of one sid ended another session")
	}
	if e.idp.Count("revoke") != 1 {
		t.Errorf("revocations: %d, want 1 (the ended session's refresh token)", e.idp.Count("revoke"))
	}

	for _, tc := range []struct {
		name string
		form url.Values
	}{
		{"replayed", url.Values{"logout_token": {good}}},
		{"replayed on the other gateway", url.Values{"logout_token": {good}}},
		{"with a nonce", url.Values{"logout_token": {logoutToken(t, e, "user-bob", bobSID, "jti-2", func(c jwt.MapClaims) { c["nonce"] = "n" })}}},
		{"for another audience", url.Values{"logout_token": {logoutToken(t, e, "user-bob", bobSID, "jti-3", func(c jwt.MapClaims) { c["aud"] = "another-client" })}}},
		{"expired", url.Values{"logout_token": {logoutToken(t, e, "user-bob", bobSID, "jti-4", func(c jwt.MapClaims) {
			c["iat"] = e.clock.Now().Add(-time.Hour).Unix()
			c["exp"] = e.clock.Now().Add(-50 * time.Minute).Unix()
		})}}},
		{"unsigned", url.Values{"logout_token": {unsignedJWT(t, jwt.MapClaims{"iss": e.idp.Issuer(), "aud": "authgate", "iat": e.clock.Now().Unix(), "jti": "jti-5", "sub": "user-bob",
			"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}})}}},
		{"of another issuer", url.Values{"logout_token": {logoutToken(t, e, "user-bob", bobSID, "jti-6", func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })}}},
		{"no token", url.Values{}},
		{"two tokens", url.Values{"logout_token": {good, good}}},
		{"garbage", url.Values{"logout_token": {"not-a-jwt"}}},
	} {
		g := w.a
		if strings.Contains(tc.name, "other gateway") {
			g = w.b
		}
		status, _, body := postLogout(t, g, tc.form)
		if status != http.StatusBadRequest || body["error"] != "invalid_request" {
			t.Errorf("%s: %d %v, want 400 invalid_request", tc.name, status, body)
		}
	}
	if w.status(t, w.a, bob) != 200 || w.status(t, w.b, alice2) != 200 {
		t.Error("a refused logout token ended a session")
	}
	if resp, _ := http.Get(w.a.URL + "/oauth2/backchannel_logout"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET backchannel_logout: %d, want 405", resp.StatusCode)
	}

	// A token naming only the user ends all of that user's sessions.
	if status, _, _ := postLogout(t, w.b, url.Values{"logout_token": {logoutToken(t, e, "user-alice", "", "jti-7", nil)}}); status != http.StatusOK {
		t.Fatalf("sub-only logout: %d", status)
	}
	if !w.endsWithin(t, alice2, time.Second) {
		t.Error("alice's other session still works after a logout naming alice")
	}
	if w.status(t, w.a, bob) != 200 {
		t.Error("a logout naming alice ended bob's session")
	}
	if logs := e.logs.String(); strings.Contains(logs, good) || strings.Contains(logs, alice1) {
		t.Error("a logout token or a cookie reached the log")
	}
}

// unsignedJWT is an alg=none token.
func unsignedJWT(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	raw, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestFrontChannelLogout: iss and sid of a login session end its sessions
// on both gateways; a wrong iss or sid ends nothing; the page may be framed
// by the issuer only.
func TestFrontChannelLogout(t *testing.T) {
	w := newLogoutWorld(t)
	e := w.e
	alice, sid := w.signIn(t, "alice", "user-alice")
	bob, _ := w.signIn(t, "bob", "user-bob")
	get := func(q url.Values) *http.Response {
		resp, err := http.Get(w.b.URL + "/oauth2/frontchannel_logout?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get(url.Values{"iss": {"https://evil.example"}, "sid": {sid}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("wrong iss: %d, want 400", resp.StatusCode)
	}
	// A gateway whose upstream does not enable it refuses the right pair.
	off := e.gateway(gatewayOptions{})
	if resp, err := http.Get(off.URL + "/oauth2/frontchannel_logout?" + url.Values{"iss": {e.idp.Issuer()}, "sid": {sid}}.Encode()); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("front-channel logout without frontchannel_logout: %v %v, want 400", resp.StatusCode, err)
	}
	if resp := get(url.Values{"iss": {e.idp.Issuer()}, "sid": {"not-" + sid}}); resp.StatusCode != http.StatusOK {
		t.Errorf("unknown sid: %d, want 200 (nothing to end)", resp.StatusCode)
	}
	if resp := get(url.Values{"iss": {e.idp.Issuer()}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no sid: %d, want 400", resp.StatusCode)
	}
	if w.status(t, w.a, alice) != 200 {
		t.Fatal("a wrong iss or sid ended alice's session")
	}
	resp := get(url.Values{"iss": {e.idp.Issuer()}, "sid": {sid}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Frame-Options") != "" ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors "+e.idp.URL+";") {
		t.Errorf("front-channel logout: %d, X-Frame-Options %q, CSP %q; want 200 framable by %s only",
			resp.StatusCode, resp.Header.Get("X-Frame-Options"), resp.Header.Get("Content-Security-Policy"), e.idp.URL)
	}
	if !w.endsWithin(t, alice, time.Second) {
		t.Error("alice's session still works 1 s after the front-channel logout")
	}
	if w.status(t, w.a, bob) != 200 {
		t.Error("the front-channel logout of alice's sid ended bob's session")
	}
}

// lockFailingStore fails the next fails Lock calls, as a store that is
// briefly down would.
type lockFailingStore struct {
	session.Store
	fails atomic.Int32
}

func (s *lockFailingStore) Lock(ctx context.Context, key string, ttl time.Duration) (func(context.Context) error, error) {
	if s.fails.Add(-1) >= 0 {
		return nil, fmt.Errorf("%w: injected", session.ErrUnavailable)
	}
	return s.Store.Lock(ctx, key, ttl)
}

// TestBackChannelLogoutRetried: a logout the store could not carry out is
// answered 503, and the server's retry of the same token is not refused as
// a replay: it ends the session.
func TestBackChannelLogoutRetried(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	flaky := &lockFailingStore{Store: e.store}
	e.store = flaky
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	b.login(t, g, "/")
	cookie := b.cookie(t, g.URL, "_authgate")
	sids := e.idp.SessionIDs("user-alice")
	tok := logoutToken(t, e, "user-alice", sids[len(sids)-1], "jti-retry", nil)
	flaky.fails.Store(1)
	if status, _, _ := postLogout(t, g, url.Values{"logout_token": {tok}}); status != http.StatusServiceUnavailable {
		t.Fatalf("logout while the store fails: %d, want 503", status)
	}
	if status, _, body := postLogout(t, g, url.Values{"logout_token": {tok}}); status != http.StatusOK {
		t.Fatalf("the server's retry: %d %v, want 200", status, body)
	}
	w := &logoutWorld{e: e, a: g, b: g}
	if !w.endsWithin(t, cookie, time.Second) {
		t.Error("the session survived the retried logout")
	}
}
