package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authgate/authgate/metrics"
)

func scrape(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// health stands in for the proxy's /healthz and /readyz handler.
var health = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "health "+r.URL.Path) })

func TestHandler(t *testing.T) {
	m := metrics.New(metrics.Build{Version: "v9.9.9", Revision: "abc123"})
	m.Route("app", "authorization_code").Observe(200, time.Millisecond)
	h := m.Handler(health, nil, false, nil)
	code, body := scrape(t, h, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: got %d, want 200", code)
	}
	for _, want := range []string{
		`authgate_build_info{goversion="go`, `revision="abc123",version="v9.9.9"} 1`,
		`authgate_http_requests_total{code="2xx",grant="authorization_code",route="app"} 1`,
		`authgate_http_request_duration_seconds_count{grant="authorization_code",route="app"} 1`,
		`authgate_auth_events_total{event="login_failed",reason="state"} 0`, // every series exists from the start
		`authgate_upstream_request_duration_seconds_count{endpoint="token",outcome="2xx",upstream="default"} 0`,
		`authgate_session_store_errors_total{op="get"} 0`,
		"go_goroutines ", "process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := scrape(t, h, p); code != 200 || body != "health "+p {
			t.Errorf("%s: got %d %q, want the health handler's answer", p, code, body)
		}
	}
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline", "/", "/metrics/x"} {
		if code, _ := scrape(t, h, p); code != http.StatusNotFound {
			t.Errorf("%s without pprof: got %d, want 404", p, code)
		}
	}
	hp := m.Handler(health, nil, true, nil)
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		if code, _ := scrape(t, hp, p); code != 200 {
			t.Errorf("%s with pprof: got %d, want 200", p, code)
		}
	}
}

// TestOwnRegistry: nothing lands in the client library's global default
// registry, and two Metrics do not collide (no package state).
func TestOwnRegistry(t *testing.T) {
	a, b := metrics.New(metrics.Build{}), metrics.New(metrics.Build{})
	a.Auth(metrics.LoginStarted, "interactive")
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "authgate_") {
			t.Errorf("the default registry holds %s", mf.GetName())
		}
	}
	_, body := scrape(t, b.Handler(health, nil, false, nil), "/metrics")
	if !strings.Contains(body, `authgate_auth_events_total{event="login_started",reason="interactive"} 0`) {
		t.Error("a second Metrics shares the first one's counts")
	}
}

func TestRouteStatusClasses(t *testing.T) {
	m := metrics.New(metrics.Build{})
	r := m.Route("0", "client_credentials")
	for _, st := range []int{101, 200, 204, 302, 401, 403, 499, 502, 0, 999} {
		r.Observe(st, time.Millisecond)
	}
	_, body := scrape(t, m.Handler(health, nil, false, nil), "/metrics")
	for code, n := range map[string]string{"1xx": "1", "2xx": "2", "3xx": "1", "4xx": "3", "5xx": "1", "other": "2"} {
		want := `authgate_http_requests_total{code="` + code + `",grant="client_credentials",route="0"} ` + n
		if !strings.Contains(body, want+"\n") {
			t.Errorf("lacks %s", want)
		}
	}
}

// TestBoundedLabels: a reason, endpoint or operation outside the fixed
// lists (a token endpoint's error code, say) never becomes a label value.
func TestBoundedLabels(t *testing.T) {
	m := metrics.New(metrics.Build{})
	m.Auth(metrics.LoginFailed, "invalid_grant: user alice@corp.example")
	m.Auth(metrics.RefreshFailed, "x-server-specific")
	m.ObserveCall("https://idp.example/secret", 200, time.Millisecond)
	m.ObserveCall("token", 0, time.Millisecond)
	m.ObserveCall("token", 429, time.Millisecond)
	m.ObserveStore("zadd", time.Millisecond, true)
	m.Upstream("customers").ObserveCall("jwks", 200, time.Millisecond)
	_, body := scrape(t, m.Handler(health, nil, false, nil), "/metrics")
	for _, bad := range []string{"alice", "x-server-specific", "idp.example", "zadd"} {
		if strings.Contains(body, bad) {
			t.Errorf("/metrics contains %q", bad)
		}
	}
	for _, want := range []string{
		`authgate_auth_events_total{event="login_failed",reason="other"} 1`,
		`authgate_auth_events_total{event="refresh_failed",reason="other"} 1`,
		`authgate_upstream_request_duration_seconds_count{endpoint="token",outcome="error",upstream="default"} 1`,
		`authgate_upstream_request_duration_seconds_count{endpoint="token",outcome="4xx",upstream="default"} 1`,
		`authgate_upstream_request_duration_seconds_count{endpoint="jwks",outcome="2xx",upstream="customers"} 1`,
		`authgate_session_store_errors_total{op="other"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("lacks %s", want)
		}
	}
}

// TestNil: a nil *Metrics (and its nil *Route) records nothing, safely.
func TestNil(t *testing.T) {
	var m *metrics.Metrics
	m.Auth(metrics.BearerValid, "jwt")
	m.ObserveCall("token", 200, time.Second)
	m.ObserveStore("get", time.Second, false)
	m.Route("a", "b").Observe(200, time.Second)
}

func TestCounterIsAtomicAdds(t *testing.T) {
	m := metrics.New(metrics.Build{})
	r := m.Route("app", "password")
	allocs := testing.AllocsPerRun(1000, func() {
		r.Observe(200, time.Millisecond)
		m.Auth(metrics.BearerValid, "cached")
	})
	if allocs != 0 {
		t.Errorf("a request's metrics allocate %v times, want 0", allocs)
	}
	_, body := scrape(t, m.Handler(health, nil, false, nil), "/metrics")
	if want := `authgate_auth_events_total{event="bearer_valid",reason="cached"} 1001`; !strings.Contains(body, want+"\n") {
		t.Errorf("lacks %s (AllocsPerRun runs 1+1000 times)", want)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  metrics.Config
		want string // "" valid
	}{
		{metrics.Config{}, ""},
		{metrics.Config{Listen: "127.0.0.1:9180"}, ""},
		{metrics.Config{Listen: ":9180", Pprof: true}, ""},
		{metrics.Config{Listen: "9180"}, "metrics_listen: not a host:port"},
		{metrics.Config{Pprof: true}, "metrics_pprof: needs metrics_listen"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: got %v, want valid", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
