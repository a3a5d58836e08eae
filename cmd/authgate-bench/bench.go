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
	"runtime"
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

	targets []*target    // targets[0] is the bare proxy
	results [][]result   // [round][target]
	latency *latencyPass // nil: not run
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
	ratio    float64       // rps / the bare proxy's rps in the slices paired with it
	addedP99 time.Duration // p99 - the bare proxy's p99 in those slices
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
	if err := b.latencyPass(ctx); err != nil {
		return err
	}
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
	if b.opts.pin != nil {
		if err := b.opts.pin.confineSelf(); err != nil {
			return err
		}
		runtime.GOMAXPROCS(b.opts.pin.rest.Count())
	}
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
	proc, err := b.startChild(name+" proxy", b.opts.pin.target(exec.Command(self, args...)), false)
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

// round measures every target once, each paired with the bare proxy, and
// prints the round's rows. Round r starts at target 1+r (mod the number
// of targets but bare) and goes on in order, every other round
// backwards, so a target's place in the round changes from round to
// round.
//
// A target's ratio and added p99 are against the bare proxy's slices
// interleaved with its own (see pair), not against one bare run of the
// round: on a shared machine the speed drifts by 20% and more within a
// minute, and only a comparison made within seconds cancels that. The
// bare row is all of the round's bare slices together, so a target's
// requests/s over the bare row's is not its ratio.
func (b *bench) round(ctx context.Context, r int) error {
	n := len(b.targets)
	fmt.Fprintf(b.out, "\nround %d of %d (%d connections, %s per target after a %s warm-up, in %s slices alternating with the bare proxy, from %s)\n",
		r+1, b.opts.rounds, b.opts.concurrency, b.opts.duration, b.opts.warmup, b.opts.slice, b.targets[1+r%(n-1)].name)
	order := make([]int, n-1)
	for k := range order {
		order[k] = 1 + (r+k)%(n-1)
		if r%2 == 1 { // every other round backwards: a new predecessor too
			order[k] = 1 + ((r-k)%(n-1)+(n-1))%(n-1)
		}
	}
	rs, err := b.pairAll(ctx, order, 0)
	if err != nil {
		return fmt.Errorf("round %d: %w", r+1, err)
	}
	tw := newTextTable(b.out, b.nameWidth(), resultHeader)
	for i, t := range b.targets {
		tw.row(resultRow(t.name, rs[i]))
	}
	b.results = append(b.results, rs)
	return nil
}

// pairAll measures the targets at the indexes order names (every one but
// bare) in that order, each paired with the bare proxy (see pair), as fast
// as they answer or at rate requests/s when rate > 0. The rows are as
// b.targets: a target's figures with its ratio and +p99 against its own
// bare slices, and bare's row all the bare slices together.
func (b *bench) pairAll(ctx context.Context, order []int, rate float64) ([]result, error) {
	rs := make([]result, len(b.targets))
	var bare sample
	for _, i := range order {
		base, own, err := b.pair(ctx, b.targets[0], b.targets[i], rate)
		if err != nil {
			return nil, err
		}
		r, br := own.result(), base.result()
		r.ratio, r.addedP99 = r.rps/br.rps, r.p99-br.p99
		rs[i] = r
		bare.add(base)
	}
	rs[0] = bare.result()
	rs[0].ratio = 1
	return rs, nil
}

// pair measures t against base: both checked and warmed up (t first, so
// that base's first slice does not follow a switch when t's first one
// does), then driven for the run's duration each (as fast as they answer,
// or at rate requests/s when rate > 0) in slices of about -slice, in the
// order of sliceOrder, and checked again. A failure names the target it
// happened on.
func (b *bench) pair(ctx context.Context, base, t *target, rate float64) (sample, sample, error) {
	var got [2]sample
	both := [2]*target{base, t}
	for _, x := range [2]*target{t, base} {
		if err := x.check(ctx); err != nil {
			return got[0], got[1], x.proc.failure(fmt.Errorf("%s, before the run: %w", x.name, err))
		}
		if _, err := x.drive(ctx, b.opts.concurrency, b.opts.warmup); err != nil {
			return got[0], got[1], x.proc.failure(fmt.Errorf("%s, warm-up: %w", x.name, err))
		}
	}
	order := sliceOrder(b.opts.duration, b.opts.slice)
	per := 2 * b.opts.duration / time.Duration(len(order))
	for _, j := range order {
		s, err := b.slice(ctx, both[j], per, rate)
		if err != nil {
			return got[0], got[1], both[j].proc.failure(fmt.Errorf("%s: %w", both[j].name, err))
		}
		got[j].add(s)
	}
	for _, x := range both {
		if err := x.check(ctx); err != nil {
			return got[0], got[1], x.proc.failure(fmt.Errorf("%s, after the run: %w", x.name, err))
		}
	}
	return got[0], got[1], nil
}

// sliceOrder is which of a pair (0 base, 1 target) drives each slice, for
// d each cut into slices of about slice: 0 1 1 0 0 1 1 0 ..., an even
// number of slices each, so that both have the same mean time (a steady
// drift of the machine's speed cancels) and as many slices straight
// after a switch.
func sliceOrder(d, slice time.Duration) []int {
	n := max(1, int((d+slice/2)/slice))
	n += n % 2
	order := make([]int, 2*n)
	for k := range order {
		order[k] = (k + k/2) % 2
	}
	return order
}

// slice drives t for d (at rate, if > 0), with its process's CPU time
// read before and after.
func (b *bench) slice(ctx context.Context, t *target, d time.Duration, rate float64) (sample, error) {
	var cpu0, cpu1 time.Duration
	var cpuErr error
	if t.pid > 0 {
		cpu0, cpuErr = cpuTime(t.pid)
	}
	run, err := t.load(ctx, b.opts.concurrency, d, rate)
	if err != nil {
		return sample{}, err
	}
	s := sample{measured: run, cpu: -1}
	if t.pid > 0 && cpuErr == nil {
		if cpu1, cpuErr = cpuTime(t.pid); cpuErr == nil {
			s.cpu = cpu1 - cpu0
		}
	}
	return s, nil
}

// sample is what some slices of one target measured together: requests,
// the time they took, their latencies, and its process's CPU time
// (negative: not measured in every slice).
type sample struct {
	measured
	cpu time.Duration
}

func (s *sample) add(o sample) {
	s.requests += o.requests
	s.elapsed += o.elapsed
	s.latencies = append(s.latencies, o.latencies...)
	if s.cpu < 0 || o.cpu < 0 {
		s.cpu = -1
	} else {
		s.cpu += o.cpu
	}
}

// result turns the sample into a row's figures (ratio and added p99 are
// the caller's).
func (s sample) result() result {
	slices.Sort(s.latencies)
	res := result{requests: s.requests, p50: s.percentile(0.50), p99: s.percentile(0.99), cpu: -1}
	if s.elapsed > 0 {
		res.rps = float64(s.requests) / s.elapsed.Seconds()
	}
	if s.cpu >= 0 && s.requests > 0 {
		res.cpu = s.cpu / time.Duration(s.requests)
	}
	return res
}

// latencyPass is every target's latency at one fixed rate, well below
// what the bare proxy can carry: what a request waits at an ordinary load,
// where the throughput runs measure a queue (at saturation, p99 is
// mostly the time spent waiting behind the other connections).
type latencyPass struct {
	rate float64
	rows []result // as targets
}

// latencyPass measures every target at -rate requests/s (default: a
// quarter of the bare proxy's median requests/s, about the utilisation a
// gateway is run at), each paired with the bare proxy in alternating
// slices as in the rounds.
func (b *bench) latencyPass(ctx context.Context) error {
	rate := b.opts.rate
	if rate < 0 {
		return nil
	}
	if rate == 0 {
		var bare []float64
		for _, rs := range b.results {
			bare = append(bare, rs[0].rps)
		}
		rate = median(bare) / 4
	}
	fmt.Fprintf(b.out, "\nlatency at %.0f requests/s (open loop, %s per target in %s slices alternating with the bare proxy)\n",
		rate, b.opts.duration, b.opts.slice)
	order := make([]int, len(b.targets)-1)
	for k := range order {
		order[k] = k + 1
	}
	rows, err := b.pairAll(ctx, order, rate)
	if err != nil {
		return fmt.Errorf("latency at %.0f/s: %w", rate, err)
	}
	lp := &latencyPass{rate: rate, rows: rows}
	tw := newTextTable(b.out, b.nameWidth(), latencyHeader)
	for i, t := range b.targets {
		tw.row(latencyRow(t.name, lp.rows[i]))
	}
	b.latency = lp
	return nil
}
