package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// foldedHeader returns the values of every header of h whose name folds
// (case, "_" for "-") to name.
func foldedHeader(h http.Header, name string) []string {
	var out []string
	for k, v := range h {
		if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), name) {
			out = append(out, v...)
		}
	}
	return out
}

func TestForwardingHeadersOnlyFromTrustedProxies(t *testing.T) {
	spoof := map[string]string{
		"X-Forwarded-For":   "198.51.100.7",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "evil.example",
		"X-Real-Ip":         "6.6.6.6",
		"X_forwarded_for":   "6.6.6.6",
		"Forwarded":         "for=6.6.6.6",
	}
	for _, tc := range []struct {
		name    string
		trusted []string
		want    map[string]string // folded name → all values joined; "" means absent
	}{
		{"no trusted proxies (default)", nil, map[string]string{
			"X-Forwarded-For":   "127.0.0.1",
			"X-Forwarded-Proto": "http",
			"X-Real-Ip":         "",
			"Forwarded":         "",
		}},
		{"peer is a trusted proxy", []string{"127.0.0.0/8"}, map[string]string{
			"X-Forwarded-For":   "198.51.100.7, 127.0.0.1", // X_forwarded_for dropped, not merged
			"X-Forwarded-Proto": "https",
			"X-Forwarded-Host":  "evil.example", // the proxy's word, as configured
			"X-Real-Ip":         "6.6.6.6",
			"Forwarded":         "",
		}},
		{"another proxy is trusted", []string{"10.0.0.0/8"}, map[string]string{
			"X-Forwarded-For":   "127.0.0.1",
			"X-Forwarded-Proto": "http",
			"X-Real-Ip":         "",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
				pc.TrustedProxies = tc.trusted
			}})
			b := newBrowser(t)
			b.login(t, g, "/")
			for _, path := range []string{"/app", "/public/x"} {
				req := mustRequest(t, http.MethodGet, g.URL+path, nil)
				for k, v := range spoof {
					req.Header[k] = []string{v}
				}
				if resp, body := b.do(t, req); resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: got %d, want 200; body %s", path, resp.StatusCode, body)
				}
				got := e.backend.last(t).Header
				for name, want := range tc.want {
					if v := strings.Join(foldedHeader(got, name), " | "); v != want {
						t.Errorf("%s: backend saw %s %q, want %q", path, name, v, want)
					}
				}
			}
		})
	}
}

func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Limits.LoginsPerMinute = 3
		pc.TrustedProxies = []string{"127.0.0.1"}
	}})
	b := newBrowser(t).noFollow()
	get := func(path, client string) *http.Response {
		t.Helper()
		req := mustRequest(t, http.MethodGet, g.URL+path, nil)
		req.Header.Set("X-Forwarded-For", client)
		resp, _ := b.do(t, req)
		return resp
	}
	const client = "198.51.100.7"
	stateRecords := func() int { return e.store.(*session.MemoryStore).Len() }
	before := stateRecords()
	for i, path := range []string{"/a", "/oauth2/start?rd=/b", "/c"} {
		if resp := get(path, client); resp.StatusCode != http.StatusFound {
			t.Fatalf("login %d (%s): got %d, want 302", i+1, path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/d", "/oauth2/start?rd=/e"} {
		resp := get(path, client)
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("login over the limit (%s): got %d, want 429", path, resp.StatusCode)
		}
		if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Errorf("Retry-After: got %q, want a positive number of seconds", ra)
		}
	}
	if logs := e.logs.String(); strings.Count(logs, "login rate limit reached") != 1 || !strings.Contains(logs, "client="+client) {
		t.Errorf("want one warning naming %s (not one per refusal); logs:\n%s", client, logs)
	}
	if got := stateRecords() - before; got != 3 {
		t.Errorf("pending logins stored: got %d, want 3 (refused ones store nothing)", got)
	}
	if resp := get("/f", "198.51.100.8"); resp.StatusCode != http.StatusFound {
		t.Errorf("another client behind the same trusted proxy: got %d, want 302", resp.StatusCode)
	}
	e.clock.Advance(20 * time.Second) // 3 per minute: one more token
	if resp := get("/g", client); resp.StatusCode != http.StatusFound {
		t.Errorf("after 20s: got %d, want 302", resp.StatusCode)
	}
	// Callbacks have their own budget: bogus ones are refused with 400
	// until it is spent, then with 429 before the store is asked.
	for i := range 4 {
		want := http.StatusBadRequest
		if i == 3 {
			want = http.StatusTooManyRequests
		}
		if resp := get("/oauth2/callback?state=AAAAAAAAAAAAAAAAAAAAAAAAAA&code=x", client); resp.StatusCode != want {
			t.Errorf("callback %d: got %d, want %d", i+1, resp.StatusCode, want)
		}
	}
}
