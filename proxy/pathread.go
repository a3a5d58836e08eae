package proxy

import (
	"net/http"
	"net/url"
	"strings"
)

// The gateway decides on a request's path (which route, public or not)
// but forwards it as sent, and backends read paths in different ways:
// nginx and Go resolve dot-segments, Express and Node do not; Go's mux keeps
// "%2F" inside a segment; Tomcat drops ";params"; IIS reads "\" as "/",
// ignores case and strips trailing dots and spaces; a chain of proxies may
// decode twice. So the decision is taken under every such reading
// (SECURITY.md 26): all must pick the same route, or the request is
// refused as ambiguous, and a path is public only if public under all.
// A canonical path, the common case, has one reading besides case and
// costs no allocation.

var (
	errAmbiguousPath = &pageError{status: http.StatusBadRequest, title: "Bad request",
		message: "This address reads differently to different servers (dot-segments, encoded slashes, \";\", \"\\\" or letter case), so the gateway cannot tell which application it is for. Use the plain address."}
	errControlInPath = &pageError{status: http.StatusBadRequest, title: "Bad request",
		message: "The address contains control characters."}
)

// resolve returns the route for r and whether its path is public there.
func (s *Server) resolve(r *http.Request) (*route, bool, error) {
	u := r.URL
	p := u.Path
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f {
			return nil, false, errControlInPath // NUL ends the path for some backends
		}
	}
	clean := cleanPath(p)
	rt := s.match(r.Host, clean, false)
	if rt == nil {
		return nil, false, errNoRoute
	}
	if s.match(r.Host, clean, true) != rt {
		return nil, false, errAmbiguousPath // /ADMIN/x: another route to IIS or Express
	}
	public := rt.isPublic(clean)
	if canonical(u) {
		return rt, public, nil
	}
	for _, other := range otherReadings(u) {
		if s.match(r.Host, other, false) != rt || s.match(r.Host, other, true) != rt {
			return nil, false, errAmbiguousPath
		}
		public = public && rt.isPublic(other)
	}
	return rt, public, nil
}

// canonical reports a path every backend reads alike: nothing escaped
// beyond the default encoding, no empty, "." or ".." segment, no ";" or
// "\", no segment ending in "." or " ", no "%" left after decoding.
func canonical(u *url.URL) bool {
	if u.RawPath != "" {
		return false // an escaped "/", or any escape the default encoding would not write
	}
	p := u.Path
	if p == "" || p[0] != '/' {
		return false
	}
	start := 1 // of the current segment
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			switch p[i] {
			case ';', '\\', '%':
				return false
			case '/':
			default:
				continue
			}
		}
		seg := p[start:i]
		switch {
		case seg == "" && i < len(p): // "//"
			return false
		case seg == "." || seg == "..":
			return false
		case seg != "" && (seg[len(seg)-1] == '.' || seg[len(seg)-1] == ' '):
			return false
		}
		start = i + 1
	}
	return true
}

// otherReadings are the ways backends may read a non-canonical path,
// besides cleanPath's.
func otherReadings(u *url.URL) []string {
	p := u.Path
	out := []string{
		p,               // dot-segments and "//" kept (Express, Node)
		u.EscapedPath(), // escapes kept: "%2F" is no separator (Go's mux)
		lenientPath(p),  // Tomcat, IIS
	}
	if twice, err := url.PathUnescape(p); err == nil && twice != p {
		out = append(out, cleanPath(twice)) // a second decode along the way
	}
	return out
}

// lenientPath is cleanPath as the most lenient backends read a path: "\"
// is a "/" and trailing dots and spaces go (IIS), ";params" end a segment
// (Tomcat, Jetty and Spring read "/public/..;/admin" as "/admin").
func lenientPath(p string) string {
	segs := strings.Split(strings.ReplaceAll(p, "\\", "/"), "/")
	for i, seg := range segs {
		if j := strings.IndexByte(seg, ';'); j >= 0 {
			seg = seg[:j]
		}
		if seg != "." && seg != ".." {
			seg = strings.TrimRight(seg, ". ")
		}
		segs[i] = seg
	}
	return cleanPath(strings.Join(segs, "/"))
}
