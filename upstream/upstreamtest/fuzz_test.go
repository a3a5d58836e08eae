package upstreamtest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

// FuzzHandler pins that no request makes the server panic or redirect to a
// URI outside the loopback hosts its default client accepts.
func FuzzHandler(f *testing.F) {
	p := newPKCE()
	f.Add("GET", "/authorize?"+authParams(p).Encode(), "", "")
	f.Add("GET", "/authorize?client_id=authgate&redirect_uri=http://127.0.0.1%5C@evil.com/&response_type=code", "", "")
	f.Add("POST", "/token", "grant_type=authorization_code&code=x&code_verifier=y", "Basic YXV0aGdhdGU6YXV0aGdhdGUtc2VjcmV0")
	f.Add("POST", "/token", "grant_type=refresh_token&refresh_token=%ff", "Basic %%%")
	f.Add("GET", "/userinfo", "", "Bearer a.b.c")
	f.Add("GET", "/logout?client_id=authgate&post_logout_redirect_uri=//evil.com&id_token_hint=e30.e30.", "", "")
	f.Add("POST", "/revoke", "token=x&client_id=authgate&client_secret=authgate-secret", "")
	srv := upstreamtest.NewServer(upstreamtest.Config{})
	f.Cleanup(srv.Close)
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, method, target, body, authorization string) {
		req, err := http.NewRequest(method, "http://test"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", authorization)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		// ServeMux's own path-cleaning redirects stay on the server.
		if loc := rec.Header().Get("Location"); loc != "" && !(strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") && !strings.HasPrefix(loc, "/\\")) {
			host := loc
			if i := strings.Index(loc, "://"); i >= 0 {
				host = loc[i+3:]
			}
			if !strings.HasPrefix(host, "127.0.0.1") && !strings.HasPrefix(host, "[::1]") && !strings.HasPrefix(strings.ToLower(host), "localhost") {
				t.Errorf("%s %s: redirect to %q", method, target, loc)
			}
		}
	})
}

func TestCloseInterruptsTokenDelay(t *testing.T) {
	srv := upstreamtest.NewServer(upstreamtest.Config{})
	srv.SetTokenDelay(time.Hour)
	done := make(chan int)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/token", strings.NewReader("grant_type=refresh_token"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := httpClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	for srv.Count("token") == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() {
		srv.Close()
		srv.Close() // Close is idempotent
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while a token request was delayed")
	}
	if got := <-done; got != http.StatusServiceUnavailable && got != 0 {
		t.Errorf("delayed request: got %d, want 503 or a closed connection", got)
	}
}
