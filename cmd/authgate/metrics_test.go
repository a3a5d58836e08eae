package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

// TestMetricsConfigErrors: the metrics keys and route names are checked
// like every other key.
func TestMetricsConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"pprof without listener", "metrics_pprof: true\n", "metrics_pprof: needs metrics_listen"},
		{"listener not an address", "metrics_listen: \"9180\"\n", "metrics_listen: not a host:port"},
		{"listener is the public one", "listen: \":4180\"\nmetrics_listen: \":4180\"\n", "metrics_listen: must differ from listen"},
		{"typo", "metrics_listn: \":9180\"\n", `did you mean "metrics_listen"`},
		{"admin API without a listener", "admin: {token: \"" + adminToken + "\"}\n", "admin.token: the admin API is served on metrics_listen only"},
		{"route name with a space", strings.Replace(validConfig, "  - backend:", "  - name: \"my app\"\n    backend:", 1), "routes[0].name: must be 1 to 64 letters"},
		{"route name an index", strings.Replace(validConfig, "  - backend:", "  - name: \"1\"\n    backend:", 1), "routes[0].name: must be"},
		{"route names twice", validConfig + "  - name: a\n    backend: \"http://127.0.0.1:8081\"\n    grant: authorization_code\n  - name: a\n    backend: \"http://127.0.0.1:8082\"\n    grant: authorization_code\n",
			`routes[2].name: "a" is already the name of routes[1]`},
	} {
		yaml := tc.extra
		if !strings.Contains(yaml, "routes:") {
			yaml = validConfig + yaml
		}
		if _, err := parseConfig([]byte(yaml), env(nil)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
	ok := validConfig + "metrics_listen: \"127.0.0.1:9180\"\nmetrics_pprof: true\n"
	if cfg, err := parseConfig([]byte(ok), env(nil)); err != nil || cfg.Metrics.Listen != "127.0.0.1:9180" || !cfg.Metrics.Pprof {
		t.Errorf("valid metrics keys: %v %+v", err, cfg)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// adminToken is the admin API's token in these tests.
const adminToken = "admin-token-0123456789abcdef0123456789"

// serveFor runs `authgate serve` with extra at the config's top level
// until the test ends, and waits until the metrics listener answers.
func serveFor(t *testing.T, issuer, extra string) (public, metricsURL string, logs *lockedBuffer) {
	t.Helper()
	public, metricsURL, logs, stop := startServe(t, issuer, extra)
	t.Cleanup(stop)
	return public, metricsURL, logs
}

// startServe is serveFor with the shutdown in the caller's hands: stop
// sends the signal's cancellation and waits for serve to return 0 (at the
// end of the test at the latest).
func startServe(t *testing.T, issuer, extra string) (public, metricsURL string, logs *lockedBuffer, stop func()) {
	t.Helper()
	addr, maddr := freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`listen: %q
public_url: "http://%s"
metrics_listen: %q
%s
upstream: {issuer: %q, client_id: authgate, client_secret: authgate-secret}
session: {store: memory, cookie: {secret: %q, secure: false}}
routes:
  - backend: "http://127.0.0.1:1"
    grant: authorization_code
`, addr, addr, maddr, extra, issuer, validSecret)
	path := filepath.Join(t.TempDir(), "authgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs = &lockedBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", path}, io.Discard, logs) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("serve exited %d:\n%s", code, logs)
				}
			case <-time.After(30 * time.Second):
				t.Error("serve did not stop")
			}
		})
	}
	t.Cleanup(stop)
	public, metricsURL = "http://"+addr, "http://"+maddr
	for deadline := time.Now().Add(10 * time.Second); ; {
		if code, _ := get(t, metricsURL+"/readyz"); code == 200 {
			return public, metricsURL, logs, stop
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d:\n%s", code, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics listener not ready:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeMetricsListener: `authgate serve` with metrics_listen serves
// /metrics, /healthz and /readyz there, the profiler only with
// metrics_pprof, and the public listener's /metrics is a route's path;
// the public request is counted and logged with its request id.
func TestServeMetricsListener(t *testing.T) {
	idp := upstreamtest.NewServer(upstreamtest.Config{})
	t.Cleanup(idp.Close)
	public, m, logs := serveFor(t, idp.URL, "")
	if code, body := get(t, m+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Errorf("metrics listener /healthz: %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, public+"/metrics", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(b), "authgate_") {
		t.Errorf("public /metrics: got %d %.200s, want the route's 401", resp.StatusCode, b)
	}
	id := resp.Header.Get("X-Request-Id")
	code, body := get(t, m+"/metrics")
	for _, want := range []string{
		`authgate_http_requests_total{code="4xx",grant="authorization_code",route="0"} 1`,
		`authgate_build_info{goversion="go`,
		`authgate_upstream_request_duration_seconds_count{endpoint="discovery",outcome="2xx",upstream="default"}`,
		`authgate_session_store_duration_seconds_count{op="ping"}`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %s", code, want)
		}
	}
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap"} {
		if code, _ := get(t, m+p); code != http.StatusNotFound {
			t.Errorf("%s without metrics_pprof: got %d, want 404", p, code)
		}
	}
	re := regexp.MustCompile(`msg=request method=GET .*path=/metrics .*status=401 .*request_id=` + id)
	for deadline := time.Now().Add(2 * time.Second); !re.MatchString(logs.String()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no access log line with request_id=%s:\n%s", id, logs)
		}
	}

	if code, _ := post(t, m+"/admin/revoke", "", "sub=x"); code != http.StatusNotFound {
		t.Errorf("/admin/revoke without admin.token: got %d, want 404", code)
	}

	public2, mp, _ := serveFor(t, idp.URL, "metrics_pprof: true\nadmin: {token: \""+adminToken+"\"}")
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1"} {
		if code, _ := get(t, mp+p); code != 200 {
			t.Errorf("%s with metrics_pprof: got %d, want 200", p, code)
		}
	}
	if code, _ := get(t, public2+"/debug/pprof/heap"); code == 200 {
		t.Error("the public listener serves the profiler")
	}
	// The admin API (proxy.Server.AdminHandler) lives on the metrics
	// listener, and only there.
	if code, body := post(t, mp+"/admin/revoke", "", "sub=x"); code != http.StatusUnauthorized {
		t.Errorf("/admin/revoke without the token: got %d %s, want 401", code, body)
	}
	if code, body := post(t, mp+"/admin/revoke", adminToken, "sub=nobody"); code != 200 || !strings.Contains(body, `"ended":0`) {
		t.Errorf("/admin/revoke with the token: got %d %s, want 200 ended 0", code, body)
	}
	if code, body := post(t, public2+"/admin/revoke", adminToken, "sub=nobody"); code == 200 || strings.Contains(body, "ended") {
		t.Errorf("the public listener's /admin/revoke: got %d %s, want no admin API", code, body)
	}
}

func post(t *testing.T, u, token, form string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
