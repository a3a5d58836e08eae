package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

// TestHotReload: a steady stream of requests while the config file is
// rewritten three times. A valid change (a new route, a new log level) is
// applied without a failed request or a dropped session; a file with
// errors is logged key by key and the running configuration stays; a
// change of the listen address is reported as needing a restart and the
// rest still applies.
func TestHotReload(t *testing.T) {
	idp := upstreamtest.NewServer(upstreamtest.Config{})
	t.Cleanup(idp.Close)
	seen := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		return s
	}
	oldApp, newApp := seen("old"), seen("new")
	addr := freeAddr(t)
	config := func(level, listen, extraRoute string) string {
		return fmt.Sprintf(`listen: %q
public_url: "http://%s"
log: {level: %s}
upstream: {issuer: %q, client_id: authgate, client_secret: authgate-secret}
session: {store: memory, cookie: {secret: %q, secure: false}}
routes:
%s  - { match: { path_prefix: "/open/" }, backend: %q, grant: authorization_code, public_paths: ["/open/"] }
  - { backend: %q, grant: authorization_code }
`, listen, addr, level, idp.URL, validSecret, extraRoute, oldApp.URL, oldApp.URL)
	}
	path := filepath.Join(t.TempDir(), "authgate.yaml")
	write := func(s string) {
		t.Helper()
		// Replaced as Kubernetes and editors do: a new file renamed over.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(config("info", addr, ""))
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	level := new(slog.LevelVar)
	log := newLoggerAt(logs, cfg.Log, level)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, log, io.Discard, serveOptions{path: path, level: level, watchInterval: 50 * time.Millisecond})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base := "http://" + addr
	waitFor(t, logs, func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })

	// A signed-in browser, whose session must survive every reload.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	if code, body := getWith(t, browser, base+"/app"); code != 200 || body != "old" {
		t.Fatalf("login: %d %q", code, body)
	}

	var failures, requests atomic.Int64
	stop := make(chan struct{})
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			requests.Add(1)
			if code, _ := getWith(t, browser, base+"/app"); code != 200 {
				failures.Add(1)
			}
		}
	}()

	// 1. A new route and a new level.
	write(config("debug", addr, fmt.Sprintf("  - { match: { path_prefix: \"/new/\" }, backend: %q, grant: authorization_code, public_paths: [\"/new/\"] }\n", newApp.URL)))
	waitFor(t, logs, func() bool { _, body := get(t, base+"/new/x"); return body == "new" })
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level after the reload: %v, want debug", level.Level())
	}

	// 2. A broken file: every error logged with its key, nothing changes.
	write(strings.Replace(config("info", addr, ""), "grant: authorization_code }\n", "grant: authorization_code, bakend: x }\n", 1) + "lisen: x\n")
	waitFor(t, logs, func() bool { return strings.Contains(logs.String(), "configuration not reloaded") })
	for _, want := range []string{"routes[1].bakend: unknown key", "lisen: unknown key"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the refused reload's log lacks %q", want)
		}
	}
	if _, body := get(t, base+"/new/x"); body != "new" {
		t.Errorf("after a broken file the running config changed: /new/ answers %q", body)
	}

	// 3. Another listen address: kept, with a warning; the rest applies.
	write(config("info", freeAddr(t), ""))
	waitFor(t, logs, func() bool { return strings.Contains(logs.String(), "change only at a restart") })
	waitFor(t, logs, func() bool { code, _ := get(t, base+"/new/x"); return code != 200 })
	if !strings.Contains(logs.String(), `keys=[listen]`) {
		t.Errorf("the restart warning does not name listen:\n%s", logs)
	}

	close(stop)
	<-streamDone
	if n := failures.Load(); n != 0 || requests.Load() < 20 {
		t.Errorf("%d of %d requests with the session failed during the reloads, want none", n, requests.Load())
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, logs *lockedBuffer, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within 5 s; log:\n%s", logs)
		}
	}
}

func getWith(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html") // a browser, which a login may redirect
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
