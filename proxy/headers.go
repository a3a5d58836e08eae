package proxy

import (
	"net/http"
	"slices"
	"strings"
)

// identityHeaders are the headers the gateway asserts to the backend; a
// client-sent copy in any spelling must never get through (SECURITY.md 21).
// Compared after folding case and "_" to "-".
var identityHeaders = []string{
	"x-forwarded-user",
	"x-forwarded-email",
	"x-forwarded-groups",
	"x-forwarded-access-token",
	"x-forwarded-preferred-username",
	"x-id-token",
	"authorization",
}

// identityHeaderPrefix catches the whole nginx auth_request family.
const identityHeaderPrefix = "x-auth-request-"

// stripIdentityHeaders removes every client-sent identity header. It scans
// the raw map because Go canonicalises "X-Forwarded-User" but leaves
// "x_forwarded_user" as sent, and a backend behind a CGI-style server would
// read both as HTTP_X_FORWARDED_USER.
func stripIdentityHeaders(h http.Header) {
	for k := range h {
		if len(k) < len("x-id-token") {
			continue
		}
		if c := k[0] | 0x20; c != 'x' && c != 'a' {
			continue // the cheap test that skips most headers
		}
		if isIdentityHeader(k) {
			delete(h, k)
		}
	}
}

// isIdentityHeader folds case and "_" without allocating.
func isIdentityHeader(k string) bool {
	if len(k) >= len(identityHeaderPrefix) && foldEqual(k[:len(identityHeaderPrefix)], identityHeaderPrefix) {
		return true
	}
	for _, name := range identityHeaders {
		if len(k) == len(name) && foldEqual(k, name) {
			return true
		}
	}
	return false
}

// foldEqual compares a header name with a lowercase, dash-separated name,
// treating ASCII case and "_" versus "-" as equal. len(a) == len(b).
func foldEqual(a, b string) bool {
	for i := 0; i < len(b); i++ {
		c := a[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != b[i] {
			return false
		}
	}
	return true
}

// headerValue makes a claim safe as a header value: control characters
// (CR, LF, NUL) would otherwise let a crafted claim add headers or make the
// backend request fail.
func headerValue(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f {
					return -1
				}
				return r
			}, s)
		}
	}
	return s
}

// removeCookies drops the named cookies from the Cookie headers of h, keeping
// every other cookie byte for byte. The gateway's ticket must not reach the
// backend, where a log or a compromised app could replay it.
func removeCookies(h http.Header, names ...string) {
	vals := h["Cookie"]
	if len(vals) == 0 {
		return
	}
	found := false
	for _, v := range vals {
		for _, n := range names {
			if strings.Contains(v, n) {
				found = true
			}
		}
	}
	if !found {
		return // the common case: no allocation
	}
	var kept []string
	for _, v := range vals {
		for part := range strings.SplitSeq(v, ";") {
			p := strings.TrimSpace(part)
			name, _, _ := strings.Cut(p, "=")
			if p == "" || slices.Contains(names, name) {
				continue
			}
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{strings.Join(kept, "; ")}
}

// countCookies counts the cookies in the request's Cookie headers.
func countCookies(h http.Header) int {
	n := 0
	for _, v := range h["Cookie"] {
		if v != "" {
			n += strings.Count(v, ";") + 1
		}
	}
	return n
}
