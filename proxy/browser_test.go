package proxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// The tests in this file drive a real Chromium through ChromeDriver's
// WebDriver API (plain JSON over HTTP, no client library), so that the
// cookie rules under test are a browser's, not net/http/cookiejar's:
// __Host- prefixes, Secure on a loopback origin, SameSite=Lax across a
// cross-site round trip to the authorization server.
//
// They need Debian's chromium and chromium-driver. Without them they are
// skipped, unless AUTHGATE_BROWSER_TESTS=required (as in CI), which turns
// a missing browser into a failure.

func TestBrowserLogin(t *testing.T) {
	wd := startBrowser(t)
	e := newEnv(t, envOptions{idp: upstreamtest.Config{Interactive: true}})
	public := browserGateway(e, nil)

	// Two tabs start a login before either finishes: both must complete.
	wd.navigate(t, public+"/first?x=1")
	first := wd.currentWindow(t)
	second := wd.newTab(t)
	wd.navigate(t, public+"/second")
	for _, win := range []string{first, second} {
		wd.switchTo(t, win)
		if u := wd.url(t); !strings.HasPrefix(u, e.idp.URL+"/authorize") {
			t.Fatalf("before login: browser at %s, want the authorization server's sign-in page", u)
		}
	}
	for _, tc := range []struct{ win, want string }{{second, public + "/second"}, {first, public + "/first?x=1"}} {
		wd.switchTo(t, tc.win)
		wd.fill(t, "#username", "alice")
		wd.fill(t, "#password", "alice-password")
		wd.click(t, "button[type=submit]")
		if u := wd.waitURL(t, func(u string) bool { return u == tc.want }); u != tc.want {
			t.Fatalf("after sign-in: browser at %s, want %s; page: %.300s", u, tc.want, wd.text(t))
		}
		if body := wd.waitText(t, "backend says hello to user-alice"); !strings.Contains(body, "backend says hello to user-alice") {
			t.Fatalf("after sign-in: page %q, want the backend's greeting for alice", body)
		}
	}
	if got := bearer(e.backend.last(t)); got == "" {
		t.Error("the backend received no bearer token")
	}

	// The session cookie as the browser stored it (SECURITY.md 12).
	var sess *wdCookie
	for _, c := range wd.cookies(t) {
		if c.Name == "__Host-_authgate" {
			sess = &c
		}
		if strings.Contains(c.Value, "eyJ") {
			t.Errorf("cookie %s looks like it holds a JWT", c.Name)
		}
	}
	if sess == nil {
		t.Fatalf("the browser holds no __Host-_authgate cookie; it has %v", wd.cookies(t))
	}
	if !sess.Secure || !sess.HTTPOnly || sess.SameSite != "Lax" || sess.Path != "/" || strings.HasPrefix(sess.Domain, ".") {
		t.Errorf("session cookie: got %+v, want Secure, HttpOnly, SameSite=Lax, Path=/, host-only", *sess)
	}

	// Sign out with the confirmation page's button; the old session is
	// gone, and the next visit needs a new login.
	wd.navigate(t, public+"/oauth2/sign_out")
	wd.click(t, "button[type=submit]")
	if u := wd.waitURL(t, func(u string) bool { return !strings.Contains(u, "/oauth2/sign_out") }); strings.Contains(u, "/oauth2/sign_out") {
		t.Fatalf("sign-out: the browser stayed at %s (page: %.200s)", u, wd.text(t))
	}
	for _, c := range wd.cookies(t) {
		if c.Name == "__Host-_authgate" {
			t.Errorf("session cookie still held after sign-out")
		}
	}
	// Back from the server's end_session (a cross-site navigation, which
	// the SameSite=Lax marker survives), the landing says so.
	if body := wd.waitText(t, "You have been signed out."); !strings.Contains(body, "You have been signed out.") {
		t.Errorf("after sign-out: page %q, want \"You have been signed out.\"", body)
	}
	wd.navigate(t, public+"/again")
	if u := wd.url(t); !strings.HasPrefix(u, e.idp.URL) {
		t.Errorf("after sign-out: browser at %s, want the authorization server", u)
	}
}

// browserGateway starts a gateway for the browser tests and returns its
// public URL: http://localhost, with the authorization server at
// http://127.0.0.1: two sites, so the callback is a cross-site navigation,
// as in production. Loopback is a secure context, so the default Secure
// cookies and their __Host- names apply. mutate, when set, changes the
// configs first.
func browserGateway(e *env, mutate func(*proxy.Config, *session.Config, *upstream.Config)) string {
	g := e.gateway(gatewayOptions{mutate: func(pc *proxy.Config, sc *session.Config, uc *upstream.Config) {
		if mutate != nil {
			mutate(pc, sc, uc)
		}
		pc.PublicURL = strings.Replace(pc.PublicURL, "127.0.0.1", "localhost", 1)
		secure := true
		sc.Cookie.Secure = &secure
	}})
	return strings.Replace(g.URL, "127.0.0.1", "localhost", 1)
}

// TestBrowserForbiddenSignOut: the 403 page's button signs out in a real
// browser: its CSP lets the POST's redirect go on to the server's
// end_session, and the user lands on the signed-out page.
func TestBrowserForbiddenSignOut(t *testing.T) {
	wd := startBrowser(t)
	e := newEnv(t, envOptions{idp: upstreamtest.Config{Interactive: true}})
	public := browserGateway(e, func(pc *proxy.Config, _ *session.Config, _ *upstream.Config) {
		pc.Routes[0].Allow = proxy.Allow{Groups: []string{"operators"}}
	})
	wd.navigate(t, public+"/ops")
	wd.fill(t, "#username", "alice")
	wd.fill(t, "#password", "alice-password")
	wd.click(t, "button[type=submit]")
	if body := wd.waitText(t, "Signed in as alice."); !strings.Contains(body, "Access denied") || !strings.Contains(body, "Signed in as alice.") {
		t.Fatalf("after sign-in: page %q, want the 403 page naming alice", body)
	}
	wd.click(t, "button[type=submit]")
	if body := wd.waitText(t, "You have been signed out."); !strings.Contains(body, "You have been signed out.") {
		t.Fatalf("after the 403 page's sign-out: page %q at %s, want the signed-out page", body, wd.url(t))
	}
	if e.idp.Count("end_session") != 1 {
		t.Errorf("end_session called %d times, want 1", e.idp.Count("end_session"))
	}
	for _, c := range wd.cookies(t) {
		if c.Name == "__Host-_authgate" {
			t.Errorf("session cookie still held after sign-out")
		}
	}
}

// TestBrowserPasswordLogin: the password grant's form in a real browser:
// the page loads under its CSP, a wrong password shows the form again, the
// right one lands on the page asked for with a __Host- session cookie.
func TestBrowserPasswordLogin(t *testing.T) {
	wd := startBrowser(t)
	e := newEnv(t, envOptions{idp: passwordIdP})
	public := browserGateway(e, passwordRoute)
	wd.navigate(t, public+"/reports?week=1")
	if u := wd.url(t); !strings.HasPrefix(u, public+"/oauth2/login?rd=") {
		t.Fatalf("without a session: browser at %s, want the login form", u)
	}
	wd.fill(t, "#username", "alice")
	wd.fill(t, "#password", "not-her-password")
	wd.click(t, "button[type=submit]")
	if body := wd.waitText(t, "Invalid username or password."); !strings.Contains(body, "Invalid username or password.") {
		t.Fatalf("wrong password: page %q, want the form with the generic message", body)
	}
	wd.fill(t, "#password", "alice-password")
	wd.click(t, "button[type=submit]")
	want := public + "/reports?week=1"
	if u := wd.waitURL(t, func(u string) bool { return u == want }); u != want {
		t.Fatalf("after sign-in: browser at %s, want %s; page: %.300s", u, want, wd.text(t))
	}
	if body := wd.waitText(t, "backend says hello to user-alice"); !strings.Contains(body, "backend says hello to user-alice") {
		t.Fatalf("after sign-in: page %q, want the backend's greeting for alice", body)
	}
	found := false
	for _, c := range wd.cookies(t) {
		found = found || c.Name == "__Host-_authgate" && c.HTTPOnly && c.Secure
	}
	if !found {
		t.Errorf("no Secure, HttpOnly __Host-_authgate cookie after the password sign-in: %v", wd.cookies(t))
	}
}

// TestBrowserImplicitFragment: the implicit grant's fragment page in a real
// browser: its script (allowed by the CSP nonce) posts the fragment, the
// user lands on the page asked for, and neither the address bar nor the
// history keeps the token.
func TestBrowserImplicitFragment(t *testing.T) {
	wd := startBrowser(t)
	e := newEnv(t, envOptions{idp: implicitIdP(true)})
	public := browserGateway(e, implicitRoute)
	wd.navigate(t, public+"/reports?week=3")
	want := public + "/reports?week=3"
	if u := wd.waitURL(t, func(u string) bool { return u == want }); u != want {
		t.Fatalf("after the implicit sign-in: browser at %s, want %s; page: %.300s", u, want, wd.text(t))
	}
	if body := wd.waitText(t, "backend says hello to user-alice"); !strings.Contains(body, "backend says hello to user-alice") {
		t.Fatalf("after sign-in: page %q, want the backend's greeting for alice", body)
	}
	tok := bearer(e.backend.last(t))
	if h, ok := wdExec(t, wd, "return location.hash").(string); !ok || h != "" {
		t.Errorf("location.hash after sign-in: %q, want empty", h)
	}
	// Near expiry a navigation signs in silently; the server says
	// login_required, and the relay page's POST is answered with a
	// redirect to the server: CSP form-action must allow it (Chromium
	// enforces it on redirects), or the browser would stay on the page.
	e.clock.Advance(9*time.Minute + 30*time.Second)
	e.idp.SetSilentLoginError("login_required")
	wd.navigate(t, public+"/renewed")
	if u := wd.waitURL(t, func(u string) bool { return u == public+"/renewed" }); u != public+"/renewed" {
		t.Fatalf("after the silent attempt and its fallback: browser at %s, want %s/renewed; page: %.200s", u, public, wd.text(t))
	}
	if bearer(e.backend.last(t)) == tok {
		t.Errorf("after the renewal the backend still got the old token")
	}
	tok = bearer(e.backend.last(t))
	// Back to the callback's history entry: replaceState left it without
	// the fragment.
	wdCall(t, http.MethodPost, wd.base+"/back", map[string]any{}, nil)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if u := wd.url(t); strings.Contains(u, "access_token") || strings.Contains(u, tok) {
			t.Fatalf("the history holds the token: %s", u)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wdExec runs script in the page and returns its value.
func wdExec(t *testing.T, wd *webDriver, script string) any {
	t.Helper()
	var v any
	wdCall(t, http.MethodPost, wd.base+"/execute/sync", map[string]any{"script": script, "args": []any{}}, &v)
	return v
}

// webDriver is one ChromeDriver session.
type webDriver struct {
	base string // http://127.0.0.1:port/session/id
}

// startBrowser starts ChromeDriver and a headless Chromium session, both
// stopped when the test ends.
func startBrowser(t *testing.T) *webDriver {
	t.Helper()
	chromium, err1 := exec.LookPath("chromium")
	driver, err2 := exec.LookPath("chromedriver")
	if err1 != nil || err2 != nil {
		msg := "chromium or chromedriver not found (apt-get install chromium chromium-driver)"
		if os.Getenv("AUTHGATE_BROWSER_TESTS") == "required" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; CI runs this test")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(driver, "--port="+strconv.Itoa(port), "--allowed-ips=127.0.0.1")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromedriver: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	root := "http://127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(root + "/status")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromedriver did not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": chromium,
			// The machine's network is closed: without the background
			// networking flags Chromium stalls on refused connections.
			"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
				"--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir()},
		},
	}}}
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	wdCall(t, http.MethodPost, root+"/session", caps, &sess)
	wd := &webDriver{base: root + "/session/" + sess.SessionID}
	t.Cleanup(func() { wdCall(t, http.MethodDelete, wd.base, nil, nil) })
	wdCall(t, http.MethodPost, wd.base+"/timeouts", map[string]any{"pageLoad": 15000, "implicit": 5000}, nil)
	return wd
}

// wdCall sends one WebDriver command and decodes its "value" into out.
func wdCall(t *testing.T, method, url string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("webdriver %s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webdriver %s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	if out == nil {
		return
	}
	var env struct{ Value json.RawMessage }
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("webdriver %s %s: %v", method, url, err)
	}
	if err := json.Unmarshal(env.Value, out); err != nil {
		t.Fatalf("webdriver %s %s: decode %s: %v", method, url, env.Value, err)
	}
}

func (wd *webDriver) navigate(t *testing.T, u string) {
	t.Helper()
	wdCall(t, http.MethodPost, wd.base+"/url", map[string]string{"url": u}, nil)
}

func (wd *webDriver) url(t *testing.T) string {
	t.Helper()
	var u string
	wdCall(t, http.MethodGet, wd.base+"/url", nil, &u)
	return u
}

// waitURL waits up to 10s for the browser's URL to satisfy ok (a click
// returns before the navigation it starts has finished) and returns it.
func (wd *webDriver) waitURL(t *testing.T, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		u := wd.url(t)
		if ok(u) || time.Now().After(deadline) {
			return u
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (wd *webDriver) element(t *testing.T, css string) string {
	t.Helper()
	var el map[string]string
	wdCall(t, http.MethodPost, wd.base+"/element", map[string]string{"using": "css selector", "value": css}, &el)
	for _, id := range el {
		return id
	}
	t.Fatalf("no element %q", css)
	return ""
}

func (wd *webDriver) fill(t *testing.T, css, text string) {
	t.Helper()
	wdCall(t, http.MethodPost, wd.base+"/element/"+wd.element(t, css)+"/value", map[string]string{"text": text}, nil)
}

func (wd *webDriver) click(t *testing.T, css string) {
	t.Helper()
	wdCall(t, http.MethodPost, wd.base+"/element/"+wd.element(t, css)+"/click", map[string]any{}, nil)
}

// text is the page's visible text, read by a script rather than through
// an element reference, which goes stale when a navigation replaces the
// page between finding and reading it.
func (wd *webDriver) text(t *testing.T) string {
	t.Helper()
	var s string
	wdCall(t, http.MethodPost, wd.base+"/execute/sync", map[string]any{"script": "return document.body ? document.body.innerText : ''", "args": []any{}}, &s)
	return s
}

// waitText waits up to 10s for the page's text to contain sub (a click
// returns before the page it submits has loaded) and returns the text.
func (wd *webDriver) waitText(t *testing.T, sub string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := wd.text(t)
		if strings.Contains(s, sub) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (wd *webDriver) currentWindow(t *testing.T) string {
	t.Helper()
	var h string
	wdCall(t, http.MethodGet, wd.base+"/window", nil, &h)
	return h
}

func (wd *webDriver) newTab(t *testing.T) string {
	t.Helper()
	var w struct{ Handle string }
	wdCall(t, http.MethodPost, wd.base+"/window/new", map[string]string{"type": "tab"}, &w)
	wd.switchTo(t, w.Handle)
	return w.Handle
}

func (wd *webDriver) switchTo(t *testing.T, handle string) {
	t.Helper()
	wdCall(t, http.MethodPost, wd.base+"/window", map[string]string{"handle": handle}, nil)
}

// wdCookie is a cookie as the browser stores it (WebDriver §14).
type wdCookie struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Path     string `json:"path"`
	Domain   string `json:"domain"`
	Secure   bool   `json:"secure"`
	HTTPOnly bool   `json:"httpOnly"`
	SameSite string `json:"sameSite"`
}

func (c wdCookie) String() string { return fmt.Sprintf("%s(domain=%s)", c.Name, c.Domain) }

func (wd *webDriver) cookies(t *testing.T) []wdCookie {
	t.Helper()
	var cs []wdCookie
	wdCall(t, http.MethodGet, wd.base+"/cookie", nil, &cs)
	return cs
}
