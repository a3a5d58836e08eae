package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/upstream"
)

// `authgate check` validates a config file offline; with -online it also
// asks the authorization server and the session store what the gateway
// will ask them, and says for each check what it found. No secret, token
// or password is printed: messages carry key paths, URLs without their
// query, and the servers' error codes.

// Check outcomes, as printed.
const (
	checkOK      = "ok"
	checkFailed  = "FAILED"
	checkSkipped = "skipped"
)

// storeCheckTimeout bounds the session store's PING (each Redis call is
// bounded by session.redis.timeout already; this covers a retry).
const storeCheckTimeout = 10 * time.Second

// checkResult is one line of the check's output.
type checkResult struct {
	status, name, message string
}

func checkFlags(fs *flag.FlagSet) func(context.Context, io.Writer, io.Writer) int {
	path := configFlag(fs)
	online := fs.Bool("online", false, "also contact the authorization server (discovery, JWKS, a probe of each client registration) and ping the session store; each waits at most upstream.timeout or session.redis.timeout")
	return func(ctx context.Context, stdout, stderr io.Writer) int {
		cfg, ok := loadConfigFor("check", *path, stderr)
		if !ok {
			return 2
		}
		noun := "routes"
		if len(cfg.Routes) == 1 {
			noun = "route"
		}
		results := []checkResult{{checkOK, "config", fmt.Sprintf("%d %s; every key known, every ${VAR} set, every value valid", len(cfg.Routes), noun)}}
		if !*online {
			results = append(results, checkResult{checkSkipped, "online checks", "not run: add -online to fetch the authorization server's discovery and JWKS, probe the client registration and ping the session store"})
		} else {
			results = append(results, checkOnline(ctx, cfg, stderr)...)
		}
		failed, skipped := 0, 0
		for _, r := range results {
			fmt.Fprintf(stdout, "%-8s %s: %s\n", r.status, r.name, r.message)
			switch r.status {
			case checkFailed:
				failed++
			case checkSkipped:
				skipped++
			}
		}
		switch {
		case failed > 0:
			fmt.Fprintf(stdout, "%s: FAILED (%d of %d checks failed)\n", *path, failed, len(results))
			return 1
		case !*online:
			fmt.Fprintf(stdout, "%s: OK (%d %s; offline checks only)\n", *path, len(cfg.Routes), noun)
		default:
			fmt.Fprintf(stdout, "%s: OK (%d %s; %d checks passed, %d skipped)\n", *path, len(cfg.Routes), noun, len(results)-skipped, skipped)
		}
		return 0
	}
}

// checkOnline wires the gateway as serve does, without listening, and runs
// the checks that contact other servers. Warnings of the wiring (an
// implicit route, say) go to stderr.
func checkOnline(ctx context.Context, cfg *fileConfig, stderr io.Writer) []checkResult {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// go-redis's own dial messages would repeat the store check's answer.
	routeRedisLog(slog.New(slog.DiscardHandler))
	g, err := build(cfg, log, io.Discard, nil)
	if err != nil {
		return []checkResult{{checkFailed, "set-up", err.Error()}}
	}
	defer g.closer()
	var results []checkResult
	clients := g.server.RouteClients()
	// Discovery and JWKS once per authorization server.
	down := map[string]bool{}
	for i, rc := range clients {
		issuer := rc.Client.Config().Issuer
		if slices.ContainsFunc(clients[:i], func(o proxy.RouteClient) bool { return o.Client.Config().Issuer == issuer }) {
			continue
		}
		key := upstreamKey(cfg, rc.Route)
		r := checkDiscovery(ctx, rc.Client, key)
		results = append(results, r)
		if r.status != checkOK {
			down[issuer] = true
			results = append(results, checkResult{checkSkipped, checkName("jwks", key), "not fetched: discovery failed"})
			continue
		}
		results = append(results, checkKeys(ctx, rc.Client, key, clients))
	}
	for _, p := range clientProbes(cfg, clients) {
		if down[p.client.Config().Issuer] {
			results = append(results, checkResult{checkSkipped, p.name, "not probed: discovery failed"})
			continue
		}
		results = append(results, p.run(ctx))
	}
	results = append(results, checkStore(ctx, g, cfg))
	return results
}

// checkDiscovery loads the server's metadata (or builds it from the
// configured endpoints) and names the endpoints found.
// key is the config section of the server ("upstream", "upstreams.NAME").
func checkDiscovery(ctx context.Context, up *upstream.Client, key string) checkResult {
	c := up.Config()
	name := checkName("discovery", key)
	m, err := up.Metadata(ctx)
	if err != nil {
		return checkResult{checkFailed, name, describeUnreachable(err, c.Issuer, c.Timeout, key+".issuer")}
	}
	var found, missing []string
	for _, e := range []struct{ name, url string }{
		{"authorization", m.AuthorizationEndpoint}, {"token", m.TokenEndpoint}, {"jwks_uri", m.JWKSURI},
		{"userinfo", m.UserinfoEndpoint}, {"end_session", m.EndSessionEndpoint}, {"revocation", m.RevocationEndpoint},
		{"introspection", m.IntrospectionEndpoint},
	} {
		if e.url != "" {
			found = append(found, e.name)
		} else {
			missing = append(missing, e.name)
		}
	}
	msg := "no issuer: the endpoints " + key + ".* names"
	if c.Issuer != "" {
		msg = c.Issuer + ": metadata loaded, its issuer matches"
	}
	msg += "; endpoints: " + strings.Join(found, ", ")
	if len(missing) > 0 {
		msg += " (none: " + strings.Join(missing, ", ") + ")"
	}
	return checkResult{checkOK, name, msg}
}

// checkKeys fetches the JWKS. A server without one fails only where the
// configuration needs keys: ID tokens (scope openid) or caller JWTs.
func checkKeys(ctx context.Context, up *upstream.Client, key string, clients []proxy.RouteClient) checkResult {
	name := checkName("jwks", key)
	m, _ := up.Metadata(ctx) // loaded by checkDiscovery
	if m.JWKSURI == "" {
		needs := slices.Contains(up.Config().Scopes, "openid") || slices.ContainsFunc(clients, func(rc proxy.RouteClient) bool { return rc.AcceptBearer })
		if !needs {
			return checkResult{checkSkipped, name, "the server publishes no jwks_uri, and no route needs one (no openid scope, no accept_bearer)"}
		}
		return checkResult{checkFailed, name, "the server publishes no jwks_uri, needed to verify ID tokens and caller JWTs: set " + key + ".jwks_uri"}
	}
	n, err := up.KeyCount(ctx)
	if err != nil {
		return checkResult{checkFailed, name, describeUnreachable(err, m.JWKSURI, up.Config().Timeout, key+".jwks_uri")}
	}
	noun := "keys"
	if n == 1 {
		noun = "key"
	}
	return checkResult{checkOK, name, fmt.Sprintf("%d usable signature %s at %s", n, noun, urlWithoutQuery(m.JWKSURI))}
}

// clientProbe is one probe of a client registration.
type clientProbe struct {
	name   string
	client *upstream.Client
	run    func(ctx context.Context) checkResult
}

// clientProbes plans a probe per client and grant: a made-up authorization
// code for a client of code-flow routes, the actual token request of each
// client_credentials route; the grants that offer no harmless probe are
// listed as skipped, with the reason.
func clientProbes(cfg *fileConfig, clients []proxy.RouteClient) []clientProbe {
	type use struct {
		client   *upstream.Client
		redirect string // its server's redirect URI
		section  string // its server's config section
		keys     string // the config keys of its registration
		routes   map[string][]int
		machine  []proxy.RouteClient // its client_credentials routes
	}
	var uses []*use
	for _, rc := range clients {
		c := rc.Client.Config()
		i := slices.IndexFunc(uses, func(u *use) bool {
			o := u.client.Config()
			return o.Issuer == c.Issuer && o.ClientID == c.ClientID
		})
		if i < 0 {
			up := upstreamKey(cfg, rc.Route)
			keys := up + ".client_id, " + up + ".client_secret and " + up + ".client_auth"
			if cfg.Routes[rc.Route].ClientID != "" {
				keys = fmt.Sprintf("routes[%d].client_id and routes[%d].client_secret", rc.Route, rc.Route)
			}
			uses = append(uses, &use{client: rc.Client, redirect: rc.RedirectURI, section: up, keys: keys, routes: map[string][]int{}})
			i = len(uses) - 1
		}
		u := uses[i]
		u.routes[rc.Grant] = append(u.routes[rc.Grant], rc.Route)
		if rc.Grant == proxy.GrantClientCredentials {
			u.machine = append(u.machine, rc)
		}
	}
	var probes []clientProbe
	for _, u := range uses {
		id := u.client.Config().ClientID
		if rs := u.routes[proxy.GrantAuthorizationCode]; len(rs) > 0 {
			name := fmt.Sprintf("client %q, authorization_code (%s)", id, routeList(rs))
			probes = append(probes, clientProbe{name: name, client: u.client, run: func(ctx context.Context) checkResult {
				return probeCodeFlow(ctx, name, u.client, u.keys, u.section, u.redirect)
			}})
		}
		for _, rc := range u.machine {
			name := fmt.Sprintf("client %q, client_credentials (routes[%d])", id, rc.Route)
			probes = append(probes, clientProbe{name: name, client: u.client, run: func(ctx context.Context) checkResult {
				return probeClientCredentials(ctx, name, rc, u.keys, u.section)
			}})
		}
		for _, g := range []struct{ grant, why string }{
			{proxy.GrantImplicit, "the implicit grant gets its tokens from the authorization endpoint, in a browser; the first sign-in tests it"},
			{proxy.GrantPassword, "probing the password grant would be a failed sign-in at the server; the first sign-in tests it"},
		} {
			if rs := u.routes[g.grant]; len(rs) > 0 {
				name := fmt.Sprintf("client %q, %s (%s)", id, g.grant, routeList(rs))
				probes = append(probes, clientProbe{name: name, client: u.client, run: func(context.Context) checkResult {
					return checkResult{checkSkipped, name, "not probed: " + g.why}
				}})
			}
		}
	}
	return probes
}

// checkName names a check of the server of section key: "discovery" for
// upstream:, "discovery (upstreams.NAME)" for another.
func checkName(check, key string) string {
	if key == "upstream" {
		return check
	}
	return check + " (" + key + ")"
}

// upstreamKey is the config section of route i's authorization server:
// "upstream", or "upstreams.NAME" for a route that names one.
func upstreamKey(cfg *fileConfig, i int) string {
	if name := cfg.Routes[i].Upstream; name != "" && name != proxy.DefaultUpstream {
		return "upstreams." + name
	}
	return "upstream"
}

func routeList(rs []int) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = "routes[" + strconv.Itoa(r) + "]"
	}
	return strings.Join(s, ", ")
}

// probeCodeFlow checks the client's authentication at the token endpoint
// with a code that does not exist (upstream.ProbeClientAuth).
func probeCodeFlow(ctx context.Context, name string, c *upstream.Client, keys, section, redirectURI string) checkResult {
	err := c.ProbeClientAuth(ctx, redirectURI)
	if err == nil {
		return checkResult{checkOK, name, fmt.Sprintf("the token endpoint accepted the client's authentication (%s): a made-up authorization code was refused with invalid_grant", c.Config().ClientAuth)}
	}
	var te *upstream.TokenError
	if errors.As(err, &te) && !errors.Is(err, upstream.ErrUnavailable) {
		switch te.Code {
		case "unauthorized_client":
			return checkResult{checkFailed, name, "the server does not let this client use the authorization_code grant (" + te.Error() + "): allow it in the client's registration"}
		case "":
		default:
			if msg, ok := refusedClient(te, keys); ok {
				return checkResult{checkFailed, name, msg}
			}
			return checkResult{checkFailed, name, "a made-up authorization code got " + te.Error() + " instead of invalid_grant: the client's registration could not be confirmed"}
		}
	}
	if errors.Is(err, upstream.ErrMadeUpCodeAccepted) {
		return checkResult{checkFailed, name, err.Error() + ": this server cannot be trusted with logins"}
	}
	return checkResult{checkFailed, name, describeUnreachable(err, tokenEndpoint(ctx, c), c.Config().Timeout, section+".token_endpoint")}
}

// tokenEndpoint is the client's token endpoint, "" when unknown.
func tokenEndpoint(ctx context.Context, c *upstream.Client) string {
	if m, err := c.Metadata(ctx); err == nil {
		return m.TokenEndpoint
	}
	return ""
}

// probeClientCredentials asks for the route's token, exactly as the
// gateway will; the token is dropped unseen.
func probeClientCredentials(ctx context.Context, name string, rc proxy.RouteClient, keys, section string) checkResult {
	tok, err := rc.Client.ClientCredentials(ctx, rc.ClientCredentials)
	if err == nil {
		msg := "a token was issued"
		if !tok.Expiry.IsZero() {
			msg += fmt.Sprintf(", valid for %s", time.Until(tok.Expiry).Round(time.Second))
		}
		if tok.Scope != "" {
			msg += fmt.Sprintf(", scope %q", tok.Scope)
		}
		return checkResult{checkOK, name, msg}
	}
	var te *upstream.TokenError
	if errors.As(err, &te) && !errors.Is(err, upstream.ErrUnavailable) {
		if msg, ok := refusedClient(te, keys); ok {
			return checkResult{checkFailed, name, msg}
		}
		fix := map[string]string{
			"unauthorized_client": "allow the client_credentials grant in the client's registration",
			"invalid_scope":       fmt.Sprintf("the server refuses routes[%d].scopes %v for this client", rc.Route, rc.ClientCredentials.Scopes),
			"invalid_target":      fmt.Sprintf("the server refuses routes[%d].resource %q", rc.Route, rc.ClientCredentials.Resource),
		}[te.Code]
		if fix == "" {
			fix = "the token request was refused"
		}
		return checkResult{checkFailed, name, fix + " (" + te.Error() + ")"}
	}
	return checkResult{checkFailed, name, describeUnreachable(err, tokenEndpoint(ctx, rc.Client), rc.Client.Config().Timeout, section+".token_endpoint")}
}

// refusedClient words a refusal of the client's own authentication.
func refusedClient(te *upstream.TokenError, keys string) (string, bool) {
	if te.Code != "invalid_client" && te.StatusCode != 401 {
		return "", false
	}
	return "the token endpoint refused the client's authentication (" + te.Error() + "): check " + keys + " against the client's registration", true
}

// checkStore pings the session store.
func checkStore(ctx context.Context, g *gateway, cfg *fileConfig) checkResult {
	name := "session store (" + cfg.Session.Store + ")"
	if cfg.Session.Store == "memory" {
		return checkResult{checkOK, name, "sessions live in this process: nothing to reach (one replica only; sessions end with it)"}
	}
	ctx, cancel := context.WithTimeout(ctx, storeCheckTimeout)
	defer cancel()
	start := time.Now()
	if err := g.store.Ping(ctx); err != nil {
		return checkResult{checkFailed, name, "PING failed: " + err.Error() + ": check session.redis (address, password, TLS) and that Redis runs"}
	}
	return checkResult{checkOK, name, fmt.Sprintf("PING answered in %s", time.Since(start).Round(100*time.Microsecond))}
}

// describeUnreachable words a failure to get an answer from target,
// naming the likely cause and key, the config key that names target.
func describeUnreachable(err error, target string, timeout time.Duration, key string) string {
	where := urlWithoutQuery(target)
	var dnsErr *net.DNSError
	var certErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		section := key[:max(strings.LastIndexByte(key, '.'), 0)]
		return fmt.Sprintf("%s did not answer within %s (%s.timeout): check %s and that this machine can reach it (firewall, HTTPS_PROXY)", where, timeout, section, key)
	case errors.Is(err, syscall.ECONNREFUSED):
		return where + ": connection refused, nothing listens there: check " + key
	case errors.As(err, &dnsErr):
		return where + ": the host name does not resolve: check " + key
	case errors.As(err, &certErr), errors.As(err, &hostErr):
		return where + ": its TLS certificate is not trusted here (" + err.Error() + ")"
	default:
		return err.Error() + ": check " + key
	}
}

// urlWithoutQuery drops a URL's query and user info, which may carry
// credentials.
func urlWithoutQuery(raw string) string {
	if raw == "" {
		return "the authorization server"
	}
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if scheme, rest, ok := strings.Cut(raw, "://"); ok {
		if at := strings.IndexByte(rest, '@'); at >= 0 && at < strings.IndexByte(rest+"/", '/') {
			rest = rest[at+1:]
		}
		raw = scheme + "://" + rest
	}
	return raw
}
