package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// TestRedisOutage: a Redis blip answers 503 and keeps the cookie (the peers'
// log-everyone-out bug); /readyz fails; everything recovers by itself.
func TestRedisOutage(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	b.login(t, g, "/")
	// Persist what Redis holds, so the restart models a blip, not data loss.
	if err := e.redis.Client(t).Save(t.Context()).Err(); err != nil {
		t.Fatalf("redis SAVE: %v", err)
	}
	e.redis.Stop()
	// The gateway notices at once (its subscription breaks) and stops
	// using its session cache: a Redis outage is an outage.
	waitCacheOff(t, g)

	for _, accept := range []string{"text/html", "application/json"} {
		req := mustRequest(t, http.MethodGet, g.URL+"/private", nil)
		req.Header.Set("Accept", accept)
		resp, body := b.noFollow().do(t, req)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("Accept %s, Redis down: got %d, want 503; %.200s", accept, resp.StatusCode, body)
		}
		for _, c := range resp.Cookies() {
			if c.Name == "_authgate" {
				t.Errorf("Redis down: the gateway touched the session cookie (%v); it must keep it", c)
			}
		}
		if strings.Contains(body, "goroutine") || strings.Contains(body, "redis") && strings.Contains(body, "dial tcp") {
			t.Errorf("503 page leaks internals: %.300s", body)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	}
	// A new login cannot store its state either: 503, not a broken redirect.
	if resp, _ := newBrowser(t).noFollow().get(t, g.URL+"/"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("login start with Redis down: got %d, want 503", resp.StatusCode)
	}
	if resp, _ := b.noFollow().get(t, g.URL+"/readyz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down: got %d, want 503", resp.StatusCode)
	}
	if resp, _ := b.noFollow().get(t, g.URL+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz with Redis down: got %d, want 200 (the process is alive)", resp.StatusCode)
	}
	if e.backend.count() != 1 {
		t.Errorf("backend reached %d times, want only the login's 1: fail closed", e.backend.count())
	}

	e.redis.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, body := b.noFollow().get(t, g.URL+"/private")
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Redis came back: still %d; %.200s", resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, body := b.noFollow().get(t, g.URL+"/readyz")
	var ready struct {
		Checks map[string]string `json:"checks"`
	}
	_ = json.Unmarshal([]byte(body), &ready)
	if resp.StatusCode != http.StatusOK || ready.Checks["session_store"] != "ok" {
		t.Errorf("/readyz after recovery: got %d %s, want 200", resp.StatusCode, body)
	}
}

// waitCacheOff waits until g has stopped using its session cache.
func waitCacheOff(t *testing.T, g *gateway) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for g.sessions.CacheInUse() {
		if time.Now().After(deadline) {
			t.Fatal("the gateway still uses its session cache 2s into a Redis outage")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRedisHangCached: a hanging Redis is noticed by the invalidation
// channel's ping within about a second; from then on, 503 as without a
// cache.
func TestRedisHangCached(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t)
	b.login(t, g, "/")
	e.redis.Pause()
	defer e.redis.Resume()
	start := time.Now()
	waitCacheOff(t, g)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("a hanging Redis was noticed after %v, want about 1s", d)
	}
	if resp, _ := b.noFollow().get(t, g.URL+"/private"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("Redis hanging, cache off: got %d, want 503", resp.StatusCode)
	}
}

// TestRedisHang: a Redis that accepts but never answers (paused clients)
// gives 503 within the configured timeout, not a hung request.
func TestRedisHang(t *testing.T) {
	e := newEnv(t, envOptions{redis: true})
	// The store's own timeout is what is measured: no session cache (its
	// part in a hang is TestRedisHangCached's).
	g := e.gateway(gatewayOptions{mutate: func(_ *proxy.Config, sc *session.Config, _ *upstream.Config) {
		sc.Cache.TTL = -1
	}})
	b := newBrowser(t)
	b.login(t, g, "/")
	if err := e.redis.Client(t).Do(t.Context(), "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	start := time.Now()
	resp, _ := b.noFollow().get(t, g.URL+"/private")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("Redis hanging: got %d, want 503", resp.StatusCode)
	}
	if d := time.Since(start); d > 1400*time.Millisecond {
		t.Errorf("answer took %v; the store timeout (500ms in this test) should bound it", d)
	}
	time.Sleep(1600*time.Millisecond - time.Since(start))
	if resp, _ := b.noFollow().get(t, g.URL+"/private"); resp.StatusCode != http.StatusOK {
		t.Errorf("after the pause: got %d, want 200 with the same cookie", resp.StatusCode)
	}
}

// TestAuthorizationServerDown: login attempts while the authorization
// server is unreachable get a clear 502 page.
func TestAuthorizationServerDown(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	e.idp.Close()
	resp, body := newBrowser(t).noFollow().get(t, g.URL+"/")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "authorization server") {
		t.Errorf("got %d %.200s, want 502 naming the authorization server", resp.StatusCode, body)
	}
	if resp, _ := newBrowser(t).noFollow().get(t, g.URL+"/readyz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz: got %d, want 503", resp.StatusCode)
	}
}

// TestBackendHangs: a backend that never answers gets a 504 page once
// limits.backend_response_timeout has passed, not a request held forever.
func TestBackendHangs(t *testing.T) {
	e := newEnv(t, envOptions{})
	release := make(chan struct{})
	e.backend.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Limits.BackendResponseTimeout = 300 * time.Millisecond
	}})
	b := newBrowser(t)
	start := time.Now()
	resp, body := b.get(t, g.URL+"/public/x")
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "took too long") {
		t.Errorf("got %d %.200s, want the 504 backend timeout page", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("answered after %v, want soon after the 300ms timeout", d)
	}
}
