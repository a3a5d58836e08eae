package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// everyGrantIdP allows the gateway's client every grant a route of
// everyGrantRoutes uses.
var everyGrantIdP = upstreamtest.Config{Clients: []upstreamtest.Client{{ID: "authgate", Secret: clientSecret,
	GrantTypes: []string{"authorization_code", "refresh_token", "password", "client_credentials"}}}}

// everyGrantRoutes gives the test gateway a route per grant: /code/
// (authorization_code, also taking caller JWTs), /pw/ (password), /svc/
// (client_credentials).
func everyGrantRoutes(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
	be := pc.Routes[0].Backend
	pc.Routes = []proxy.Route{
		{Match: proxy.Match{PathPrefix: "/code/"}, Backend: be, Grant: proxy.GrantAuthorizationCode, AcceptBearer: true, Audience: "urn:orders"},
		{Match: proxy.Match{PathPrefix: "/pw/"}, Backend: be, Grant: proxy.GrantPassword},
		{Match: proxy.Match{PathPrefix: "/svc/"}, Backend: be, Grant: proxy.GrantClientCredentials, Scopes: []string{"orders.read"}, Audience: "urn:orders"},
	}
	longIdle(pc, sc, uc)
}

// loadWorker is one client of the mixed load: a route, how it
// authenticates, and who the backend must see.
type loadWorker struct {
	name string
	want string // the X-Forwarded-User the backend must get ("" for a machine token)
	send func() (*http.Response, error)
}

// loadTally counts one worker's answers per phase of a scenario.
type loadTally struct {
	mu       sync.Mutex
	statuses map[string]map[int]int // phase → status → count
	wrong    int                    // 200s that reached the backend as someone else
}

func (l *loadTally) add(phase string, status int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.statuses[phase] == nil {
		l.statuses[phase] = map[int]int{}
	}
	l.statuses[phase][status]++
}

func (l *loadTally) get(phase string) map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]int{}
	for k, v := range l.statuses[phase] {
		out[k] = v
	}
	return out
}

// TestReliabilityRedisRestartUnderLoad: Redis is killed (SIGKILL, its
// data saved just before, as a persisted Redis would have it) and
// restarted while code-flow sessions, password sessions, a client
// credentials route and caller JWTs are all under load. Session routes
// answer 503 (never a 500, never another user's identity) and serve the
// same cookies again within 5 s of the restart; the client credentials
// and caller-JWT routes never notice; a password sign-in while Redis is
// down is refused with 503 and never reaches the token endpoint (the
// throttle cannot count it, so it fails closed).
func TestReliabilityRedisRestartUnderLoad(t *testing.T) {
	tbl := report.Table(t, "Redis killed (SIGKILL) under load and restarted 2 s later; 10 clients, each sending one request at a time through its grant's route. "+
		"Phases: *before* the kill, *down* (kill to restart), *after* the restart.",
		"client", "before", "down", "after", "back after restart")
	e := newEnv(t, envOptions{redis: true, idp: everyGrantIdP})
	g := e.gateway(gatewayOptions{mutate: everyGrantRoutes})

	var workers []loadWorker
	get := func(b *browser, path string) func() (*http.Response, error) {
		return func() (*http.Response, error) {
			req, _ := http.NewRequest(http.MethodGet, g.URL+path, nil)
			req.Header.Set("Accept", "application/json")
			return b.noFollow().Do(req)
		}
	}
	for i := range 3 {
		b := newBrowser(t)
		b.login(t, g, "/code/")
		workers = append(workers, loadWorker{name: fmt.Sprintf("code-flow session %d (alice)", i+1), want: "user-alice", send: get(b, "/code/x")})
	}
	for i, user := range []string{"alice", "bob", "alice", "bob"} {
		b := newBrowser(t)
		if resp, body := formLogin(t, g, b, "/pw/", user, user+"-password"); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("password login %s: %d %.200s", user, resp.StatusCode, body)
		}
		workers = append(workers, loadWorker{name: fmt.Sprintf("password session %d (%s)", i+1, user), want: "user-" + user, send: get(b, "/pw/x")})
	}
	for i := range 2 {
		workers = append(workers, loadWorker{name: fmt.Sprintf("client credentials %d", i+1), send: func() (*http.Response, error) {
			return http.Get(g.URL + "/svc/x")
		}})
	}
	jwtTok := signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")
	workers = append(workers, loadWorker{name: "caller JWT", want: "svc-caller", send: func() (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, g.URL+"/code/api", nil)
		req.Header.Set("Authorization", "Bearer "+jwtTok)
		return http.DefaultClient.Do(req)
	}})

	var phase atomic.Value
	phase.Store("before")
	var restartedAt atomic.Int64 // UnixNano
	tallies := make([]*loadTally, len(workers))
	backAfter := make([]atomic.Int64, len(workers)) // ns after the restart of the first 200
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, w := range workers {
		tallies[i] = &loadTally{statuses: map[string]map[int]int{}}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				p := phase.Load().(string)
				resp, err := w.send()
				if err != nil {
					t.Errorf("%s: %v", w.name, err)
					return
				}
				body := readAll(resp)
				tallies[i].add(p, resp.StatusCode)
				if resp.StatusCode == 200 && !strings.HasSuffix(body, " "+w.want) {
					tallies[i].mu.Lock()
					tallies[i].wrong++
					tallies[i].mu.Unlock()
				}
				if p == "after" && resp.StatusCode == 200 && backAfter[i].Load() == 0 {
					backAfter[i].Store(time.Now().UnixNano() - restartedAt.Load())
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}

	cachedBasic := func() int {
		req := mustRequest(t, http.MethodGet, g.URL+"/pw/x", nil)
		req.SetBasicAuth("alice", "alice-password")
		resp, _ := answer(t, http.DefaultClient, req)
		return resp.StatusCode
	}
	if s := cachedBasic(); s != 200 {
		t.Fatalf("Basic sign-in: %d", s)
	}
	time.Sleep(time.Second)
	if err := e.redis.Client(t).Save(t.Context()).Err(); err != nil {
		t.Fatalf("redis SAVE: %v", err)
	}
	e.redis.Stop()
	phase.Store("down")
	time.Sleep(500 * time.Millisecond)
	// Password sign-ins while the store is down: refused, uncounted, and
	// the token endpoint never sees them (form and Basic alike).
	passwordBefore := e.idp.GrantCount("password")
	for range 5 {
		if resp, body := formLogin(t, g, newBrowser(t), "/pw/", "alice", "guess-while-down"); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("password form while Redis is down: %d, want 503; %.200s", resp.StatusCode, body)
		}
		req := mustRequest(t, http.MethodGet, g.URL+"/pw/x", nil)
		req.SetBasicAuth("bob", "guess-while-down")
		if resp, _ := answer(t, http.DefaultClient, req); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("Basic while Redis is down: %d, want 503", resp.StatusCode)
		}
	}
	// A Basic login the gateway holds is refused too: the lock it must
	// honour cannot be read (else the right password would tell itself
	// apart from a guess).
	if s := cachedBasic(); s != http.StatusServiceUnavailable {
		t.Errorf("cached Basic login while Redis is down: %d, want 503", s)
	}
	if n := e.idp.GrantCount("password") - passwordBefore; n != 0 {
		t.Errorf("password attempts that reached the token endpoint while Redis was down: %d, want 0", n)
	}
	time.Sleep(1500 * time.Millisecond)
	restartedAt.Store(time.Now().UnixNano())
	e.redis.Restart()
	phase.Store("after")
	deadline := time.Now().Add(5 * time.Second)
	for {
		all := true
		for i := range workers {
			all = all && backAfter[i].Load() != 0
		}
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	for i, w := range workers {
		before, down, after := tallies[i].get("before"), tallies[i].get("down"), tallies[i].get("after")
		back := time.Duration(backAfter[i].Load())
		machine := w.want == "" || w.name == "caller JWT"
		for _, ph := range []map[int]int{before, down, after} {
			for s := range ph {
				if s != 200 && (machine || s != 503) {
					t.Errorf("%s: got status %d (%v %v %v), want only 200 and, for a session while Redis is down, 503", w.name, s, before, down, after)
				}
			}
		}
		if before[200] == 0 || after[200] == 0 {
			t.Errorf("%s: no 200 before the kill or after the restart (%v, %v)", w.name, before, after)
		}
		if machine && down[200] == 0 {
			t.Errorf("%s: not served while Redis was down (%v)", w.name, down)
		}
		if back == 0 || back > 5*time.Second {
			t.Errorf("%s: served again %v after the restart, want within 5s with the same cookie", w.name, back)
		}
		if tallies[i].wrong != 0 {
			t.Errorf("%s: %d answers reached the backend as another identity", w.name, tallies[i].wrong)
		}
		tbl.Row(w.name, statusList(before), statusList(down), statusList(after), back)
	}
	tbl.Note("password sign-ins while Redis was down: 5 by form, 5 by Basic, 1 cached Basic login; all 503, %d reached the token endpoint", e.idp.GrantCount("password")-passwordBefore)
}

// readAll drains and closes a response body.
func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// statusList formats status counts as "200×12, 503×40".
func statusList(m map[int]int) string {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d×%d", k, m[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
