package interop_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/internal/reliability"
	"github.com/authgate/authgate/session/redistest"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// report is this package's section of RELIABILITY.md (see TestMain).
var report = reliability.New("soak", "Soak: a real authgate process (interop package)")

// Soak parameters. The run is bounded: soakDuration of load at soakRate
// steps a second, after soakWarmup; AUTHGATE_SOAK_DURATION (a Go
// duration, e.g. 10m) runs it longer.
const (
	soakRate          = 100
	soakWarmup        = 10 * time.Second
	soakDefault       = 60 * time.Second
	soakIdle          = 3 * time.Second // load paused before an idle measurement
	soakGoroutineRise = 10              // see TestReliabilitySoak
	soakTokenTTL      = 4 * time.Second // access tokens: a refresh or re-authentication per session or two
	soakSessionSteps  = 60              // navigations per browser session, about 6 s at this rate
)

// TestReliabilitySoak runs a real authgate process (sessions in a real
// Redis, upstreamtest as the authorization server with 4 s access
// tokens) under a fixed-rate mixed load through every grant's route, with
// sessions churning: code-flow and implicit browsers and password-form
// users sign in, make 60 navigations, sign out and start again; a Basic
// client, a client credentials caller and a caller with its own JWTs run
// throughout. Access tokens expire every 4 s, so sessions refresh (code
// flow, password), implicit ones re-authenticate silently, the machine
// token and the Basic logins renew.
//
// Every answer must be the one the script expects, and the gateway logs
// no error. Flat means, measured with the load paused for 3 s and the
// clients' idle connections closed, both after the warm-up and at the
// end: the goroutine count rises by at most 10 (the keep-alive
// connections the gateway pools toward the backend and the authorization
// server, two goroutines each, vary a little with the last moment's
// concurrency; a leak per request, login or refresh adds dozens to
// thousands over the run: one per sign-in form is caught by the default
// 60 s run), and the resident set at the end is within
// 10% + 4 MiB of the one at half-time (Go's heap reaches its working
// size early; a steady leak shows as growth in the second half).
func TestReliabilitySoak(t *testing.T) {
	duration := soakDefault
	if v := os.Getenv("AUTHGATE_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("AUTHGATE_SOAK_DURATION=%q: want a positive Go duration", v)
		}
		duration = d
	}
	ut := upstreamtest.NewServer(upstreamtest.Config{AccessTokenTTL: soakTokenTTL, NoFormPost: true, Clients: []upstreamtest.Client{{ID: "authgate", Secret: "authgate-secret",
		GrantTypes: []string{"authorization_code", "refresh_token", "password", "client_credentials", "implicit"}}}})
	t.Cleanup(ut.Close)
	rd := redistest.Start(t)
	be := newBackend(t)
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	g := startGatewayAt(t, addr, "authgate-secret",
		func(string) string {
			return fmt.Sprintf(`metrics_listen: %[4]q
metrics_pprof: true
upstream:
  issuer: %[1]q
  client_id: authgate
  client_secret: "${CLIENT_SECRET}"
session:
  store: redis
  redis: { url: %[2]q }
  cookie: { secret: "${COOKIE_SECRET}", secure: false }
limits: { logins_per_minute: 1000000 }
routes:
  - { match: { path_prefix: "/code/" }, backend: %[3]q, grant: authorization_code, accept_bearer: true, audience: "urn:orders" }
  - { match: { path_prefix: "/pw/" }, backend: %[3]q, grant: password }
  - { match: { path_prefix: "/legacy/" }, backend: %[3]q, grant: implicit }
  - { match: { path_prefix: "/svc/" }, backend: %[3]q, grant: client_credentials, scopes: [orders.read], audience: "urn:orders" }
`, ut.URL, rd.URL, be.URL, metricsAddr)
		})

	s := &soak{t: t, g: g, ut: ut, metrics: "http://" + metricsAddr}
	var clients []*soakClient
	for i := range 3 {
		clients = append(clients, s.browserClient(fmt.Sprintf("code flow %d", i+1), "/code/", "user-alice", s.codeLogin))
	}
	for i := range 3 {
		clients = append(clients, s.browserClient(fmt.Sprintf("password form %d", i+1), "/pw/", "user-bob", s.passwordLogin))
	}
	for i := range 2 {
		clients = append(clients, s.browserClient(fmt.Sprintf("implicit %d", i+1), "/legacy/", "user-alice", s.implicitLogin))
	}
	clients = append(clients, s.basicClient(), s.machineClient(), s.callerJWTClient())

	s.run(clients, soakWarmup)
	idle0 := s.idle()
	half := duration / 2
	s.run(clients, half)
	rssHalf := s.rss()
	busy := s.goroutines()
	s.run(clients, duration-half)
	rssEnd := s.rss()
	idle1 := s.idle()

	tbl := report.Table(t, fmt.Sprintf("%s of load (after a %s warm-up) at %d steps/s through every grant's route, against one authgate process "+
		"(Redis sessions; upstreamtest with %s access tokens). A step is one request, or one whole sign-in or sign-out. "+
		"Set AUTHGATE_SOAK_DURATION for a longer run.", duration, soakWarmup, soakRate, soakTokenTTL),
		"client", "steps", "requests", "sign-ins", "sign-outs", "silent re-auths / new caller tokens", "unexpected answers")
	var steps, unexpected int64
	for _, c := range clients {
		tbl.Row(c.name, c.steps.Load(), c.requests.Load(), c.logins.Load(), c.logouts.Load(), c.renewals.Load(), c.errors.Load())
		steps += c.steps.Load()
		unexpected += c.errors.Load()
		if n := c.errors.Load(); n != 0 {
			t.Errorf("%s: %d answers the scenario did not cause; first: %s", c.name, n, c.firstError())
		}
		if c.steps.Load() == 0 {
			t.Errorf("%s never ran", c.name)
		}
	}
	elapsed := soakWarmup + duration
	errorLines := g.logLinesNow("level=ERROR")
	if len(errorLines) != 0 {
		t.Errorf("the gateway logged %d errors; first: %s", len(errorLines), errorLines[0])
	}
	tbl.Note("steps: %d in %s of load (%.0f/s); at the authorization server: %d refresh, %d authorization_code, %d password, %d client_credentials grants, %d authorizations",
		steps, elapsed, float64(steps)/elapsed.Seconds(), ut.GrantCount("refresh_token"), ut.GrantCount("authorization_code"), ut.GrantCount("password"), ut.GrantCount("client_credentials"), ut.Count("authorize"))
	tbl.Note("gateway error log lines: %d; unexpected answers: %d", len(errorLines), unexpected)
	tbl.Note("goroutines (idle, from the process's /debug/pprof/goroutine on metrics_listen): %d after the warm-up, %d at the end (flat: at most +%d); %d under load at half-time", idle0.goroutines, idle1.goroutines, soakGoroutineRise, busy)
	tbl.Note("resident set (VmRSS): %.1f MiB after the warm-up, %.1f MiB at half-time, %.1f MiB at the end of the load (flat: within 10%% + 4 MiB of half-time), %.1f MiB idle at the end",
		mib(idle0.rss), mib(rssHalf), mib(rssEnd), mib(idle1.rss))
	if idle1.goroutines > idle0.goroutines+soakGoroutineRise {
		t.Errorf("goroutines: %d idle after the warm-up, %d at the end: not flat (at most +%d)", idle0.goroutines, idle1.goroutines, soakGoroutineRise)
	}
	if float64(rssEnd) > float64(rssHalf)*1.10+4<<20 {
		t.Errorf("RSS: %.1f MiB at half-time, %.1f MiB at the end: not flat (within 10%% + 4 MiB)", mib(rssHalf), mib(rssEnd))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// soak is the load's world: the gateway process (metrics is its
// metrics_listen URL, with pprof) and its server.
type soak struct {
	t       *testing.T
	g       *gateway
	ut      *upstreamtest.Server
	metrics string
}

// soakClient is one client of the load: step performs its next step
// (a request, or a whole sign-in or sign-out), and reports any answer
// its script did not expect.
type soakClient struct {
	name                                               string
	step                                               func(c *soakClient) error
	steps, requests, logins, logouts, renewals, errors atomic.Int64
	mu                                                 sync.Mutex
	first                                              error
}

func (c *soakClient) firstError() error { c.mu.Lock(); defer c.mu.Unlock(); return c.first }

// run drives clients at soakRate steps a second for d: a ticker hands
// out steps, each client takes one whenever it is free.
func (s *soak) run(clients []*soakClient, d time.Duration) {
	ticks := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for range ticks {
				c.steps.Add(1)
				if err := c.step(c); err != nil {
					if c.errors.Add(1) == 1 {
						c.mu.Lock()
						c.first = err
						c.mu.Unlock()
					}
				}
			}
		})
	}
	tk := time.NewTicker(time.Second / soakRate)
	end := time.After(d)
loop:
	for {
		select {
		case <-end:
			break loop
		case <-tk.C:
			select {
			case ticks <- struct{}{}:
			default: // every client busy: the step is dropped, the rate is a ceiling
			}
		}
	}
	tk.Stop()
	close(ticks)
	wg.Wait()
}

// idleState is a measurement with the load paused.
type idleState struct {
	goroutines int
	rss        int64
}

// idle pauses, closes the clients' idle connections, and measures.
func (s *soak) idle() idleState {
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	time.Sleep(soakIdle)
	return idleState{goroutines: s.goroutines(), rss: s.rss()}
}

// goroutines asks the gateway process how many goroutines it runs.
func (s *soak) goroutines() int {
	resp, err := http.Get(s.metrics + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		s.t.Fatalf("gateway's goroutine profile: %v", err)
	}
	defer resp.Body.Close()
	first, _, _ := strings.Cut(readAtMost(resp.Body, 256), "\n")
	n, err := strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	if resp.StatusCode != 200 || err != nil {
		s.t.Fatalf("gateway's goroutine profile: %d %q", resp.StatusCode, first)
	}
	return n
}

func readAtMost(r io.Reader, n int64) string {
	b, _ := io.ReadAll(io.LimitReader(r, n))
	return string(b)
}

// rss reads the gateway process's resident set.
func (s *soak) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.g.cmd.Process.Pid))
	if err != nil {
		s.t.Fatalf("gateway's /proc status: %v", err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				s.t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	s.t.Fatal("no VmRSS in the gateway's /proc status")
	return 0
}

// hop is one request of a script: it returns the answer with its body
// read, and an error for a transport failure.
func hop(c *soakClient, b *browser, req *http.Request) (*http.Response, string, error) {
	c.requests.Add(1)
	resp, err := b.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(body), nil
}

// expect checks an answer's status.
func expect(resp *http.Response, body string, status int, what string) error {
	if resp.StatusCode != status {
		return fmt.Errorf("%s: got %d, want %d; %.200s", what, resp.StatusCode, status, body)
	}
	return nil
}

func getReq(u, accept string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return req
}

// browserClient is a browser that signs in with login, makes
// soakSessionSteps navigations to path, signs out, and starts again. A navigation may be
// answered by a silent re-authentication (implicit), which it follows.
func (s *soak) browserClient(name, path, user string, login func(c *soakClient, b *browser) error) *soakClient {
	var b *browser
	n := 0
	return &soakClient{name: name, step: func(c *soakClient) error {
		switch {
		case b == nil:
			b = newBrowser()
			n = 0
			c.logins.Add(1)
			if err := login(c, b); err != nil {
				b = nil
				return fmt.Errorf("sign-in: %w", err)
			}
			return nil
		case n == soakSessionSteps:
			bb := b
			b = nil
			c.logouts.Add(1)
			return s.signOut(c, bb)
		}
		n++
		resp, body, err := hop(c, b, getReq(s.g.URL+path+"page", ""))
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusFound && strings.HasPrefix(resp.Header.Get("Location"), s.ut.URL+"/authorize") {
			c.renewals.Add(1)
			if err := s.implicitComplete(c, b, resp.Header.Get("Location"), path+"page"); err != nil {
				return fmt.Errorf("silent re-authentication: %w", err)
			}
			resp, body, err = hop(c, b, getReq(s.g.URL+path+"page", ""))
			if err != nil {
				return err
			}
		}
		if err := expect(resp, body, 200, "navigation"); err != nil {
			return err
		}
		if body != "hello "+user {
			return fmt.Errorf("navigation: the backend saw %q, want %q", body, "hello "+user)
		}
		return nil
	}}
}

// codeLogin is the authorization code flow: start, the server's
// approval, the callback, back to the page.
func (s *soak) codeLogin(c *soakClient, b *browser) error {
	resp, body, err := hop(c, b, getReq(s.g.URL+"/code/", ""))
	if err != nil {
		return err
	}
	if err := expect(resp, body, 302, "start"); err != nil {
		return err
	}
	if resp, body, err = hop(c, b, getReq(resp.Header.Get("Location"), "")); err != nil {
		return err
	} else if err := expect(resp, body, 302, "authorize"); err != nil {
		return err
	}
	if resp, body, err = hop(c, b, getReq(resp.Header.Get("Location"), "")); err != nil {
		return err
	}
	return expect(resp, body, 302, "callback")
}

// passwordLogin is the gateway's form: the page, then the POST.
func (s *soak) passwordLogin(c *soakClient, b *browser) error {
	resp, page, err := hop(c, b, getReq(s.g.URL+"/oauth2/login?rd=%2Fpw%2F", ""))
	if err != nil {
		return err
	}
	if err := expect(resp, page, 200, "login form"); err != nil {
		return err
	}
	form := url.Values{"csrf": {between(page, `name="csrf" value="`, `"`)}, "rd": {"/pw/"}, "username": {"bob"}, "password": {"bob-password"}}
	req, _ := http.NewRequest(http.MethodPost, s.g.URL+"/oauth2/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body, err := hop(c, b, req)
	if err != nil {
		return err
	}
	return expect(resp, body, 303, "login POST")
}

// implicitLogin starts an implicit sign-in and completes it.
func (s *soak) implicitLogin(c *soakClient, b *browser) error {
	resp, body, err := hop(c, b, getReq(s.g.URL+"/legacy/", ""))
	if err != nil {
		return err
	}
	if err := expect(resp, body, 302, "start"); err != nil {
		return err
	}
	return s.implicitComplete(c, b, resp.Header.Get("Location"), "/legacy/")
}

// implicitComplete follows an implicit authorization request to the
// server and posts its fragment to the gateway, as the gateway's page
// does.
func (s *soak) implicitComplete(c *soakClient, b *browser, authURL, back string) error {
	resp, body, err := hop(c, b, getReq(authURL, ""))
	if err != nil {
		return err
	}
	if err := expect(resp, body, 302, "authorize"); err != nil {
		return err
	}
	cb, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return err
	}
	p, err := url.ParseQuery(cb.Fragment)
	if err != nil || p.Get("access_token") == "" {
		return fmt.Errorf("authorize: redirected to a callback without tokens in its fragment (%v)", err)
	}
	req, _ := http.NewRequest(http.MethodPost, s.g.URL+"/oauth2/implicit", strings.NewReader(p.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, body, err = hop(c, b, req); err != nil {
		return err
	}
	if err := expect(resp, body, 303, "implicit POST"); err != nil {
		return err
	}
	if loc := resp.Header.Get("Location"); loc != back {
		return fmt.Errorf("implicit POST: back to %q, want %q", loc, back)
	}
	return nil
}

// signOut posts the gateway's sign-out form.
func (s *soak) signOut(c *soakClient, b *browser) error {
	resp, page, err := hop(c, b, getReq(s.g.URL+"/oauth2/sign_out", ""))
	if err != nil {
		return err
	}
	if err := expect(resp, page, 200, "sign-out page"); err != nil {
		return err
	}
	req, _ := http.NewRequest(http.MethodPost, s.g.URL+"/oauth2/sign_out", strings.NewReader(signOutForm(page).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body, err := hop(c, b, req)
	if err != nil {
		return err
	}
	return expect(resp, body, 303, "sign-out POST")
}

// basicClient calls the password route with HTTP Basic throughout.
func (s *soak) basicClient() *soakClient {
	b := newBrowser()
	return &soakClient{name: "password Basic", step: func(c *soakClient) error {
		req := getReq(s.g.URL+"/pw/api", "application/json")
		req.SetBasicAuth("alice", "alice-password")
		resp, body, err := hop(c, b, req)
		if err != nil {
			return err
		}
		if err := expect(resp, body, 200, "Basic call"); err != nil {
			return err
		}
		if body != "hello user-alice" {
			return fmt.Errorf("Basic call: the backend saw %q", body)
		}
		return nil
	}}
}

// machineClient calls the client credentials route without credentials.
func (s *soak) machineClient() *soakClient {
	b := newBrowser()
	return &soakClient{name: "client credentials", step: func(c *soakClient) error {
		resp, body, err := hop(c, b, getReq(s.g.URL+"/svc/orders", "application/json"))
		if err != nil {
			return err
		}
		return expect(resp, body, 200, "machine call")
	}}
}

// callerJWTClient sends its own JWT access tokens, a new one every 20
// calls.
func (s *soak) callerJWTClient() *soakClient {
	b := newBrowser()
	var tok string
	n := 0
	return &soakClient{name: "caller JWT", step: func(c *soakClient) error {
		if n%20 == 0 {
			now := time.Now()
			var err error
			tok, err = s.ut.SignTyped(jwt.MapClaims{"iss": s.ut.URL, "sub": "svc-caller", "aud": "urn:orders", "client_id": "caller-app",
				"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": strconv.Itoa(n)}, "at+jwt")
			if err != nil {
				return err
			}
			c.renewals.Add(1)
		}
		n++
		req := getReq(s.g.URL+"/code/api", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, body, err := hop(c, b, req)
		if err != nil {
			return err
		}
		if err := expect(resp, body, 200, "caller JWT"); err != nil {
			return err
		}
		if body != "hello svc-caller" {
			return errors.New("caller JWT: the backend saw " + body)
		}
		return nil
	}}
}
