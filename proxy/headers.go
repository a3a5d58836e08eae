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

// forwardingHeaders say where a request came from and what it asked for
// (canonical spelling). They pass only from a trusted proxy, and only in
// this spelling: ReverseProxy drops the canonical X-Forwarded-For/Host/Proto
// and Forwarded itself, but not "X_forwarded_for" or X-Real-IP, which many
// backends read as the client address (SECURITY.md 24).
var forwardingHeaders = []struct{ canonical, folded string }{
	{"X-Forwarded-For", "x-forwarded-for"},
	{"X-Forwarded-Host", "x-forwarded-host"},
	{"X-Forwarded-Proto", "x-forwarded-proto"},
	{"X-Forwarded-Port", "x-forwarded-port"},
	{"X-Forwarded-Prefix", "x-forwarded-prefix"},
	{"X-Real-Ip", "x-real-ip"},
	{"Forwarded", "forwarded"},
}

// stripIdentityHeaders removes every client-sent identity header, and the
// forwarding headers unless trustedPeer sent them in canonical spelling.
// It scans the raw map because Go canonicalises "X-Forwarded-User" but
// leaves "x_forwarded_user" as sent, and a backend behind a CGI-style
// server would read both as HTTP_X_FORWARDED_USER.
func stripIdentityHeaders(h http.Header, trustedPeer bool) {
	for k := range h {
		if len(k) < len("forwarded") {
			continue
		}
		if c := k[0] | 0x20; c != 'x' && c != 'a' && c != 'f' {
			continue // the cheap test that skips most headers
		}
		if isIdentityHeader(k) || isSpoofedForwarding(k, trustedPeer) {
			delete(h, k)
		}
	}
}

// isSpoofedForwarding reports a forwarding header that must not pass.
func isSpoofedForwarding(k string, trustedPeer bool) bool {
	for _, fh := range forwardingHeaders {
		if len(k) == len(fh.folded) && foldEqual(k, fh.folded) {
			return !trustedPeer || k != fh.canonical
		}
	}
	return false
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
