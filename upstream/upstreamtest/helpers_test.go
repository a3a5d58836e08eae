package upstreamtest_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

const (
	clientID     = "authgate"
	clientSecret = "authgate-secret"
	redirectURI  = "http://127.0.0.1:4180/oauth2/callback"
)

// clock is a settable clock for Config.Now.
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

// newServer starts a server that is closed when the test ends.
func newServer(t *testing.T, cfg upstreamtest.Config) *upstreamtest.Server {
	t.Helper()
	srv := upstreamtest.NewServer(cfg)
	t.Cleanup(srv.Close)
	return srv
}

// httpClient does not follow redirects, so that tests see them.
var httpClient = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// pkce is a code verifier and its S256 challenge.
type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	v := rand.Text() + rand.Text() // 52 unreserved characters
	sum := sha256.Sum256([]byte(v))
	return pkce{verifier: v, challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

// authParams returns a valid authorization request for p.
func authParams(p pkce) url.Values {
	return url.Values{
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"response_type":         {"code"},
		"scope":                 {"openid email profile groups"},
		"state":                 {"state-123"},
		"nonce":                 {"nonce-456"},
		"code_challenge":        {p.challenge},
		"code_challenge_method": {"S256"},
	}
}

// get sends a GET and returns the response with its body read.
func get(t *testing.T, target string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return do(t, req)
}

// postForm sends a form-encoded POST.
func postForm(t *testing.T, target string, form url.Values, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// authorize sends an authorization request and returns the redirect's
// query, failing the test when there is no redirect.
func authorize(t *testing.T, srv *upstreamtest.Server, params url.Values) url.Values {
	t.Helper()
	resp, body := get(t, srv.URL+"/authorize?"+params.Encode(), nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: got status %d, want 302; body %q", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc.Query()
}

// code runs a successful authorization request and returns the code.
func code(t *testing.T, srv *upstreamtest.Server, params url.Values) string {
	t.Helper()
	q := authorize(t, srv, params)
	if q.Get("error") != "" || q.Get("code") == "" {
		t.Fatalf("authorize: got %v, want a code", q)
	}
	return q.Get("code")
}

// clientAuth is how a token request authenticates its client.
type clientAuth struct {
	basic      bool
	id, secret string
}

var goodAuth = clientAuth{basic: true, id: clientID, secret: clientSecret}

// tokenResult is a decoded token endpoint response.
type tokenResult struct {
	Status           int    `json:"-"`
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int64  `json:"expires_in"`
	RefreshToken     string `json:"refresh_token"`
	Scope            string `json:"scope"`
	IDToken          string `json:"id_token"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	header           http.Header
}

// token posts form to the token endpoint.
func token(t *testing.T, srv *upstreamtest.Server, auth clientAuth, form url.Values) tokenResult {
	t.Helper()
	form = cloneValues(form)
	header := http.Header{}
	if auth.basic {
		req, _ := http.NewRequest(http.MethodPost, "/", nil)
		req.SetBasicAuth(url.QueryEscape(auth.id), url.QueryEscape(auth.secret))
		header.Set("Authorization", req.Header.Get("Authorization"))
	} else {
		form.Set("client_id", auth.id)
		form.Set("client_secret", auth.secret)
	}
	resp, body := postForm(t, srv.URL+"/token", form, header)
	var res tokenResult
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatalf("token response %q: %v", body, err)
	}
	res.Status = resp.StatusCode
	res.header = resp.Header
	return res
}

// exchange redeems code and fails the test unless it succeeds.
func exchange(t *testing.T, srv *upstreamtest.Server, code, verifier string) tokenResult {
	t.Helper()
	res := token(t, srv, goodAuth, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	})
	if res.Status != http.StatusOK {
		t.Fatalf("exchange: got %d %s (%s), want 200", res.Status, res.Error, res.ErrorDescription)
	}
	return res
}

// login runs the whole code flow and returns the tokens.
func login(t *testing.T, srv *upstreamtest.Server) tokenResult {
	t.Helper()
	p := newPKCE()
	return exchange(t, srv, code(t, srv, authParams(p)), p.verifier)
}

// refresh redeems a refresh token.
func refresh(t *testing.T, srv *upstreamtest.Server, auth clientAuth, rt string) tokenResult {
	t.Helper()
	return token(t, srv, auth, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func bearer(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}
