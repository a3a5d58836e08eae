package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// demo runs an authorization server, a backend and the gateway on loopback,
// so a newcomer can log in and see what the backend receives.
func demo(ctx context.Context, listen string, stdout, stderr io.Writer) error {
	log := newLogger(stderr, logConfig{Level: "info", Format: "text"})

	gwLn, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (is another authgate running? try -listen 127.0.0.1:0): %w", listen, err)
	}
	host, _, _ := net.SplitHostPort(gwLn.Addr().String())
	idpLn, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	idp := upstreamtest.NewServer(upstreamtest.Config{
		Listener:       idpLn,
		Interactive:    true,
		AccessTokenTTL: 5 * time.Minute, // short, so the refresh shows in the log
	})
	defer idp.Close()

	backendLn, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	backend := &http.Server{Handler: demoBackend(), ReadHeaderTimeout: 10 * time.Second}
	go backend.Serve(backendLn)
	defer backend.Close()

	secret := make([]byte, 32)
	rand.Read(secret)
	// Plain http on loopback: Chromium and Firefox accept Secure cookies
	// there, Safari does not, and the demo must work in every browser.
	insecure := false
	publicURL := "http://" + gwLn.Addr().String()
	cfg := &fileConfig{
		Config: proxy.Config{
			Listen:    gwLn.Addr().String(),
			PublicURL: publicURL,
			Routes: []proxy.Route{{
				Backend: "http://" + backendLn.Addr().String(),
				Grant:   proxy.GrantAuthorizationCode,
			}},
		},
		Upstream: upstream.Config{
			Issuer:       idp.URL,
			ClientID:     "authgate",
			ClientSecret: "authgate-secret",
		},
		Session: session.Config{
			Store:  "memory",
			Cookie: session.CookieConfig{Secret: upstream.Secret(base64.StdEncoding.EncodeToString(secret)), Secure: &insecure},
		},
	}
	cfg.Config.SetDefaults()
	cfg.Upstream.SetDefaults()
	cfg.Session.SetDefaults()
	g, err := build(cfg, log, stderr, nil)
	if err != nil {
		return err
	}
	defer g.closer()
	hs := g.server.HTTPServer()
	hs.Handler = canonicalHost(gwLn.Addr().String(), publicURL, cfg.Config.Prefix+"/", hs.Handler)
	fmt.Fprintf(stdout, `
authgate demo is running.

  Open      %s/
  Sign in   alice / alice-password   (or bob / bob-password)

  Authorization server  %s   (upstream/upstreamtest)
  Backend               http://%s   (shows the headers and token it receives)
  Session store         memory

Press Ctrl-C to stop.

`, publicURL, idp.URL, backendLn.Addr())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(gwLn) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("shutdown", "error", err.Error())
	}
	return nil
}

// canonicalHost sends a browser that reached the demo under another name
// (http://localhost:4180 for http://127.0.0.1:4180) to the printed URL:
// the session cookie, set on the callback's host, would never reach the
// other name, and the login would fail as "expired". Only the demo does
// this: it knows no proxy stands in front rewriting Host.
// The gateway's own endpoints are left alone: a callback's code must not
// ride in a URL the gateway builds (SECURITY.md 4).
func canonicalHost(host, publicURL, endpoints string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		if strings.EqualFold(r.Host, host) || (r.Method != http.MethodGet && r.Method != http.MethodHead) ||
			!strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, endpoints) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		target := publicURL + p
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusFound)
	})
}
