package upstreamtest

import (
	"net/url"
	"slices"
	"strings"
)

// redirectAllowed reports whether c may use uri as its redirect_uri
// (RFC 6749 §3.1.2): an exact match with a registered URI, or, when none is
// registered, an http(s) URI on a loopback host (RFC 8252 §7.3).
func redirectAllowed(c Client, uri string) bool {
	if len(c.RedirectURIs) > 0 {
		return slices.Contains(c.RedirectURIs, uri)
	}
	u, ok := parseRedirect(uri)
	if !ok {
		return false
	}
	switch h := u.Hostname(); {
	case h == "127.0.0.1", h == "::1", strings.EqualFold(h, "localhost"):
		return true
	}
	return false
}

// postLogoutRedirectAllowed reports whether c may use uri as its
// post_logout_redirect_uri: any URI it may use as redirect URI, or any URI
// with the origin of one of its registered redirect URIs.
func postLogoutRedirectAllowed(c Client, uri string) bool {
	if redirectAllowed(c, uri) {
		return true
	}
	u, ok := parseRedirect(uri)
	if !ok {
		return false
	}
	for _, reg := range c.RedirectURIs {
		r, ok := parseRedirect(reg)
		if ok && strings.EqualFold(r.Scheme, u.Scheme) && strings.EqualFold(r.Host, u.Host) {
			return true
		}
	}
	return false
}

// parseRedirect parses an absolute http(s) URI with a host, without user
// information or fragment (RFC 6749 §3.1.2), and without the backslashes
// and whitespace that browsers and servers resolve differently.
func parseRedirect(uri string) (*url.URL, bool) {
	if strings.ContainsAny(uri, "#\\ \t\r\n") {
		return nil, false
	}
	u, err := url.Parse(uri)
	if err != nil || u.User != nil || u.Opaque != "" || u.Host == "" {
		return nil, false
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return nil, false
	}
	return u, true
}

// withQuery returns uri with the parameters of q added to its query.
func withQuery(uri string, q url.Values) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri
	}
	all := u.Query()
	for k, vs := range q {
		all[k] = vs
	}
	u.RawQuery = all.Encode()
	return u.String()
}
