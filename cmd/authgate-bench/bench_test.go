package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
	args := []string{"-d", "300ms", "-warmup", "100ms", "-rounds", "1", "-c", "10", "-sessions", "1000", "-sample", "200", "-o", md}
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
	for _, want := range []string{"cost of the access log", "cost of tracing", "cost of carrying a session's bytes", "cost of authenticating the session (redis against bare-carrying", "Redis used_memory per session", "gateway RSS", "cold start"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	report, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Summary", "### Round 1", "## Sessions at scale", "## Cold start", "noisy", "| forward-auth |", "| `bare-carrying` |"} {
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

// ratioOf finds the row of name in a text table and returns its × bare
// column.
func ratioOf(table, name string) (float64, bool) {
	for line := range strings.SplitSeq(table, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == name {
			r, err := strconv.ParseFloat(f[2], 64)
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
