package interop_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/authgate/authgate/session/redistest"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// TestReloadOnSIGHUP: a real authgate process gets SIGHUP after its config
// file gained a route: a steady stream of signed-in requests sees no
// failure, the session survives, and the new route answers.
func TestReloadOnSIGHUP(t *testing.T) {
	ut := upstreamtest.NewServer(upstreamtest.Config{})
	t.Cleanup(ut.Close)
	app, extra := newBackend(t), newBackend(t)
	rd := redistest.Start(t)
	body := func(route string) func(string) string {
		return func(string) string {
			return fmt.Sprintf(`upstream: { issuer: %q, client_id: authgate, client_secret: "${CLIENT_SECRET}" }
session:
  store: redis
  redis: { url: %q }
  cookie: { secret: "${COOKIE_SECRET}", secure: false }
routes:
%s  - { backend: %q, grant: authorization_code }
`, ut.URL, rd.URL, route, app.URL)
		}
	}
	g := startGateway(t, "authgate-secret", body(""))
	b := newBrowser()
	resp, _ := b.get(t, g.URL+"/home")
	resp, _ = b.get(t, resp.Header.Get("Location")) // upstreamtest signs alice in at once
	resp, _ = b.get(t, resp.Header.Get("Location"))
	if resp, _ = b.get(t, g.URL+resp.Header.Get("Location")); resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", resp.StatusCode)
	}

	var requests, failures atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			requests.Add(1)
			req, _ := http.NewRequest(http.MethodGet, g.URL+"/home", nil)
			req.Header.Set("Accept", "application/json")
			r, err := b.Client.Do(req)
			if err != nil || r.StatusCode != http.StatusOK {
				failures.Add(1)
			}
			if r != nil {
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
		}
	}()

	prefix := fmt.Sprintf("listen: %q\npublic_url: %q\nlog: {level: debug}\n", strings.TrimPrefix(g.URL, "http://"), g.URL)
	route := fmt.Sprintf("  - { match: { path_prefix: \"/extra/\" }, backend: %q, grant: authorization_code, public_paths: [\"/extra/\"] }\n", extra.URL)
	if err := os.WriteFile(g.config, []byte(prefix+body(route)("")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := http.Get(g.URL + "/extra/x")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK && extra.count() > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new route does not answer 5 s after SIGHUP; log:\n%s", strings.Join(g.logLines("reload"), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the stream goes on over the new configuration
	close(stop)
	<-done
	if n := failures.Load(); n != 0 || requests.Load() < 20 {
		t.Errorf("%d of %d signed-in requests failed across the reload, want none", n, requests.Load())
	}
	if len(g.logLines("SIGHUP")) == 0 || len(g.logLines("configuration reloaded")) == 0 {
		t.Errorf("no reload in the log")
	}
}
