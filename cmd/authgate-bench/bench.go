package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

// bench is one run of the tool: what it started and what it measured.
type bench struct {
	opts     options
	out      io.Writer // results
	progress io.Writer // what it is doing, and failures

	dir      string // scratch: the authgate binary, config files
	bin      string // the authgate binary
	children []*child

	backend      *backend
	idp          *upstreamtest.Server // JWT access tokens
	opaqueIdP    *upstreamtest.Server // opaque access tokens, introspected
	redis        *redisServer
	cookieSecret string
	callerJWT    string
	opaqueToken  string

	targets []*target  // targets[0] is the bare proxy
	results [][]result // [round][target]
	scale   *scaleResult
	started time.Time
	goVer   string // the toolchain that built authgate
}

// result is one target's figures in one round.
type result struct {
	requests int
	rps      float64
	p50, p99 time.Duration
	cpu      time.Duration // per request; negative: not measured
	ratio    float64       // rps / the bare proxy's rps in the same round
	addedP99 time.Duration // p99 - the bare proxy's p99 in the same round
}

// run sets everything up, measures, and reports. close undoes the set-up,
// whether run succeeded or not.
func (b *bench) run(ctx context.Context) error {
	b.started = time.Now()
	var err error
	if b.dir, err = os.MkdirTemp("", "authgate-bench"); err != nil {
		return err
	}
	if err := b.setUp(ctx); err != nil {
		return err
	}
	for r := range b.opts.rounds {
		if err := b.round(ctx, r); err != nil {
			return err
		}
	}
	b.printSummary()
	if b.opts.sessions > 0 {
		fmt.Fprintf(b.progress, "sessions at scale: creating %d sessions in Redis...\n", b.opts.sessions)
		if b.scale, err = b.sessionsAtScale(ctx, b.opts.sessions, b.opts.sample); err != nil {
			return err
		}
		b.printScale()
	}
	b.printColdStarts()
	if b.opts.output != "" {
		if err := os.WriteFile(b.opts.output, []byte(b.markdown()), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(b.progress, "wrote %s\n", b.opts.output)
	}
	return nil
}

// close stops every child process, newest first, and removes the scratch
// directory.
func (b *bench) close() {
	for _, c := range slices.Backward(b.children) {
		c.stop()
	}
	if b.redis != nil {
		b.redis.client.Close()
	}
	if b.idp != nil {
		b.idp.Close()
	}
	if b.opaqueIdP != nil {
		b.opaqueIdP.Close()
	}
	if b.backend != nil {
		b.backend.close()
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// setUp builds authgate and starts the backend, the authorization
// servers, Redis, the bare proxy, a gateway per mode and the peers.
func (b *bench) setUp(ctx context.Context) error {
	if err := b.buildAuthgate(ctx); err != nil {
		return err
	}
	var err error
	if b.backend, err = startBackend(b.opts.backendAddr); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	idpLn, err := net.Listen("tcp", b.opts.idpAddr)
	if err != nil {
		return fmt.Errorf("authorization server: %w", err)
	}
	b.idp = upstreamtest.NewServer(upstreamtest.Config{Listener: idpLn})
	b.opaqueIdP = upstreamtest.NewServer(upstreamtest.Config{OpaqueAccessTokens: true})
	if err := b.callerTokens(ctx); err != nil {
		return err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	b.cookieSecret = base64.StdEncoding.EncodeToString(secret)
	if b.needsRedis() {
		if b.redis, err = b.startRedis(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintf(b.progress, "backend %s, authorization server %s\n", b.backend.URL, b.idp.URL)

	bare, err := b.bareTarget(ctx)
	if err != nil {
		return err
	}
	b.targets = append(b.targets, bare)
	for _, m := range modes {
		if !slices.Contains(b.opts.modes, m.name) {
			continue
		}
		t, err := b.gatewayTarget(ctx, m)
		if err != nil {
			return fmt.Errorf("mode %s: %w", m.name, err)
		}
		fmt.Fprintf(b.progress, "authgate %-14s ready in %s, request checked\n", m.name, ms(t.coldStart))
		b.targets = append(b.targets, t)
	}
	if of := b.carriedMode(); of != nil {
		c, err := b.carryingTarget(ctx, of)
		if err != nil {
			return fmt.Errorf("bare-carrying: %w", err)
		}
		fmt.Fprintf(b.progress, "bare-carrying (%s's bytes) ready, request checked\n", of.name)
		b.targets = slices.Insert(b.targets, 1, c)
	}
	for _, p := range b.opts.peers {
		t, err := b.peerTarget(ctx, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(b.progress, "peer %s ready, request checked\n", p.name)
		b.targets = append(b.targets, t)
	}
	return nil
}

func (b *bench) needsRedis() bool {
	return b.opts.sessions > 0 || slices.Contains(b.opts.modes, "redis") || len(b.opts.peers) > 0
}

// buildAuthgate builds the gateway from this checkout, unless -authgate
// names a binary.
func (b *bench) buildAuthgate(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err == nil {
		b.goVer = strings.TrimSpace(string(out))
	}
	if b.opts.authgate != "" {
		b.bin = b.opts.authgate
		return nil
	}
	b.bin = filepath.Join(b.dir, "authgate")
	fmt.Fprintln(b.progress, "building authgate...")
	build := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "github.com/authgate/authgate/cmd/authgate")
	build.Stdout, build.Stderr = b.progress, b.progress
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/authgate (run the bench from the authgate checkout): %w", err)
	}
	return nil
}

// bareTarget re-executes this binary as the bare reverse proxy.
func (b *bench) bareTarget(ctx context.Context) (*target, error) {
	return b.startBare(ctx, "bare", "httputil.ReverseProxy with proxy.NewTransport(), no auth: the baseline", "")
}

// startBare starts a bare proxy, carrying what the file carrying names
// (nothing when empty).
func (b *bench) startBare(ctx context.Context, name, about, carrying string) (*target, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{bareProxyFlag, addr, b.backend.URL}
	if carrying != "" {
		args = append(args, carrying)
	}
	proc, err := b.startChild(name+" proxy", exec.Command(self, args...), false)
	if err != nil {
		return nil, err
	}
	t := &target{name: name, about: about, url: "http://" + addr + "/app", header: http.Header{},
		pid: proc.pid(), proc: proc, client: newLoadClient(b.opts.concurrency)}
	if _, err := waitHTTP(ctx, proc, t.url, func(s int) bool { return s == 200 }, time.Now(), 10*time.Second); err != nil {
		return nil, err
	}
	return t, t.check(ctx)
}

// carryingTarget is a bare proxy that carries what the session mode of
// target of carries, authenticating nothing: the client sends the same
// cookies, the backend gets the headers the gateway sent it (the bearer
// token, the identity headers, the request id), the client the headers
// the gateway added to the backend's answer. Against bare it is the cost
// of the bytes any token-injecting gateway moves; against of, the cost of
// authenticating.
func (b *bench) carryingTarget(ctx context.Context, of *target) (*target, error) {
	bare, err := b.targets[0].answer(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("bare: %w", err)
	}
	req := of.header.Clone()
	req.Set(hdrCapture, "1")
	gw, err := of.answer(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", of.name, err)
	}
	c := b.backend.captured.Load()
	if c == nil {
		return nil, errors.New("the backend did not see the gateway's request")
	}
	extra := carried{Request: c.Clone(), Answer: http.Header{}}
	for k, v := range gw {
		if _, ok := bare[k]; !ok {
			extra.Answer[k] = v
		}
	}
	// Only end-to-end headers that describe no particular message.
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Set-Cookie"} {
		delete(extra.Request, k)
		delete(extra.Answer, k)
	}
	data, err := json.Marshal(extra)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(b.dir, "carried.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	t, err := b.startBare(ctx, "bare-carrying", fmt.Sprintf("httputil.ReverseProxy as bare, carrying %s's bytes: its cookie from the client, "+
		"the gateway's headers to the backend (bearer token, identity, request id), its extra answer headers; no auth", of.name), path)
	os.Remove(path) // read at start: the bearer token stays on disk no longer
	if err != nil {
		return nil, err
	}
	t.header, t.bearer = of.header, true
	return t, t.check(ctx)
}

// carriedMode is the session mode bare-carrying copies: redis, else
// memory, else none.
func (b *bench) carriedMode() *target {
	for _, name := range []string{"redis", "memory"} {
		for _, t := range b.targets {
			if t.name == name {
				return t
			}
		}
	}
	return nil
}

// round measures every target once and prints the round's rows. Round r
// starts at target r (mod the count) and goes on in order, every other
// round backwards: a target's place in a round changed its figures by
// more than 10% in some runs (whatever ran before it, the machine's
// state), so over enough rounds every target takes other places and
// follows other targets.
func (b *bench) round(ctx context.Context, r int) error {
	n := len(b.targets)
	fmt.Fprintf(b.out, "\nround %d of %d (%d connections, %s per target after a %s warm-up, from %s)\n",
		r+1, b.opts.rounds, b.opts.concurrency, b.opts.duration, b.opts.warmup, b.targets[r%n].name)
	rs := make([]result, n)
	for k := range n {
		i := (r + k) % n
		if r%2 == 1 { // every other round backwards: a new predecessor too
			i = ((r-k)%n + n) % n
		}
		t := b.targets[i]
		res, err := b.measure(ctx, t)
		if err != nil {
			return t.proc.failure(fmt.Errorf("round %d, %s: %w", r+1, t.name, err))
		}
		rs[i] = res
	}
	tw := newTextTable(b.out, b.nameWidth(), resultHeader)
	for i, t := range b.targets {
		rs[i].ratio = rs[i].rps / rs[0].rps
		rs[i].addedP99 = rs[i].p99 - rs[0].p99
		tw.row(resultRow(t.name, rs[i]))
	}
	b.results = append(b.results, rs)
	return nil
}

// measure checks t, warms it up, drives it for the run's duration with
// its process's CPU time read before and after, and checks it again.
func (b *bench) measure(ctx context.Context, t *target) (result, error) {
	if err := t.check(ctx); err != nil {
		return result{}, fmt.Errorf("before the run: %w", err)
	}
	if _, err := t.drive(ctx, b.opts.concurrency, b.opts.warmup); err != nil {
		return result{}, fmt.Errorf("warm-up: %w", err)
	}
	var cpu0, cpu1 time.Duration
	var cpuErr error
	if t.pid > 0 {
		cpu0, cpuErr = cpuTime(t.pid)
	}
	run, err := t.drive(ctx, b.opts.concurrency, b.opts.duration)
	if err != nil {
		return result{}, err
	}
	if t.pid > 0 && cpuErr == nil {
		cpu1, cpuErr = cpuTime(t.pid)
	}
	if err := t.check(ctx); err != nil {
		return result{}, fmt.Errorf("after the run: %w", err)
	}
	res := result{requests: run.requests, rps: float64(run.requests) / run.elapsed.Seconds(),
		p50: run.percentile(0.50), p99: run.percentile(0.99), cpu: -1}
	if t.pid > 0 && cpuErr == nil && run.requests > 0 {
		res.cpu = (cpu1 - cpu0) / time.Duration(run.requests)
	}
	return res, nil
}
