package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// peerHelp documents -peer in -h.
const peerHelp = `A peer is another gateway driven in the same rounds, configured like
authgate's modes (same backend, same authorization server):

  -peer 'name=NAME[,url=URL][,login=yes|URL][,cookie=C][,token=jwt|opaque]
         [,forward_auth=yes][,bearer=no][,pid=N][,cmd=COMMAND]'

  name          the row's name (required)
  url           what every request asks for; "{listen}" stands for the
                address given to cmd. Default with cmd: http://{listen}/app
  login=yes     sign in through url first, with a cookie jar (the server
                approves its first user, alice, without a form), and send
                the cookies; login=URL signs in there instead
  cookie=C      send this Cookie header
  token=jwt     send Authorization: Bearer with the bench's caller JWT
                (iss the issuer, aud urn:bench, typ at+jwt); token=opaque
                with its opaque token (introspect at the opaque issuer)
  forward_auth  expect 202 with an Authorization header (X-Original-URI: /app
                is sent), not the backend's 200
  bearer=no     accept a backend answer without Authorization: Bearer
  pid=N         the process whose CPU to measure (default: cmd's)
  cmd=COMMAND   run with sh -c (use exec, so its pid is the gateway's);
                must come last, and may contain commas. It is stopped with
                its process group at the end. Its environment:
                  AUTHGATE_BENCH_LISTEN          127.0.0.1:port to listen on
                  AUTHGATE_BENCH_URL             http:// + that (public URL)
                  AUTHGATE_BENCH_BACKEND         the backend's URL
                  AUTHGATE_BENCH_ISSUER          the authorization server
                  AUTHGATE_BENCH_OPAQUE_ISSUER   the one issuing opaque tokens
                  AUTHGATE_BENCH_CLIENT_ID       authgate
                  AUTHGATE_BENCH_CLIENT_SECRET   its secret
                  AUTHGATE_BENCH_AUDIENCE        urn:bench
                  AUTHGATE_BENCH_COOKIE_SECRET   base64 of 32 random bytes
                  AUTHGATE_BENCH_REDIS           redis://127.0.0.1:port/0
                  AUTHGATE_BENCH_DIR             a scratch directory

A peer without cmd is already running: start the bench with -backend-addr
and -idp-addr to give it fixed addresses.

Example (oauth2-proxy, Redis sessions):
  -peer 'name=oauth2-proxy,login=yes,cmd=exec oauth2-proxy --http-address=$AUTHGATE_BENCH_LISTEN
   --upstream=$AUTHGATE_BENCH_BACKEND --provider=oidc --oidc-issuer-url=$AUTHGATE_BENCH_ISSUER
   --client-id=$AUTHGATE_BENCH_CLIENT_ID --client-secret=$AUTHGATE_BENCH_CLIENT_SECRET
   --cookie-secret=$AUTHGATE_BENCH_COOKIE_SECRET --cookie-secure=false --email-domain=*
   --redirect-url=$AUTHGATE_BENCH_URL/oauth2/callback --skip-provider-button --pass-access-token
   --session-store-type=redis --redis-connection-url=$AUTHGATE_BENCH_REDIS'
`

// peerSpec is one -peer flag.
type peerSpec struct {
	name        string
	url         string
	login       string // "": no login; "yes": through url; else a URL
	cookie      string
	token       string // "", credJWT or credOpaque
	forwardAuth bool
	bearer      bool
	pid         int
	cmd         string
}

// parsePeer parses a -peer value: comma-separated key=value pairs, cmd
// last and taking the rest.
func parsePeer(s string) (peerSpec, error) {
	p := peerSpec{bearer: true}
	for rest := s; rest != ""; {
		if c, ok := strings.CutPrefix(rest, "cmd="); ok {
			p.cmd = c
			break
		}
		var kv string
		kv, rest, _ = strings.Cut(rest, ",")
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "name":
			p.name = v
		case "url":
			p.url = v
		case "login":
			p.login = v // a URL
			if yes, berr := parseYes(v); berr == nil {
				p.login = ""
				if yes {
					p.login = "yes"
				}
			}
		case "cookie":
			p.cookie = v
		case "token":
			if v != credJWT && v != credOpaque {
				err = fmt.Errorf("token: want jwt or opaque, got %q", v)
			}
			p.token = v
		case "forward_auth":
			p.forwardAuth, err = parseYes(v)
		case "bearer":
			p.bearer, err = parseYes(v)
		case "pid":
			p.pid, err = strconv.Atoi(v)
		default:
			err = fmt.Errorf("unknown key %q (want name, url, login, cookie, token, forward_auth, bearer, pid, cmd)", k)
		}
		if err != nil {
			return p, fmt.Errorf("-peer: %w", err)
		}
	}
	switch {
	case p.name == "":
		return p, errors.New("-peer: name= is required")
	case p.url == "" && p.cmd == "":
		return p, fmt.Errorf("-peer %s: url= or cmd= is required", p.name)
	}
	return p, nil
}

func parseYes(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes", "y", "":
		return true, nil
	case "no", "n":
		return false, nil
	}
	return strconv.ParseBool(v)
}

// peerTarget starts the peer (when it has a cmd), signs in or sets its
// credentials, and verifies one request.
func (b *bench) peerTarget(ctx context.Context, p peerSpec) (*target, error) {
	t := &target{name: p.name, about: "peer", url: p.url, header: http.Header{}, bearer: p.bearer,
		forwardAuth: p.forwardAuth, pid: p.pid, client: newLoadClient(b.opts.concurrency)}
	var proc *child
	defer func() { t.proc = proc }()
	if p.cmd != "" {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		if t.url == "" {
			t.url = "http://{listen}/app"
		}
		t.url = strings.ReplaceAll(t.url, "{listen}", addr)
		cmd := exec.Command("sh", "-c", p.cmd)
		cmd.Env = append(os.Environ(), b.peerEnv(addr)...)
		cmd = b.opts.pin.target(cmd)
		if proc, err = b.startChild("peer "+p.name, cmd, true); err != nil {
			return nil, err
		}
		if t.pid == 0 {
			t.pid = proc.pid()
		}
		// Ready at its first HTTP answer, whatever it is.
		if _, err := waitHTTP(ctx, proc, t.url, func(int) bool { return true }, time.Now(), 30*time.Second); err != nil {
			return nil, err
		}
	}
	var cookies []string
	if p.login != "" {
		u := t.url
		if p.login != "yes" {
			u = p.login
		}
		got, err := login(ctx, u)
		if err != nil {
			return nil, proc.failure(fmt.Errorf("peer %s: %w", p.name, err))
		}
		cookies = append(cookies, cookieHeader(got))
	}
	if p.cookie != "" {
		cookies = append(cookies, p.cookie)
	}
	if len(cookies) > 0 {
		t.header.Set("Cookie", strings.Join(cookies, "; "))
	}
	switch p.token {
	case credJWT:
		t.header.Set("Authorization", "Bearer "+b.callerJWT)
	case credOpaque:
		t.header.Set("Authorization", "Bearer "+b.opaqueToken)
	}
	if p.forwardAuth {
		t.header.Set("X-Original-URI", "/app")
	}
	if err := t.check(ctx); err != nil {
		return nil, proc.failure(fmt.Errorf("peer %s: the first request: %w", p.name, err))
	}
	return t, nil
}

// peerEnv is a peer command's environment: where everything is.
func (b *bench) peerEnv(addr string) []string {
	env := []string{
		"AUTHGATE_BENCH_LISTEN=" + addr,
		"AUTHGATE_BENCH_URL=http://" + addr,
		"AUTHGATE_BENCH_BACKEND=" + b.backend.URL,
		"AUTHGATE_BENCH_ISSUER=" + b.idp.URL,
		"AUTHGATE_BENCH_OPAQUE_ISSUER=" + b.opaqueIdP.URL,
		"AUTHGATE_BENCH_CLIENT_ID=" + clientID,
		envClientSecret + "=" + clientSecret,
		"AUTHGATE_BENCH_AUDIENCE=" + callerAudience,
		envCookieSecret + "=" + b.cookieSecret,
		"AUTHGATE_BENCH_DIR=" + b.dir,
	}
	if b.redis != nil {
		env = append(env, "AUTHGATE_BENCH_REDIS="+b.redis.URL)
	}
	return env
}
