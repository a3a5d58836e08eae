package proxy_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestDrain: once draining, /readyz answers 503, while /healthz and every
// other request are served.
func TestDrain(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{})
	b := newBrowser(t).noFollow()
	if resp, _ := b.get(t, g.URL+"/readyz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz before: %d, want 200", resp.StatusCode)
	}
	g.srv.Drain()
	resp, body := b.get(t, g.URL+"/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"shutdown":"draining"`) || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("/readyz draining: %d %s, want 503 naming the shutdown", resp.StatusCode, body)
	}
	if resp, _ := b.get(t, g.URL+"/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz draining: %d, want 200", resp.StatusCode)
	}
	if resp, body := b.get(t, g.URL+"/public/x"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "backend says hello") {
		t.Errorf("a request while draining: %d %q, want the backend", resp.StatusCode, body)
	}
	if resp, _ := b.get(t, g.URL+"/app"); resp.StatusCode != http.StatusFound {
		t.Errorf("a navigation while draining: %d, want the login", resp.StatusCode)
	}
}
