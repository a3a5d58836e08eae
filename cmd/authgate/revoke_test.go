package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/session/redistest"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// TestRevokeCommand: `authgate revoke -sub` ends every session of that
// user in the shared store, revoking their refresh tokens, and no one
// else's; with the memory store it says to use the admin API instead.
func TestRevokeCommand(t *testing.T) {
	idp := upstreamtest.NewServer(upstreamtest.Config{})
	defer idp.Close()
	rd := redistest.Start(t)
	yaml := fmt.Sprintf(`public_url: "https://app.example.com"
upstream: { issuer: %q, client_id: authgate, client_secret: authgate-secret }
session:
  store: redis
  redis: { url: %q }
  cookie: { secret: %q }
routes:
  - { backend: "http://127.0.0.1:8080", grant: authorization_code }
`, idp.URL, rd.URL, validSecret)
	path := filepath.Join(t.TempDir(), "authgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]byte(yaml), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	store, closeStore, err := session.OpenStore(cfg.Session, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	m, err := session.NewManager(cfg.Session, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	mk := func(sub string) session.Ticket {
		tk, err := m.Create(ctx, &session.Session{Subject: sub, Issuer: idp.URL,
			Token: upstream.Token{AccessToken: upstream.Secret("at-" + sub), RefreshToken: upstream.Secret("rt-" + sub), Expiry: time.Now().Add(time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	a1, a2, bob := mk("user-alice"), mk("user-alice"), mk("user-bob")

	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"revoke", "-config", path, "-sub", "user-alice"}, &stdout, &stderr); code != 0 {
		t.Fatalf("revoke: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "ended 2 sessions") {
		t.Errorf("revoke said %q, want 2 sessions ended", stdout.String())
	}
	for _, tk := range []session.Ticket{a1, a2} {
		if _, _, err := m.Load(ctx, tk); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("alice's session after revoke: %v, want ErrNotFound", err)
		}
	}
	if _, _, err := m.Load(ctx, bob); err != nil {
		t.Errorf("bob's session after revoking alice: %v", err)
	}
	if idp.Count("revoke") != 2 {
		t.Errorf("refresh tokens revoked at the server: %d, want 2", idp.Count("revoke"))
	}

	mem := filepath.Join(t.TempDir(), "memory.yaml")
	os.WriteFile(mem, []byte(strings.Replace(yaml, "store: redis", "store: memory", 1)), 0o600)
	stderr.Reset()
	if code := run(ctx, []string{"revoke", "-config", mem, "-sub", "user-alice"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "/admin/revoke") {
		t.Errorf("revoke with the memory store: exit %d, %q; want 2 pointing at /admin/revoke", code, stderr.String())
	}
	if code := run(ctx, []string{"revoke", "-config", path}, &stdout, &stderr); code != 2 {
		t.Errorf("revoke without -sub or -sid: exit %d, want 2", code)
	}
}
