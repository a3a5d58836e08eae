package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/authgate/session/redistest"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// checkConfig is a gateway with a client_credentials route and a code-flow
// route at issuer, sessions in the store given by the YAML store.
func checkConfig(issuer, store string, extraRoutes string) string {
	return fmt.Sprintf(`public_url: "http://127.0.0.1:4180"
upstream:
  issuer: %q
  client_id: "authgate"
  client_secret: "${TEST_CLIENT_SECRET}"
  timeout: 1s
session:
  %s
  cookie: { secret: "${TEST_COOKIE_SECRET}", secure: false }
routes:
  - match: { path_prefix: "/orders/" }
    backend: "http://127.0.0.1:8081"
    grant: client_credentials
    scopes: [orders.read]
  - backend: "http://127.0.0.1:8080"
    grant: authorization_code
%s`, issuer, store, extraRoutes)
}

func redisStore(url string) string {
	return fmt.Sprintf("store: redis\n  redis: { url: %q, timeout: 500ms }", url)
}

// runCheck runs `authgate check` with args on a file holding yaml.
func runCheck(t *testing.T, yaml, clientSecret string, args ...string) (code int, stdout, stderr string, took time.Duration) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_CLIENT_SECRET", clientSecret)
	t.Setenv("TEST_COOKIE_SECRET", validSecret)
	var out, errOut bytes.Buffer
	start := time.Now()
	code = run(context.Background(), append(append([]string{"check"}, args...), "-config", path), &out, &errOut)
	// The file's temporary path, as the output names it, reads config.yaml.
	return code, strings.ReplaceAll(out.String(), path, "config.yaml"), errOut.String(), time.Since(start)
}

// wantLines checks that each want is a prefix of some line of out.
func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(strings.Join(strings.Fields(l), " "), w) {
				found = true
			}
		}
		if !found {
			t.Errorf("output lacks a line starting %q:\n%s", w, out)
		}
	}
}

// noSecrets fails if out holds a secret or anything like a token.
func noSecrets(t *testing.T, out string, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, validSecret, "eyJ") {
		if strings.Contains(out, s) {
			t.Errorf("output contains %q (a secret or a token):\n%s", s, out)
		}
	}
}

// TestCheckOffline: without -online nothing is contacted, and the output
// says which checks ran and which did not.
func TestCheckOffline(t *testing.T) {
	idp := upstreamtest.NewServer(upstreamtest.Config{})
	defer idp.Close()
	code, out, errOut, _ := runCheck(t, checkConfig(idp.URL, "store: memory", ""), "authgate-secret")
	if code != 0 {
		t.Fatalf("exit %d, want 0; stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	wantLines(t, out, "ok config: 2 routes", "skipped online checks: not run: add -online", "config.yaml: OK (2 routes; offline checks only)")
	if n := idp.Count("discovery"); n != 0 {
		t.Errorf("offline check fetched discovery %d times, want 0", n)
	}
}

// TestCheckOnline runs the online check against upstreamtest and a real
// Redis: each check says what it found, a failure exits 1 with a message
// naming the key to fix, and no secret or token is printed.
func TestCheckOnline(t *testing.T) {
	rds := redistest.Start(t)
	implicitAndPassword := `  - match: { path_prefix: "/legacy/" }
    backend: "http://127.0.0.1:8082"
    grant: implicit
  - match: { path_prefix: "/form/" }
    backend: "http://127.0.0.1:8083"
    grant: password
`
	t.Run("all ok", func(t *testing.T) {
		idp := upstreamtest.NewServer(upstreamtest.Config{})
		defer idp.Close()
		code, out, errOut, _ := runCheck(t, checkConfig(idp.URL, redisStore(rds.URL), implicitAndPassword), "authgate-secret", "-online")
		if code != 0 {
			t.Fatalf("exit %d, want 0; stdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		wantLines(t, out,
			"ok config: 4 routes",
			"ok discovery: "+idp.URL+": metadata loaded, its issuer matches; endpoints: authorization, token, jwks_uri",
			"ok jwks: 1 usable signature key at "+idp.URL,
			`ok client "authgate", authorization_code (routes[1]): the token endpoint accepted the client's authentication (client_secret_basic)`,
			`ok client "authgate", client_credentials (routes[0]): a token was issued, valid for`,
			`skipped client "authgate", implicit (routes[2]): not probed: the implicit grant`,
			`skipped client "authgate", password (routes[3]): not probed: probing the password grant would be a failed sign-in`,
			"ok session store (redis): PING answered",
			"config.yaml: OK (4 routes; 6 checks passed, 2 skipped)")
		noSecrets(t, out+errOut, "authgate-secret")
		if cc, ac := idp.GrantCount("client_credentials"), idp.GrantCount("authorization_code"); cc != 1 || ac != 1 {
			t.Errorf("token endpoint saw %d client_credentials and %d authorization_code requests, want 1 and 1", cc, ac)
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		idp := upstreamtest.NewServer(upstreamtest.Config{})
		defer idp.Close()
		code, out, errOut, _ := runCheck(t, checkConfig(idp.URL, redisStore(rds.URL), ""), "wrong-secret-value", "-online")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantLines(t, out,
			"ok discovery:",
			`FAILED client "authgate", authorization_code (routes[1]): the token endpoint refused the client's authentication (token endpoint: invalid_client`,
			`FAILED client "authgate", client_credentials (routes[0]): the token endpoint refused the client's authentication`,
			"config.yaml: FAILED (2 of 6 checks failed)")
		if !strings.Contains(out, "check upstream.client_id, upstream.client_secret and upstream.client_auth against the client's registration") {
			t.Errorf("the failure does not name the keys to fix:\n%s", out)
		}
		noSecrets(t, out+errOut, "wrong-secret-value")
	})
	t.Run("route client, refused scope, no code flow", func(t *testing.T) {
		idp := upstreamtest.NewServer(upstreamtest.Config{Clients: []upstreamtest.Client{
			{ID: "authgate", Secret: "authgate-secret", GrantTypes: []string{"client_credentials"}},
			{ID: "orders", Secret: "orders-secret", Scopes: []string{"orders.write"}},
		}})
		defer idp.Close()
		yaml := strings.Replace(checkConfig(idp.URL, "store: memory", ""), "    scopes: [orders.read]\n",
			"    scopes: [orders.read]\n    client_id: orders\n    client_secret: orders-secret\n", 1)
		code, out, _, _ := runCheck(t, yaml, "authgate-secret", "-online")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantLines(t, out,
			`FAILED client "authgate", authorization_code (routes[1]): the server does not let this client use the authorization_code grant`,
			`FAILED client "orders", client_credentials (routes[0]): the server refuses routes[0].scopes [orders.read] for this client (token endpoint: invalid_scope`,
			"ok session store (memory):")
		noSecrets(t, out, "authgate-secret", "orders-secret")
	})
	t.Run("redis down", func(t *testing.T) {
		idp := upstreamtest.NewServer(upstreamtest.Config{})
		defer idp.Close()
		down := redistest.Start(t)
		down.Stop()
		code, out, _, took := runCheck(t, checkConfig(idp.URL, redisStore(down.URL), ""), "authgate-secret", "-online")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		wantLines(t, out, "ok discovery:", "FAILED session store (redis): PING failed:", "config.yaml: FAILED (1 of 6 checks failed)")
		if !strings.Contains(out, "check session.redis") {
			t.Errorf("the store failure does not say what to check:\n%s", out)
		}
		if took > 5*time.Second {
			t.Errorf("took %s with Redis down, want a few timeouts of 500ms", took)
		}
	})
}

// TestCheckOnlineUpstreams: with several authorization servers each gets
// its discovery and JWKS check, and a failure names the keys of the
// server's own section.
func TestCheckOnlineUpstreams(t *testing.T) {
	main := upstreamtest.NewServer(upstreamtest.Config{})
	defer main.Close()
	customers := upstreamtest.NewServer(upstreamtest.Config{Clients: []upstreamtest.Client{{ID: "portal", Secret: "portal-secret"}}})
	defer customers.Close()
	yaml := checkConfig(main.URL, "store: memory", `  - match: { path_prefix: "/shop/" }
    backend: "http://127.0.0.1:8084"
    grant: authorization_code
    upstream: customers
`) + fmt.Sprintf("upstreams:\n  customers: { issuer: %q, client_id: portal, client_secret: not-the-portal-secret, timeout: 1s }\n", customers.URL)
	code, out, errOut, _ := runCheck(t, yaml, "authgate-secret", "-online")
	if code != 1 {
		t.Errorf("exit %d, want 1; stderr:\n%s", code, errOut)
	}
	wantLines(t, out,
		"ok discovery: "+main.URL+":",
		"ok discovery (upstreams.customers): "+customers.URL+":",
		"ok jwks (upstreams.customers): 1 usable signature key",
		`ok client "authgate", authorization_code (routes[1]):`,
		`FAILED client "portal", authorization_code (routes[2]): the token endpoint refused the client's authentication`,
		"config.yaml: FAILED (1 of 9 checks failed)")
	if !strings.Contains(out, "check upstreams.customers.client_id, upstreams.customers.client_secret and upstreams.customers.client_auth") {
		t.Errorf("the failure does not name the customers upstream's keys:\n%s", out)
	}
}

// TestCheckOnlineSilentIssuer: an issuer that accepts connections and never
// answers fails the discovery check within upstream.timeout, with a
// message that says so; what depends on it is skipped, not failed again.
func TestCheckOnlineSilentIssuer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	issuer := "http://" + ln.Addr().String()
	code, out, errOut, took := runCheck(t, checkConfig(issuer, "store: memory", ""), "authgate-secret", "-online")
	if code != 1 {
		t.Errorf("exit %d, want 1; stderr:\n%s", code, errOut)
	}
	wantLines(t, out,
		"FAILED discovery: "+issuer+" did not answer within 1s (upstream.timeout): check upstream.issuer and that this machine can reach it",
		"skipped jwks: not fetched: discovery failed",
		`skipped client "authgate", authorization_code (routes[1]): not probed: discovery failed`,
		`skipped client "authgate", client_credentials (routes[0]): not probed: discovery failed`,
		"ok session store (memory)",
		"config.yaml: FAILED (1 of 6 checks failed)")
	if took > 4*time.Second {
		t.Errorf("the check took %s, want about upstream.timeout (1s)", took)
	}

	// Nothing listening at all: said as such, at once.
	ln.Close()
	code, out, _, took = runCheck(t, checkConfig(issuer, "store: memory", ""), "authgate-secret", "-online")
	if code != 1 {
		t.Errorf("closed port: exit %d, want 1", code)
	}
	wantLines(t, out, "FAILED discovery: "+issuer+": connection refused, nothing listens there: check upstream.issuer")
	if took > 2*time.Second {
		t.Errorf("closed port: the check took %s, want well under a second", took)
	}
}
