package proxy_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// The hot path, end to end over loopback: client → gateway (cookie decode,
// session load, header rules) → backend. BenchmarkBareReverseProxy is the
// same trip through a plain httputil.ReverseProxy with the same transport;
// report the gateway's figures as ratios against it, measured in one run:
//
//	go test ./proxy -run '^$' -bench . -benchmem -count 6 | tee bench.txt
func BenchmarkBareReverseProxy(b *testing.B) {
	backend := newBackendQuiet(b)
	target, _ := url.Parse(backend.URL)
	rp := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport:  proxy.NewTransport(),
		BufferPool: proxy.NewBufferPool(), // as the gateway's: the ratio is the cost of authentication
	}
	front := httptest.NewServer(rp)
	b.Cleanup(front.Close)
	run(b, &http.Client{}, front.URL+"/app")
}

func BenchmarkGatewayMemoryStore(b *testing.B) { benchGateway(b, false, false, nil) }

func BenchmarkGatewayRedisStore(b *testing.B) { benchGateway(b, true, false, nil) }

// BenchmarkGatewayAccessLog: the memory store with the access log on (to
// io.Discard, so this is the line's formatting, not its write).
func BenchmarkGatewayAccessLog(b *testing.B) { benchGateway(b, false, true, nil) }

// BenchmarkGatewayTracing: BenchmarkGatewayMemoryStore with tracing on and
// every request sampled: the SDK's batching span processor in front of an
// exporter that drops the batches, so this is the cost of making the
// spans (server, session load, backend) and the trace headers, not of
// sending them.
func BenchmarkGatewayTracing(b *testing.B) {
	benchGateway(b, false, false, benchTracer(b, sdktrace.AlwaysSample()))
}

// BenchmarkGatewayTracingUnsampled: tracing on, no request sampled
// (sample_ratio: 0): the trace context is still made and sent on.
func BenchmarkGatewayTracingUnsampled(b *testing.B) {
	benchGateway(b, false, false, benchTracer(b, sdktrace.NeverSample()))
}

func benchTracer(b *testing.B, sampler sdktrace.Sampler) *sdktrace.TracerProvider {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

func benchGateway(b *testing.B, redis, accessLog bool, tp *sdktrace.TracerProvider) {
	e := newEnv(b, envOptions{redis: redis})
	e.backend.Config.Handler = quietHandler()
	o := gatewayOptions{logInfo: true}
	if tp != nil {
		o.tracer = tp
	}
	o.mutate = func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.AccessLog = &accessLog
	}
	g := e.gateway(o)
	br := newBrowser(b)
	br.login(b, g, "/")
	// A jar-less client with the session cookie: a reused request with a
	// jar would collect one more Cookie header per iteration.
	run(b, &http.Client{}, g.URL+"/app", "_authgate="+br.cookie(b, g.URL, "_authgate"))
}

// BenchmarkGatewayCallerJWT: a caller's own JWT on an accept_bearer route,
// repeated (verified once, then a keyed-hash lookup).
func BenchmarkGatewayCallerJWT(b *testing.B) {
	e := newEnv(b, envOptions{})
	e.backend.Config.Handler = quietHandler()
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		off := false
		pc.AccessLog = &off
		pc.Routes[0].AcceptBearer = true
		pc.Routes[0].Audience = "urn:orders"
	}})
	now := e.clock.Now()
	tok, err := e.idp.SignTyped(jwt.MapClaims{"iss": e.idp.URL, "sub": "svc", "aud": "urn:orders",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, "at+jwt")
	if err != nil {
		b.Fatal(err)
	}
	runWith(b, &http.Client{}, g.URL+"/app", "Authorization", "Bearer "+tok)
}

// BenchmarkGatewayClientCredentials: a client_credentials route, the
// machine token cached (the hot path is an atomic load).
func BenchmarkGatewayClientCredentials(b *testing.B) {
	e := newEnv(b, envOptions{})
	e.backend.Config.Handler = quietHandler()
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		off := false
		pc.AccessLog = &off
		pc.Routes[0].Grant = proxy.GrantClientCredentials
	}})
	run(b, &http.Client{}, g.URL+"/app")
}

// BenchmarkGatewayCallerOpaque: a caller's opaque token, its introspection
// answer cached (in process; Redis only on a miss).
func BenchmarkGatewayCallerOpaque(b *testing.B) {
	e := newEnv(b, envOptions{idp: upstreamtest.Config{OpaqueAccessTokens: true}})
	e.backend.Config.Handler = quietHandler()
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		off := false
		pc.AccessLog = &off
		pc.Routes[0].AcceptBearer = true
		pc.Routes[0].Audience = "urn:orders"
		pc.IntrospectionCacheTTL = time.Hour
	}})
	req, _ := http.NewRequest(http.MethodPost, e.idp.URL+"/token", strings.NewReader("grant_type=client_credentials&audience=urn%3Aorders"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("authgate", clientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	runWith(b, &http.Client{}, g.URL+"/app", "Authorization", "Bearer "+tr.AccessToken)
}

func run(b *testing.B, c *http.Client, u string, cookie ...string) {
	if len(cookie) > 0 {
		runWith(b, c, u, "Cookie", cookie[0])
		return
	}
	runWith(b, c, u, "", "")
}

// runWith measures GET u with one extra request header (none when k is
// empty).
func runWith(b *testing.B, c *http.Client, u, k, v string) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html")
	if k != "" {
		req.Header.Set(k, v)
	}
	do := func() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("got %d, want 200", resp.StatusCode)
		}
	}
	do() // warm connections
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		do()
	}
}

func quietHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
}

func newBackendQuiet(b *testing.B) *httptest.Server {
	s := httptest.NewServer(quietHandler())
	b.Cleanup(s.Close)
	return s
}

// BenchmarkForwardAuthMemoryStore: an ingress's question to /oauth2/auth
// with a session (memory store): cookie decode, session load, 202. No
// backend trip, so compare it with BenchmarkBareReverseProxy only loosely.
func BenchmarkForwardAuthMemoryStore(b *testing.B) {
	e := newEnv(b, envOptions{})
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		off := false
		pc.AccessLog = &off
		pc.ForwardAuth.Enabled = true // off by default, and for trusted proxies only
		pc.TrustedProxies = []string{"127.0.0.1"}
	}})
	br := newBrowser(b)
	br.login(b, g, "/")
	req, _ := http.NewRequest(http.MethodGet, g.URL+"/oauth2/auth", nil)
	req.Header.Set("Cookie", "_authgate="+br.cookie(b, g.URL, "_authgate"))
	req.Header.Set("X-Original-Uri", "/app/x")
	c := &http.Client{}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// The same trips under concurrency (25 goroutines per CPU, keep-alive),
// closer to what the process benchmark (cmd/authgate-bench) and
// production see than the sequential ones above.
func BenchmarkParallelBare(b *testing.B) {
	backend := newBackendQuiet(b)
	target, _ := url.Parse(backend.URL)
	rp := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport:  proxy.NewTransport(),
		BufferPool: proxy.NewBufferPool(),
	}
	front := httptest.NewServer(rp)
	b.Cleanup(front.Close)
	runParallel(b, front.URL+"/app", "")
}

func BenchmarkParallelGatewayRedisStore(b *testing.B) {
	e := newEnv(b, envOptions{redis: true})
	e.backend.Config.Handler = quietHandler()
	off := false
	g := e.gateway(gatewayOptions{logInfo: true, mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.AccessLog = &off
	}})
	br := newBrowser(b)
	br.login(b, g, "/")
	runParallel(b, g.URL+"/app", "_authgate="+br.cookie(b, g.URL, "_authgate"))
}

func runParallel(b *testing.B, u, cookie string) {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	b.SetParallelism(25)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Accept", "text/html")
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		for pb.Next() {
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("got %d, want 200", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkParallelBareCarrying is BenchmarkParallelBare carrying what
// BenchmarkParallelGatewayRedisStore's requests carry: the client's
// session cookie, and to the backend the gateway's headers (the bearer
// token, identity headers, the request id), copied from a real answer;
// the client gets the gateway's extra answer headers. The gap between it
// and the bare proxy is the cost of the bytes; the gap between it and the
// gateway is the cost of authenticating.
func BenchmarkParallelBareCarrying(b *testing.B) {
	e := newEnv(b, envOptions{redis: true})
	var seen http.Header
	var once sync.Once
	e.backend.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/app" { // not the login's requests (a Referer with a code)
			once.Do(func() { seen = r.Header.Clone() })
		}
		io.WriteString(w, "ok")
	})
	off := false
	g := e.gateway(gatewayOptions{logInfo: true, mutate: func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.AccessLog = &off
	}})
	br := newBrowser(b)
	br.login(b, g, "/")
	cookie := "_authgate=" + br.cookie(b, g.URL, "_authgate")
	req, _ := http.NewRequest(http.MethodGet, g.URL+"/app", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	answer := resp.Header.Clone()
	for _, k := range []string{"Date", "Content-Length", "Content-Type"} {
		delete(answer, k)
	}
	backend := newBackendQuiet(b)
	target, _ := url.Parse(backend.URL)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			delete(pr.Out.Header, "Cookie") // the gateway strips its own
			for k, v := range seen {
				if _, ok := pr.Out.Header[k]; !ok {
					pr.Out.Header[k] = v
				}
			}
		},
		ModifyResponse: func(r *http.Response) error {
			for k, v := range answer {
				r.Header[k] = v
			}
			return nil
		},
		Transport:  proxy.NewTransport(),
		BufferPool: proxy.NewBufferPool(),
	}
	front := httptest.NewServer(rp)
	b.Cleanup(front.Close)
	var n int
	for k, v := range seen {
		n += len(k) + len(v[0]) + 4
	}
	b.Logf("backend request headers: %d bytes; %v extra in the answer", n, slices.Sorted(maps.Keys(answer)))
	runParallel(b, front.URL+"/app", cookie)
}
