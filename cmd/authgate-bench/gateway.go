package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The registered client at the bench's authorization servers
// (upstreamtest's default) and the audience of caller tokens.
const (
	clientID       = "authgate"
	clientSecret   = "authgate-secret"
	callerAudience = "urn:bench"
)

// Environment variables a gateway's config reads its secrets from (and a
// peer's command may use).
const (
	envCookieSecret = "AUTHGATE_BENCH_COOKIE_SECRET"
	envClientSecret = "AUTHGATE_BENCH_CLIENT_SECRET"
)

// Credentials a mode's requests carry.
const (
	credSession = "session" // the cookie of a real login through the gateway
	credNone    = "none"    // nothing: the gateway brings its own token
	credJWT     = "jwt"     // a caller's JWT access token (typ at+jwt)
	credOpaque  = "opaque"  // a caller's opaque token, introspected
)

// mode is one way of running authgate, in a process of its own.
type mode struct {
	name        string
	about       string
	store       string // session store: memory or redis
	grant       string
	creds       string
	forwardAuth bool // measure GET /oauth2/auth instead of the proxied path
	noAccessLog bool
	// tracing turns tracing on, every request sampled, the spans exported
	// to the backend's OTLP receiver (traceReceiverPath).
	tracing bool
}

// modes are authgate's modes, in the order of the report (and of every
// round, which starts at a different target each time).
var modes = []mode{
	{name: "memory", about: "browser session, memory store", store: "memory", grant: "authorization_code", creds: credSession},
	{name: "memory-nolog", about: "as memory, with access_log: false", store: "memory", grant: "authorization_code", creds: credSession, noAccessLog: true},
	{name: "memory-tracing", about: "as memory, with tracing on: every request sampled, exported over OTLP/HTTP", store: "memory", grant: "authorization_code", creds: credSession, tracing: true},
	{name: "redis", about: "browser session, Redis store (session cache on, the default)", store: "redis", grant: "authorization_code", creds: credSession},
	{name: "client-creds", about: "client_credentials: the gateway's own cached token", store: "memory", grant: "client_credentials", creds: credNone},
	{name: "caller-jwt", about: "a caller's JWT (accept_bearer, typ at+jwt)", store: "memory", grant: "authorization_code", creds: credJWT},
	{name: "introspection", about: "a caller's opaque token, introspection cached", store: "memory", grant: "authorization_code", creds: credOpaque},
	{name: "forward-auth", about: "GET /oauth2/auth with the session cookie: 202, no backend trip", store: "memory", grant: "authorization_code", creds: credSession, forwardAuth: true},
}

// config is the mode's authgate config file, as an operator would write
// it; the secrets come from the environment.
func (m mode) config(addr, issuer, backendURL, redisURL string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %q\npublic_url: %q\naccess_log: %t\nlog: {level: info}\n", addr, "http://"+addr, !m.noAccessLog)
	if m.forwardAuth {
		// The bench stands in for the ingress, the one peer allowed to
		// ask (and to send X-Original-URI).
		b.WriteString("trusted_proxies: [\"127.0.0.1\"]\nforward_auth: { enabled: true }\n")
	}
	if m.tracing {
		fmt.Fprintf(&b, "tracing: {endpoint: %q, sample_ratio: 1}\n", backendURL+traceReceiverPath)
	}
	fmt.Fprintf(&b, "upstream:\n  issuer: %q\n  client_id: %q\n  client_secret: \"${%s}\"\n", issuer, clientID, envClientSecret)
	b.WriteString(sessionYAML(m.store, redisURL))
	fmt.Fprintf(&b, "routes:\n  - backend: %q\n    grant: %s\n", backendURL, m.grant)
	if m.creds == credJWT || m.creds == credOpaque {
		fmt.Fprintf(&b, "    accept_bearer: true\n    audience: %q\n", callerAudience)
	}
	return b.String()
}

// sessionYAML is the session section; sessionConfig is the same in Go.
func sessionYAML(store, redisURL string) string {
	s := "session:\n  store: memory\n"
	if store == "redis" {
		s = fmt.Sprintf("session:\n  store: redis\n  redis: { url: %q }\n", redisURL)
	}
	return s + fmt.Sprintf("  cookie: { secret: \"${%s}\", secure: false }\n", envCookieSecret)
}

// gateway is a running authgate process.
type gateway struct {
	URL       string
	proc      *child
	coldStart time.Duration // exec to the first /readyz 200
}

// startGateway writes m's config and runs authgate with it until /readyz
// answers 200.
func (b *bench) startGateway(ctx context.Context, name string, m mode) (*gateway, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	issuer := b.idp.URL
	if m.creds == credOpaque {
		issuer = b.opaqueIdP.URL
	}
	redisURL := ""
	if b.redis != nil {
		redisURL = b.redis.URL
	}
	path := filepath.Join(b.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(m.config(addr, issuer, b.backend.URL, redisURL)), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(b.bin, "-config", path)
	cmd.Env = append(os.Environ(), envCookieSecret+"="+b.cookieSecret, envClientSecret+"="+clientSecret)
	cmd = b.opts.pin.target(cmd)
	start := time.Now()
	proc, err := b.startChild("authgate "+name, cmd, false)
	if err != nil {
		return nil, err
	}
	g := &gateway{URL: "http://" + addr, proc: proc}
	g.coldStart, err = waitHTTP(ctx, proc, g.URL+"/readyz", func(s int) bool { return s == http.StatusOK }, start, 20*time.Second)
	return g, err
}

// gatewayTarget starts authgate in mode m and returns it as a target with
// the credentials its requests carry, verified once.
func (b *bench) gatewayTarget(ctx context.Context, m mode) (*target, error) {
	g, err := b.startGateway(ctx, m.name, m)
	if err != nil {
		return nil, err
	}
	t := &target{name: m.name, about: m.about, url: g.URL + "/app", header: http.Header{}, bearer: true,
		pid: g.proc.pid(), proc: g.proc, coldStart: g.coldStart, client: newLoadClient(b.opts.concurrency)}
	switch m.creds {
	case credSession:
		cookies, err := login(ctx, g.URL+"/app")
		if err != nil {
			return nil, g.proc.failure(err)
		}
		t.header.Set("Cookie", cookieHeader(cookies))
	case credJWT:
		t.header.Set("Authorization", "Bearer "+b.callerJWT)
	case credOpaque:
		t.header.Set("Authorization", "Bearer "+b.opaqueToken)
	}
	if m.forwardAuth {
		t.url, t.forwardAuth = g.URL+"/oauth2/auth", true
		t.header.Set("X-Original-URI", "/app")
	}
	if err := t.check(ctx); err != nil {
		return nil, g.proc.failure(fmt.Errorf("the first request: %w", err))
	}
	return t, nil
}

// login signs in through a gateway as the authorization server's first
// user (upstreamtest approves at once, without a form), following the
// redirects with a cookie jar as a browser would, and returns the cookies
// the gateway set.
func login(ctx context.Context, u string) ([]*http.Cookie, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 15 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("login: %w", safeErr(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("login: ended with status %d at %s, want the backend's 200", resp.StatusCode, resp.Request.URL.Path)
	}
	pu, _ := url.Parse(u)
	cookies := jar.Cookies(pu)
	if len(cookies) == 0 {
		return nil, errors.New("login: the gateway set no cookie")
	}
	return cookies, nil
}

func cookieHeader(cookies []*http.Cookie) string {
	parts := make([]string, len(cookies))
	for i, c := range cookies {
		parts[i] = c.Name + "=" + c.Value
	}
	return strings.Join(parts, "; ")
}

// callerTokens makes the caller tokens: a JWT access token signed by the
// authorization server (RFC 9068: typ at+jwt), and an opaque one from the
// opaque server's token endpoint (client credentials).
func (b *bench) callerTokens(ctx context.Context) error {
	now := time.Now()
	var err error
	b.callerJWT, err = b.idp.SignTyped(jwt.MapClaims{"iss": b.idp.URL, "sub": "svc-bench", "aud": callerAudience,
		"client_id": clientID, "iat": now.Unix(), "exp": now.Add(12 * time.Hour).Unix()}, "at+jwt")
	if err != nil {
		return fmt.Errorf("sign the caller JWT: %w", err)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "audience": {callerAudience}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.opaqueIdP.URL+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	resp, err := b.opaqueIdP.HTTPClient().Do(req)
	if err != nil {
		return fmt.Errorf("opaque token: %w", err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		return fmt.Errorf("opaque token: status %d from the token endpoint", resp.StatusCode)
	}
	b.opaqueToken = tr.AccessToken
	return nil
}
