package upstream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the spans of this package.
const tracerName = "github.com/authgate/authgate/upstream"

// Attribute keys of the spans of this package beyond the semantic
// conventions: which endpoint of the authorization server, and which grant
// a token request was for. Both are bounded: endpoint names are this
// package's, grant types come from the gateway's own requests.
const (
	endpointKey = attribute.Key("authgate.upstream.endpoint")
	grantKey    = attribute.Key("authgate.grant_type")
)

// spanName names the span of a call to endpoint (one of the Observer's
// names) for grant (a token request's grant_type, else empty): constants,
// so that naming a span allocates nothing.
func spanName(endpoint, grant string) string {
	switch endpoint {
	case "token":
		switch grant {
		case "authorization_code":
			return "upstream.token.authorization_code"
		case "refresh_token":
			return "upstream.token.refresh_token"
		case "client_credentials":
			return "upstream.token.client_credentials"
		case "password":
			return "upstream.token.password"
		}
		return "upstream.token"
	case "discovery":
		return "upstream.discovery"
	case "jwks":
		return "upstream.jwks"
	case "userinfo":
		return "upstream.userinfo"
	case "introspection":
		return "upstream.introspection"
	case "revocation":
		return "upstream.revocation"
	}
	return "upstream"
}

// startCall starts the client span of a call to the server and writes its
// W3C trace context (traceparent, tracestate) into req's header, so that
// the authorization server's own traces continue the gateway's. The span
// is a child of the request's span when req's context has one (a login, a
// refresh), else the root of a trace of its own (discovery at start-up).
// Its attributes are the method, the server's host and port (from the
// configuration, never a request), the endpoint and the grant: never the
// URL's path or query, a credential or a token (SECURITY.md 46). Within a
// request that is not sampled it makes no span (nil) and sends that
// request's trace context on.
func (c *Client) startCall(endpoint, grant string, req *http.Request) trace.Span {
	if p := trace.SpanFromContext(req.Context()); p.SpanContext().IsValid() && !p.IsRecording() {
		propagation.TraceContext{}.Inject(req.Context(), propagation.HeaderCarrier(req.Header))
		return nil
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, semconv.HTTPRequestMethodKey.String(req.Method), semconv.ServerAddress(req.URL.Hostname()), endpointKey.String(endpoint))
	if p, err := strconv.Atoi(req.URL.Port()); err == nil {
		attrs = append(attrs, semconv.ServerPort(p))
	}
	if grant != "" {
		attrs = append(attrs, grantKey.String(grant))
	}
	ctx, span := c.tracer.Start(req.Context(), spanName(endpoint, grant),
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	return span
}

// endCall ends a call's span: the answer's status, or for no answer
// (status 0) the kind of failure, never its text (which may name a URL).
// A 4xx or 5xx answer, or none, marks the span as failed.
func endCall(span trace.Span, status int, err error) {
	switch {
	case status != 0:
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 400 {
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
			span.SetStatus(codes.Error, "")
		}
	case err != nil:
		span.SetAttributes(semconv.ErrorTypeKey.String(failureKind(err)))
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// failureKind is a bounded name for a call that got no answer.
func failureKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "_OTHER"
}
