package proxy

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"time"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/authgate/authgate/metrics"
	"github.com/authgate/authgate/session"
)

// requestIDHeader names the request id: taken from a trusted proxy or
// made here, sent to the backend, returned to the client, and in every
// log line of the request.
const requestIDHeader = "X-Request-Id"

// maxRequestID bounds a request id taken from a trusted proxy.
const maxRequestID = 128

// exchange is one request as the gateway serves it: the writer that
// records its status and size, and what the handlers learn on the way
// (route, user, a refusal's reason, the session for the backend), for its
// access log line and its metrics. It travels in the request's context.
type exchange struct {
	statusWriter
	// id is the request id as a header value (len = cap = 1: the
	// response and the backend request share it, and a header map that
	// appends to it copies it first).
	id    []string
	idv   [1]string // id's array, in the same allocation
	start time.Time
	// route counts the request; nil until the request is known to belong
	// to a route or endpoint (then the unmatched requests' handles).
	route *metrics.Route
	// label names the route or endpoint in the access log.
	label string
	// user is the authenticated user (the session's user claim).
	user string
	// reason is a refusal's bounded reason word (a 403's "policy").
	reason string
	// sess is the authenticated session, for the backend request.
	sess *session.Session
}

type exchangeKey struct{}

// exchangeOf returns r's exchange; for a request that did not come
// through ServeHTTP, a blank one that nothing reads.
func exchangeOf(r *http.Request) *exchange {
	if x, ok := r.Context().Value(exchangeKey{}).(*exchange); ok {
		return x
	}
	return &exchange{}
}

// observe sets up what New's request handling records: the request id
// in the log, the access log, the metrics handles of the gateway's own
// endpoints.
func (s *Server) observe(cfg Config, deps Deps) {
	s.log = slog.New(NewLogHandler(s.log.Handler()))
	if on(cfg.AccessLog, true) {
		s.accessOut, s.accessJSON = deps.AccessLog, deps.AccessLogJSON
	}
	if deps.TracerProvider != nil {
		s.tracer = deps.TracerProvider.Tracer(tracerName, trace.WithSchemaURL(semconv.SchemaURL))
	}
	s.metrics = deps.Metrics
	if s.metrics == nil {
		s.metrics = metrics.New(metrics.Build{})
	}
	s.unmatched = s.metrics.Route("_none", "")
	s.health = s.metrics.Route("_health", "")
	s.endpointMetrics = map[string]endpointStats{}
	for _, name := range endpointNames {
		label := "_" + name[1:]
		s.endpointMetrics[name] = endpointStats{s.metrics.Route(label, ""), label}
	}
}

// endpointStats are an endpoint's request handles and its label ("_start").
type endpointStats struct {
	metrics *metrics.Route
	label   string
}

// endpointNames are the gateway's endpoints under the prefix, as counted
// (any other path there counts as "/other").
var endpointNames = [...]string{"/start", "/callback", "/implicit", "/login", "/sign_out", "/userinfo",
	"/backchannel_logout", "/frontchannel_logout", "/auth", "/other"}

// ServeHTTP serves one request: it gives it a request id (and, with
// tracing on, a span), serves it, then counts it and writes its access log
// line.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{statusWriter: statusWriter{ResponseWriter: w}, start: time.Now()}
	x.id = s.requestID(r, &x.idv)
	w.Header()[requestIDHeader] = x.id
	ctx := r.Context()
	if s.tracer != nil {
		ctx = s.startTrace(ctx, r, x)
	}
	r = r.WithContext(context.WithValue(ctx, exchangeKey{}, x))
	s.serve(&x.statusWriter, r)
	if x.status == 0 {
		x.status = http.StatusOK
	}
	if x.status == http.StatusForbidden && x.reason == "" {
		x.reason = "forbidden"
	}
	if s.tracer != nil {
		s.finishTrace(r, x)
	}
	d := time.Since(x.start)
	m := x.route
	if m == nil {
		m = s.unmatched
	}
	m.Observe(x.status, d)
	s.accessLog(r, x, d)
}

// requestID is the request's id: a trusted proxy's X-Request-Id when it
// is one plain token (at most maxRequestID of the characters validID
// allows), else a new one.
// The result is a slice of arr.
func (s *Server) requestID(r *http.Request, arr *[1]string) []string {
	arr[0] = ""
	if len(s.trusted) > 0 {
		if v := r.Header[requestIDHeader]; len(v) == 1 && validID(v[0]) && s.trusted.fromTrustedProxy(r) {
			arr[0] = v[0]
		}
	}
	if arr[0] == "" {
		arr[0] = newRequestID()
	}
	return arr[:]
}

// validID reports a request id safe to pass on and to log: 1 to
// maxRequestID letters, digits and "-._~+/=:@" (UUIDs, hex, base64,
// Amazon's and Google's trace ids), no spaces, quotes or controls.
func validID(v string) bool {
	if len(v) == 0 || len(v) > maxRequestID {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/', c == '=', c == ':', c == '@':
		default:
			return false
		}
	}
	return true
}

// newRequestID returns 128 random bits in hex (32 characters, as nginx's
// $request_id): unique across processes without coordination, and
// telling nothing of how many requests came before. crypto/rand costs
// about 0.1 µs here (the vDSO getrandom), no more than a pooled
// generator would.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	const hexDigits = "0123456789abcdef"
	var out [32]byte
	for i, c := range b {
		out[2*i], out[2*i+1] = hexDigits[c>>4], hexDigits[c&0xf]
	}
	return string(out[:])
}

// NewLogHandler wraps h so that every record logged with a request's
// context (logger.InfoContext(r.Context(), ...), and the upstream calls
// made for the request) carries the request's request_id, and its
// trace_id when the request is traced (sampled). New applies it
// to Deps.Logger; wrap the process logger with it too, so that the
// upstream and session packages' lines carry the id as well. Wrapping
// twice adds the id once.
func NewLogHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(requestIDHandler); ok {
		return h
	}
	return requestIDHandler{h}
}

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if x, ok := ctx.Value(exchangeKey{}).(*exchange); ok {
		r.AddAttrs(slog.String("request_id", x.id[0]))
		if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
