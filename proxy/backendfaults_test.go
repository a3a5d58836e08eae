package proxy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// flakyBackend is a backend that can be taken down (its port closed) and
// brought back on the same address, made slow, or made to reset every
// connection.
type flakyBackend struct {
	t    *testing.T
	addr string
	mode atomic.Value // "ok", "slow", "reset"
	mu   sync.Mutex
	srv  *http.Server
}

func newFlakyBackend(t *testing.T) *flakyBackend {
	f := &flakyBackend{t: t}
	f.mode.Store("ok")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.serve(ln)
	t.Cleanup(f.down)
	return f
}

func (f *flakyBackend) URL() string { return "http://" + f.addr }

func (f *flakyBackend) serve(ln net.Listener) {
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch f.mode.Load() {
		case "slow":
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
				return
			}
		case "reset":
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.(*net.TCPConn).SetLinger(0)
				_ = conn.Close()
			}
			return
		}
		io.WriteString(w, "backend says hello to "+r.Header.Get("X-Forwarded-User"))
	})}
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	go srv.Serve(ln)
}

// down closes the port and every connection.
func (f *flakyBackend) down() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv != nil {
		_ = f.srv.Close()
		f.srv = nil
	}
}

// up listens on the same address again.
func (f *flakyBackend) up() {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatalf("backend back on %s: %v", f.addr, err)
	}
	f.serve(ln)
}

// TestReliabilityBackendFaults: the backend is down (its port closed),
// slow (past limits.backend_response_timeout, 300 ms here), or resets
// every connection, for a code-flow session, a password session, a
// client credentials route and a caller JWT. Each gets 502 or 504, soon,
// as a clean page that leaves the session alone: no cookie is touched,
// and the next request once the backend is back is served, as the same
// user, with the same cookie. No goroutine outlives the faults.
func TestReliabilityBackendFaults(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tbl := report.Table(t, fmt.Sprintf("The backend down, slow (answers after 3 s; limits.backend_response_timeout %s) or resetting connections, per grant's route.", timeout),
		"client", "fault", "answer", "took", "cookie touched", "next request once the backend is back")
	e := newEnv(t, envOptions{redis: true, idp: everyGrantIdP})
	be := newFlakyBackend(t)
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		pc.Routes[0].Backend = be.URL()
		everyGrantRoutes(pc, sc, uc)
		pc.Limits.BackendResponseTimeout = timeout
	}})
	code := newBrowser(t)
	code.login(t, g, "/code/")
	pw := newBrowser(t)
	if resp, _ := formLogin(t, g, pw, "/pw/", "bob", "bob-password"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("password login: %d", resp.StatusCode)
	}
	jwtTok := signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")
	clients := []struct {
		name, want string
		send       func() *http.Request
		b          *browser
	}{
		{"code-flow session", "user-alice", func() *http.Request { return mustRequest(t, http.MethodGet, g.URL+"/code/x", nil) }, code},
		{"password session", "user-bob", func() *http.Request { return mustRequest(t, http.MethodGet, g.URL+"/pw/x", nil) }, pw},
		{"client credentials", "", func() *http.Request { return mustRequest(t, http.MethodGet, g.URL+"/svc/x", nil) }, newBrowser(t)},
		{"caller JWT", "svc-caller", func() *http.Request {
			req := mustRequest(t, http.MethodGet, g.URL+"/code/api", nil)
			req.Header.Set("Authorization", "Bearer "+jwtTok)
			return req
		}, newBrowser(t)},
	}
	for _, c := range clients {
		if resp, body := c.b.noFollow().do(t, c.send()); resp.StatusCode != 200 || body != "backend says hello to "+c.want {
			t.Fatalf("%s before the faults: %d %q", c.name, resp.StatusCode, body)
		}
	}
	base := goroutineBaseline()
	for _, fault := range []struct {
		name       string
		want       int
		start, end func()
	}{
		{"down: port closed", 502, be.down, be.up},
		{"slow: answers after 3s", 504, func() { be.mode.Store("slow") }, func() { be.mode.Store("ok") }},
		{"resets every connection", 502, func() { be.mode.Store("reset") }, func() { be.mode.Store("ok") }},
	} {
		fault.start()
		type result struct {
			resp          *http.Response
			body          string
			took          time.Duration
			cookieTouched bool
		}
		results := make([]result, len(clients))
		for i, c := range clients {
			start := time.Now()
			resp, body := c.b.noFollow().do(t, c.send())
			results[i] = result{resp, body, time.Since(start), len(resp.Cookies()) > 0}
		}
		fault.end()
		for i, c := range clients {
			r := results[i]
			if r.resp.StatusCode != fault.want || leakyBody(r.body) != "" {
				t.Errorf("%s, backend %s: got %d %.200s, want a clean %d", c.name, fault.name, r.resp.StatusCode, r.body, fault.want)
			}
			if r.took > timeout+time.Second {
				t.Errorf("%s, backend %s: answered after %v", c.name, fault.name, r.took)
			}
			if r.cookieTouched {
				t.Errorf("%s, backend %s: the answer set a cookie %v; the session must be left alone", c.name, fault.name, r.resp.Cookies())
			}
			resp, body := c.b.noFollow().do(t, c.send())
			if resp.StatusCode != 200 || body != "backend says hello to "+c.want {
				t.Errorf("%s after the backend came back: %d %q, want 200 for %q with the same cookie", c.name, resp.StatusCode, body, c.want)
			}
			who := "as " + c.want
			if c.want == "" {
				who = "with the machine token, no user"
			}
			tbl.Row(c.name, fault.name, r.resp.StatusCode, r.took, r.cookieTouched, fmt.Sprintf("%d %s", resp.StatusCode, who))
		}
	}
	n := leakCheck(t, base, 0)
	tbl.Note("goroutines %d before the faults, %d after", base, n)
}
