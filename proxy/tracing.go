package proxy

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/authgate/authgate/session"
)

// tracerName is the instrumentation scope of the gateway's own spans.
const tracerName = "github.com/authgate/authgate/proxy"

// The gateway's span attributes beyond the semantic conventions. Every
// value is bounded and names no one: route labels and grants come from
// the configuration, request ids are validated tokens the gateway made or
// a trusted proxy sent, reasons and outcomes are this package's words
// (SECURITY.md 46).
const (
	requestIDKey = attribute.Key("authgate.request_id")
	routeKey     = attribute.Key("authgate.route")
	grantKey     = attribute.Key("authgate.grant")
	reasonKey    = attribute.Key("authgate.reason")
	outcomeKey   = attribute.Key("authgate.outcome")
)

// Traces begin at the gateway unless a trusted proxy sent a W3C trace
// context (traceparent, tracestate): from anyone else those headers are
// dropped (dropTraceContext) and never reach a backend, so a client can
// neither pick the trace ids the services behind the gateway record nor
// force their sampling.
var traceContext = propagation.TraceContext{}

// startTrace begins r's server span, a child of the trace context a
// trusted proxy sent, else a new trace's root, and returns the context
// that carries it. /healthz and /readyz make no span: a probe every few
// seconds per replica would be most of the traces and tell nothing.
//
// The span is named once the route is known (finishTrace); its attributes
// are the method, the scheme, the protocol version and the request id:
// never the path, the query, a header's value, the user or a token.
func (s *Server) startTrace(ctx context.Context, r *http.Request, x *exchange) context.Context {
	if p := r.URL.Path; p == "/healthz" || p == "/readyz" {
		return ctx
	}
	if s.trusted.fromTrustedProxy(r) {
		ctx = traceContext.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	ctx, span := s.tracer.Start(ctx, httpMethod(r.Method), trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() { // sampled: unsampled requests pay for no attributes
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		span.SetAttributes(
			semconv.HTTPRequestMethodKey.String(httpMethod(r.Method)),
			semconv.URLScheme(scheme),
			semconv.NetworkProtocolVersion(protoVersion(r)),
			requestIDKey.String(x.id[0]),
		)
	}
	return ctx
}

// finishTrace names and ends r's span: the route's label (the metrics'
// route label: "app", "_callback", "_none" for no route), the status, the
// endpoint's path or the route's configured path prefix as http.route,
// the grant and a refusal's reason. A 5xx marks it failed. The span lives
// in r's context rather than in the exchange, so that with tracing off
// the exchange is no larger.
func (s *Server) finishTrace(r *http.Request, x *exchange) {
	span := trace.SpanFromContext(r.Context())
	if !span.IsRecording() {
		span.End() // unsampled (a no-op for a health probe's, which has none)
		return
	}
	label := x.label
	if label == "" {
		label = "_none"
	}
	span.SetName(label)
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, semconv.HTTPResponseStatusCode(x.status), routeKey.String(label))
	rt := s.routeLabelled(x.label)
	if rt != nil {
		attrs = append(attrs, grantKey.String(rt.cfg.Grant))
	}
	if pattern := s.httpRoute(r, rt); pattern != "" {
		attrs = append(attrs, semconv.HTTPRoute(pattern))
	}
	if x.reason != "" {
		attrs = append(attrs, reasonKey.String(x.reason))
	}
	if x.status >= 500 {
		attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(x.status)))
		span.SetStatus(codes.Error, "")
	}
	span.SetAttributes(attrs...)
	span.End()
}

// routeLabelled is the route labelled label, nil for none (an endpoint,
// no route). Labels are unique: names are, and never an index.
func (s *Server) routeLabelled(label string) *route {
	for _, rt := range s.routes {
		if rt.label == label {
			return rt
		}
	}
	return nil
}

// httpRoute is r's http.route: the path of the gateway's endpoint it
// went to (forward-auth's too, whichever route it decided), the prefix
// for any other path under it, else the route's configured path prefix;
// "" for no route. Never the request's own path beyond those constants.
func (s *Server) httpRoute(r *http.Request, rt *route) string {
	p := r.URL.Path
	switch {
	case p == s.authEndpoint && s.cfg.ForwardAuth.Enabled:
		return s.authEndpoint
	case strings.HasPrefix(p, s.endpoints):
		if _, ok := s.endpointMetrics[p[len(s.cfg.Prefix):]]; ok {
			return p // one of the endpoints' own paths, a constant
		}
		return s.endpoints + "*"
	case rt != nil:
		return rt.cfg.Match.PathPrefix
	}
	return ""
}

// dropTraceContext removes a client's W3C trace context headers (see
// traceContext). The names are canonical: net/http canonicalises every
// header name it reads, and only this spelling is the W3C header.
func dropTraceContext(h http.Header) {
	delete(h, "Traceparent")
	delete(h, "Tracestate")
}

// httpMethod is the method as the semantic conventions bound it: a
// method of RFC 9110 or PATCH, else "_OTHER" (a client-sent token of any
// spelling would be a span name and an attribute value of its own).
func httpMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// protoVersion is network.protocol.version: "1.1", "2", "1.0".
func protoVersion(r *http.Request) string {
	switch {
	case r.ProtoMajor == 2:
		return "2"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		return "1.0"
	}
	return "1.1"
}

// startSpan starts an internal child span of ctx's span named name; with
// tracing off, or in a request that is not sampled, it returns ctx and a
// nil span, which endSpan ignores.
func (s *Server) startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	if s.tracer == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return s.tracer.Start(ctx, name)
}

// endSpan ends span (nil: none) with a bounded outcome word; failed
// marks it as an error.
func endSpan(span trace.Span, outcome string, failed bool) {
	if span == nil {
		return
	}
	span.SetAttributes(outcomeKey.String(outcome))
	if failed {
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// loadSession is sessions.Load traced as "session.load": a cached
// session's span has no child, a stored one's has the store's get.
func (s *Server) loadSession(ctx context.Context, t session.Ticket) (*session.Session, session.Version, error) {
	ctx, span := s.startSpan(ctx, "session.load")
	if span == nil {
		return s.sessions.Load(ctx, t)
	}
	sess, v, err := s.sessions.Load(ctx, t)
	switch {
	case err == nil:
		endSpan(span, "ok", false)
	case errors.Is(err, session.ErrNotFound):
		endSpan(span, "not_found", false)
	default:
		endSpan(span, "unavailable", true)
	}
	return sess, v, err
}

// tracedTransport traces each backend round trip as a client span named
// "backend", from the request's start to the backend's response headers
// (a streamed body, or a websocket after its 101, is not waited for), and
// sends the span's trace context to the backend. The request is
// ReverseProxy's own copy for this one trip, so setting its headers here
// is as safe as in Rewrite. Attributes: the method, the backend's host and
// port (from the configuration), the route, the status; never the path or
// the query. In a request that is not sampled it makes no span and sends
// the request's own (unsampled) trace context on.
type tracedTransport struct {
	next   http.RoundTripper
	tracer trace.Tracer
}

func (t *tracedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !trace.SpanFromContext(req.Context()).IsRecording() {
		traceContext.Inject(req.Context(), propagation.HeaderCarrier(req.Header))
		return t.next.RoundTrip(req)
	}
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, semconv.HTTPRequestMethodKey.String(httpMethod(req.Method)), semconv.ServerAddress(req.URL.Hostname()))
	if p, err := strconv.Atoi(req.URL.Port()); err == nil {
		attrs = append(attrs, semconv.ServerPort(p))
	}
	if x := exchangeOf(req); x.label != "" {
		attrs = append(attrs, routeKey.String(x.label))
	}
	ctx, span := t.tracer.Start(req.Context(), "backend", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	traceContext.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := t.next.RoundTrip(req)
	switch {
	case err != nil:
		kind := "_OTHER"
		switch {
		case isTimeout(err):
			kind = "timeout"
		case errors.Is(err, context.Canceled):
			kind = "canceled" // the client went away
		}
		span.SetAttributes(semconv.ErrorTypeKey.String(kind))
		span.SetStatus(codes.Error, "")
	default:
		span.SetAttributes(semconv.HTTPResponseStatusCode(resp.StatusCode))
		if resp.StatusCode >= 400 {
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(resp.StatusCode)))
			span.SetStatus(codes.Error, "")
		}
	}
	span.End()
	return resp, err
}
