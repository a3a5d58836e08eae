package interop_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/authgate/authgate/interop/oidcprovider"
)

// TestOIDCProviderMetrics: a real authgate process signs alice in through
// oidc-provider; its metrics_listen then counts the login, the calls to
// the server and the store, while /metrics holds none of her identity,
// the cookie, the path or the query she used (SECURITY.md 46), and the
// public listener's /metrics is the backend's. The backend saw the
// request id the access log line names.
func TestOIDCProviderMetrics(t *testing.T) {
	addr, maddr := freeAddr(t), freeAddr(t)
	op := startOP(t, oidcprovider.Config{}, "http://"+addr)
	be := newBackend(t)
	body := codeFlowConfig(t, op, be, "")
	g := startGatewayAt(t, addr, "authgate-secret", func(u string) string {
		return body(u) + fmt.Sprintf("metrics_listen: %q\n", maddr)
	})
	b := newBrowser()
	login(t, op, g, b, "/canary-path-51d7?canary-query=a9e3", "alice")
	id := be.lastHeader(t).Get("X-Request-Id")
	if len(id) != 32 || len(g.logLines("msg=request", "path=/canary-path-51d7 ", "request_id="+id)) != 1 {
		t.Errorf("backend got X-Request-Id %q; the access log has no line with it:\n%s", id, g.Logs())
	}
	if resp, body := b.get(t, g.URL+"/metrics"); resp.StatusCode != 200 || strings.Contains(body, "authgate_") {
		t.Errorf("the public /metrics: got %d %.200s, want the backend's answer", resp.StatusCode, body)
	}
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	scrape := string(raw)
	for _, want := range []string{
		`authgate_auth_events_total{event="login_succeeded",reason="authorization_code"} 1`,
		`authgate_auth_events_total{event="login_started",reason="interactive"} 1`,
		`authgate_http_requests_total{code="2xx",grant="authorization_code",route="0"} 2`,
		`authgate_upstream_request_duration_seconds_count{endpoint="token",outcome="2xx",upstream="default"} 1`,
		`authgate_upstream_request_duration_seconds_count{endpoint="userinfo",outcome="2xx",upstream="default"} 1`,
		`authgate_upstream_request_duration_seconds_count{endpoint="jwks",outcome="2xx",upstream="default"} 1`,
		`authgate_session_store_errors_total{op="get"} 0`,
	} {
		if !strings.Contains(scrape, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cookie := ""
	for _, c := range b.Jar.Cookies(mustParse(t, g.URL)) {
		if c.Name == "_authgate" {
			cookie = c.Value
		}
	}
	for _, canary := range []string{"alice", "example.com", "canary-path-51d7", "canary-query", "a9e3", cookie, be.lastHeader(t).Get("Authorization")[len("Bearer "):]} {
		if len(canary) < 4 {
			t.Fatalf("canary %q too short", canary)
		}
		if strings.Contains(scrape, canary) {
			t.Errorf("/metrics contains %q", canary)
		}
	}
}
