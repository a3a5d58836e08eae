package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func testServer(t testing.TB) *Server {
	pub, _ := url.Parse("https://app.example.com")
	return &Server{public: pub, cfg: Config{AllowedRedirectDomains: []string{".example.com", "partner.org"}}}
}

func TestSafeRedirect(t *testing.T) {
	s := testServer(t)
	for _, tc := range []struct {
		target string
		ok     bool
	}{
		{"/", true},
		{"/a/b?c=d#e", true},
		{"/caf%C3%A9", true},
		{"https://app.example.com/x", true},
		{"https://sub.example.com/", true},
		{"https://partner.org/", true},
		{"https://APP.EXAMPLE.COM/x", true},
		{"https://app.example.com:443/x", true},
		// The public host on another scheme or port is another origin.
		{"http://app.example.com/x", false},
		{"https://app.example.com:8443/x", false},
		{"http://app.example.com:443/", false},
		{"", false},
		{"//evil.com", false},
		{"///evil.com", false},
		{"/\\evil.com", false},
		{"\\/evil.com", false},
		{"/%2F%2Fevil.com", false},
		{"/%2f/evil.com", false},
		{"/%5Cevil.com", false},
		{"/%09/evil.com", false},
		{"/%0d%0aSet-Cookie:x", false},
		{"\t//evil.com", false},
		{"/\t/evil.com", false},
		{"/./\\evil.com", false},
		{"https:evil.com", false},
		{"https:/evil.com", false},
		{"https://evil.com", false},
		{"https://app.example.com.evil.com", false},
		{"https://app.example.com@evil.com", false},
		{"https://evil.com#@app.example.com", false},
		{"https://badexample.com", false},
		{"https://sub.partner.org/", false}, // no leading dot: exact only
		{"javascript:alert(1)", false},
		{"data:text/html,x", false},
		{"ftp://app.example.com/", false},
		{"evil.com", false},
		{"/" + strings.Repeat("a", 3000), false},
	} {
		got := s.safeRedirect(tc.target)
		if (got != "") != tc.ok {
			t.Errorf("safeRedirect(%q) = %q, want accepted=%v", tc.target, got, tc.ok)
		}
	}
}

// browserResolve is how a browser reads a Location: tab, CR and LF removed,
// "\" as "/" (WHATWG URL for special schemes), relative to the origin.
func browserResolve(target string) (*url.URL, error) {
	cleaned := strings.Map(func(r rune) rune {
		switch r {
		case '\t', '\r', '\n':
			return -1
		case '\\':
			return '/'
		}
		return r
	}, target)
	base, _ := url.Parse("https://app.example.com/here")
	ref, err := url.Parse(cleaned)
	if err != nil {
		return nil, err
	}
	return base.ResolveReference(ref), nil
}

// FuzzSafeRedirect: any accepted target a browser would resolve off the
// allowed hosts is a failure (SECURITY.md 1).
func FuzzSafeRedirect(f *testing.F) {
	for _, seed := range []string{"/", "//evil.com", "/\\evil.com", "https://app.example.com.evil.com", "/%2F%2Fx", "https://a.example.com/", "\t/x"} {
		f.Add(seed)
	}
	s := testServer(f)
	f.Fuzz(func(t *testing.T, target string) {
		got := s.safeRedirect(target)
		if got == "" {
			return
		}
		for _, form := range []string{got, mustUnescape(got)} {
			u, err := browserResolve(form)
			if err != nil {
				continue
			}
			if u.Scheme != "https" && u.Scheme != "http" || !s.redirectHostAllowed(u.Hostname()) || u.User != nil {
				t.Fatalf("accepted %q, which a browser resolves to %q", target, u)
			}
		}
	})
}

func mustUnescape(s string) string {
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}

func TestStripIdentityHeaders(t *testing.T) {
	identity := []string{
		"X-Forwarded-User", "x-forwarded-user", "X_FORWARDED_USER", "x_Forwarded-Email", "X-Forwarded-Groups",
		"X-Forwarded-Access-Token", "X-Forwarded-Preferred-Username", "X-Auth-Request-User", "x_auth_request_anything",
		"X-Id-Token", "Authorization", "authorization",
	}
	// Non-canonical spellings of forwarding headers never pass: a backend
	// reading HTTP_X_FORWARDED_FOR would take them for the proxy's.
	misspelt := []string{"X_forwarded_for", "x-real-ip", "X_Real_Ip", "forwarded", "X-Forwarded_Proto"}
	canonical := []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Real-Ip", "Forwarded"}
	keep := []string{"Accept", "X-Forwarded-Users-Preference", "Authorization-Extra", "X-Request-Id", "A", "Forwarded-Not"}
	for _, trusted := range []bool{false, true} {
		h := http.Header{}
		for _, k := range slices.Concat(identity, misspelt, canonical, keep) {
			h[k] = []string{k}
		}
		stripIdentityHeaders(h, trusted)
		for _, k := range slices.Concat(identity, misspelt) {
			if h[k] != nil {
				t.Errorf("trusted peer %v: %s survived", trusted, k)
			}
		}
		for _, k := range canonical {
			if got := h[k] != nil; got != trusted {
				t.Errorf("trusted peer %v: %s kept = %v, want %v", trusted, k, got, trusted)
			}
		}
		for _, k := range keep {
			if h[k] == nil {
				t.Errorf("trusted peer %v: %s was removed; only identity and forwarding headers may be", trusted, k)
			}
		}
	}
}

func TestRemoveCookies(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a=1; _authgate=x; b=2", "a=1; b=2"},
		{"_authgate=x", ""},
		{"_authgate_csrf=y;_authgate=x ; keep=_authgate", "keep=_authgate"},
		{"a=1", "a=1"},
		{"_authgatex=1", "_authgatex=1"},
	} {
		h := http.Header{"Cookie": {tc.in}}
		removeCookies(h, "_authgate", "_authgate_csrf")
		if got := h.Get("Cookie"); got != tc.want {
			t.Errorf("removeCookies(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPathMatching(t *testing.T) {
	for _, tc := range []struct {
		path, prefix string
		want         bool
	}{
		{"/app", "/app/", true},
		{"/app/x", "/app", true},
		{"/apple", "/app", false},
		{"/apple", "/app/", false},
		{"/", "/", true},
		{cleanPath("/public/../admin"), "/public/", false},
		{cleanPath("//public//x"), "/public/", true},
	} {
		if got := pathHasPrefix(tc.path, tc.prefix); got != tc.want {
			t.Errorf("pathHasPrefix(%q, %q) = %v, want %v", tc.path, tc.prefix, got, tc.want)
		}
	}
}

func BenchmarkStripIdentityHeaders(b *testing.B) {
	h := http.Header{"Accept": {"x"}, "User-Agent": {"x"}, "Accept-Encoding": {"x"}, "Cookie": {"x"}, "X-Request-Id": {"x"}}
	b.ReportAllocs()
	for b.Loop() {
		stripIdentityHeaders(h, false)
	}
}

func TestTruncateKeepsUTF8(t *testing.T) {
	// An error_description cut inside a character made an invalid page.
	for n := 0; n <= 8; n++ {
		got := truncate("héllo wörld", n)
		if !utf8.ValidString(got) {
			t.Errorf("truncate(%d) = %q, not valid UTF-8", n, got)
		}
	}
}

func TestCanonical(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want bool
	}{
		{"/", true},
		{"/a/b", true},
		{"/a/b/", true},
		{"/caf%C3%A9/x", true},
		{"/a%20b", true},
		{"/file.txt", true},
		{"//a", false},
		{"/a//b", false},
		{"/a/./b", false},
		{"/a/../b", false},
		{"/a/..", false},
		{"/a/.", false},
		{"/a%2Fb", false},
		{"/a%2fb", false},
		{"/a;b", false},
		{"/a%5Cb", false},
		{"/a./b", false},
		{"/a%20/b", false},
		{"/a%252e", false},
		{"/a/%2e%2e/b", false},
	} {
		u, err := url.ParseRequestURI(tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := canonical(u); got != tc.want {
			t.Errorf("canonical(%q): got %v, want %v", tc.raw, got, tc.want)
		}
	}
}

// TestCookieValueAsNetHTTP: the allocation-free cookieValue reads the
// Cookie header exactly as r.Cookie does.
func TestCookieValueAsNetHTTP(t *testing.T) {
	for _, hdr := range [][]string{
		nil,
		{""},
		{"_authgate=abc"},
		{"a=1; _authgate=abc; b=2"},
		{"  _authgate = abc"},
		{"_authgate=\"abc\""},
		{"_authgate=\"abc"},
		{"_authgate=a\\bc; _authgate=second"},
		{"_authgate=a\"bc"},
		{"_authgatex=1; x_authgate=2"},
		{"_authgate="},
		{"_authgate=first", "_authgate=second"},
		{"a=1;;_authgate=v;"},
		{"_authgate=sp ace"},
		{"_authgate=caf\u00e9"},
		{"_AUTHGATE=upper"},
	} {
		r := &http.Request{Header: http.Header{"Cookie": hdr}}
		want := ""
		if c, err := r.Cookie("_authgate"); err == nil {
			want = c.Value
		}
		if got := cookieValue(r, "_authgate"); got != want {
			t.Errorf("Cookie %q: got %q, net/http reads %q", hdr, got, want)
		}
	}
}
