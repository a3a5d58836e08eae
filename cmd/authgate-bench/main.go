// Command authgate-bench is authgate's own side-by-side benchmark. On one
// machine, all on 127.0.0.1, it starts a trivial backend, a bare
// httputil.ReverseProxy with authgate's transport settings (the fair
// baseline, in a process of its own), in-process authorization servers
// (upstream/upstreamtest), a private redis-server and the real authgate
// binary in each mode, one process per mode. It drives each with a
// keep-alive load generator at fixed concurrency in interleaved rounds,
// verifying that every request really reached the backend with the
// injected token, and prints requests/s, p50, p99, CPU per request of the
// serving process and the ratio to the bare proxy in slices interleaved
// with the target's own; then a latency pass at a fixed rate. Then
// sessions at scale (Redis memory per session, gateway RSS) and cold start.
//
//	go run ./cmd/authgate-bench                 # 3 rounds of 10s per target
//	go run ./cmd/authgate-bench -o BENCHMARKS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if (len(os.Args) == 4 || len(os.Args) == 5) && os.Args[1] == bareProxyFlag {
		os.Exit(serveBareProxy(os.Args[2], os.Args[3], strings.Join(os.Args[4:], "")))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command-line flags.
type options struct {
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	slice       time.Duration
	rate        float64
	rounds      int
	sessions    int
	sample      int
	output      string
	authgate    string
	modes       []string
	peers       []peerSpec
	backendAddr string
	idpAddr     string
	pin         *cpuPlan // nil: every process on every CPU
	args        []string // as given, for the report
}

// run is main without the process: it returns the exit status. Every
// child process is stopped before it returns, also when ctx ends (Ctrl-C).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "authgate-bench: %v\n", err)
		return 2
	}
	b := &bench{opts: opts, out: stdout, progress: stderr}
	err = b.run(ctx)
	b.close()
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "authgate-bench: interrupted; every process it started is stopped")
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "authgate-bench: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{args: args}
	fs := flag.NewFlagSet("authgate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.concurrency, "c", 50, "concurrent keep-alive connections (workers) per target")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration of each run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each run")
	fs.DurationVar(&o.slice, "slice", time.Second, "each target's run is cut into slices this long, alternating with slices of the bare proxy (its ratio's baseline)")
	fs.Float64Var(&o.rate, "rate", 0, "requests/s of the latency pass, every target at the same fixed rate; 0: a quarter of the bare proxy's median requests/s; negative: no latency pass")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds: every target once per round, each round starting one target later, every other one backwards")
	fs.IntVar(&o.sessions, "sessions", 100000, "sessions to create in Redis for the sessions-at-scale figures; 0 skips them")
	fs.IntVar(&o.sample, "sample", 10000, "of those, how many distinct cookies the gateway serves once each before its RSS is read")
	fs.StringVar(&o.output, "o", "", "also write the results as Markdown to this file (e.g. BENCHMARKS.md)")
	fs.StringVar(&o.authgate, "authgate", "", "an authgate binary to measure, built from this checkout (sessions at scale writes its records with this checkout's session package); default: go build ./cmd/authgate")
	all := make([]string, len(modes))
	for i, m := range modes {
		all[i] = m.name
	}
	modeList := fs.String("modes", strings.Join(all, ","), "authgate modes to measure, comma-separated (the bare proxy always runs)")
	fs.StringVar(&o.backendAddr, "backend-addr", "127.0.0.1:0", "where the backend listens (a fixed port for a peer started by hand)")
	fs.StringVar(&o.idpAddr, "idp-addr", "127.0.0.1:0", "where the authorization server listens (likewise)")
	fs.Func("pin", "run each measured target on these CPUs (a list such as 1 or 2-3, through taskset) and the bench, its backend, authorization servers and Redis on the others (on 2 cores it did not steady the figures; for larger machines)", func(s string) error {
		var err error
		o.pin, err = parsePin(s)
		return err
	})
	fs.Func("peer", "another gateway to drive in the same rounds, repeatable; see below", func(s string) error {
		p, err := parsePeer(s)
		o.peers = append(o.peers, p)
		return err
	})
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: go run ./cmd/authgate-bench [flags]\n\n"+
			"Measures authgate in each mode against a bare httputil.ReverseProxy, all on this\n"+
			"machine (127.0.0.1): requests/s, p50, p99, CPU per request and the ratio to the\n"+
			"bare proxy in slices interleaved with each target's; then every target's latency\n"+
			"at one fixed rate, sessions at scale and cold start. Needs\n"+
			"redis-server on PATH and a Go toolchain (it builds ./cmd/authgate); run it from\n"+
			"the checkout. Results go to stdout, progress to stderr.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\nModes: ")
		for _, m := range modes {
			fmt.Fprintf(stderr, "\n  %-14s %s", m.name, m.about)
		}
		fmt.Fprint(stderr, "\n\n"+peerHelp)
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see -h)", fs.Arg(0))
	}
	if o.concurrency < 1 || o.duration <= 0 || o.slice <= 0 || o.warmup < 0 || o.rounds < 1 || o.sessions < 0 || o.sample < 1 {
		return o, errors.New("-c, -d, -slice, -rounds and -sample must be positive, -warmup and -sessions not negative")
	}
	for m := range strings.SplitSeq(*modeList, ",") {
		if m = strings.TrimSpace(m); m == "" {
			continue
		}
		if !isMode(m) {
			return o, fmt.Errorf("-modes: unknown mode %q (want some of %s)", m, strings.Join(all, ","))
		}
		o.modes = append(o.modes, m)
	}
	if len(o.modes) == 0 && len(o.peers) == 0 {
		return o, errors.New("-modes: nothing to measure against the bare proxy (name a mode or a -peer)")
	}
	seen := map[string]bool{"bare": true}
	for _, m := range o.modes {
		seen[m] = true
	}
	for _, p := range o.peers {
		if seen[p.name] {
			return o, fmt.Errorf("-peer: name %q is taken", p.name)
		}
		seen[p.name] = true
	}
	return o, nil
}

func isMode(name string) bool {
	for _, m := range modes {
		if m.name == name {
			return true
		}
	}
	return false
}
