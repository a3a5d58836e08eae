package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// The bench re-executes its own binary as the bare proxy: here, the
	// test binary.
	if (len(os.Args) == 4 || len(os.Args) == 5) && os.Args[1] == bareProxyFlag {
		os.Exit(serveBareProxy(os.Args[2], os.Args[3], strings.Join(os.Args[4:], "")))
	}
	os.Exit(m.Run())
}

// TestWholeRun runs the tool end to end for a moment (authgate built from
// this checkout, a real redis-server) and checks that every mode got a
// ratio to the bare proxy, that the report has every section, and that no
// token or cookie reached the output.
func TestWholeRun(t *testing.T) {
	md := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	var stdout, stderr bytes.Buffer
	args := []string{"-d", "300ms", "-slice", "100ms", "-warmup", "100ms", "-rounds", "1", "-c", "10", "-sessions", "1000", "-sample", "200", "-o", md}
	if code := run(t.Context(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit status %d, want 0; stdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	out := stdout.String()
	_, summary, ok := strings.Cut(out, "summary: median over 1 round")
	if !ok {
		t.Fatalf("no summary in the output:\n%s", out)
	}
	for _, name := range append([]string{"bare", "bare-carrying"}, modeNames()...) {
		ratio, ok := ratioOf(summary, name)
		if !ok || ratio <= 0 {
			t.Errorf("summary: no ratio for %s, want one > 0:\n%s", name, summary)
		}
	}
	for _, want := range []string{"cost of the access log", "cost of tracing", "cost of carrying a session's bytes", "cost of authenticating the session (redis against bare-carrying", "Redis used_memory per session", "gateway RSS", "cold start", "latency at "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	_, latency, _ := strings.Cut(out, "latency at ")
	for _, name := range append([]string{"bare", "bare-carrying"}, modeNames()...) {
		if rps, ok := ratioOf(latency, name); !ok || rps <= 0 { // the column after the name: req/s
			t.Errorf("latency pass: no requests/s for %s:\n%s", name, latency)
		}
	}
	report, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Summary", "### Round 1", "## Sessions at scale", "## Cold start", "## Latency at ", "noisy", "| forward-auth |", "| `bare-carrying` |"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("%s lacks %q", md, want)
		}
	}
	// A JWT starts with "eyJ" (base64 of `{"`); a session cookie would be
	// "_authgate=".
	for _, text := range []string{out, stderr.String(), string(report)} {
		for _, secret := range []string{"eyJ", "_authgate=", "Bearer ey"} {
			if strings.Contains(text, secret) {
				t.Errorf("the output shows a token or cookie (%q)", secret)
			}
		}
	}
}

func modeNames() []string {
	var names []string
	for _, m := range modes {
		names = append(names, m.name)
	}
	return names
}

// ratioOf finds the row of name in a text table and returns its third
// column (× bare in the rounds, req/s in the latency pass); the first
// table with such a row counts.
func ratioOf(table, name string) (float64, bool) {
	for line := range strings.SplitSeq(table, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == name {
			r, err := strconv.ParseFloat(strings.TrimSuffix(f[2], "µs"), 64)
			return r, err == nil
		}
	}
	return 0, false
}

// TestVerify: an answer counts only when it is the backend's 200 with the
// injected token (forward-auth: 202 with Authorization); a login redirect
// in particular is a failure, not a fast answer.
func TestVerify(t *testing.T) {
	backendOK := http.Header{hdrBackend: {"1"}, hdrBearer: {"1"}}
	tests := []struct {
		name        string
		forwardAuth bool
		status      int
		header      http.Header
		wantErr     string
	}{
		{"backend with token", false, 200, backendOK, ""},
		{"login redirect", false, 302, http.Header{"Location": {"http://127.0.0.1:1/authorize?state=x"}}, "a login"},
		{"401", false, 401, nil, "got status 401"},
		{"200 not from the backend", false, 200, nil, "did not come from"},
		{"no token at the backend", false, 200, http.Header{hdrBackend: {"1"}, hdrBearer: {"0"}}, "no Authorization"},
		{"forward-auth 202", true, 202, http.Header{"Authorization": {"Bearer t"}}, ""},
		{"forward-auth 202 without token", true, 202, nil, "no Authorization"},
		{"forward-auth 401", true, 401, nil, "want 202"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := &target{forwardAuth: tt.forwardAuth, bearer: true}
			err := tg.verify(&http.Response{StatusCode: tt.status, Header: tt.header})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v, want an error containing %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "state="):
				t.Errorf("the error shows the redirect's query: %v", err)
			}
		})
	}
}

func TestParsePeer(t *testing.T) {
	p, err := parsePeer("name=o2p,login=yes,token=jwt,bearer=no,cmd=exec gw --a=1,b=2")
	if err != nil {
		t.Fatal(err)
	}
	if p.name != "o2p" || p.login != "yes" || p.token != credJWT || p.bearer || p.cmd != "exec gw --a=1,b=2" {
		t.Errorf("got %+v, want name o2p, login yes, token jwt, bearer false and the whole cmd", p)
	}
	p, err = parsePeer("name=x,url=http://127.0.0.1:1/app,login=http://127.0.0.1:1/start")
	if err != nil || p.login != "http://127.0.0.1:1/start" || !p.bearer {
		t.Errorf("got %+v, %v; want login at the URL given and bearer required", p, err)
	}
	for _, bad := range []string{"url=http://x/", "name=x", "name=x,url=u,colour=red", "name=x,url=u,token=basic"} {
		if _, err := parsePeer(bad); err == nil {
			t.Errorf("parsePeer(%q): got no error", bad)
		}
	}
}

// TestDriveAtHoldsTheRateAndCountsTheQueue: the open loop sends at the
// rate asked whatever the answers' pace, and a target slower than the
// rate shows its queue in the latencies (measured from when a request was
// due), where the closed loop would hide it.
func TestDriveAtHoldsTheRateAndCountsTheQueue(t *testing.T) {
	var slow atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			time.Sleep(20 * time.Millisecond)
		}
		w.Header().Set(hdrBackend, "1")
		w.Header().Set(hdrBearer, "1")
	}))
	defer srv.Close()
	tg := &target{name: "t", url: srv.URL, header: http.Header{}, bearer: true, client: newLoadClient(4)}

	m, err := tg.load(t.Context(), 4, time.Second, 200)
	if err != nil {
		t.Fatal(err)
	}
	if m.requests < 180 || m.requests > 201 {
		t.Errorf("a fast target at 200/s for 1s: %d requests, want about 200", m.requests)
	}
	if p := m.percentile(0.5); p > 10*time.Millisecond {
		t.Errorf("a fast target at 200/s: p50 %v, want well under 10ms", p)
	}

	// One worker, 20 ms an answer (50/s at most), asked for 100/s: the
	// requests queue, and the last ones were due long before they went.
	slow.Store(true)
	m, err = tg.load(t.Context(), 1, time.Second, 100)
	if err != nil {
		t.Fatal(err)
	}
	if p := m.percentile(0.99); p < 200*time.Millisecond {
		t.Errorf("a target at half the rate asked: p99 %v, want the queue (hundreds of ms)", p)
	}
	closed, err := tg.drive(t.Context(), 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if p := closed.percentile(0.99); p > 100*time.Millisecond {
		t.Errorf("the closed loop on the same target: p99 %v, want about one answer's 20ms", p)
	}
}

// TestPairAlternates: the slices of a pair go base, t, t, base, ..., each
// target driven for the duration in all.
func TestPairAlternates(t *testing.T) {
	var order []string
	var mu sync.Mutex
	mk := func(name string) *target {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if len(order) == 0 || order[len(order)-1] != name {
				order = append(order, name)
			}
			mu.Unlock()
			w.Header().Set(hdrBackend, "1")
			w.Header().Set(hdrBearer, "1")
		}))
		t.Cleanup(srv.Close)
		return &target{name: name, url: srv.URL, header: http.Header{}, bearer: true, client: newLoadClient(1)}
	}
	base, tg := mk("base"), mk("t")
	b := &bench{opts: options{concurrency: 1, duration: 400 * time.Millisecond, slice: 100 * time.Millisecond}}
	bs, ts, err := b.pair(t.Context(), base, tg, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Who served, runs of one merged: the checks (t, then base; warm-up
	// 0s sends nothing), the slices base, t, t, base, base, t, t, base
	// (sliceOrder), and the checks again (base, t).
	want := "t base t base t base t"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	for _, s := range []sample{bs, ts} {
		if s.elapsed < 350*time.Millisecond || s.elapsed > 600*time.Millisecond {
			t.Errorf("a target was driven for %v in all, want about 400ms", s.elapsed)
		}
	}
}

// TestSliceOrder: both of a pair get an even number of slices, as many
// each, the same mean position (a steady drift cancels), and as many
// slices straight after a switch.
func TestSliceOrder(t *testing.T) {
	for _, d := range []time.Duration{300 * time.Millisecond, 1 * time.Second, 3 * time.Second, 6 * time.Second, 7 * time.Second} {
		order := sliceOrder(d, time.Second)
		var count, sum, afterSwitch [2]int
		for k, j := range order {
			count[j]++
			sum[j] += k
			if k > 0 && order[k-1] != j {
				afterSwitch[j]++
			}
		}
		if count[0] != count[1] || count[0]%2 != 0 || sum[0] != sum[1] || afterSwitch[0] != afterSwitch[1] {
			t.Errorf("d %v: order %v: slices %v, position sums %v, after a switch %v; want equal, even counts, equal sums and as many after a switch", d, order, count, sum, afterSwitch)
		}
	}
	if got := fmt.Sprint(sliceOrder(4*time.Second, time.Second)); got != "[0 1 1 0 0 1 1 0]" {
		t.Errorf("sliceOrder(4s, 1s) = %s, want [0 1 1 0 0 1 1 0]", got)
	}
}

func TestParsePin(t *testing.T) {
	for _, bad := range []string{"x", "1-0", "-1", "4096"} {
		if _, err := parsePin(bad); err == nil {
			t.Errorf("parsePin(%q): got no error", bad)
		}
	}
	if runtime.NumCPU() < 2 {
		return
	}
	all := "0-" + strconv.Itoa(runtime.NumCPU()-1)
	if _, err := parsePin(all); err == nil || !strings.Contains(err.Error(), "leaves no CPU") {
		t.Errorf("parsePin(%q), every CPU: got %v, want an error saying none is left", all, err)
	}
	p, err := parsePin("1")
	if err != nil {
		t.Fatal(err)
	}
	if !p.targets.IsSet(1) || p.targets.Count() != 1 || p.rest.IsSet(1) || p.rest.Count() != runtime.NumCPU()-1 {
		t.Errorf("parsePin(1): targets %v, rest %v", p.targets, p.rest)
	}
	cmd := p.target(exec.Command("true", "a"))
	if strings.Join(cmd.Args, " ") != "taskset -c 1 "+cmd.Args[3]+" a" || !strings.HasSuffix(cmd.Args[3], "true") {
		t.Errorf("pinned command %q, want taskset -c 1 .../true a", cmd.Args)
	}
}
