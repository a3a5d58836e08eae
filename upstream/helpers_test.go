package upstream_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

const (
	clientID     = "authgate"
	clientSecret = "authgate-secret"
	redirectURI  = "http://127.0.0.1:4180/oauth2/callback"
)

// clock is a settable clock for Deps.Now and upstreamtest.Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newServer starts an authorization server that is closed when the test ends.
func newServer(t testing.TB, cfg upstreamtest.Config) *upstreamtest.Server {
	t.Helper()
	srv := upstreamtest.NewServer(cfg)
	t.Cleanup(srv.Close)
	return srv
}

// configFor is a client configuration for srv's default client.
func configFor(srv *upstreamtest.Server) upstream.Config {
	return upstream.Config{
		Issuer:       srv.Issuer(),
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Timeout:      2 * time.Second,
	}
}

// newClient returns a client for cfg or fails the test.
func newClient(t testing.TB, cfg upstream.Config, deps upstream.Deps) *upstream.Client {
	t.Helper()
	c, err := upstream.New(cfg, deps)
	if err != nil {
		t.Fatalf("upstream.New: %v", err)
	}
	return c
}

// ctx is a context bounded so that no test can hang.
func ctx(t testing.TB) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// newAuthRequest returns a fresh authorization request.
func newAuthRequest() upstream.AuthRequest {
	return upstream.AuthRequest{
		RedirectURI: redirectURI,
		State:       rand.Text(),
		Nonce:       upstream.Secret(rand.Text()),
		Verifier:    upstream.NewVerifier(),
	}
}

// noRedirect is a plain HTTP client for the tests' own requests.
var noRedirect = &http.Client{
	Timeout:       5 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// authorize sends the browser's GET to the authorize URL the client builds
// for r (upstreamtest approves non-interactively) and returns the query of
// the redirect to the callback.
func authorize(t *testing.T, c *upstream.Client, r upstream.AuthRequest) url.Values {
	t.Helper()
	u, err := c.AuthCodeURL(ctx(t), r)
	if err != nil {
		t.Fatalf("AuthCodeURL: %v", err)
	}
	resp, err := noRedirect.Get(u)
	if err != nil {
		t.Fatalf("GET authorize: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: got status %d, want 302", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("authorize Location: %v", err)
	}
	q := loc.Query()
	if q.Get("code") == "" {
		t.Fatalf("authorize: no code in %s", loc.Redacted())
	}
	return q
}

// login runs a whole code flow and returns its result.
func login(t *testing.T, c *upstream.Client) (*upstream.Login, upstream.AuthRequest) {
	t.Helper()
	r := newAuthRequest()
	q := authorize(t, c, r)
	l, err := c.Exchange(ctx(t), q.Get("code"), r)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return l, r
}

// fake is an httptest server that counts its requests. Handlers that wait
// should select on r.Context().Done() and release.
type fake struct {
	*httptest.Server
	hits    atomic.Int64
	release chan struct{}
}

// newFake starts h behind a request counter; it is closed when the test
// ends, after release is closed to free waiting handlers.
func newFake(t *testing.T, h http.HandlerFunc) *fake {
	t.Helper()
	f := &fake{release: make(chan struct{})}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(f.Close)
	t.Cleanup(func() { close(f.release) }) // runs first
	return f
}

// Hits returns how many requests the fake has received.
func (f *fake) Hits() int { return int(f.hits.Load()) }

// recorded is one request seen by a recorder.
type recorded struct {
	Method string
	URL    string
	Header http.Header
	Body   string
}

// recorder is an http.RoundTripper that keeps a copy of every request.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
	next http.RoundTripper
}

func (rec *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, recorded{Method: req.Method, URL: req.URL.String(), Header: req.Header.Clone(), Body: string(body)})
	rec.mu.Unlock()
	return rec.next.RoundTrip(req)
}

// Requests returns a copy of what was recorded.
func (rec *recorder) Requests() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]recorded(nil), rec.reqs...)
}

// recordingClient returns an HTTP client that records every request and
// follows no redirect, as the client's default does.
func recordingClient(t *testing.T) (*http.Client, *recorder) {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	rec := &recorder{next: tr}
	return &http.Client{
		Transport:     rec,
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, rec
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// noNetwork is an HTTP client that fails the test on any request.
func noNetwork(t *testing.T) *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("unexpected HTTP request: %s %s", r.Method, r.URL.Redacted())
		return nil, io.ErrUnexpectedEOF
	})}
}
