package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// faultTimeout is upstream.timeout in the fault tests: short, so that a
// slow server costs a second, not the default ten.
const faultTimeout = time.Second

// serverFaults are the ways an authorization server's back-channel
// endpoint breaks (issue 22), each answered with a 502, 503 or 504.
var serverFaults = []struct {
	name  string
	fault upstreamtest.Fault
}{
	{"down: connection reset", upstreamtest.Fault{Drop: true}},
	{"slow: answers after 3s", upstreamtest.Fault{Delay: 3 * time.Second}},
	{"garbage JSON (200)", upstreamtest.Fault{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"access_token": "tr`}},
	{"HTML page (200)", upstreamtest.Fault{Status: 200, Header: http.Header{"Content-Type": {"text/html"}}, Body: "<html><body><h1>Maintenance</h1></body></html>"}},
	{"500 with HTML", upstreamtest.Fault{Status: 500, Header: http.Header{"Content-Type": {"text/html"}}, Body: "<html><body>Internal Server Error</body></html>"}},
	{"redirect (302)", upstreamtest.Fault{Status: 302, Header: http.Header{"Location": {"http://127.0.0.1:1/sso/login"}}}},
}

// grantFault is one grant's exposure to a faulty endpoint: the request
// that reaches it, and the proof that everything works again.
type grantFault struct {
	name     string
	endpoint string // the upstreamtest endpoint the fault is put on
	idp      upstreamtest.Config
	mutate   func(*proxy.Config, *session.Config, *upstream.Config)
	// setup signs in (or warms up) with the server healthy.
	setup func(t *testing.T, e *env, g *gateway) faultSteps
}

// faultSteps are a grant's steps through one fault: arm (optional) runs
// with the fault on, before the clock starts; try is the timed request
// the fault hits; recover must succeed once the endpoint behaves. Each
// may move the clock first.
type faultSteps struct {
	arm          func()
	try, recover func() (*http.Response, string)
}

// faultRoute sets upstream.timeout to faultTimeout and keeps sessions
// through the hours the refresh case moves the clock.
func faultRoute(more func(*proxy.Config, *session.Config, *upstream.Config)) func(*proxy.Config, *session.Config, *upstream.Config) {
	return func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		uc.Timeout = faultTimeout
		longIdle(pc, sc, uc)
		if more != nil {
			more(pc, sc, uc)
		}
	}
}

// TestReliabilityServerFaults: for every grant, the authorization
// server's endpoint that grant needs is down, slow, or answers garbage
// JSON, HTML, a 500 or a redirect. Each request gets a clean 502, 503 or
// 504 page within upstream.timeout (1s here), with no stack trace, token
// or internal address in it; the goroutines of the faulty calls end; and
// once the endpoint behaves the same browser or caller is served again
// with nothing done by hand (a client credentials route keeps serving
// its cached token throughout).
func TestReliabilityServerFaults(t *testing.T) {
	tbl := report.Table(t, fmt.Sprintf("Every grant against a faulty authorization server endpoint (upstream.timeout %s, real Redis). "+
		"*Answer* is the gateway's, *took* the request's wall time; *recovered* is the first request after the fault was lifted. "+
		"Goroutines are counted before the grant's faults and after (idle client connections closed, %s to settle).", faultTimeout, goroutineSettle),
		"grant", "endpoint", "fault", "answer", "took", "body", "recovered")
	passwordIdPBig := passwordIdP
	for _, gc := range []grantFault{
		{name: "authorization_code: code exchange", endpoint: "token", setup: codeExchangeFault},
		{name: "authorization_code: refresh", endpoint: "token", setup: refreshFault},
		{name: "client_credentials", endpoint: "token", idp: upstreamtest.Config{AccessTokenTTL: 10 * time.Minute}, mutate: machineRoute, setup: clientCredentialsFault},
		{name: "password: form", endpoint: "token", idp: passwordIdPBig, mutate: lenientPasswordRoute, setup: passwordFormFault},
		{name: "password: Basic", endpoint: "token", idp: passwordIdPBig, mutate: lenientPasswordRoute, setup: passwordBasicFault},
		{name: "implicit: silent re-auth", endpoint: "userinfo", idp: implicitIdP(true), mutate: implicitRoute, setup: implicitFault},
		{name: "caller token: introspection", endpoint: "introspect", idp: opaqueIdP, mutate: acceptBearer("urn:orders"), setup: introspectionFault},
	} {
		t.Run(gc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{redis: true, idp: gc.idp})
			g := e.gateway(gatewayOptions{mutate: faultRoute(gc.mutate)})
			steps := gc.setup(t, e, g)
			base := goroutineBaseline()
			for _, f := range serverFaults {
				e.idp.SetFault(gc.endpoint, f.fault)
				if steps.arm != nil {
					steps.arm()
				}
				start := time.Now()
				resp, body := steps.try()
				took := time.Since(start)
				e.idp.SetFault(gc.endpoint, upstreamtest.Fault{})
				if s := resp.StatusCode; s != 502 && s != 503 && s != 504 {
					t.Errorf("%s: got %d, want 502, 503 or 504; %.300s", f.name, s, body)
				}
				if took > faultTimeout+time.Second {
					t.Errorf("%s: answered after %v, want within upstream.timeout %v (and a second of slack)", f.name, took, faultTimeout)
				}
				if leak := leakyBody(body); leak != "" || body == "" {
					t.Errorf("%s: the %d answer is empty or shows %q: %.300s", f.name, resp.StatusCode, leak, body)
				}
				if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
					t.Errorf("%s: 503 without Retry-After", f.name)
				}
				rresp, rbody := steps.recover()
				if rresp.StatusCode >= 400 {
					t.Errorf("%s: after the fault was lifted: %d, want success; %.300s", f.name, rresp.StatusCode, rbody)
				}
				tbl.Row(gc.name, gc.endpoint, f.name, resp.StatusCode, took, bodyKind(resp), rresp.StatusCode)
			}
			if t.Failed() {
				t.Logf("gateway log:\n%s", e.logs)
			}
			n := leakCheck(t, base, 0)
			tbl.Note("%s: goroutines %d before the faults, %d after", gc.name, base, n)
			if gc.name == "client_credentials" {
				tbl.Note("client_credentials: during each fault, 3 requests in the token's renewal window were first served (200) from the cached token; the answer above is the one once it had expired")
			}
		})
	}
}

// lenientPasswordRoute is passwordRoute with a per-account limit the
// fault cases do not reach: an attempt that ends in a server fault stays
// counted (the throttle fails closed), which TestPasswordThrottle covers.
func lenientPasswordRoute(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
	passwordRoute(pc, sc, uc)
	pc.Password.MaxFailuresPerUser = 1000
	pc.Password.MaxFailuresPerAddress = 1000
}

// opaqueIdP issues opaque access tokens, which the gateway introspects;
// client "caller" gets them.
var opaqueIdP = upstreamtest.Config{OpaqueAccessTokens: true, Clients: []upstreamtest.Client{
	{ID: "authgate", Secret: clientSecret}, {ID: "caller", Secret: "caller-secret"}}}

// answer reads a response to a (response, body) pair for the table.
func answer(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	return (&browser{Client: c}).do(t, req)
}

func codeExchangeFault(t *testing.T, e *env, g *gateway) faultSteps {
	newBrowser(t).login(t, g, "/") // discovery and keys fetched while healthy
	try := func() (*http.Response, string) {
		b := newBrowser(t)
		cb := b.authorize(t, b.startLogin(t, g, "/app"))
		return b.noFollow().get(t, cb.String())
	}
	recover := func() (*http.Response, string) {
		return newBrowser(t).get(t, g.URL+"/app")
	}
	return faultSteps{try: try, recover: recover}
}

func refreshFault(t *testing.T, e *env, g *gateway) faultSteps {
	b := newBrowser(t)
	b.login(t, g, "/")
	try := func() (*http.Response, string) {
		e.clock.Advance(61 * time.Minute) // the access token has expired
		return b.noFollow().get(t, g.URL+"/app")
	}
	recover := func() (*http.Response, string) { return b.noFollow().get(t, g.URL+"/app") }
	return faultSteps{try: try, recover: recover}
}

func clientCredentialsFault(t *testing.T, e *env, g *gateway) faultSteps {
	if resp, _ := apiCall(t, g, "/orders/1", ""); resp.StatusCode != 200 {
		t.Fatalf("first machine request: %d", resp.StatusCode)
	}
	arm := func() {
		// In the renewal window, the cached token serves, fault or not.
		failures := strings.Count(e.logs.String(), machineFetchFailed)
		e.clock.Advance(9*time.Minute + 35*time.Second)
		for range 3 {
			if resp, body := apiCall(t, g, "/orders/1", ""); resp.StatusCode != 200 {
				t.Errorf("cached machine token during the fault: %d, want 200; %.200s", resp.StatusCode, body)
			}
		}
		// The background renewal these started fails; only then does the
		// clock move on (a failure dated after the jump would extend the
		// back-off past the recovery).
		deadline := time.Now().Add(5 * time.Second)
		for strings.Count(e.logs.String(), machineFetchFailed) == failures {
			if time.Now().After(deadline) {
				t.Fatal("no background renewal failed within 5s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	try := func() (*http.Response, string) {
		e.clock.Advance(time.Minute) // expired: nothing left to serve
		return apiCall(t, g, "/orders/1", "")
	}
	recover := func() (*http.Response, string) {
		e.clock.Advance(31 * time.Second) // past the longest back-off
		return apiCall(t, g, "/orders/1", "")
	}
	return faultSteps{arm: arm, try: try, recover: recover}
}

// machineFetchFailed is the warning of a failed client credentials fetch.
const machineFetchFailed = "client credentials token fetch failed"

func passwordFormFault(t *testing.T, e *env, g *gateway) faultSteps {
	if resp, _ := formLogin(t, g, newBrowser(t), "/", "alice", "alice-password"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("password login: %d", resp.StatusCode)
	}
	login := func() (*http.Response, string) { return formLogin(t, g, newBrowser(t), "/", "alice", "alice-password") }
	return faultSteps{try: login, recover: login}
}

func passwordBasicFault(t *testing.T, e *env, g *gateway) faultSteps {
	call := func() (*http.Response, string) {
		req := mustRequest(t, http.MethodGet, g.URL+"/legacy", nil)
		req.SetBasicAuth("alice", "alice-password")
		return answer(t, http.DefaultClient, req)
	}
	if resp, _ := call(); resp.StatusCode != 200 {
		t.Fatalf("Basic call: %d", resp.StatusCode)
	}
	try := func() (*http.Response, string) {
		e.clock.Advance(6 * time.Minute) // past password.basic_cache_ttl: the server is asked
		return call()
	}
	return faultSteps{try: try, recover: call}
}

func implicitFault(t *testing.T, e *env, g *gateway) faultSteps {
	b := newBrowser(t)
	p := implicitResponse(t, e, g, b, "/")
	if resp, _ := b.noFollow().do(t, postForm(t, g.URL+"/oauth2/implicit", p)); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("implicit login: %d", resp.StatusCode)
	}
	if resp, _ := b.noFollow().get(t, g.URL+"/page"); resp.StatusCode != 200 {
		t.Fatalf("implicit session: %d", resp.StatusCode)
	}
	// silent renews the session near its token's expiry: prompt=none at
	// the server, the fragment posted back; the gateway then verifies the
	// ID token and asks userinfo.
	silent := func() (*http.Response, string) {
		e.clock.Advance(9*time.Minute + 30*time.Second)
		au := b.startLogin(t, g, "/page")
		if au.Query().Get("prompt") != "none" {
			t.Fatalf("navigation near expiry: %s, want a silent sign-in", au)
		}
		cb := b.authorize(t, au)
		fp, err := url.ParseQuery(cb.Fragment)
		if err != nil {
			t.Fatal(err)
		}
		return b.noFollow().do(t, postForm(t, g.URL+"/oauth2/implicit", fp))
	}
	recover := func() (*http.Response, string) {
		resp, body := silent()
		if resp.StatusCode != http.StatusSeeOther {
			return resp, body
		}
		return b.noFollow().get(t, g.URL+"/page")
	}
	return faultSteps{try: silent, recover: recover}
}

func introspectionFault(t *testing.T, e *env, g *gateway) faultSteps {
	issue := func() string {
		req := postForm(t, e.idp.URL+"/token", url.Values{"grant_type": {"client_credentials"}, "audience": {"urn:orders"}})
		req.SetBasicAuth("caller", "caller-secret")
		_, body := answer(t, http.DefaultClient, req)
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if json.Unmarshal([]byte(body), &tr) != nil || tr.AccessToken == "" || strings.Count(tr.AccessToken, ".") == 2 {
			t.Fatalf("upstreamtest issued %q, want an opaque token", body)
		}
		return tr.AccessToken
	}
	call := func() (*http.Response, string) { return apiCall(t, g, "/x", issue()) }
	if resp, _ := call(); resp.StatusCode != 200 {
		t.Fatalf("opaque caller token: %d", resp.StatusCode)
	}
	return faultSteps{try: call, recover: call}
}
