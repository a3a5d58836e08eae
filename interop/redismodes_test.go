package interop_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/session/redistest"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// The gateway on Redis Cluster and on Redis Sentinel: two authgate
// processes share each deployment, one authorization server (upstreamtest,
// in this test process: these tests need no Node.js) and one backend.

// Passwords of the test deployments, given to the gateways through the
// environment as ${REDIS_PASSWORD} and ${SENTINEL_PASSWORD}.
const (
	redisPassword    = "redis-CANARY-pw"
	sentinelPassword = "sentinel-CANARY-pw"
)

// redisEnv is the gateways' environment for the Redis passwords.
var redisEnv = []string{"REDIS_PASSWORD=" + redisPassword, "SENTINEL_PASSWORD=" + sentinelPassword}

// fleet is two gateways, a and b, on one Redis deployment.
type fleet struct {
	idp   *upstreamtest.Server
	be    *backend
	a, b  *gateway
	users []string
}

// newFleet starts the authorization server (with eight users), the
// backend and two gateways whose session.redis is redisYAML (a flow
// mapping). Each gateway has a login route and a client_credentials route
// under /machine/.
func newFleet(t *testing.T, redisYAML string) *fleet {
	t.Helper()
	f := &fleet{be: newBackend(t)}
	var users []upstreamtest.User
	for _, name := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"} {
		f.users = append(f.users, name)
		users = append(users, upstreamtest.User{Subject: "user-" + name, Username: name, Password: name + "-password",
			Email: name + "@example.com", EmailVerified: true, Groups: []string{"staff"}})
	}
	f.idp = upstreamtest.NewServer(upstreamtest.Config{Users: users})
	t.Cleanup(f.idp.Close)
	body := func(string) string {
		return fmt.Sprintf(`upstream:
  issuer: %q
  client_id: authgate
  client_secret: "${CLIENT_SECRET}"
  scopes: [openid, email, profile, offline_access]
session:
  store: redis
  redis: %s
  cookie: { secret: "${COOKIE_SECRET}", secure: false }
routes:
  - match: { path_prefix: "/machine/" }
    backend: %q
    grant: client_credentials
    scopes: [api]
  - backend: %q
    grant: authorization_code
`, f.idp.URL, redisYAML, f.be.URL, f.be.URL)
	}
	for _, g := range []**gateway{&f.a, &f.b} {
		addr := freeAddr(t)
		*g = startGatewayEnv(t, addr, "http://"+addr, "authgate-secret", redisEnv, body)
	}
	return f
}

// signIn logs a new browser in at g as user (the login_hint the test adds
// to the authorization request) and returns its session cookie.
func (f *fleet) signIn(t *testing.T, g *gateway, user string) (*browser, *http.Cookie) {
	t.Helper()
	br := newBrowser()
	resp, _ := br.get(t, g.URL+"/")
	authz, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("GET / without a session: %d to %q, want a 302 to the authorization server", resp.StatusCode, resp.Header.Get("Location"))
	}
	q := authz.Query()
	q.Set("login_hint", user)
	authz.RawQuery = q.Encode()
	resp, _ = br.get(t, authz.String())
	resp, body := br.get(t, resp.Header.Get("Location")) // the callback
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	if resp, body = br.get(t, g.URL+resp.Header.Get("Location")); resp.StatusCode != 200 || body != "hello user-"+user {
		t.Fatalf("after signing in as %s: %d %q", user, resp.StatusCode, body)
	}
	u, _ := url.Parse(g.URL)
	for _, c := range br.Jar.Cookies(u) {
		if c.Name == "_authgate" {
			return br, c
		}
	}
	t.Fatalf("no session cookie after signing in; cookies %v", br.Jar.Cookies(u))
	return nil, nil
}

// apiClient sends API requests (no text/html: a missing session is a
// 401, not a redirect) with cookies set by hand.
var apiClient = &http.Client{
	Timeout:       15 * time.Second,
	Transport:     &http.Transport{MaxIdleConnsPerHost: 64},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// call GETs path at g with cookie c (nil: none) and returns the status
// and body; a transport error is status 0.
func call(g *gateway, path string, c *http.Cookie) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, g.URL+path, nil)
	req.Header.Set("Accept", "application/json")
	if c != nil {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b)
}

// testFleet runs the fleet's checks: a login on A serves B too; a refresh
// race at expiry across both refreshes once; a sign-out on A is refused by
// B within 1 s; a client-credentials token is fetched once for both.
func testFleet(t *testing.T, f *fleet) {
	t.Run("LoginServesBoth", func(t *testing.T) {
		_, c := f.signIn(t, f.a, "alice")
		for _, g := range []*gateway{f.a, f.b} {
			if st, body := call(g, "/api", c); st != 200 || body != "hello user-alice" {
				t.Errorf("%s with A's cookie: %d %q, want 200 as alice", g.URL, st, body)
			}
		}
	})
	t.Run("RefreshRace", func(t *testing.T) {
		// A session whose access token lives 4 s: it is renewed within its
		// last quarter, the last second. Tokens after it live an hour.
		f.idp.SetAccessTokenTTL(4 * time.Second)
		_, c := f.signIn(t, f.a, "carol")
		signedIn := time.Now()
		f.idp.SetAccessTokenTTL(0)
		call(f.a, "/before", c)
		first := f.be.lastHeader(t).Get("Authorization")
		refreshes := f.idp.GrantCount("refresh_token")
		time.Sleep(time.Until(signedIn.Add(3300 * time.Millisecond)))
		const n = 50
		var wg sync.WaitGroup
		statuses := make([]int, n)
		bodies := make([]string, n)
		start := make(chan struct{})
		for i := range n {
			g := []*gateway{f.a, f.b}[i%2]
			wg.Go(func() {
				<-start
				statuses[i], bodies[i] = call(g, fmt.Sprintf("/race/%d", i), c)
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if statuses[i] != 200 || bodies[i] != "hello user-carol" {
				t.Errorf("request %d of %d at expiry: %d %q, want 200 as carol", i, n, statuses[i], bodies[i])
			}
		}
		if got := f.idp.GrantCount("refresh_token") - refreshes; got != 1 {
			t.Errorf("refreshes for %d concurrent requests on two gateways: %d, want 1", n, got)
		}
		call(f.b, "/after", c)
		if f.be.lastHeader(t).Get("Authorization") == first {
			t.Error("the backend still gets the token from before the refresh")
		}
	})
	t.Run("SignOutOnARefusedOnB", func(t *testing.T) {
		br, c := f.signIn(t, f.a, "bob")
		for range 2 { // the second from B's cache
			if st, body := call(f.b, "/api", c); st != 200 || body != "hello user-bob" {
				t.Fatalf("B before the sign-out: %d %q", st, body)
			}
		}
		if resp, _ := signOut(t, f.a, br); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-out on A: %d, want 303", resp.StatusCode)
		}
		start := time.Now()
		if !eventually(time.Second, func() bool { st, _ := call(f.b, "/api", c); return st == http.StatusUnauthorized }) {
			st, body := call(f.b, "/api", c)
			t.Fatalf("B 1s after the sign-out on A: %d %q, want 401", st, body)
		}
		t.Logf("B refused the signed-out cookie %s after the sign-out", time.Since(start).Round(time.Millisecond))
	})
	t.Run("ClientCredentialsOnce", func(t *testing.T) {
		fetches := f.idp.GrantCount("client_credentials")
		const n = 200
		var wg sync.WaitGroup
		var mu sync.Mutex
		statuses := map[int]int{}
		sem := make(chan struct{}, 50)
		for i := range n {
			g := []*gateway{f.a, f.b}[i%2]
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				st, _ := call(g, "/machine/orders", nil)
				mu.Lock()
				statuses[st]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if statuses[200] != n {
			t.Errorf("statuses %v, want %d × 200", statuses, n)
		}
		if got := f.idp.GrantCount("client_credentials") - fetches; got != 1 {
			t.Errorf("client credentials token requests for two gateways: %d, want 1", got)
		}
	})
}

// yamlList is a YAML flow sequence of quoted strings.
func yamlList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// TestGatewaysOnRedisCluster: two gateways on a three-master Redis Cluster.
func TestGatewaysOnRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, redistest.Config{Password: redisPassword})
	f := newFleet(t, fmt.Sprintf(`{ cluster: { addrs: %s, password: "${REDIS_PASSWORD}" } }`, yamlList(cl.Addrs)))
	testFleet(t, f)
}

// TestGatewaysOnRedisSentinel: two gateways on a Sentinel group (master,
// replica, three sentinels with a password of their own); last, the
// master dies under load.
func TestGatewaysOnRedisSentinel(t *testing.T) {
	sg := redistest.StartSentinel(t, redistest.Config{Password: redisPassword, SentinelPassword: sentinelPassword})
	f := newFleet(t, fmt.Sprintf(`{ sentinel: { master_name: %q, addrs: %s, password: "${REDIS_PASSWORD}", sentinel_password: "${SENTINEL_PASSWORD}" } }`,
		sg.MasterName, yamlList(sg.Addrs)))
	testFleet(t, f)
	t.Run("FailoverUnderLoad", func(t *testing.T) { testFailoverUnderLoad(t, f, sg) })
	for _, g := range []*gateway{f.a, f.b} {
		if strings.Contains(g.Logs(), "CANARY") {
			t.Errorf("a Redis password reached %s's log", g.URL)
		}
	}
}

// testFailoverUnderLoad pins SECURITY.md's fail-closed rule through a
// Sentinel failover: sessions written (and replicated) before it, a steady
// stream of requests with them through both gateways, the master killed.
// Until the sentinels have promoted the replica, requests get 503 and
// nothing else (no 500, no login, no other user's identity); afterwards
// the same cookies work again, on both gateways.
func testFailoverUnderLoad(t *testing.T, f *fleet, sg *redistest.Sentinel) {
	users := f.users[2:8]
	cookies := make([]*http.Cookie, len(users))
	for i, u := range users {
		_, cookies[i] = f.signIn(t, []*gateway{f.a, f.b}[i%2], u)
	}
	sg.WaitReplicated(t)

	type sample struct {
		at     time.Time
		status int
	}
	var (
		mu      sync.Mutex
		samples []sample
		wrong   []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, u := range users {
		for _, g := range []*gateway{f.a, f.b} {
			wg.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					st, body := call(g, fmt.Sprintf("/load/%d", n), cookies[i])
					mu.Lock()
					samples = append(samples, sample{time.Now(), st})
					if st == 200 && body != "hello user-"+u {
						wrong = append(wrong, fmt.Sprintf("%s's cookie answered %q", u, body))
					}
					mu.Unlock()
					if st != 200 {
						time.Sleep(5 * time.Millisecond) // a 503 comes back fast; do not spin
					}
				}
			})
		}
	}
	time.Sleep(time.Second) // steady state
	killed := time.Now()
	old := sg.KillMaster(t)
	sg.WaitFailover(t, old)
	promoted := time.Since(killed)
	// Until every worker has been served again for a second, at most 15 s.
	allOK := func(since time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range samples {
			if s.at.After(since) {
				if s.status != 200 {
					return false
				}
				n++
			}
		}
		return n >= 2*len(users)
	}
	deadline := time.Now().Add(15 * time.Second)
	for !allOK(time.Now().Add(-time.Second)) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	counts := map[int]int{}
	var firstBad, lastBad time.Time
	for _, s := range samples {
		counts[s.status]++
		if s.status != 200 {
			if firstBad.IsZero() {
				firstBad = s.at
			}
			lastBad = s.at
		}
	}
	for st, n := range counts {
		if st != 200 && st != http.StatusServiceUnavailable {
			t.Errorf("%d answers %d during the failover, want only 200 and 503", n, st)
		}
	}
	for _, w := range wrong {
		t.Error(w)
	}
	window := time.Duration(0)
	if !lastBad.IsZero() {
		window = lastBad.Sub(killed)
	}
	t.Logf("failover: the sentinels promoted the replica %s after the kill; %d requests, %d answered 503, the last %s after the kill (first %s)",
		promoted.Round(time.Millisecond), len(samples), counts[503], window.Round(time.Millisecond), firstBad.Sub(killed).Round(time.Millisecond))
	if !lastBad.IsZero() && lastBad.Sub(killed) > promoted+3*time.Second {
		t.Errorf("requests still failed %s after the kill, %s after the promotion", window, window-promoted)
	}
	for i, u := range users {
		for _, g := range []*gateway{f.a, f.b} {
			if st, body := call(g, "/after", cookies[i]); st != 200 || body != "hello user-"+u {
				t.Errorf("%s's cookie on %s after the failover: %d %q, want 200 as %s", u, g.URL, st, body, u)
			}
		}
	}
}
