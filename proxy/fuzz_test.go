package proxy_test

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// FuzzRequest sends arbitrary requests (method, path, headers, body: any
// bytes http.ReadRequest takes) through a gateway with a password route,
// a code-flow route with a public path, and forward-auth. Whatever the
// request, the gateway must not panic or answer 500, forward-auth answers
// only 202, 401 or 403, and the backend sees only requests for the public
// path, without identity headers: no header, path reading, cookie or
// Authorization trick gets an unauthenticated request through.
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: app\r\n\r\n",
		"GET /public/x HTTP/1.1\r\nHost: app\r\n\r\n",
		"GET /public/../admin HTTP/1.1\r\nHost: app\r\n\r\n",
		"GET /public/%2e%2e/admin HTTP/1.1\r\nHost: app\r\n\r\n",
		"GET /public%2F..%2Fadmin HTTP/1.1\r\nHost: app\r\n\r\n",
		"GET //public/x HTTP/1.1\r\nHost: app\r\n\r\n",
		"GET /PUBLIC/x HTTP/1.1\r\nHost: app\r\n\r\n",
		"GET /public/x HTTP/1.1\r\nHost: app\r\nX-Forwarded-User: admin\r\nX-Auth-Request-Email: a@b\r\n\r\n",
		"GET /legacy/x HTTP/1.1\r\nHost: app\r\nAuthorization: Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=\r\n\r\n",
		"GET /legacy/x HTTP/1.1\r\nHost: app\r\nAuthorization: Basic Og==\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer eyJhbGciOiJub25lIn0.e30.\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: app\r\nCookie: _authgate=MTcwMDAwMDAwMHxhYmN8ZGVm; _authgate=x\r\n\r\n",
		"GET /oauth2/auth HTTP/1.1\r\nHost: app\r\nX-Original-URL: https://app/public/x\r\nX-Forwarded-Uri: /admin\r\n\r\n",
		"GET /oauth2/auth HTTP/1.1\r\nHost: app\r\nX-Original-URI: /public/../admin\r\n\r\n",
		"GET /oauth2/auth?allowed_groups=a,b&redirect=true HTTP/1.1\r\nHost: app\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: app\r\nX-Forwarded-Uri: /x\r\nAccept: text/html\r\n\r\n",
		"POST /oauth2/login HTTP/1.1\r\nHost: app\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n\r\nusername=a&password=b&rd=%2Fx",
		"POST /oauth2/sign_out HTTP/1.1\r\nHost: app\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 8\r\n\r\nrd=%2F%2",
		"POST /oauth2/callback HTTP/1.1\r\nHost: app\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\n\r\nstate=x&id_token=a.b",
		"POST /oauth2/implicit HTTP/1.1\r\nHost: app\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 4\r\n\r\n--x-",
		"POST /oauth2/backchannel_logout HTTP/1.1\r\nHost: app\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 16\r\n\r\nlogout_token=a.b",
		"GET /oauth2/frontchannel_logout?iss=x&sid=y HTTP/1.1\r\nHost: app\r\n\r\n",
		"GET /oauth2/callback?code=x&state=y&iss=z HTTP/1.1\r\nHost: app\r\n\r\n",
		"GET /oauth2/start?rd=%2F%2Fevil.com HTTP/1.1\r\nHost: app\r\nAccept: text/html\r\n\r\n",
		"GET /oauth2/userinfo?rd=/legacy/ HTTP/1.1\r\nHost: app\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: app\r\n\r\n",
		"GET http://evil.com/public/x HTTP/1.1\r\nHost: app\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\n\r\n",
	} {
		f.Add([]byte(seed), byte(0))
	}
	e := newEnv(f, envOptions{})
	var leaks atomic.Int64
	var leaked atomic.Value
	e.backend.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clean := path.Clean("/" + r.URL.Path)
		if !strings.HasPrefix(clean+"/", "/public/") || r.Header.Get("X-Forwarded-User") != "" || r.Header.Get("Authorization") != "" {
			leaks.Add(1)
			leaked.Store(r.Method + " " + r.URL.RequestURI())
		}
	})
	g := e.gateway(gatewayOptions{logInfo: true, mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.TrustedProxies = []string{"127.0.0.1"}
		pc.ForwardAuth.Enabled = true
		pc.Routes = []proxy.Route{
			{Match: proxy.Match{PathPrefix: "/legacy/"}, Backend: e.backend.URL, Grant: proxy.GrantPassword},
			{Backend: e.backend.URL, Grant: proxy.GrantAuthorizationCode, PublicPaths: []string{"/public/"}},
		}
	}})
	f.Fuzz(func(t *testing.T, raw []byte, peer byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		req.RemoteAddr = "203.0.113.7:1234"
		if peer&1 == 1 {
			req.RemoteAddr = "127.0.0.1:1234" // a trusted proxy
		}
		rec := httptest.NewRecorder()
		g.srv.ServeHTTP(rec, req)
		if rec.Code == http.StatusInternalServerError {
			t.Fatalf("500 for %q:\n%s", raw, rec.Body.String())
		}
		if req.URL.Path == "/oauth2/auth" {
			// nginx mode: nothing but 202, 401, 403. Redirect mode (the
			// answer goes to the browser, Traefik and Caddy): also 3xx and
			// error pages, but never another 2xx.
			redirect := req.URL.Query().Get("redirect")
			nginx := rec.Code == 202 || rec.Code == 401 || rec.Code == 403
			if !nginx && (redirect != "true" && redirect != "1" || rec.Code < 300) {
				t.Fatalf("forward-auth answered %d for %q", rec.Code, raw)
			}
		}
		if leaks.Load() > 0 {
			t.Fatalf("the backend received %v for %q", leaked.Load(), raw)
		}
	})
}
