package proxy

import (
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// setCookie writes one of the gateway's cookies with the attributes
// SECURITY.md 12 requires: HttpOnly, Secure (unless disabled for plain-http
// development), SameSite=Lax, Path=/.
func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Domain:   s.cookies.domain,
		Secure:   s.cookies.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
	if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
		c.Expires = s.now().Add(maxAge)
	}
	http.SetCookie(w, c)
}

// clearCookie tells the browser to drop one of the gateway's cookies.
func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    "",
		Path:     "/",
		Domain:   s.cookies.domain,
		Secure:   s.cookies.secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		MaxAge:   -1,
	})
}

// cookieValue returns the value of the first cookie named name, or "", as
// r.Cookie does (surrounding spaces and double quotes dropped, a value with
// bytes no cookie may hold ignored), without parsing every cookie into a
// slice of its own: it runs on every request.
func cookieValue(r *http.Request, name string) string {
	for _, line := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			k, v, ok := strings.Cut(textproto.TrimString(part), "=")
			if !ok || textproto.TrimString(k) != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if validCookieValue(v) {
				return v
			}
		}
	}
	return ""
}

// validCookieValue applies RFC 6265's cookie-octet rule, as net/http does.
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}
