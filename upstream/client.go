// Package upstream is the client of the authorization server: discovery,
// JWKS, ID token validation, the grants and the token endpoint.
//
// It knows nothing of sessions, cookies or routing; the proxy package holds a
// *Client per route, so several authorization servers can coexist.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrUnavailable wraps failures to reach the authorization server:
	// network errors, timeouts, 5xx answers, and answers that are none of
	// its protocol (an HTML page, broken JSON, a redirect: see malformed).
	ErrUnavailable = errors.New("authorization server unavailable")
	// ErrInvalidIDToken wraps every reason to refuse an ID token.
	ErrInvalidIDToken = errors.New("invalid ID token")
	// ErrIssuerMismatch is returned when the authorization response's "iss"
	// parameter (RFC 9207) is wrong or missing although required.
	ErrIssuerMismatch = errors.New("authorization response issuer mismatch")
)

// maxBody caps every response body read from the authorization server.
const maxBody = 1 << 20

// Deps are the Client's collaborators.
type Deps struct {
	// HTTPClient makes every call. Nil: a new client with Config.Timeout and
	// redirects disabled (never http.DefaultClient). With client_auth
	// tls_client_auth, New uses a copy of it whose transport (a clone of
	// its *http.Transport, or of http.DefaultTransport when nil) presents
	// the configured certificate; a transport that already sets
	// TLSClientConfig.Certificates or GetClientCertificate is used as it
	// is, and one that is no *http.Transport must present the
	// certificate itself.
	HTTPClient *http.Client
	// Now is the clock for token validation. Nil: time.Now.
	Now func() time.Time
	// Logger receives discovery and key-set events. Nil: discards.
	Logger *slog.Logger
	// Shared lets Clients of the same authorization server share its
	// metadata and keys. Nil: this Client keeps its own.
	Shared *Shared
	// Observer is told of every call to the server (metrics). Nil: none.
	Observer Observer
	// TracerProvider traces every call to the server as a client span
	// (tracing.go) and sends the W3C trace context along. Nil: no spans,
	// no trace headers.
	TracerProvider trace.TracerProvider
}

// Observer is told of every call to the authorization server.
type Observer interface {
	// ObserveCall reports a call to endpoint ("discovery", "jwks",
	// "token", "userinfo", "introspection" or "revocation") that
	// answered status (0: no answer: a network error, a timeout) after d.
	ObserveCall(endpoint string, status int, d time.Duration)
}

// Client talks to one authorization server. It is safe for concurrent use
// and holds no request context: every method takes its own.
type Client struct {
	cfg  Config
	auth clientAuth
	http *http.Client
	now  func() time.Time
	log  *slog.Logger
	obs  Observer
	// tp and tracer trace the calls; nil when tracing is off.
	tp     trace.TracerProvider
	tracer trace.Tracer
	// srv is the server's metadata and keys, shared with the other
	// Clients of Deps.Shared that discover alike.
	srv *server

	// Warnings given once per process: each names a setting to fix.
	noRefreshWarning, userClaimWarning sync.Once
}

// New returns a Client for cfg, applying defaults and validating it; the
// files of client authentication are read here, once. It makes no network
// call: discovery happens on first use (or call Discover).
func New(cfg Config, deps Deps) (*Client, error) {
	cfg.SetDefaults()
	auth, err := cfg.check()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, auth: auth, http: deps.HTTPClient, now: deps.Now, log: deps.Logger, obs: deps.Observer, tp: deps.TracerProvider}
	if c.tp != nil {
		c.tracer = c.tp.Tracer(tracerName)
	}
	if c.http == nil {
		c.http = &http.Client{
			Timeout: cfg.Timeout,
			// A redirect from the token endpoint could carry the client
			// secret elsewhere; the protocol never needs one.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if ta, ok := auth.(*tlsClientAuth); ok {
		c.http = ta.httpClient(c.http)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if deps.Shared != nil {
		c.srv = deps.Shared.server(c)
	} else {
		c.srv = newServer(c)
	}
	return c, nil
}

// Config returns the effective configuration (defaults applied).
func (c *Client) Config() Config { return c.cfg }

// get performs a GET of url, the server's endpoint named endpoint (for the
// Observer), with accept and returns at most maxBody bytes of a 200 answer.
func (c *Client) get(ctx context.Context, endpoint, url, accept string, bearer Secret) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", accept)
	if !bearer.IsZero() {
		req.Header.Set("Authorization", "Bearer "+bearer.Reveal())
	}
	status, body, err := c.do(endpoint, "", req)
	if err != nil {
		return nil, unreachable(err)
	}
	if status != http.StatusOK {
		err := fmt.Errorf("GET %s: status %d", redactURL(url), status)
		// A redirect (never followed) is as broken as a 5xx; a 4xx is a
		// no, and discovery's 404 sends it to the RFC 8414 path.
		if status >= 500 || status >= 300 && status < 400 {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return nil, err
	}
	return body, nil
}

// do sends req to the server's endpoint and reads at most maxBody bytes of
// the answer, telling the Observer how long it took, the body included,
// and tracing it as a span (grant: a token request's grant_type, else
// empty). A failure to read the whole answer counts as no answer (status
// 0).
func (c *Client) do(endpoint, grant string, req *http.Request) (status int, body []byte, err error) {
	start := time.Now()
	if c.obs != nil {
		defer func() { c.obs.ObserveCall(endpoint, status, time.Since(start)) }()
	}
	if c.tracer != nil {
		if span := c.startCall(endpoint, grant, req); span != nil {
			defer func() { endCall(span, status, err) }()
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if body, err = readLimited(resp.Body); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// malformed is the error for an answer that is none of the protocol's: an
// HTML page or broken JSON where JSON belongs, a redirect (which the
// client never follows). The server is broken or misrouted, it did not
// refuse: ErrUnavailable, so the user sees 502 (not 500, not a failed
// login) and a refresh keeps the session for a retry.
func malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrUnavailable, what)
}

// protocolStatus reports whether an error answer of the token or
// introspection endpoint may be an OAuth error answer (RFC 6749 §5.2): a
// 4xx with an error code, or a bare 400 or 401. Anything else (a 3xx, an
// HTML 404 from a load balancer) is malformed.
func protocolStatus(status int, code string) bool {
	if status == http.StatusBadRequest || status == http.StatusUnauthorized {
		return true
	}
	return status >= 400 && status < 500 && code != ""
}

// readLimited reads r up to maxBody bytes; a longer body is an error rather
// than a silent truncation.
func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("response larger than %d bytes", maxBody)
	}
	return b, nil
}

// unreachable marks a transport error as ErrUnavailable, keeping
// context.DeadlineExceeded visible to errors.Is for 504 mapping.
func unreachable(err error) error {
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
