package proxy_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/authgate/authgate/metrics"
	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/session/redistest"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// cookieSecret is the test gateways' cookie key (32 bytes, base64).
var cookieSecret = upstream.Secret(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")))

// clientSecret is the test client's secret at upstreamtest.
const clientSecret = "authgate-secret"

// clock is a settable clock shared by a test's gateways and its
// authorization server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }

// backend is a protected application that records what reaches it.
type backend struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newBackend(t testing.TB) *backend {
	b := &backend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.reqs = append(b.reqs, r.Clone(context.Background()))
		b.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "backend says hello to "+r.Header.Get("X-Forwarded-User"))
	}))
	t.Cleanup(b.Close)
	return b
}

// last returns the last request the backend received.
func (b *backend) last(t testing.TB) *http.Request {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) == 0 {
		t.Fatal("the backend received no request")
	}
	return b.reqs[len(b.reqs)-1]
}

func (b *backend) count() int { b.mu.Lock(); defer b.mu.Unlock(); return len(b.reqs) }

// env is one test world: an authorization server, a backend, a store.
type env struct {
	t       testing.TB
	clock   *clock
	idp     *upstreamtest.Server
	backend *backend
	redis   *redistest.Server // nil for the memory store
	store   session.Store
	logs    *syncBuffer
	// lastGateway is the gateway a table test's hooks act on.
	lastGateway *gateway
}

type envOptions struct {
	redis bool
	idp   upstreamtest.Config
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	e := &env{t: t, clock: newClock(), backend: newBackend(t), logs: &syncBuffer{}}
	o.idp.Now = e.clock.Now
	e.idp = upstreamtest.NewServer(o.idp)
	t.Cleanup(e.idp.Close)
	if o.redis {
		e.redis = redistest.Start(t)
		store, closeStore, err := session.OpenStore(session.Config{Store: "redis", Redis: session.RedisConfig{URL: e.redis.URL, Timeout: 500 * time.Millisecond}}, e.clock.Now)
		if err != nil {
			t.Fatalf("open redis store: %v", err)
		}
		t.Cleanup(func() { closeStore() })
		e.store = store
	} else {
		e.store = session.NewMemoryStore(e.clock.Now, 0)
	}
	return e
}

// gateway is one running proxy.Server.
type gateway struct {
	*httptest.Server
	srv      *proxy.Server
	sessions *session.Manager
}

type gatewayOptions struct {
	mutate func(*proxy.Config, *session.Config, *upstream.Config)
	// logInfo logs at info level to nowhere (benchmarks), not at debug
	// level to e.logs.
	logInfo bool
	// upstreams are further authorization servers by name (Deps.Upstreams),
	// sharing discovery and keys with the default one as in production.
	upstreams map[string]upstream.Config
	// metrics receives the gateway's and its upstream's metrics.
	metrics *metrics.Metrics
	// jsonLog logs (the access log too) as JSON, not text.
	jsonLog bool
	// tracer traces the gateway, its store and its upstreams. Nil: off.
	tracer trace.TracerProvider
}

// gateway starts a gateway over e's store and authorization server.
func (e *env) gateway(o gatewayOptions) *gateway {
	t := e.t
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	publicURL := "http://" + ln.Addr().String()
	secure := false
	pc := proxy.Config{
		PublicURL: publicURL,
		Routes: []proxy.Route{{
			Backend:     e.backend.URL,
			Grant:       proxy.GrantAuthorizationCode,
			PublicPaths: []string{"/public/"},
		}},
	}
	sc := session.Config{
		Store:  "memory",
		Cookie: session.CookieConfig{Secret: cookieSecret, Secure: &secure},
	}
	uc := upstream.Config{Issuer: e.idp.URL, ClientID: "authgate", ClientSecret: clientSecret}
	if o.mutate != nil {
		o.mutate(&pc, &sc, &uc)
	}
	sc.SetDefaults()
	if err := sc.Validate(); err != nil {
		t.Fatalf("session config: %v", err)
	}
	store := session.Trace(e.store, o.tracer)
	if o.metrics != nil {
		store = session.Observe(store, o.metrics)
	}
	sessions, err := session.NewManager(sc, store, e.clock.Now)
	if err != nil {
		t.Fatalf("session manager: %v", err)
	}
	t.Cleanup(sessions.Close)
	var logOut io.Writer = e.logs
	level := slog.LevelDebug
	if o.logInfo {
		logOut, level = io.Discard, slog.LevelInfo
	}
	var h slog.Handler = slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level})
	if o.jsonLog {
		h = slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(proxy.NewLogHandler(h))
	shared := &upstream.Shared{}
	up, err := upstream.New(uc, upstream.Deps{Now: e.clock.Now, Logger: log, Shared: shared, Observer: o.metrics, TracerProvider: o.tracer})
	if err != nil {
		t.Fatalf("upstream: %v", err)
	}
	var named map[string]*upstream.Client
	for name, c := range o.upstreams {
		if named == nil {
			named = map[string]*upstream.Client{}
		}
		if named[name], err = upstream.New(c, upstream.Deps{Now: e.clock.Now, Logger: log, Shared: shared, Observer: o.metrics, TracerProvider: o.tracer}); err != nil {
			t.Fatalf("upstreams.%s: %v", name, err)
		}
	}
	srv, err := proxy.New(pc, proxy.Deps{Upstream: up, Upstreams: named, Sessions: sessions, Logger: log, AccessLog: logOut, AccessLogJSON: o.jsonLog, Now: e.clock.Now, Metrics: o.metrics, TracerProvider: o.tracer})
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	// The production http.Server (limits, access log) on a test listener.
	ts := httptest.NewUnstartedServer(nil)
	ts.Listener.Close()
	ts.Listener, ts.Config = ln, srv.HTTPServer()
	ts.Start()
	t.Cleanup(ts.Close)
	return &gateway{Server: ts, srv: srv, sessions: sessions}
}

// browser is an HTTP client with a cookie jar that sends Accept: text/html
// and follows redirects like a browser.
type browser struct {
	*http.Client
	jar http.CookieJar
}

func newBrowser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{Client: &http.Client{Jar: jar, Transport: htmlTransport{}, Timeout: 10 * time.Second}, jar: jar}
}

// noFollow returns a copy of b that does not follow redirects.
func (b *browser) noFollow() *browser {
	c := *b.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{Client: &c, jar: b.jar}
}

type htmlTransport struct{}

func (htmlTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Accept") == "" {
		r.Header.Set("Accept", "text/html,application/xhtml+xml")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// get fetches url and returns the response with its body read.
func (b *browser) get(t testing.TB, url string) (*http.Response, string) {
	t.Helper()
	return b.do(t, mustRequest(t, http.MethodGet, url, nil))
}

func (b *browser) do(t testing.TB, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := b.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func mustRequest(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// login runs a full login for path through g and returns the final answer.
func (b *browser) login(t testing.TB, g *gateway, path string) *http.Response {
	t.Helper()
	resp, body := b.get(t, g.URL+path)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login via %s: got status %d, want 200; body: %s", path, resp.StatusCode, body)
	}
	return resp
}

// cookie returns the value of the named cookie the browser holds for u.
func (b *browser) cookie(t testing.TB, u, name string) string {
	t.Helper()
	pu, _ := url.Parse(u)
	for _, c := range b.jar.Cookies(pu) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// authorizeURL starts a login without following it and returns the
// authorization server URL the gateway redirected to.
func (b *browser) startLogin(t testing.TB, g *gateway, path string) *url.URL {
	t.Helper()
	resp, _ := b.noFollow().get(t, g.URL+path)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s: got %d, want 302 to the authorization server", path, resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// authorize asks the authorization server for a code and returns the
// callback URL it redirects to (not followed).
func (b *browser) authorize(t testing.TB, authURL *url.URL) *url.URL {
	t.Helper()
	resp, body := b.noFollow().get(t, authURL.String())
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: got %d, want 302; body %s", resp.StatusCode, body)
	}
	u, _ := url.Parse(resp.Header.Get("Location"))
	return u
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// logoutRequest is where a sign-out's 303 sends the browser next: the
// end_session_endpoint (or rd) and its parameters.
type logoutRequest struct {
	method   string
	endpoint *url.URL
	params   url.Values
}

// readLogout reads a POST /oauth2/sign_out answer.
func readLogout(t testing.TB, resp *http.Response, body string) logoutRequest {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: got %d, want 303; body: %s", resp.StatusCode, body)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("sign-out Location %q: %v", resp.Header.Get("Location"), err)
	}
	return logoutRequest{method: http.MethodGet, endpoint: u, params: u.Query()}
}

// postForm builds a form POST.
func postForm(t testing.TB, u string, form url.Values) *http.Request {
	t.Helper()
	req := mustRequest(t, http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}
