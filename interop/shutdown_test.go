package interop_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

// slowBackend answers /slow/ once release is closed (telling arrived
// first), anything else at once.
type slowBackend struct {
	URL              string
	arrived, release chan struct{}
}

func newSlowBackend(t *testing.T) *slowBackend {
	t.Helper()
	b := &slowBackend{arrived: make(chan struct{}, 1), release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow/") {
			b.arrived <- struct{}{}
			select {
			case <-b.release:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "done %s", r.URL.Path)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	b.URL = "http://" + ln.Addr().String()
	return b
}

// sigtermOnArrival waits for a slow request to reach the backend, then
// sends g SIGTERM and returns when.
func (b *slowBackend) sigtermOnArrival(t *testing.T, g *gateway) time.Time {
	t.Helper()
	select {
	case <-b.arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request never reached the backend")
	}
	at := time.Now()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return at
}

// shutdownGateway runs an authgate process with public paths on be and the
// shutdown section given.
func shutdownGateway(t *testing.T, be *slowBackend, shutdown string) *gateway {
	t.Helper()
	idp := upstreamtest.NewServer(upstreamtest.Config{})
	t.Cleanup(idp.Close)
	return startGateway(t, "authgate-secret", func(string) string {
		return fmt.Sprintf(`shutdown: %s
upstream: { issuer: %q, client_id: authgate, client_secret: "${CLIENT_SECRET}" }
session:
  store: memory
  cookie: { secret: "${COOKIE_SECRET}", secure: false }
routes:
  - backend: %q
    grant: authorization_code
    public_paths: ["/slow/", "/fast"]
`, shutdown, idp.URL, be.URL)
	})
}

// get is one request on a connection of its own, so that a closed
// listener shows as a refused connection.
func get(u string) (int, string, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitExit waits for the gateway process to end and returns its status.
func waitExit(t *testing.T, g *gateway, within time.Duration) int {
	t.Helper()
	select {
	case <-g.exited:
		return g.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("the gateway had not exited %s after SIGTERM:\n%s", within, g.Logs())
		return -1
	}
}

// TestGracefulShutdown: on SIGTERM /readyz fails at once while requests are
// still served for shutdown.drain_delay; then the listener closes (new
// connections are refused) and a request in flight since before the
// signal, on a slow backend, still completes; the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	be := newSlowBackend(t)
	const drainDelay = 1500 * time.Millisecond
	g := shutdownGateway(t, be, "{ drain_delay: 1500ms, grace: 10s }")

	type answer struct {
		status int
		body   string
		err    error
	}
	slow := make(chan answer, 1)
	go func() {
		s, b, err := get(g.URL + "/slow/report")
		slow <- answer{s, b, err}
	}()
	sigterm := be.sigtermOnArrival(t, g)
	var first503, refused time.Time
	servedWhileDraining := 0
	for time.Since(sigterm) < 5*time.Second {
		status, body, err := get(g.URL + "/readyz")
		now := time.Now()
		// Once the listener has closed, a connection that raced the close
		// may be reset instead of refused; only a refusal ends the wait.
		closing := now.Sub(sigterm) >= drainDelay-100*time.Millisecond
		if errors.Is(err, syscall.ECONNREFUSED) {
			refused = now
			break
		}
		switch {
		case err != nil && closing:
			continue
		case err != nil:
			t.Fatalf("/readyz %s after SIGTERM: %v", now.Sub(sigterm), err)
		case status == http.StatusServiceUnavailable:
			if first503.IsZero() {
				first503 = now
				if !strings.Contains(body, `"shutdown":"draining"`) {
					t.Errorf("/readyz while draining: %s, want the shutdown check named", body)
				}
			}
		case status == http.StatusOK && !first503.IsZero():
			t.Fatalf("/readyz answered 200 again after a 503, %s after SIGTERM", now.Sub(sigterm))
		}
		if !first503.IsZero() {
			if s, b, err := get(g.URL + "/fast"); err == nil && s == 200 && b == "done /fast" {
				servedWhileDraining++
			} else if !closing {
				t.Errorf("a request while draining: %d %q %v, want the backend's answer", s, b, err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	switch {
	case first503.IsZero():
		t.Fatalf("/readyz never answered 503 after SIGTERM:\n%s", g.Logs())
	case refused.IsZero():
		t.Fatalf("the listener was still open 5s after SIGTERM:\n%s", g.Logs())
	}
	if d := first503.Sub(sigterm); d > 500*time.Millisecond {
		t.Errorf("/readyz turned 503 %s after SIGTERM, want at once", d)
	}
	if d := refused.Sub(sigterm); d < drainDelay-100*time.Millisecond {
		t.Errorf("the listener closed %s after SIGTERM, before drain_delay (%s)", d, drainDelay)
	}
	if servedWhileDraining == 0 {
		t.Error("no request was served between /readyz's 503 and the listener's close")
	}
	select {
	case a := <-slow:
		t.Fatalf("the slow request ended before the backend answered: %+v", a)
	default:
	}

	// The request in flight completes after the listener closed.
	close(be.release)
	select {
	case a := <-slow:
		if a.err != nil || a.status != 200 || a.body != "done /slow/report" {
			t.Errorf("the in-flight request: %d %q %v, want the backend's 200", a.status, a.body, a.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the in-flight request did not complete")
	}
	if code := waitExit(t, g, 5*time.Second); code != 0 {
		t.Errorf("exit status %d, want 0:\n%s", code, g.Logs())
	}
	if l := g.logLines("stopped"); len(l) == 0 {
		t.Errorf("no \"stopped\" in the log:\n%s", g.Logs())
	}
}

// TestShutdownGraceEnds: a request that outlasts shutdown.grace is cut
// off, and the process still exits, soon after the grace period.
func TestShutdownGraceEnds(t *testing.T) {
	be := newSlowBackend(t)
	g := shutdownGateway(t, be, "{ grace: 1s }")
	slow := make(chan error, 1)
	go func() {
		_, _, err := get(g.URL + "/slow/forever")
		slow <- err
	}()
	sigterm := be.sigtermOnArrival(t, g)
	if code := waitExit(t, g, 5*time.Second); code != 0 {
		t.Errorf("exit status %d, want 0:\n%s", code, g.Logs())
	}
	if d := time.Since(sigterm); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("exited %s after SIGTERM, want about shutdown.grace (1s)", d)
	}
	if err := <-slow; err == nil {
		t.Error("the request that outlasted the grace period got a whole answer")
	}
	if l := g.logLines("grace period ended with requests in flight"); len(l) == 0 {
		t.Errorf("no warning about the cut-off request in the log:\n%s", g.Logs())
	}
}
