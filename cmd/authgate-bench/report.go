package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

var resultHeader = []string{"target", "req/s", "× bare", "p50", "p99", "+p99", "CPU/req"}

func resultRow(name string, r result) []string {
	return []string{name, fmt.Sprintf("%.0f", r.rps), fmt.Sprintf("%.2f", r.ratio),
		ms(r.p50), ms(r.p99), signedMs(r.addedP99), us(r.cpu)}
}

var latencyHeader = []string{"target", "req/s", "p50", "p99", "+p99", "CPU/req"}

func latencyRow(name string, r result) []string {
	return []string{name, fmt.Sprintf("%.0f", r.rps), ms(r.p50), ms(r.p99), signedMs(r.addedP99), us(r.cpu)}
}

// summaryHeader is resultHeader with the spread of the ratio over the
// rounds after it: how far to trust it.
var summaryHeader = slices.Insert(slices.Clone(resultHeader), 3, "× range")

// summary is each target's median over the rounds, figure by figure, and
// the range of its ratio.
func (b *bench) summary() [][]string {
	var rows [][]string
	for i, t := range b.targets {
		var rps, ratio []float64
		var p50, p99, added, cpu []time.Duration
		for _, rs := range b.results {
			r := rs[i]
			rps, ratio = append(rps, r.rps), append(ratio, r.ratio)
			p50, p99, added, cpu = append(p50, r.p50), append(p99, r.p99), append(added, r.addedP99), append(cpu, r.cpu)
		}
		row := resultRow(t.name, result{rps: median(rps), ratio: median(ratio),
			p50: median(p50), p99: median(p99), addedP99: median(added), cpu: medianMeasured(cpu)})
		spread := fmt.Sprintf("%.2f–%.2f", slices.Min(ratio), slices.Max(ratio))
		rows = append(rows, slices.Insert(row, 3, spread))
	}
	return rows
}

// costs are what a feature costs, each one mode against another that
// differs from it in that feature alone.
var costs = []struct{ what, on, off string }{
	{"the access log", "memory", "memory-nolog"},
	{"tracing, every request sampled", "memory-tracing", "memory"},
}

// featureCosts are the costs (costOf) of the modes measured.
func (b *bench) featureCosts() []string {
	var out []string
	if of := b.carriedMode(); of != nil {
		if s, ok := b.costOf("carrying a session's bytes, authenticating nothing", "bare-carrying", "bare"); ok {
			out = append(out, s)
		}
		if s, ok := b.costOf("authenticating the session", of.name, "bare-carrying"); ok {
			out = append(out, s)
		}
	}
	for _, c := range costs {
		if s, ok := b.costOf(c.what, c.on, c.off); ok {
			out = append(out, s)
		}
	}
	return out
}

// costOf compares mode onName with offName: the median CPU per request
// the feature what adds, and the share of requests/s it costs.
func (b *bench) costOf(what, onName, offName string) (string, bool) {
	on, off := -1, -1
	for i, t := range b.targets {
		switch t.name {
		case onName:
			on = i
		case offName:
			off = i
		}
	}
	if on < 0 || off < 0 || len(b.results) == 0 {
		return "", false
	}
	var cpu []time.Duration
	var rps []float64
	for _, rs := range b.results {
		if rs[on].cpu >= 0 && rs[off].cpu >= 0 {
			cpu = append(cpu, rs[on].cpu-rs[off].cpu)
		}
		rps = append(rps, 1-rs[on].ratio/rs[off].ratio)
	}
	c, r := median(cpu), median(rps)
	cpuText := signedUs(c) + " CPU per request"
	if len(cpu) == 0 {
		cpuText = "CPU not measured"
	}
	s := fmt.Sprintf("%s (%s against %s, median over rounds): %s, %.0f%% of requests/s",
		what, onName, offName, cpuText, 100*r)
	if (len(cpu) > 0 && c <= 0) || r <= 0 {
		s += " (below the noise of this run)"
	}
	return s, true
}

// nameWidth fits the longest target name.
func (b *bench) nameWidth() int {
	w := 12
	for _, t := range b.targets {
		w = max(w, len(t.name))
	}
	return w
}

func (b *bench) printSummary() {
	fmt.Fprintf(b.out, "\nsummary: median over %s\n", rounds(len(b.results)))
	tw := newTextTable(b.out, b.nameWidth(), summaryHeader)
	for _, r := range b.summary() {
		tw.row(r)
	}
	for _, s := range b.featureCosts() {
		fmt.Fprintf(b.out, "cost of %s\n", s)
	}
}

func (b *bench) scaleRows() [][]string {
	s := b.scale
	verdict := "met"
	if s.rss.rss > rssTarget {
		verdict = "NOT met"
	}
	return [][]string{
		{"sessions created in Redis (session.Manager.Create)", fmt.Sprintf("%d in %s", s.sessions, s.create.Round(time.Millisecond))},
		{"Redis used_memory per session", fmt.Sprintf("%d bytes", s.perSession)},
		{fmt.Sprintf("distinct sessions served once each (%d connections)", b.opts.concurrency), fmt.Sprintf("%d in %s", s.served, s.serve.Round(time.Millisecond))},
		{"gateway RSS (VmRSS) after serving them", fmt.Sprintf("%.1f MiB (target ≤ %d MiB: %s)", mib(s.rss.rss), rssTarget>>20, verdict)},
		{"of which anonymous (RssAnon: heap, stacks, runtime)", fmt.Sprintf("%.1f MiB", mib(s.rss.anon))},
		{"of which the binary's pages (RssFile: shared, reclaimable)", fmt.Sprintf("%.1f MiB", mib(s.rss.file))},
	}
}

func (b *bench) printScale() {
	fmt.Fprintln(b.out, "\nsessions at scale (a fresh Redis gateway)")
	tw := newTextTable(b.out, 52, []string{"", ""})
	for _, r := range b.scaleRows() {
		tw.row(r)
	}
}

func (b *bench) coldStartRows() [][]string {
	var rows [][]string
	for _, t := range b.targets {
		if t.coldStart > 0 {
			rows = append(rows, []string{t.name, ms(t.coldStart)})
		}
	}
	if b.scale != nil {
		rows = append(rows, []string{"sessions-at-scale (redis)", ms(b.scale.coldStart)})
	}
	return rows
}

func (b *bench) printColdStarts() {
	fmt.Fprintln(b.out, "\ncold start: exec of authgate to the first /readyz 200")
	tw := newTextTable(b.out, 26, []string{"gateway", "cold start"})
	for _, r := range b.coldStartRows() {
		tw.row(r)
	}
}

// textTable prints aligned rows as they come: the widths are fixed by the
// header.
type textTable struct {
	w      io.Writer
	widths []int
}

// newTextTable prints header, its first column first wide, the others at
// least 9.
func newTextTable(w io.Writer, first int, header []string) *textTable {
	t := &textTable{w: w, widths: make([]int, len(header))}
	for i, h := range header {
		t.widths[i] = max(len([]rune(h)), 9)
	}
	t.widths[0] = first
	if strings.Join(header, "") != "" {
		t.row(header)
	}
	return t
}

func (t *textTable) row(cells []string) {
	var b strings.Builder
	for i, c := range cells {
		pad := max(t.widths[min(i, len(t.widths)-1)]-len([]rune(c)), 0)
		if i == 0 {
			b.WriteString("  " + c + strings.Repeat(" ", pad))
		} else {
			b.WriteString("  " + strings.Repeat(" ", pad) + c)
		}
	}
	fmt.Fprintln(t.w, b.String())
}

// markdown renders the whole run as BENCHMARKS.md.
func (b *bench) markdown() string {
	var m strings.Builder
	m.WriteString("# authgate benchmarks\n\n")
	fmt.Fprintf(&m, "Generated by `%s` on %s.\n\n", b.commandLine(), b.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&m, "Machine: %d CPUs (%s), Linux %s; authgate built with %s, the bench with %s.\n",
		runtime.NumCPU(), cpuModel(), kernel(), b.goVer, runtime.Version())
	fmt.Fprintf(&m, "%d connections per target, %s measured after a %s warm-up, in %s slices alternating with the bare proxy, %s, interleaved and rotated.%s\n\n",
		b.opts.concurrency, b.opts.duration, b.opts.warmup, b.opts.slice, rounds(b.opts.rounds), b.pinNote())
	m.WriteString("**Figures from a 2-core shared machine are noisy**: the load generator, the backend, the\n" +
		"authorization server, Redis and the gateway share the cores with each other (and there with\n" +
		"whatever else runs), and the machine's speed drifts by 20% and more within a minute. Each\n" +
		"ratio is therefore taken against the bare proxy's slices interleaved with the target's own,\n" +
		"within seconds of them; still, two identical gateways differ by up to ±6% in one round.\n" +
		"Trust the medians and the ranges, not a single round; regenerate this file on a quiet\n" +
		"machine before quoting absolute numbers.\n\n")

	m.WriteString("## What is measured\n\n")
	m.WriteString("Everything runs on 127.0.0.1. Each target is its own process in front of the same trivial\n" +
		"backend (200, a 3-byte body, and whether it received `Authorization: Bearer`). Before and after\n" +
		"every run, and on every answer during it, the bench checks that the request really got\n" +
		"through: the backend's 200 with the injected bearer token (forward-auth: 202 with an\n" +
		"`Authorization` header). A target's run is cut into slices (`-slice`), alternating with\n" +
		"slices of the bare proxy (bare, target, target, bare, bare, target, ...), and its ratio is\n" +
		"against those bare slices: a slow minute of the machine hurts both alike. The rounds are\n" +
		"interleaved (every target once per round) and rotated (round 1 starts with the first target\n" +
		"below and goes down the list, round 2 starts with the second and goes up it, ...), so a\n" +
		"target's place in the round and the target before it change from round to round.\n\n")
	about := [][]string{}
	for _, t := range b.targets {
		about = append(about, []string{"`" + t.name + "`", t.about})
	}
	m.WriteString(strings.Replace(mdTable([]string{"target", "what"}, about), "---:", "---", 1))
	m.WriteString("\n- **× bare**: requests/s over the bare proxy's in the same round (the fair baseline: the\n" +
		"  same transport settings as authgate, no authentication). forward-auth makes no backend\n" +
		"  trip, so compare it loosely.\n" +
		"- **bare-carrying** is the bare proxy moving the bytes a session mode moves (the client's\n" +
		"  cookie; to the backend the gateway's bearer token, identity headers and request id; the\n" +
		"  request id back), authenticating nothing: the floor of any gateway that injects a token.\n" +
		"  bare-carrying against bare is the cost of those bytes (HTTP parsing and copying in all three\n" +
		"  processes); the session mode against bare-carrying is the cost of authenticating.\n" +
		"- **× range**: the lowest and highest ratio over the rounds.\n" +
		"- **+p99**: p99 latency added over the bare proxy's in the slices alternating with it. In\n" +
		"  these runs every connection sends its next request as soon as it has an answer, so the\n" +
		"  machine is saturated and latency is mostly queueing; see the latency pass below for what\n" +
		"  a request waits at an ordinary load.\n" +
		"- **CPU/req**: user + system CPU time of the process serving the target (`/proc/PID/stat`)\n" +
		"  over the requests it served. The load generator (Go net/http, keep-alive, one connection\n" +
		"  per worker), the backend and the authorization server run in the bench process, which is\n" +
		"  not counted. Every gateway logs at the default level with the access log on (but\n" +
		"  memory-nolog), to a pipe the bench reads; memory-tracing exports its spans to a receiver\n" +
		"  in the bench process. On a shared machine CPU/req is steadier than\n" +
		"  req/s: it does not depend on who else had the cores.\n\n")

	fmt.Fprintf(&m, "## Summary: median over %s\n\n", rounds(len(b.results)))
	m.WriteString(mdTable(summaryHeader, b.summary()))
	for _, s := range b.featureCosts() {
		m.WriteString("\nCost of " + s + ".\n")
	}
	for r, rs := range b.results {
		fmt.Fprintf(&m, "\n### Round %d\n\n", r+1)
		var rows [][]string
		for i, t := range b.targets {
			rows = append(rows, resultRow(t.name, rs[i]))
		}
		m.WriteString(mdTable(resultHeader, rows))
	}
	if lp := b.latency; lp != nil {
		fmt.Fprintf(&m, "\n## Latency at %.0f requests/s\n\n", lp.rate)
		m.WriteString("Every target at the same fixed rate (a quarter of the bare proxy's median requests/s,\n" +
			"the share of its capacity a gateway is usually run at, unless `-rate` says otherwise),\n" +
			"in an open loop: request i is due i/rate after the start, whatever the answers' pace, and\n" +
			"its latency runs from when it was due, so a target that falls behind shows its queue. The\n" +
			"slices alternate with the bare proxy's as in the rounds, and +p99 is against those. It\n" +
			"rests on the slowest 1% of each target's requests and moves by a few milliseconds from\n" +
			"run to run on a shared machine: compare it with bare-carrying's, which authenticates\n" +
			"nothing.\n\n")
		var rows [][]string
		for i, t := range b.targets {
			rows = append(rows, latencyRow(t.name, lp.rows[i]))
		}
		m.WriteString(mdTable(latencyHeader, rows))
	}
	if b.scale != nil {
		m.WriteString("\n## Sessions at scale\n\n")
		m.WriteString("Copies of a real login's session, written through authgate's own `session.Manager.Create`\n" +
			"with the gateway's config, so the records are what the gateway stores; then a fresh Redis\n" +
			"gateway serves a sample of them, each cookie once, and its resident memory is read. The\n" +
			"session cache runs with its defaults (`ttl` 1s, `max_entries` 1000), so a sample of\n" +
			"10,000 fills it.\n\n")
		m.WriteString(mdTable([]string{"", ""}, b.scaleRows()))
	}
	m.WriteString("\n## Cold start\n\nFrom the exec of authgate to its first `/readyz` 200 (the store and the authorization\nserver's metadata reachable).\n\n")
	m.WriteString(mdTable([]string{"gateway", "cold start"}, b.coldStartRows()))
	m.WriteString("\n## Regenerate\n\n```sh\n" + b.commandLine() + "\n```\n\n" +
		"`go run ./cmd/authgate-bench -h` lists the flags, among them `-peer` to drive another gateway\n" +
		"(oauth2-proxy, ...) in the same rounds.\n")
	return m.String()
}

// mdTable renders a Markdown table, the columns after the first aligned
// right (figures).
func mdTable(header []string, rows [][]string) string {
	var b strings.Builder
	line := func(cells []string) { b.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---:"
	}
	sep[0] = "---"
	line(sep)
	for _, r := range rows {
		line(r)
	}
	return b.String()
}

// commandLine is how this run was started, for the report.
func (b *bench) commandLine() string {
	parts := []string{"go run ./cmd/authgate-bench"}
	for _, a := range b.opts.args {
		if strings.ContainsAny(a, " '\"$,;&|*") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func rounds(n int) string {
	if n == 1 {
		return "1 round"
	}
	return fmt.Sprintf("%d rounds", n)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown model"
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func median[T float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianMeasured is the median of the CPU times measured (not negative),
// or -1 when none was.
func medianMeasured(xs []time.Duration) time.Duration {
	xs = slices.DeleteFunc(slices.Clone(xs), func(x time.Duration) bool { return x < 0 })
	if len(xs) == 0 {
		return -1
	}
	return median(xs)
}

// ms formats a latency in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func signedMs(d time.Duration) string {
	return fmt.Sprintf("%+.2f ms", float64(d)/float64(time.Millisecond))
}

// us formats a CPU time per request in microseconds; negative is "n/a"
// (not measured).
func us(d time.Duration) string {
	if d < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func signedUs(d time.Duration) string {
	return fmt.Sprintf("%+.0f µs", float64(d)/float64(time.Microsecond))
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// pinNote says where the processes ran, with -pin.
func (b *bench) pinNote() string {
	if b.opts.pin == nil {
		return ""
	}
	return fmt.Sprintf(" Each target ran on CPU %s, the bench and the rest on the other CPUs (`-pin`).", b.opts.pin.list)
}
