package proxy_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/metrics"
	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// scrapeMetrics reads /metrics from m's handler, as the metrics listener
// serves it.
func scrapeMetrics(t *testing.T, g *gateway, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler(g.srv.Health(), nil, false, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	return string(b)
}

// value is the value of one series in a scrape, -1 when absent.
func value(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// canaryUser is the account of the telemetry tests: every value of it is
// distinctive, so finding one in a metric or a span is a leak.
var canaryUser = upstreamtest.User{Subject: "canary-sub-7f3a91", Username: "canary-name-7f3a91", Password: "canary-password-7f3a91",
	Email: "canary-mail-7f3a91@corp.example", EmailVerified: true, Name: "Canary Person", Groups: []string{"canary-group-7f3a91"}}

// canaryEnv is the telemetry tests' world: canaryUser at the
// authorization server, Redis, and a gateway whose route "web" at /app/
// takes caller tokens too.
func canaryEnv(t *testing.T, o gatewayOptions) (*env, *gateway) {
	e := newEnv(t, envOptions{redis: true, idp: upstreamtest.Config{Users: []upstreamtest.User{canaryUser}}})
	mutate := o.mutate
	o.mutate = func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		pc.Routes[0].Name = "web"
		pc.Routes[0].Match.PathPrefix = "/app/"
		pc.Routes[0].AcceptBearer = true
		pc.Routes[0].Audience = "urn:orders"
		if mutate != nil {
			mutate(pc, sc, uc)
		}
	}
	return e, e.gateway(o)
}

// sendCanaries sends g traffic that carries canaryUser's identity, its
// tokens and cookie, distinctive paths and query strings (matched, of no
// route, under the prefix), caller tokens good and bad and a forged
// cookie; it returns those values, none of which telemetry may hold
// (SECURITY.md 46), and the browser signed in as canaryUser.
func sendCanaries(t *testing.T, e *env, g *gateway) ([]string, *browser) {
	t.Helper()
	user := canaryUser
	var authz []string // the authorization responses' code and state
	e.idp.SetAuthorizeResponseHook(func(q url.Values) { authz = append(authz, q.Get("code"), q.Get("state")) })
	b := newBrowser(t)
	b.login(t, g, "/app/canary-path-5d1e?canary-query=6c2b")
	e.idp.SetAuthorizeResponseHook(nil)
	if len(authz) != 2 {
		t.Fatalf("authorization responses seen: %q, want one code and state", authz)
	}
	canaries := append([]string{user.Subject, user.Username, user.Password, user.Email, "Canary", user.Groups[0],
		"canary-path-5d1e", "canary-query", b.cookie(t, g.URL, "_authgate"), bearer(e.backend.last(t))}, authz...)
	b.get(t, g.URL+"/app/other-canary-path-2b4c/x?q=other-canary-query-9a9a")
	b.get(t, g.URL+"/unmatched-canary-path-8e4f?q=1") // no route
	b.get(t, g.URL+"/oauth2/unknown-canary-endpoint-3c3c")
	canaries = append(canaries, "other-canary-path-2b4c", "other-canary-query-9a9a", "unmatched-canary-path-8e4f", "unknown-canary-endpoint-3c3c")
	jwtTok := signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")
	if resp, _ := apiCall(t, g, "/app/api", jwtTok); resp.StatusCode != 200 {
		t.Fatalf("caller JWT: got %d", resp.StatusCode)
	}
	apiCall(t, g, "/app/api", "garbage.canary.token-4f4f")
	req := mustRequest(t, http.MethodGet, g.URL+"/app/x", nil)
	req.Header.Set("Cookie", "_authgate=cookie-canary-1e1e")
	newBrowser(t).noFollow().do(t, req)
	canaries = append(canaries, jwtTok, "canary.token-4f4f", "cookie-canary-1e1e", "svc-caller", "caller@example.com")
	for _, c := range canaries {
		if len(c) < 6 {
			t.Fatalf("canary %q too short to mean anything", c)
		}
	}
	return canaries, b
}

// TestMetricsCarryNoIdentity: traffic carrying a distinctive subject,
// email, user name, tokens, cookies, paths and query strings leaves none
// of them in /metrics (SECURITY.md 46), while the requests, logins,
// caller tokens and the calls to the server and the store are counted.
func TestMetricsCarryNoIdentity(t *testing.T) {
	m := metrics.New(metrics.Build{Version: "test"})
	e, g := canaryEnv(t, gatewayOptions{metrics: m})
	canaries, _ := sendCanaries(t, e, g)

	body := scrapeMetrics(t, g, m)
	for _, c := range canaries {
		if strings.Contains(body, c) {
			t.Errorf("/metrics contains %q", c)
		}
	}
	for _, tc := range []struct {
		series string
		min    float64
	}{
		{`authgate_http_requests_total{code="2xx",grant="authorization_code",route="web"}`, 3},
		{`authgate_http_requests_total{code="4xx",grant="authorization_code",route="web"}`, 1}, // the garbage token
		{`authgate_http_requests_total{code="3xx",grant="authorization_code",route="web"}`, 1}, // the login redirect
		{`authgate_http_requests_total{code="3xx",grant="",route="_callback"}`, 1},
		{`authgate_http_requests_total{code="4xx",grant="",route="_none"}`, 1},
		{`authgate_http_requests_total{code="4xx",grant="",route="_other"}`, 1},
		{`authgate_http_request_duration_seconds_count{grant="authorization_code",route="web"}`, 5},
		{`authgate_auth_events_total{event="login_started",reason="interactive"}`, 2},
		{`authgate_auth_events_total{event="login_succeeded",reason="authorization_code"}`, 1},
		{`authgate_auth_events_total{event="bearer_valid",reason="jwt"}`, 1},
		{`authgate_upstream_request_duration_seconds_count{endpoint="token",outcome="2xx",upstream="default"}`, 1},
		{`authgate_upstream_request_duration_seconds_count{endpoint="jwks",outcome="2xx",upstream="default"}`, 1},
		{`authgate_upstream_request_duration_seconds_count{endpoint="discovery",outcome="2xx",upstream="default"}`, 1},
		{`authgate_session_store_duration_seconds_count{op="set"}`, 1},
		{`authgate_session_store_duration_seconds_count{op="take"}`, 1},
	} {
		if v := value(body, tc.series); v < tc.min {
			t.Errorf("%s = %v, want at least %v", tc.series, v, tc.min)
		}
	}
	if v := value(body, `authgate_session_store_errors_total{op="get"}`); v != 0 {
		t.Errorf("store errors with a healthy store: %v", v)
	}
}

// TestPublicListenerHasNoMetrics: /metrics and /debug/pprof/ on the
// public listener are paths like any other (SECURITY.md 46): a login
// without a session, the backend's answer with one, never the gateway's
// metrics or profiles.
func TestPublicListenerHasNoMetrics(t *testing.T) {
	e := newEnv(t, envOptions{})
	m := metrics.New(metrics.Build{})
	g := e.gateway(gatewayOptions{metrics: m})
	for _, p := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap"} {
		resp, body := apiCall(t, g, p, "")
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body, "authgate_") || strings.Contains(body, "# HELP") {
			t.Errorf("GET %s without a session: got %d %.200q, want the route's 401", p, resp.StatusCode, body)
		}
	}
	b := newBrowser(t)
	b.login(t, g, "/")
	for _, p := range []string{"/metrics", "/debug/pprof/heap"} {
		resp, body := b.get(t, g.URL+p)
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "backend says hello") || e.backend.last(t).URL.Path != p {
			t.Errorf("GET %s with a session: got %d %.200q, want the backend's answer", p, resp.StatusCode, body)
		}
	}
	if v := value(scrapeMetrics(t, g, m), `authgate_http_requests_total{code="2xx",grant="authorization_code",route="0"}`); v < 2 {
		t.Errorf("the proxied /metrics requests were not counted as route 0: %v", v)
	}
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestRequestID: every answer carries X-Request-Id, the backend receives
// the same one; a client's own is replaced unless it comes from a trusted
// proxy and is one plain token; a backend's own is not passed on beside
// it; and the access log line names it.
func TestRequestID(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.backend.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo-Request-Id", r.Header.Get("X-Request-Id"))
		w.Header().Set("X-Request-Id", "backend-own-id")
	})
	untrusted := e.gateway(gatewayOptions{})
	trusted := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.TrustedProxies = []string{"127.0.0.1"}
	}})
	send := func(g *gateway, ids ...string) *http.Response {
		t.Helper()
		req := mustRequest(t, http.MethodGet, g.URL+"/public/x", nil)
		for _, id := range ids {
			req.Header.Add("X-Request-Id", id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("public path: %d", resp.StatusCode)
		}
		if got := resp.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != resp.Header.Get("X-Echo-Request-Id") {
			t.Fatalf("response ids %q, backend got %q: want one, the same", got, resp.Header.Get("X-Echo-Request-Id"))
		}
		return resp
	}
	a, b := send(untrusted).Header.Get("X-Request-Id"), send(untrusted).Header.Get("X-Request-Id")
	if !hexID.MatchString(a) || a == b {
		t.Errorf("generated ids %q, %q: want 32 hex digits, different", a, b)
	}
	if !strings.Contains(e.logs.String(), "request_id="+a) {
		t.Errorf("the access log lacks request_id=%s:\n%s", a, e.logs)
	}
	const good = "Root=1-5759e988-bd862e3fe1be46a994272793;trace:ab" // ';' is not allowed
	for _, tc := range []struct {
		name string
		g    *gateway
		ids  []string
		keep bool
	}{
		{"untrusted client", untrusted, []string{"client-chosen-id"}, false},
		{"trusted proxy, uuid", trusted, []string{"0f14d0ab-9605-4a62-a9e4-5ed26688389b"}, true},
		{"trusted proxy, base64 and colons", trusted, []string{"abc.DEF_12~+/=:@x"}, true},
		{"trusted proxy, 128 characters", trusted, []string{strings.Repeat("a", 128)}, true},
		{"trusted proxy, 129 characters", trusted, []string{strings.Repeat("a", 129)}, false},
		{"trusted proxy, space", trusted, []string{"has space"}, false},
		{"trusted proxy, quote", trusted, []string{`a"b`}, false},
		{"trusted proxy, semicolon", trusted, []string{good}, false},
		{"trusted proxy, two values", trusted, []string{"one", "two"}, false},
		{"trusted proxy, empty", trusted, []string{""}, false},
	} {
		got := send(tc.g, tc.ids...).Header.Get("X-Request-Id")
		switch {
		case tc.keep && got != tc.ids[0]:
			t.Errorf("%s: got %q, want the proxy's %q", tc.name, got, tc.ids[0])
		case !tc.keep && !hexID.MatchString(got):
			t.Errorf("%s: got %q, want a new id", tc.name, got)
		}
	}
}

// TestRequestIDInEveryLogLine: the lines a request causes, the upstream
// package's included (the JWKS fetched for a caller's JWT), all carry its
// request id.
func TestRequestIDInEveryLogLine(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: acceptBearer("urn:orders")})
	apiCall(t, g, "/x", "opaque-warm-up") // discovery, logged without a request of its own
	before := len(e.logs.String())
	resp, _ := apiCall(t, g, "/x", signAT(t, e, accessClaims(e, "urn:other"), "at+jwt"))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("JWT for another audience: got %d, want 401", resp.StatusCode)
	}
	id := resp.Header.Get("X-Request-Id")
	lines := strings.Split(strings.TrimSpace(e.logs.String()[before:]), "\n")
	for _, l := range lines {
		if !strings.Contains(l, "request_id="+id) {
			t.Errorf("a line of the request lacks request_id=%s: %s", id, l)
		}
	}
	for _, want := range []string{`msg="JWKS loaded"`, `msg="caller token refused"`, "msg=request "} {
		if !strings.Contains(e.logs.String()[before:], want) {
			t.Errorf("no %s line among the request's: the test would prove less:\n%s", want, e.logs.String()[before:])
		}
	}
}

// TestAccessLogLine: the line names host, the path as sent (escaped,
// without the query), the route, the user, the request id, a refusal's
// reason, and a duration with its unit.
func TestAccessLogLine(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Routes[0].Name = "app"
		pc.Routes = append(pc.Routes, proxy.Route{Name: "admins", Match: proxy.Match{PathPrefix: "/admin/"}, Backend: e.backend.URL,
			Grant: proxy.GrantAuthorizationCode, Allow: proxy.Allow{Emails: []string{"nobody@example.com"}}})
		pc.Routes[0], pc.Routes[1] = pc.Routes[1], pc.Routes[0]
	}})
	b := newBrowser(t)
	b.login(t, g, "/")
	line := func(path string) string {
		t.Helper()
		for _, l := range strings.Split(e.logs.String(), "\n") {
			if strings.Contains(l, "msg=request ") && strings.Contains(l, " path="+path+" ") {
				return l
			}
		}
		t.Fatalf("no access log line for %s:\n%s", path, e.logs)
		return ""
	}
	b.get(t, g.URL+"/a%2Fb/c?code=secret-query-value")
	l := line("/a%2Fb/c")
	host := strings.TrimPrefix(g.URL, "http://")
	for _, want := range []string{"level=INFO", "method=GET", "host=" + host, "route=app", "status=200", "user=user-alice", "remote=127.0.0.1:"} {
		if !strings.Contains(l, " "+want) {
			t.Errorf("line lacks %s: %s", want, l)
		}
	}
	if strings.Contains(l, "secret-query-value") || strings.Contains(e.logs.String(), "secret-query-value") {
		t.Errorf("the query reached the log: %s", l)
	}
	if !regexp.MustCompile(` duration=\d+\.\d{3}ms `).MatchString(l) || !regexp.MustCompile(` request_id=[0-9a-f]{32}`).MatchString(l) {
		t.Errorf("duration or request_id malformed: %s", l)
	}
	b.get(t, g.URL+"/admin/x")
	if l := line("/admin/x"); !strings.Contains(l, " status=403 ") || !strings.Contains(l, " reason=policy") || !strings.Contains(l, " route=admins ") {
		t.Errorf("policy refusal: %s", l)
	}
	req := mustRequest(t, http.MethodPost, g.URL+"/form", strings.NewReader("a=b"))
	req.Header.Set("Origin", "https://evil.example")
	b.do(t, req)
	if l := line("/form"); !strings.Contains(l, " status=403 ") || !strings.Contains(l, " reason=cross_site") {
		t.Errorf("cross-site refusal: %s", l)
	}
}

// TestAccessLogJSON: with log.format json every line is one JSON object
// (the access log's included), the duration in seconds as a number.
func TestAccessLogJSON(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{jsonLog: true})
	b := newBrowser(t)
	b.login(t, g, "/")
	b.get(t, g.URL+"/q%22uote/%E2%80%A8/x?y=1")
	var found bool
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("not a JSON object: %v: %s", err, l)
		}
		if rec["msg"] != "request" || rec["path"] != "/q%22uote/%E2%80%A8/x" {
			continue
		}
		found = true
		d, ok := rec["duration"].(float64)
		if !ok || d <= 0 || d > 10 {
			t.Errorf("duration %v (%T): want seconds, a number", rec["duration"], rec["duration"])
		}
		for k, want := range map[string]any{"level": "INFO", "method": "GET", "status": 200.0, "route": "0", "user": "user-alice"} {
			if rec[k] != want {
				t.Errorf("%s = %v, want %v", k, rec[k], want)
			}
		}
		if id, _ := rec["request_id"].(string); !hexID.MatchString(id) {
			t.Errorf("request_id %q", id)
		}
		if ts, _ := rec["time"].(string); !validTime(ts) {
			t.Errorf("time %v: not RFC 3339", rec["time"])
		}
	}
	if !found {
		t.Fatalf("no access log line for the path:\n%s", e.logs)
	}
}

func validTime(s string) bool {
	_, err := time.Parse(time.RFC3339Nano, s)
	return err == nil
}
