package interop_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// authgateBin is the gateway binary the tests run, built once by TestMain
// from this checkout: the interop tests drive real authgate processes,
// config file, wiring and all.
var authgateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "authgate-interop")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	authgateBin = filepath.Join(dir, "authgate")
	build := exec.Command("go", "build", "-o", authgateBin, "../cmd/authgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "interop: building authgate:", err)
		os.Exit(1)
	}
	code := report.Write(m.Run())
	os.RemoveAll(dir)
	os.Exit(code)
}

// cookieSecret is the test gateways' cookie key.
var cookieSecret = base64.StdEncoding.EncodeToString([]byte("interop-cookie-secret-32-bytes!!"))

// gateway is one running authgate process.
type gateway struct {
	// URL is its public_url, http://127.0.0.1:port.
	URL  string
	logs *syncBuffer
	// config is the path of its config file, env the secrets it reads
	// from the environment: for other authgate commands on it.
	config string
	env    []string
	// cmd is the process; its ProcessState is set once exited is closed.
	cmd    *exec.Cmd
	exited <-chan struct{}
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startGateway runs authgate with the config that body returns for its
// public URL (the YAML after listen and public_url), waits until /readyz
// says the store and the authorization server are there, and stops it at
// the end of the test. Secrets come from the environment, as in
// production: ${COOKIE_SECRET} and ${CLIENT_SECRET}.
func startGateway(t testing.TB, clientSecret string, body func(publicURL string) string) *gateway {
	t.Helper()
	return startGatewayAt(t, freeAddr(t), clientSecret, body)
}

// startGatewayAt is startGateway listening on addr.
func startGatewayAt(t testing.TB, addr, clientSecret string, body func(publicURL string) string) *gateway {
	t.Helper()
	return startGatewayBehind(t, addr, "http://"+addr, clientSecret, body)
}

// startGatewayBehind is startGatewayAt with another public URL: a proxy
// in front of the gateway (its URL field stays the direct address).
func startGatewayBehind(t testing.TB, addr, publicURL, clientSecret string, body func(publicURL string) string) *gateway {
	t.Helper()
	return startGatewayEnv(t, addr, publicURL, clientSecret, nil, body)
}

// startGatewayEnv is startGatewayBehind with more environment variables
// (NAME=value) for the config's ${NAME} references.
func startGatewayEnv(t testing.TB, addr, publicURL, clientSecret string, env []string, body func(publicURL string) string) *gateway {
	t.Helper()
	g := &gateway{URL: "http://" + addr, logs: &syncBuffer{}}
	cfg := fmt.Sprintf("listen: %q\npublic_url: %q\nlog: {level: debug}\n", addr, publicURL) + body(publicURL)
	path := filepath.Join(t.TempDir(), "authgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g.config, g.env = path, append(os.Environ(), "COOKIE_SECRET="+cookieSecret, "CLIENT_SECRET="+clientSecret)
	g.env = append(g.env, env...)
	cmd := exec.Command(authgateBin, "-config", path)
	cmd.Env = g.env
	g.cmd = cmd
	g.exited = startUntilReady(t, cmd, g.logs, "authgate", func() string { return "\nconfig:\n" + cfg }, 20*time.Second, func() bool {
		resp, err := http.Get(g.URL + "/readyz")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		// authgate's own answer: another test server that took the port
		// (freeAddr's is free only until someone binds it) answers 200 too.
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"upstreams"`)
	})
	return g
}

// startUntilReady starts cmd with its output in out, stops it when the
// test ends (SIGTERM, then a kill), and waits up to wait for ready. If the
// process exits first, the wait runs out, or the test fails, its output and
// extra() (read then) are in the test log. The channel it returns is closed
// when the process has exited.
func startUntilReady(t testing.TB, cmd *exec.Cmd, out *syncBuffer, name string, extra func() string, wait time.Duration, ready func() bool) <-chan struct{} {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s%s", name, out, extra())
		}
	})
	deadline := time.Now().Add(wait)
	for {
		select {
		case <-done:
			t.Fatalf("%s exited at start-up:\n%s%s", name, out, extra())
		default:
		}
		if ready() {
			return done
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s:\n%s", name, wait, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Logs returns what the gateway logged so far.
func (g *gateway) Logs() string { return g.logs.String() }

// logLines returns the log lines containing every one of subs, waiting up
// to a second for at least one: the process writes its log through a pipe,
// so a line may trail the response it belongs to.
func (g *gateway) logLines(subs ...string) []string {
	deadline := time.Now().Add(time.Second)
	for {
		if l := g.logLinesNow(subs...); len(l) > 0 || time.Now().After(deadline) {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logLinesNow is logLines without waiting.
func (g *gateway) logLinesNow(subs ...string) []string {
	var out []string
	for l := range strings.SplitSeq(g.Logs(), "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }

// backend is the protected application: it answers with the bearer token
// and identity headers it received, and records them.
type backend struct {
	URL  string
	mu   sync.Mutex
	last http.Header
	n    int
}

func newBackend(t testing.TB) *backend {
	b := &backend{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.last, b.n = r.Header.Clone(), b.n+1
		b.mu.Unlock()
		fmt.Fprintf(w, "hello %s", r.Header.Get("X-Forwarded-User"))
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	b.URL = "http://" + ln.Addr().String()
	return b
}

// lastHeader returns the headers of the backend's last request.
func (b *backend) lastHeader(t testing.TB) http.Header {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last == nil {
		t.Fatal("the backend received no request")
	}
	return b.last
}

func (b *backend) count() int { b.mu.Lock(); defer b.mu.Unlock(); return b.n }

// browser is a cookie-keeping client that asks for HTML, as a browser's
// navigation does, and follows no redirect by itself.
type browser struct{ *http.Client }

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{&http.Client{
		Jar:           jar,
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     htmlTransport{},
	}}
}

// htmlTransport asks for HTML, as a browser's navigation does, through
// base (nil: http.DefaultTransport).
type htmlTransport struct{ base http.RoundTripper }

func (h htmlTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Accept") == "" {
		r.Header.Set("Accept", "text/html,application/xhtml+xml")
	}
	if h.base == nil {
		return http.DefaultTransport.RoundTrip(r)
	}
	return h.base.RoundTrip(r)
}

// get fetches u and returns the answer with its body read.
func (b *browser) get(t testing.TB, u string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.do(t, req)
}

func (b *browser) do(t testing.TB, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := b.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, string(body)
}
