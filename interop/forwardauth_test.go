package interop_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/interop/oidcprovider"
	"github.com/authgate/authgate/session/redistest"
)

// The forward-auth tests put real nginx (auth_request, as ingress-nginx
// renders its annotations, and as plain nginx configs have it) and real
// Caddy (forward_auth) before a gateway, with two application host names
// sharing one login through the cookie domain. The host names are under
// testDomain, which the tests' browser resolves to 127.0.0.1: no traffic
// leaves the loopback interface.
const testDomain = "example.test"

// requireTool finds a proxy binary, or skips the test (fails it under
// AUTHGATE_INTEROP_TESTS=required, as in CI, which installs them).
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("AUTHGATE_INTEROP_TESTS") == "required" {
			t.Fatalf("%s not found (AUTHGATE_INTEROP_TESTS=required): apt-get install %s", name, pkg)
		}
		t.Skipf("%s not found: apt-get install %s", name, pkg)
	}
	return p
}

// hostBrowser is a browser that reaches every *.example.test host on
// 127.0.0.1, at the port of the URL.
func hostBrowser() *browser {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err == nil && strings.HasSuffix(host, "."+testDomain) {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return dialer.DialContext(ctx, network, addr)
	}
	b := newBrowser()
	b.Transport = htmlTransport{base}
	return b
}

// startProcess runs a proxy until the test ends and waits for its port;
// logFile is the proxy's own log, shown when the test fails.
func startProcess(t *testing.T, addr string, cmd *exec.Cmd, logFile string) {
	t.Helper()
	startUntilReady(t, cmd, &syncBuffer{}, filepath.Base(cmd.Path), func() string { return "\n" + readOr(logFile) }, 15*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// readOr is a file's content, or "" when it cannot be read.
func readOr(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// nginxConf is nginx in front of the gateway in the two ways users run
// it. app1 and app2 are what ingress-nginx renders for an Ingress with
//
//	nginx.ingress.kubernetes.io/auth-url: http://<gateway>/oauth2/auth
//	nginx.ingress.kubernetes.io/auth-signin: http://auth.example.test/oauth2/start?rd=$scheme://$http_host$escaped_request_uri
//	nginx.ingress.kubernetes.io/auth-response-headers: Authorization,X-Auth-Request-User,X-Auth-Request-Email,X-Auth-Request-Groups,X-Auth-Request-Preferred-Username,X-Auth-Request-Access-Token
//
// (an internal auth location sending X-Original-URL and X-Original-Method
// with the gateway's Host, error_page 401 to a sign-in redirect on the
// gateway's host). auth.example.test is plain nginx with the gateway on the
// same host: auth_request with X-Original-URI and X-Original-Method, and
// error_page 401 = /oauth2/start, the original URI in
// X-Auth-Request-Redirect (nginx cannot escape it into a query).
const nginxConf = `daemon off;
master_process off;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log info;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_set_misc_module.so;
events { worker_connections 256; }
http {
  access_log {{dir}}/access.log;
  client_body_temp_path {{dir}}/body;
  proxy_temp_path {{dir}}/proxy;
  fastcgi_temp_path {{dir}}/fastcgi;
  uwsgi_temp_path {{dir}}/uwsgi;
  scgi_temp_path {{dir}}/scgi;

  server {
    listen {{listen}};
    server_name app1.example.test app2.example.test;

    location = /_external-auth {
      internal;
      proxy_pass http://{{gateway}}/oauth2/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Host {{gateway}};
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Sent-From "nginx-ingress-controller";
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Auth-Request-Redirect $request_uri;
    }
    location @signin {
      internal;
      return 302 http://auth.example.test:{{port}}/oauth2/start?rd=$scheme://$http_host$escaped_request_uri;
    }
    location / {
      set_escape_uri $escaped_request_uri $request_uri;
      auth_request /_external-auth;
      auth_request_set $auth_0 $upstream_http_authorization;
      auth_request_set $auth_1 $upstream_http_x_auth_request_user;
      auth_request_set $auth_2 $upstream_http_x_auth_request_email;
      auth_request_set $auth_3 $upstream_http_x_auth_request_groups;
      auth_request_set $auth_4 $upstream_http_x_auth_request_preferred_username;
      auth_request_set $auth_5 $upstream_http_x_auth_request_access_token;
      proxy_set_header Authorization $auth_0;
      proxy_set_header X-Auth-Request-User $auth_1;
      proxy_set_header X-Auth-Request-Email $auth_2;
      proxy_set_header X-Auth-Request-Groups $auth_3;
      proxy_set_header X-Auth-Request-Preferred-Username $auth_4;
      proxy_set_header X-Auth-Request-Access-Token $auth_5;
      error_page 401 = @signin;
      proxy_pass http://{{backend}};
    }
  }

  server {
    listen {{listen}};
    server_name auth.example.test;

    location = /oauth2/auth {
      internal;
      proxy_pass http://{{gateway}};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
    location /oauth2/ {
      proxy_pass http://{{gateway}};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Auth-Request-Redirect $request_uri;
    }
    location /app/ {
      auth_request /oauth2/auth;
      auth_request_set $user   $upstream_http_x_auth_request_user;
      auth_request_set $email  $upstream_http_x_auth_request_email;
      auth_request_set $groups $upstream_http_x_auth_request_groups;
      auth_request_set $pref   $upstream_http_x_auth_request_preferred_username;
      auth_request_set $token  $upstream_http_authorization;
      proxy_set_header X-Auth-Request-User $user;
      proxy_set_header X-Auth-Request-Email $email;
      proxy_set_header X-Auth-Request-Groups $groups;
      proxy_set_header X-Auth-Request-Preferred-Username $pref;
      proxy_set_header X-Auth-Request-Access-Token "";
      proxy_set_header Authorization $token;
      error_page 401 = /oauth2/start;
      proxy_pass http://{{backend}};
    }
  }
}
`

// caddyfile is Caddy's forward_auth before the gateway, in redirect mode:
// Caddy hands a non-2xx answer to the browser, so a navigation without a
// session must get the redirect to the sign-in itself.
const caddyfile = `{
	admin off
	auto_https off
}
http://app1.example.test:{{port}}, http://app2.example.test:{{port}} {
	bind 127.0.0.1
	forward_auth {{gateway}} {
		uri /oauth2/auth?redirect=true
		copy_headers Authorization X-Auth-Request-User X-Auth-Request-Email X-Auth-Request-Groups X-Auth-Request-Preferred-Username X-Auth-Request-Access-Token
	}
	reverse_proxy {{backend}}
}
http://auth.example.test:{{port}} {
	bind 127.0.0.1
	@browser path /oauth2/start /oauth2/callback /oauth2/sign_out /oauth2/login /oauth2/implicit /oauth2/userinfo
	handle @browser {
		reverse_proxy {{gateway}}
	}
	handle {
		respond 404
	}
}
`

// forwardAuthWorld is one proxy before one gateway, an oidc-provider and
// the echo backend, with the cookie domain .example.test.
type forwardAuthWorld struct {
	op      *oidcprovider.Server
	gw      *gateway
	be      *backend
	rd      *redistest.Server
	port    string // the proxy's
	authURL string // the gateway's public URL, through the proxy
}

func (w *forwardAuthWorld) app(host, path string) string {
	return "http://" + host + "." + testDomain + ":" + w.port + path
}

func render(tmpl string, vars map[string]string) string {
	for k, v := range vars {
		tmpl = strings.ReplaceAll(tmpl, "{{"+k+"}}", v)
	}
	return tmpl
}

// startForwardAuth starts the world with the proxy that run starts on
// listen (host:port), given the template variables.
func startForwardAuth(t *testing.T, run func(t *testing.T, vars map[string]string)) *forwardAuthWorld {
	t.Helper()
	listen := freeAddr(t)
	_, port, _ := net.SplitHostPort(listen)
	w := &forwardAuthWorld{port: port, authURL: "http://auth." + testDomain + ":" + port, be: newBackend(t), rd: redistest.Start(t)}
	gwAddr := freeAddr(t)
	c := oidcprovider.DefaultClient(w.authURL + "/oauth2/callback")
	w.op = oidcprovider.Start(t, oidcprovider.Config{Clients: []oidcprovider.Client{c}})
	w.gw = startGatewayBehind(t, gwAddr, w.authURL, "authgate-secret", func(string) string {
		return fmt.Sprintf(`trusted_proxies: ["127.0.0.1"]
forward_auth: { enabled: true }
allowed_redirect_domains: [".%s"]
upstream:
  issuer: %q
  client_id: authgate
  client_secret: "${CLIENT_SECRET}"
  scopes: [openid, email, profile, groups, offline_access]
session:
  store: redis
  redis: { url: %q }
  cookie: { secret: "${COOKIE_SECRET}", secure: false, domain: ".%s" }
routes:
  - backend: %q
    grant: authorization_code
    public_paths: ["/public/"]
`, testDomain, w.op.URL, w.rd.URL, testDomain, w.be.URL)
	})
	run(t, map[string]string{
		"listen":  listen,
		"port":    port,
		"gateway": gwAddr,
		"backend": strings.TrimPrefix(w.be.URL, "http://"),
	})
	return w
}

func runNginx(t *testing.T, vars map[string]string) {
	bin := requireTool(t, "nginx", "nginx libnginx-mod-http-set-misc")
	dir := t.TempDir()
	vars["dir"] = dir
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(render(nginxConf, vars)), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, vars["listen"], exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf), filepath.Join(dir, "error.log"))
}

func runCaddy(t *testing.T, vars map[string]string) {
	bin := requireTool(t, "caddy", "caddy")
	dir := t.TempDir()
	conf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(conf, []byte(render(caddyfile, vars)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	startProcess(t, vars["listen"], cmd, filepath.Join(dir, "none"))
}

// signIn follows a browser from an application URL through the proxy's
// sign-in redirect, the gateway and oidc-provider's login back to the
// application, and returns the application's answer.
func (w *forwardAuthWorld) signIn(t *testing.T, b *browser, appURL, user string) string {
	t.Helper()
	resp, body := b.get(t, appURL)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s without a session: %d, want 302 to the sign-in; %s", appURL, resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	switch {
	case strings.HasPrefix(loc, w.authURL+"/oauth2/start?"):
		// The proxy's redirect to the gateway's sign-in, which then
		// sends the browser on to the authorization server.
		if resp, _ = b.get(t, loc); resp.StatusCode != http.StatusFound {
			t.Fatalf("sign-in: %d, want 302 to the authorization server", resp.StatusCode)
		}
		loc = resp.Header.Get("Location")
	case strings.HasPrefix(loc, w.op.URL+"/"):
		// nginx's error_page 401 = /oauth2/start?rd=...: the sign-in ran
		// inside nginx and its answer came back directly.
	default:
		t.Fatalf("GET %s without a session: Location %q, want the gateway's sign-in", appURL, loc)
	}
	cb := w.op.Authorize(t, b.Client, loc, user)
	resp, body = b.get(t, cb.String())
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d, want 302 back; %s", resp.StatusCode, body)
	}
	back, _ := url.Parse(appURL)
	if got := resp.Header.Get("Location"); got != appURL && got != back.RequestURI() {
		t.Fatalf("callback sends the browser to %q, want back to %q", got, appURL)
	}
	resp, body = b.get(t, appURL)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after sign-in, GET %s: %d %s", appURL, resp.StatusCode, body)
	}
	return body
}

// checkIdentity: the application got the identity headers and a bearer
// token the authorization server itself calls valid.
func (w *forwardAuthWorld) checkIdentity(t *testing.T, user string) {
	t.Helper()
	h := w.be.lastHeader(t)
	if got := h.Get("X-Auth-Request-User"); got != user {
		t.Errorf("the application got X-Auth-Request-User %q, want %q", got, user)
	}
	authz := h.Get("Authorization")
	if !strings.HasPrefix(authz, "Bearer ") {
		t.Fatalf("the application got no bearer token (Authorization %q)", authz)
	}
	req, _ := http.NewRequest(http.MethodGet, w.op.URL+"/me", nil)
	req.Header.Set("Authorization", authz)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct{ Sub string }
	_ = json.NewDecoder(resp.Body).Decode(&info)
	if resp.StatusCode != http.StatusOK || info.Sub != user {
		t.Errorf("oidc-provider's userinfo with the application's token: %d sub %q, want 200 for %s", resp.StatusCode, info.Sub, user)
	}
}

// probe sends hostile requests without a session through the proxy: each
// must end at the sign-in (nginx: error_page on 401; Caddy: the gateway's
// redirect) or at a 401, never at the application and never as a 5xx.
func (w *forwardAuthWorld) probe(t *testing.T, session string) {
	t.Helper()
	before := w.be.count()
	for _, tc := range []struct {
		name, path string
		hdr        map[string]string
	}{
		{"garbage cookie", "/x", map[string]string{"Cookie": "_authgate=garbage"}},
		{"truncated cookie", "/x", map[string]string{"Cookie": "_authgate=" + session[:len(session)/2]}},
		{"spoofed identity", "/x", map[string]string{"X-Auth-Request-User": "admin", "X-Forwarded-User": "admin", "X-Original-URL": "http://app1." + testDomain + "/public/x"}},
		{"forged bearer", "/x", map[string]string{"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."}},
		{"basic credentials", "/x", map[string]string{"Authorization": "Basic YWRtaW46YWRtaW4="}},
		{"own X-Forwarded-Uri to a public path", "/x", map[string]string{"X-Forwarded-Uri": "/public/x", "X-Forwarded-Host": "app1." + testDomain}},
		{"own X-Original-URI to a public path", "/x", map[string]string{"X-Original-URI": "/public/x"}},
		{"own X-Original-URL to a public path", "/x", map[string]string{"X-Original-URL": "http://app1." + testDomain + ":" + w.port + "/public/x"}},
		{"NUL in the path", "/x%00y", nil},
		{"//evil", "//evil.example/x", nil},
	} {
		resp, body := rawGet(t, "127.0.0.1:"+w.port, "app1."+testDomain+":"+w.port, tc.path, tc.hdr)
		if tc.name == "NUL in the path" && resp.StatusCode == http.StatusBadRequest {
			continue // refused by the proxy itself (nginx), before any auth
		}
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusBadRequest {
			continue // refused outright (Caddy hands the gateway's answer over)
		}
		if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "/oauth2/start?rd=") {
			t.Errorf("%s: got %d (Location %q), want 302 to the sign-in; %.200s", tc.name, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
	if n := w.be.count() - before; n != 0 {
		t.Errorf("the application received %d of the probes", n)
	}
}

// forwardAuthScenario is what both proxies must do.
func forwardAuthScenario(t *testing.T, w *forwardAuthWorld) {
	b := hostBrowser()
	target := w.app("app1", "/x?y=1&z=a%20b")
	w.signIn(t, b, target, "alice")
	w.checkIdentity(t, "alice")
	session := ""
	for _, c := range b.Jar.Cookies(mustParse(t, w.app("app1", "/"))) {
		if c.Name == "_authgate" {
			session = c.Value
		}
	}
	if session == "" {
		t.Fatal("no session cookie for app1 after sign-in")
	}
	// One login covers the other host under the cookie domain.
	if resp, body := b.get(t, w.app("app2", "/y")); resp.StatusCode != http.StatusOK {
		t.Errorf("app2 after signing in at app1: %d, want 200 without a new login; %s", resp.StatusCode, body)
	}
	w.checkIdentity(t, "alice")
	// Public paths pass without a session.
	if resp, _ := hostBrowser().get(t, w.app("app1", "/public/a")); resp.StatusCode != http.StatusOK {
		t.Errorf("public path without a session: %d, want 200", resp.StatusCode)
	}
	w.probe(t, session)
	// A sign-out at the gateway's host ends the session for every host at
	// once, the gateway's session cache included.
	_, page := b.get(t, w.authURL+"/oauth2/sign_out")
	form := url.Values{}
	for _, m := range hidden.FindAllStringSubmatch(page, -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	req, _ := http.NewRequest(http.MethodPost, w.authURL+"/oauth2/sign_out", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, body := b.do(t, req); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d, want 303; %.300s", resp.StatusCode, body)
	}
	resp, _ := b.get(t, w.app("app2", "/y"))
	if resp.StatusCode != http.StatusFound {
		t.Errorf("app2 right after the sign-out: %d, want 302 to the sign-in", resp.StatusCode)
	}
	// The sign-in it leads to says first, once, that the user signed out
	// (the marker crossed hosts under the cookie domain).
	if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, w.authURL+"/oauth2/start?") {
		if resp, body := b.get(t, loc); resp.StatusCode != http.StatusOK || !strings.Contains(body, "You have been signed out.") {
			t.Errorf("the sign-in right after the sign-out: %d, want the signed-out page; %.300s", resp.StatusCode, body)
		}
		if resp, _ := b.get(t, loc); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), w.op.URL+"/") {
			t.Errorf("the sign-in a second time: %d to %q, want 302 to the authorization server", resp.StatusCode, resp.Header.Get("Location"))
		}
	} else {
		t.Errorf("app2 right after the sign-out: Location %q, want the gateway's sign-in", loc)
	}
	// So does a session deleted in Redis behind the gateway's back, once
	// the cache TTL has passed (the sign-out above is what publishes).
	b2 := hostBrowser()
	w.signIn(t, b2, w.app("app1", "/z"), "alice")
	if err := w.rd.Client(t).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if !eventually(4*time.Second, func() bool { resp, _ := b2.get(t, w.app("app2", "/y")); return resp.StatusCode == http.StatusFound }) {
		t.Errorf("app2 4s after the session was deleted in Redis: still served")
	}
}

// rawGet sends a GET with the request target exactly as given (Go's
// client would turn "//evil/x" into an absolute URI) and a browser's
// Accept.
func rawGet(t *testing.T, addr, host, target string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/html\r\nConnection: close\r\n", target, host)
	for k, v := range hdr {
		fmt.Fprintf(&req, "%s: %s\r\n", k, v)
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(conn, req.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(body)
}

// eventually polls f every 50ms until it holds or d has passed.
func eventually(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestNginxForwardAuth: ingress-nginx's rendering (two hosts, one login)
// and plain nginx's auth_request with the gateway on the same host.
func TestNginxForwardAuth(t *testing.T) {
	w := startForwardAuth(t, runNginx)
	forwardAuthScenario(t, w)
	// Plain nginx: error_page 401 = /oauth2/start, the way back in
	// X-Auth-Request-Redirect (a query with "&" survives).
	b := hostBrowser()
	w.signIn(t, b, w.authURL+"/app/page?a=1&b=2", "bob")
	w.checkIdentity(t, "bob")
	// A client's own identity headers and X-Forwarded-Host do not count.
	req, _ := http.NewRequest(http.MethodGet, w.authURL+"/app/page", nil)
	req.Header.Set("X-Auth-Request-Email", "ceo@example.com")
	req.Header.Set("X-Forwarded-Host", "other."+testDomain)
	if resp, _ := b.do(t, req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("with a client's X-Forwarded-Host: %d, want 403 (the headers disagree)", resp.StatusCode)
	}
	req.Header.Del("X-Forwarded-Host")
	req.Header.Set("X-Auth-Request-Preferred-Username", "admin")
	req.Header.Set("X-Auth-Request-Access-Token", "forged")
	if resp, _ := b.do(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("with a client's X-Auth-Request-Email: %d, want 200", resp.StatusCode)
	}
	h := w.be.lastHeader(t)
	if got := h.Get("X-Auth-Request-Email"); got != "bob@example.org" {
		t.Errorf("the application got X-Auth-Request-Email %q, want bob's own", got)
	}
	if p, a := h.Get("X-Auth-Request-Preferred-Username"), h.Get("X-Auth-Request-Access-Token"); p == "admin" || a == "forged" {
		t.Errorf("a client's own headers reached the application: Preferred-Username %q, Access-Token %q", p, a)
	}
	// An API call without a session keeps its 401 through error_page.
	api, _ := http.NewRequest(http.MethodGet, w.authURL+"/app/api", nil)
	api.Header.Set("Accept", "application/json")
	if resp, _ := hostBrowser().do(t, api); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API call without a session through nginx: %d, want 401", resp.StatusCode)
	}
	// Cross-site writes are refused as on the proxied path (nginx asks
	// with GET; X-Original-Method says what the request was).
	before := w.be.count()
	for name, h := range map[string]map[string]string{
		"cross-site POST":      {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
		"cross-site websocket": {"Origin": "https://evil.example", "Sec-Websocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-Websocket-Version": "13", "Connection": "Upgrade", "Upgrade": "websocket"},
	} {
		method := http.MethodPost
		if name == "cross-site websocket" {
			method = http.MethodGet
		}
		req, _ := http.NewRequest(method, w.authURL+"/app/x", strings.NewReader(""))
		for k, v := range h {
			req.Header.Set(k, v)
		}
		if resp, _ := b.do(t, req); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s with bob's session: %d, want 403", name, resp.StatusCode)
		}
	}
	if w.be.count() != before {
		t.Errorf("a cross-site write reached the application")
	}
	// The endpoint itself is internal: its answer carries the token.
	if resp, _ := b.get(t, w.authURL+"/oauth2/auth"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /oauth2/auth from outside: %d, want nginx's 404 (internal location)", resp.StatusCode)
	}
}

// TestCaddyForwardAuth: forward_auth with copy_headers, the gateway in
// redirect mode.
func TestCaddyForwardAuth(t *testing.T) {
	w := startForwardAuth(t, runCaddy)
	forwardAuthScenario(t, w)
	// An API call without a session gets the 401, not a login page.
	req, _ := http.NewRequest(http.MethodGet, w.app("app1", "/api"), nil)
	req.Header.Set("Accept", "application/json")
	if resp, _ := hostBrowser().do(t, req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API call without a session through Caddy: %d, want 401", resp.StatusCode)
	}
	// Only the browser endpoints are public on the gateway's site.
	if resp, _ := hostBrowser().get(t, w.authURL+"/oauth2/auth"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /oauth2/auth from outside: %d, want 404", resp.StatusCode)
	}
}
