package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemoAsANewcomer runs `authgate demo` and does what its banner says:
// open the URL, sign in as alice, and see the backend page with the token's
// claims.
func TestDemoAsANewcomer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "-listen", "127.0.0.1:0"}, pw, io.Discard)
		pw.Close()
	}()
	var open, user, pass string
	sc := bufio.NewScanner(pr)
	for sc.Scan() && (open == "" || user == "") {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "Open" {
			open = f[1]
		}
		if len(f) >= 4 && f[0] == "Sign" && f[1] == "in" {
			user, pass = f[2], f[4]
		}
	}
	go io.Copy(io.Discard, pr)
	if open == "" || user != "alice" || pass != "alice-password" {
		t.Fatalf("demo banner: open=%q user=%q pass=%q", open, user, pass)
	}

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 5 * time.Second}
	get := func(u string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Accept", "text/html")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	// Opened under another name for the same loopback address, the demo
	// moves the browser to the printed URL first (else the login could
	// not complete: the cookie would stay on the other name).
	other := strings.Replace(open, "127.0.0.1", "localhost", 1)
	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if resp, err := noFollow.Get(other + "x?y=1"); err != nil || resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != open+"x?y=1" {
		t.Errorf("GET %sx?y=1: got %v %v, want 302 to %sx?y=1", other, resp, err, open)
	}
	// An absolute-form request target must not become an off-origin
	// Location: "GET http:@evil.example/x" once gave
	// "http://127.0.0.1:port@evil.example/x".
	addr := strings.TrimSuffix(strings.TrimPrefix(open, "http://"), "/")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET http:@evil.example/x HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n\r\n")
	if r, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil {
		t.Errorf("absolute-form target: %v", err)
	} else if loc := r.Header.Get("Location"); strings.Contains(loc, "evil.example") {
		t.Errorf("absolute-form target: Location %q leaves the origin", loc)
	}
	conn.Close()

	resp, body := get(open)
	if resp.StatusCode != 200 || !strings.Contains(body, `name="password"`) {
		t.Fatalf("opening %s: got %d, want the sign-in form; %.300s", open, resp.StatusCode, body)
	}
	form := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		form.Set(m[1], htmlUnescape(m[2]))
	}
	form.Set("username", user)
	form.Set("password", pass)
	action := resp.Request.URL.ResolveReference(&url.URL{Path: "/authorize"}).String()
	resp, err = c.PostForm(action, form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	for _, want := range []string{"Hello, alice", "Access token claims", "Authorization", "X-Forwarded-Email", "alice@example.com"} {
		if !strings.Contains(page, want) {
			t.Errorf("backend page lacks %q; got %.500s", want, page)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("demo exited %d after Ctrl-C, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not stop")
	}
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">", "&#43;", "+").Replace(s)
}
