package upstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

func TestMetadataFromUpstreamtest(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	c := newClient(t, configFor(srv), upstream.Deps{})
	m, err := c.Metadata(ctx(t))
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	want := upstream.Metadata{
		Issuer:                                 srv.Issuer(),
		AuthorizationEndpoint:                  srv.URL + "/authorize",
		TokenEndpoint:                          srv.URL + "/token",
		JWKSURI:                                srv.URL + "/jwks",
		UserinfoEndpoint:                       srv.URL + "/userinfo",
		EndSessionEndpoint:                     srv.URL + "/logout",
		RevocationEndpoint:                     srv.URL + "/revoke",
		CodeChallengeMethodsSupported:          []string{"S256"},
		AuthorizationResponseIssParamSupported: true,
	}
	if got := *m; !equalMetadata(got, want) {
		t.Errorf("Metadata: got %+v, want %+v", got, want)
	}
	// Cached: a second call makes no request.
	if _, err := c.Metadata(ctx(t)); err != nil {
		t.Fatalf("Metadata again: %v", err)
	}
	if got := srv.Count("discovery"); got != 1 {
		t.Errorf("discovery requests: got %d, want 1", got)
	}
}

func equalMetadata(a, b upstream.Metadata) bool {
	return a.Issuer == b.Issuer && a.AuthorizationEndpoint == b.AuthorizationEndpoint && a.TokenEndpoint == b.TokenEndpoint &&
		a.JWKSURI == b.JWKSURI && a.UserinfoEndpoint == b.UserinfoEndpoint && a.EndSessionEndpoint == b.EndSessionEndpoint &&
		a.RevocationEndpoint == b.RevocationEndpoint && a.AuthorizationResponseIssParamSupported == b.AuthorizationResponseIssParamSupported &&
		slices.Equal(a.CodeChallengeMethodsSupported, b.CodeChallengeMethodsSupported)
}

// metadataJSON is a discovery document for issuer whose endpoints live at base.
func metadataJSON(issuer, base string) []byte {
	b, _ := json.Marshal(map[string]any{
		"issuer":                 issuer,
		"authorization_endpoint": base + "/authorize",
		"token_endpoint":         base + "/token",
		"jwks_uri":               base + "/jwks",
	})
	return b
}

func TestMetadataIssuerMismatchRefused(t *testing.T) {
	// The attack: a server (or a man in the middle on the discovery URL)
	// publishing metadata for another issuer, to impersonate it.
	tests := []struct {
		name   string
		issuer func(self string) string
	}{
		{"another host", func(string) string { return "https://evil.example" }},
		{"trailing slash", func(self string) string { return self + "/" }},
		{"case differs", func(self string) string { return strings.ToUpper(self) }},
		{"empty", func(string) string { return "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *fake
			f = newFake(t, func(w http.ResponseWriter, r *http.Request) {
				w.Write(metadataJSON(tt.issuer(f.URL), f.URL))
			})
			c := newClient(t, upstream.Config{Issuer: f.URL, ClientID: clientID, Timeout: time.Second}, upstream.Deps{})
			m, err := c.Metadata(ctx(t))
			if err == nil {
				t.Fatalf("Metadata: got %+v, want an issuer mismatch error", m)
			}
			if !strings.Contains(err.Error(), "issuer") {
				t.Errorf("Metadata: got %q, want an error naming the issuer", err)
			}
		})
	}

	t.Run("upstreamtest mounted elsewhere", func(t *testing.T) {
		srv := newServer(t, upstreamtest.Config{})
		other := httptest.NewServer(srv.Handler())
		t.Cleanup(other.Close)
		c := newClient(t, upstream.Config{Issuer: other.URL, ClientID: clientID, Timeout: time.Second}, upstream.Deps{})
		if m, err := c.Metadata(ctx(t)); err == nil {
			t.Fatalf("Metadata: got %+v, want an issuer mismatch error", m)
		}
	})
}

func TestMetadataIssuerWithTrailingSlash(t *testing.T) {
	// Regression: Auth0's issuer is "https://tenant.auth0.com/"; trimming
	// the slash made every comparison with the "iss" it sends fail.
	var f *fake
	var paths []string
	f = newFake(t, func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		w.Write(metadataJSON(f.URL+"/", f.URL))
	})
	c := newClient(t, upstream.Config{Issuer: f.URL + "/", ClientID: clientID, Timeout: time.Second}, upstream.Deps{})
	m, err := c.Metadata(ctx(t))
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	if m.Issuer != f.URL+"/" {
		t.Errorf("Issuer: got %q, want %q", m.Issuer, f.URL+"/")
	}
	if len(paths) != 1 || paths[0] != "/.well-known/openid-configuration" {
		t.Errorf("discovery requests: got %q, want [/.well-known/openid-configuration]", paths)
	}
	if err := c.CheckIssuer(ctx(t), f.URL+"/", true); err != nil {
		t.Errorf("CheckIssuer(issuer with slash): %v", err)
	}
	if err := c.CheckIssuer(ctx(t), f.URL, true); err == nil {
		t.Error("CheckIssuer(issuer without the slash): got nil, want a mismatch")
	}
}

func TestMetadataRFC8414Fallback(t *testing.T) {
	tests := []struct {
		name      string
		path      string // issuer path
		oidcPath  string
		oauthPath string
	}{
		{"root issuer", "", "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"},
		{"issuer with path", "/tenant/a", "/tenant/a/.well-known/openid-configuration", "/.well-known/oauth-authorization-server/tenant/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var paths []string
			var f *fake
			f = newFake(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				paths = append(paths, r.URL.Path)
				mu.Unlock()
				if r.URL.Path != tt.oauthPath {
					http.NotFound(w, r)
					return
				}
				w.Write(metadataJSON(f.URL+tt.path, f.URL))
			})
			c := newClient(t, upstream.Config{Issuer: f.URL + tt.path, ClientID: clientID, Timeout: time.Second}, upstream.Deps{})
			m, err := c.Metadata(ctx(t))
			if err != nil {
				t.Fatalf("Metadata: %v", err)
			}
			if got, want := m.TokenEndpoint, f.URL+"/token"; got != want {
				t.Errorf("TokenEndpoint: got %q, want %q", got, want)
			}
			mu.Lock()
			defer mu.Unlock()
			if want := []string{tt.oidcPath, tt.oauthPath}; !slices.Equal(paths, want) {
				t.Errorf("requested paths: got %q, want %q", paths, want)
			}
		})
	}
}

func TestMetadataExplicitEndpointsOverride(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	cfg := configFor(srv)
	cfg.TokenEndpoint = "https://override.example/token"
	cfg.JWKSURI = "https://override.example/jwks"
	cfg.EndSessionEndpoint = "https://override.example/logout"
	c := newClient(t, cfg, upstream.Deps{})
	m, err := c.Metadata(ctx(t))
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	tests := []struct{ name, got, want string }{
		{"token_endpoint", m.TokenEndpoint, cfg.TokenEndpoint},
		{"jwks_uri", m.JWKSURI, cfg.JWKSURI},
		{"end_session_endpoint", m.EndSessionEndpoint, cfg.EndSessionEndpoint},
		{"authorization_endpoint (discovered)", m.AuthorizationEndpoint, srv.URL + "/authorize"},
		{"userinfo_endpoint (discovered)", m.UserinfoEndpoint, srv.URL + "/userinfo"},
		{"revocation_endpoint (discovered)", m.RevocationEndpoint, srv.URL + "/revoke"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestMetadataWithoutIssuerMakesNoCall(t *testing.T) {
	cfg := upstream.Config{
		ClientID:              clientID,
		Scopes:                []string{"profile"},
		AuthorizationEndpoint: "https://idp.example.com/authorize",
		TokenEndpoint:         "https://idp.example.com/token",
		UserinfoEndpoint:      "https://idp.example.com/userinfo",
	}
	c := newClient(t, cfg, upstream.Deps{HTTPClient: noNetwork(t)})
	m, err := c.Metadata(ctx(t))
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	if m.AuthorizationEndpoint != cfg.AuthorizationEndpoint || m.TokenEndpoint != cfg.TokenEndpoint || m.UserinfoEndpoint != cfg.UserinfoEndpoint {
		t.Errorf("Metadata: got %+v, want the configured endpoints", m)
	}
	if m.Issuer != "" || m.JWKSURI != "" || m.AuthorizationResponseIssParamSupported {
		t.Errorf("Metadata: got %+v, want no issuer, JWKS or iss support", m)
	}
	u, err := c.AuthCodeURL(ctx(t), newAuthRequest())
	if err != nil || !strings.HasPrefix(u, cfg.AuthorizationEndpoint+"?") {
		t.Errorf("AuthCodeURL: got %q, %v, want the configured endpoint", u, err)
	}
}

func TestMetadataDiscoveredEndpointMustBeSecure(t *testing.T) {
	// A discovery document sending the token request (and client secret)
	// over plain http to another host.
	var f *fake
	f = newFake(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := json.Marshal(map[string]string{
			"issuer":                 f.URL,
			"authorization_endpoint": f.URL + "/authorize",
			"token_endpoint":         "http://evil.example/token",
		})
		w.Write(b)
	})
	c := newClient(t, upstream.Config{Issuer: f.URL, ClientID: clientID, Timeout: time.Second}, upstream.Deps{})
	if m, err := c.Metadata(ctx(t)); err == nil {
		t.Fatalf("Metadata: got %+v, want an error for the http token endpoint", m)
	}
}

func TestMetadataRetriedAfterBackoff(t *testing.T) {
	// Reserve a loopback port, then leave it closed: the server is down.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	clk := newClock()
	c := newClient(t, upstream.Config{Issuer: "http://" + addr, ClientID: clientID, ClientSecret: clientSecret, Timeout: time.Second},
		upstream.Deps{Now: clk.Now})
	_, err = c.Metadata(ctx(t))
	if !errors.Is(err, upstream.ErrUnavailable) {
		t.Fatalf("Metadata while down: got %v, want ErrUnavailable", err)
	}

	// The server comes up on the same address.
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen again on %s: %v", addr, err)
	}
	srv := newServer(t, upstreamtest.Config{Listener: l})

	// Within the back-off the failure is remembered and nothing is sent.
	clk.Advance(time.Second)
	if _, err := c.Metadata(ctx(t)); !errors.Is(err, upstream.ErrUnavailable) {
		t.Errorf("Metadata within back-off: got %v, want the remembered ErrUnavailable", err)
	}
	if got := srv.TotalRequests(); got != 0 {
		t.Errorf("requests within back-off: got %d, want 0", got)
	}

	clk.Advance(5 * time.Second)
	m, err := c.Metadata(ctx(t))
	if err != nil {
		t.Fatalf("Metadata after back-off: got %v, want success", err)
	}
	if m.TokenEndpoint != srv.URL+"/token" {
		t.Errorf("TokenEndpoint: got %q, want %q", m.TokenEndpoint, srv.URL+"/token")
	}
	if got := srv.Count("discovery"); got != 1 {
		t.Errorf("discovery requests: got %d, want 1", got)
	}
}

func TestMetadataConcurrentCallsCollapse(t *testing.T) {
	arrived := make(chan struct{}, 100)
	gate := make(chan struct{})
	var f *fake
	f = newFake(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		w.Write(metadataJSON(f.URL, f.URL))
	})
	c := newClient(t, upstream.Config{Issuer: f.URL, ClientID: clientID, Timeout: 5 * time.Second}, upstream.Deps{})

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := c.Metadata(ctx(t))
			errs <- err
		})
	}
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("no discovery request arrived")
	}
	time.Sleep(100 * time.Millisecond) // let the other callers join the flight
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Metadata: %v", err)
		}
	}
	if got := f.Hits(); got != 1 {
		t.Errorf("discovery requests for %d concurrent calls: got %d, want 1", n, got)
	}
}

func TestMetadataOversizedDocument(t *testing.T) {
	var f *fake
	f = newFake(t, func(w http.ResponseWriter, r *http.Request) {
		// Valid JSON, 2 MB: an unknown member padded out.
		w.Write([]byte(`{"issuer":"` + f.URL + `","pad":"`))
		w.Write([]byte(strings.Repeat("a", 2<<20)))
		w.Write([]byte(`"}`))
	})
	c := newClient(t, upstream.Config{Issuer: f.URL, ClientID: clientID, Timeout: 2 * time.Second}, upstream.Deps{})
	if m, err := c.Metadata(ctx(t)); err == nil {
		t.Fatalf("Metadata: got %+v, want an error for a 2 MB document", m)
	}
}

func TestMetadataHangingServer(t *testing.T) {
	tests := []struct {
		name string
		hang func(w http.ResponseWriter, r *http.Request, release <-chan struct{})
	}{
		{"before headers", func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}},
		{"mid body", func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
			w.Write([]byte(`{"issuer":`))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *fake
			f = newFake(t, func(w http.ResponseWriter, r *http.Request) { tt.hang(w, r, f.release) })
			const timeout = 300 * time.Millisecond
			c := newClient(t, upstream.Config{Issuer: f.URL, ClientID: clientID, Timeout: timeout}, upstream.Deps{})
			start := time.Now()
			_, err := c.Metadata(context.Background())
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("Metadata: got nil error, want a timeout")
			}
			if !errors.Is(err, upstream.ErrUnavailable) {
				t.Errorf("Metadata: got %v, want ErrUnavailable", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Metadata: got %v, want context.DeadlineExceeded visible (504 mapping)", err)
			}
			if elapsed > timeout+500*time.Millisecond {
				t.Errorf("Metadata took %v, want about %v", elapsed, timeout)
			}
		})
	}
}

func TestDiscoverRetriesUntilUp(t *testing.T) {
	up := make(chan struct{})
	var once sync.Once
	var f *fake
	f = newFake(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-up:
			w.Write(metadataJSON(f.URL, f.URL))
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
			once.Do(func() { close(up) })
		}
	})
	clk := newClock()
	// Discover sleeps on the real clock; the client's clock moves on with
	// each sleep so that the back-off lets the retry through.
	c := newClient(t, upstream.Config{Issuer: f.URL, ClientID: clientID, Timeout: time.Second}, upstream.Deps{Now: func() time.Time {
		clk.Advance(3 * time.Second)
		return clk.Now()
	}})
	cx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := c.Discover(cx); err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if got := f.Hits(); got < 2 {
		t.Errorf("discovery requests: got %d, want at least 2 (one failure, one success)", got)
	}
}
