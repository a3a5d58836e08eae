package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// tracer is a TracerProvider whose spans a test reads back: the SDK's
// in-memory recorder, every trace begun here sampled (the SDK's default
// sampler, parent-based).
type tracer struct {
	provider *sdktrace.TracerProvider
	rec      *tracetest.SpanRecorder
}

func newTracer(t *testing.T) *tracer {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return &tracer{provider: tp, rec: rec}
}

// request waits for the server span of the request whose X-Request-Id is
// id and returns it with every ended span of its trace.
func (tr *tracer) request(t *testing.T, id string) (sdktrace.ReadOnlySpan, []sdktrace.ReadOnlySpan) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ended := tr.rec.Ended()
		for _, s := range ended {
			if s.SpanKind() == trace.SpanKindServer && attr(s, "authgate.request_id") == id {
				var all []sdktrace.ReadOnlySpan
				for _, o := range ended {
					if o.SpanContext().TraceID() == s.SpanContext().TraceID() {
						all = append(all, o)
					}
				}
				return s, all
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no server span with request id %s among %d spans", id, len(ended))
		}
	}
}

// attr is span's attribute k as text, "" when absent.
func attr(s sdktrace.ReadOnlySpan, k string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == k {
			return kv.Value.Emit()
		}
	}
	return ""
}

// child returns the span named name whose parent is parent.
func child(t *testing.T, spans []sdktrace.ReadOnlySpan, parent sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans {
		if s.Name() == name && s.Parent().SpanID() == parent.SpanContext().SpanID() {
			return s
		}
	}
	t.Fatalf("no span %q under %q; the trace:\n%s", name, parent.Name(), render(spans))
	return nil
}

// render draws a trace as an indented tree, children in start order.
func render(spans []sdktrace.ReadOnlySpan) string {
	slices.SortFunc(spans, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	var b strings.Builder
	var walk func(parent trace.SpanID, depth int)
	walk = func(parent trace.SpanID, depth int) {
		for _, s := range spans {
			if s.Parent().SpanID() == parent {
				fmt.Fprintf(&b, "%s%s (%s) %v\n", strings.Repeat("  ", depth), s.Name(), s.SpanKind(), s.Attributes())
				walk(s.SpanContext().SpanID(), depth+1)
			}
		}
	}
	ids := map[trace.SpanID]bool{}
	for _, s := range spans {
		ids[s.SpanContext().SpanID()] = true
	}
	for _, s := range spans { // roots: parents outside the trace's recorded spans
		if p := s.Parent().SpanID(); !ids[p] {
			fmt.Fprintf(&b, "%s (%s) %v\n", s.Name(), s.SpanKind(), s.Attributes())
			walk(s.SpanContext().SpanID(), 1)
		}
	}
	return b.String()
}

// traceparent is the W3C header value that names span as the parent.
func traceparent(s sdktrace.ReadOnlySpan) string {
	return "00-" + s.SpanContext().TraceID().String() + "-" + s.SpanContext().SpanID().String() + "-01"
}

// headerSpy is an HTTP server in front of another handler that records
// the trace context headers each request brought.
type headerSpy struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "path traceparent"
}

func newHeaderSpy(t *testing.T, next http.Handler) *headerSpy {
	s := &headerSpy{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.URL.Path+" "+r.Header.Get("Traceparent"))
		s.mu.Unlock()
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *headerSpy) saw(path, traceparent string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.seen, path+" "+traceparent)
}

// TestTraceOfARefresh: a proxied request whose access token is due for
// renewal is one trace: the route's server span with the HTTP
// semantic-convention attributes and the request id, and under it the
// session load, the refresh (under which the token endpoint call and the
// store's lock) and the backend call; the token endpoint and the backend
// receive traceparent naming their client spans, and the access log line
// names the trace. The login's code exchange is traced the same way.
func TestTraceOfARefresh(t *testing.T) {
	tr := newTracer(t)
	e := newEnv(t, envOptions{redis: true})
	tokenEndpoint := newHeaderSpy(t, e.idp.Handler())
	g := e.gateway(gatewayOptions{tracer: tr.provider, mutate: func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		longIdle(pc, sc, uc)
		pc.Routes[0].Name = "app"
		pc.Routes[0].Match.PathPrefix = "/app/"
		uc.TokenEndpoint = tokenEndpoint.URL + "/token"
	}})
	b := newBrowser(t)
	b.login(t, g, "/app/")
	e.clock.Advance(59*time.Minute + 30*time.Second)
	resp, _ := b.get(t, g.URL+"/app/x?q=1")
	if resp.StatusCode != http.StatusOK || e.idp.GrantCount("refresh_token") != 1 {
		t.Fatalf("got %d after %d refreshes, want 200 after 1", resp.StatusCode, e.idp.GrantCount("refresh_token"))
	}
	id := resp.Header.Get("X-Request-Id")
	root, spans := tr.request(t, id)
	if root.Name() != "app" || root.Parent().IsValid() {
		t.Errorf("server span %q with parent %v, want \"app\", the trace's root", root.Name(), root.Parent().SpanID())
	}
	for k, want := range map[string]string{
		"http.request.method": "GET", "http.response.status_code": "200", "http.route": "/app/",
		"url.scheme": "http", "network.protocol.version": "1.1",
		"authgate.route": "app", "authgate.grant": "authorization_code", "authgate.request_id": id,
	} {
		if got := attr(root, k); got != want {
			t.Errorf("server span %s = %q, want %q", k, got, want)
		}
	}
	load := child(t, spans, root, "session.load")
	if attr(load, "authgate.outcome") != "ok" {
		t.Errorf("session.load outcome %q, want ok", attr(load, "authgate.outcome"))
	}
	refresh := child(t, spans, root, "session.refresh")
	if attr(refresh, "authgate.outcome") != "ok" {
		t.Errorf("session.refresh outcome %q, want ok", attr(refresh, "authgate.outcome"))
	}
	call := child(t, spans, refresh, "upstream.token.refresh_token")
	if call.SpanKind() != trace.SpanKindClient || attr(call, "http.response.status_code") != "200" ||
		attr(call, "authgate.grant_type") != "refresh_token" || attr(call, "server.address") != "127.0.0.1" {
		t.Errorf("token endpoint span: %s %v", call.SpanKind(), call.Attributes())
	}
	if lock := child(t, spans, refresh, "session.store.lock"); attr(lock, "db.system.name") != "redis" {
		t.Errorf("store lock span: %v", lock.Attributes())
	}
	backend := child(t, spans, root, "backend")
	if backend.SpanKind() != trace.SpanKindClient || attr(backend, "http.response.status_code") != "200" || attr(backend, "authgate.route") != "app" {
		t.Errorf("backend span: %s %v", backend.SpanKind(), backend.Attributes())
	}
	if !tokenEndpoint.saw("/token", traceparent(call)) {
		t.Errorf("the token endpoint did not get traceparent %s; it saw %q", traceparent(call), tokenEndpoint.seen)
	}
	if got := e.backend.last(t).Header.Get("Traceparent"); got != traceparent(backend) {
		t.Errorf("the backend got traceparent %q, want %q (its client span)", got, traceparent(backend))
	}
	tid := root.SpanContext().TraceID().String()
	if !strings.Contains(e.logs.String(), "request_id="+id+" trace_id="+tid) {
		t.Errorf("no access log line with request_id=%s trace_id=%s:\n%s", id, tid, e.logs)
	}

	var callback sdktrace.ReadOnlySpan
	for _, s := range tr.rec.Ended() {
		if s.Name() == "_callback" {
			callback = s
		}
	}
	if callback == nil || attr(callback, "http.route") != "/oauth2/callback" || attr(callback, "http.response.status_code") != "302" {
		t.Fatalf("the callback's span: %v", callback)
	}
	_, login := tr.request(t, attr(callback, "authgate.request_id"))
	exchange := child(t, login, callback, "upstream.token.authorization_code")
	if !tokenEndpoint.saw("/token", traceparent(exchange)) {
		t.Errorf("the code exchange did not carry traceparent %s; the token endpoint saw %q", traceparent(exchange), tokenEndpoint.seen)
	}
}

// TestTraceparentFromTrustedProxiesOnly: a W3C trace context continues
// the trace only from trusted_proxies. From anyone else it is dropped: the
// request begins a new trace and the backend never sees the client's
// traceparent or tracestate (so a client cannot choose the trace ids, or
// force the sampling, of the services behind the gateway), with tracing
// on or off. A trusted proxy's unsampled trace stays unsampled.
func TestTraceparentFromTrustedProxiesOnly(t *testing.T) {
	const (
		clientTrace = "0af7651916cd43dd8448eb211c80319c"
		clientSpan  = "b7ad6b7169203331"
		state       = "vendor=canary-state-1d2d"
	)
	// Every address of 127.0.0.0/8 is loopback: the trusted proxy is
	// 127.0.0.2, anyone else 127.0.0.1.
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	proxyClient, anyone := from("127.0.0.2"), from("127.0.0.1")
	e := newEnv(t, envOptions{})
	send := func(g *gateway, c *http.Client, flags string) string {
		t.Helper()
		req := mustRequest(t, http.MethodGet, g.URL+"/public/x", nil)
		req.Header.Set("Traceparent", "00-"+clientTrace+"-"+clientSpan+"-"+flags)
		req.Header.Set("Tracestate", state)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("public path: got %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Request-Id")
	}
	trusted := func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.TrustedProxies = []string{"127.0.0.2"}
	}

	tr := newTracer(t)
	g := e.gateway(gatewayOptions{tracer: tr.provider, mutate: trusted})

	root, spans := tr.request(t, send(g, anyone, "01"))
	got := e.backend.last(t).Header
	if root.SpanContext().TraceID().String() == clientTrace || root.Parent().IsValid() {
		t.Errorf("untrusted client: span in trace %s under %s, want the root of a new trace", root.SpanContext().TraceID(), root.Parent().SpanID())
	}
	backend := child(t, spans, root, "backend")
	if got.Get("Traceparent") != traceparent(backend) || got.Get("Tracestate") != "" {
		t.Errorf("untrusted client: backend got traceparent %q tracestate %q, want %q and none", got.Get("Traceparent"), got.Get("Tracestate"), traceparent(backend))
	}

	root, spans = tr.request(t, send(g, proxyClient, "01"))
	got = e.backend.last(t).Header
	if p := root.Parent(); root.SpanContext().TraceID().String() != clientTrace || p.SpanID().String() != clientSpan || !p.IsRemote() {
		t.Errorf("trusted proxy: span in trace %s under %s, want trace %s under its remote %s", root.SpanContext().TraceID(), p.SpanID(), clientTrace, clientSpan)
	}
	backend = child(t, spans, root, "backend")
	if got.Get("Traceparent") != traceparent(backend) || got.Get("Tracestate") != state {
		t.Errorf("trusted proxy: backend got traceparent %q tracestate %q, want %q and %q", got.Get("Traceparent"), got.Get("Tracestate"), traceparent(backend), state)
	}

	before := len(tr.rec.Ended())
	send(g, proxyClient, "00")
	got = e.backend.last(t).Header
	if tp := got.Get("Traceparent"); !strings.HasPrefix(tp, "00-"+clientTrace+"-") || !strings.HasSuffix(tp, "-00") || strings.Contains(tp, clientSpan) {
		t.Errorf("trusted proxy, unsampled: backend got traceparent %q, want the same trace, a span of the gateway, unsampled", tp)
	}
	time.Sleep(50 * time.Millisecond) // a span recorded by mistake would have ended by now
	if n := len(tr.rec.Ended()); n != before {
		t.Errorf("trusted proxy, unsampled: %d spans recorded, want none", n-before)
	}

	off := e.gateway(gatewayOptions{mutate: trusted})
	send(off, anyone, "01")
	if got := e.backend.last(t).Header; got.Get("Traceparent") != "" || got.Get("Tracestate") != "" {
		t.Errorf("tracing off, untrusted client: backend got traceparent %q tracestate %q, want neither", got.Get("Traceparent"), got.Get("Tracestate"))
	}
	send(off, proxyClient, "01")
	if got := e.backend.last(t).Header; got.Get("Traceparent") != "00-"+clientTrace+"-"+clientSpan+"-01" || got.Get("Tracestate") != state {
		t.Errorf("tracing off, trusted proxy: backend got traceparent %q tracestate %q, want them passed on unchanged", got.Get("Traceparent"), got.Get("Tracestate"))
	}
}

// spanAttributeKeys are every attribute key a span may carry: a new one
// must be added here, after checking it can hold no identity, token,
// cookie, query or raw path (SECURITY.md 46).
var spanAttributeKeys = []string{
	"http.request.method", "http.response.status_code", "http.route", "url.scheme", "network.protocol.version",
	"server.address", "server.port", "error.type", "db.operation.name", "db.system.name",
	"authgate.request_id", "authgate.route", "authgate.grant", "authgate.reason", "authgate.outcome",
	"authgate.upstream.endpoint", "authgate.grant_type",
}

// TestTracesCarryNoIdentity: the canary traffic of the metrics test, and
// a refresh, the userinfo endpoint and the sign-out page on top, leave no
// subject, email, name, group, password, token, code, state, cookie, path
// or query in any span's name, attribute, event, link or status; every
// attribute key is one of spanAttributeKeys.
func TestTracesCarryNoIdentity(t *testing.T) {
	tr := newTracer(t)
	e, g := canaryEnv(t, gatewayOptions{tracer: tr.provider, mutate: longIdle})
	canaries, b := sendCanaries(t, e, g)
	e.clock.Advance(59*time.Minute + 30*time.Second)
	if resp, _ := b.get(t, g.URL+"/app/refresh-canary-path-6a6a?q=refresh-canary-query-7b7b"); resp.StatusCode != 200 || e.idp.GrantCount("refresh_token") != 1 {
		t.Fatalf("refresh: got %d, %d refreshes", resp.StatusCode, e.idp.GrantCount("refresh_token"))
	}
	canaries = append(canaries, bearer(e.backend.last(t)), "refresh-canary-path-6a6a", "refresh-canary-query-7b7b")
	for _, p := range []string{"/oauth2/userinfo", "/oauth2/sign_out?rd=/app/signout-canary-path-8c8c"} {
		if resp, _ := b.get(t, g.URL+p); resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", p, resp.StatusCode)
		}
	}
	canaries = append(canaries, "signout-canary-path-8c8c")

	spans := tr.rec.Ended()
	names := map[string]bool{}
	for _, s := range spans {
		names[s.Name()] = true
		texts := []string{s.Name(), s.Status().Description}
		kvs := slices.Clone(s.Attributes())
		for _, ev := range s.Events() {
			texts = append(texts, ev.Name)
			kvs = append(kvs, ev.Attributes...)
		}
		for _, l := range s.Links() {
			kvs = append(kvs, l.Attributes...)
		}
		for _, kv := range kvs {
			if !slices.Contains(spanAttributeKeys, string(kv.Key)) {
				t.Errorf("span %q has attribute %s, not among spanAttributeKeys", s.Name(), kv.Key)
			}
			texts = append(texts, string(kv.Key)+"="+kv.Value.Emit())
		}
		for _, text := range texts {
			for _, c := range canaries {
				if strings.Contains(text, c) {
					t.Errorf("span %q holds %q in %q", s.Name(), c, text)
				}
			}
		}
	}
	// The traffic was traced at all: the endpoints, the calls and the
	// store are there.
	for _, want := range []string{"web", "_callback", "_none", "_other", "_userinfo", "_sign_out", "session.load", "session.refresh",
		"upstream.discovery", "upstream.jwks", "upstream.token.authorization_code", "upstream.token.refresh_token",
		"session.store.get", "session.store.set", "backend"} {
		if !names[want] {
			t.Errorf("no span %q among %d spans", want, len(spans))
		}
	}
}
