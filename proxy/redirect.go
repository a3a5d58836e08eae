package proxy

import (
	"net/url"
	"strings"
)

// safeRedirect returns target if a browser following it stays on this
// gateway's origin or goes to an allowed host, else "". Relative targets
// must start with exactly one "/" (after the browser's own normalisation:
// tab, CR and LF removed, "\" read as "/"); absolute ones must be http(s)
// with an allowed host (SECURITY.md property 1).
func (s *Server) safeRedirect(target string) string {
	if target == "" || len(target) > 2048 {
		return ""
	}
	for i := 0; i < len(target); i++ {
		// Control characters and backslashes are refused outright rather than
		// normalised: no legitimate target needs them.
		if c := target[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return ""
		}
	}
	// Look through one level of percent-encoding as well: "/%2F%2Fevil.com"
	// or "/%09/evil.com" may be decoded by a backend or an older browser.
	if dec, err := url.PathUnescape(target); err != nil || dec != target && s.safeRedirect(dec) == "" {
		return ""
	}
	if target[0] == '/' {
		if len(target) > 1 && target[1] == '/' {
			return "" // protocol-relative: //evil.com
		}
		return target
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "" // https:evil.com, javascript:, user@host tricks
	}
	if strings.EqualFold(u.Hostname(), s.public.Hostname()) {
		// The gateway's own host: same origin only, not another scheme
		// or port on it (http://app, https://app:8443).
		if u.Scheme != s.public.Scheme || effectivePort(u) != effectivePort(s.public) {
			return ""
		}
		return target
	}
	if !s.redirectHostAllowed(u.Hostname()) {
		return ""
	}
	return target
}

// effectivePort is u's port, or its scheme's default.
func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// redirectHostAllowed reports whether host is on the allow-list: exact,
// or a dot-bounded suffix for entries starting with ".".
func (s *Server) redirectHostAllowed(host string) bool {
	host = strings.ToLower(host)
	for _, d := range s.cfg.AllowedRedirectDomains {
		d = strings.ToLower(d)
		if host == strings.TrimPrefix(d, ".") || (strings.HasPrefix(d, ".") && strings.HasSuffix(host, d)) {
			return true
		}
	}
	return false
}
