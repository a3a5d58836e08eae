package proxy

import (
	"net/http"
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

// cookieValue returns the value of the named cookie, or "".
func cookieValue(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}
