package proxy

import (
	"net/http"
	"net/url"
	"time"
)

// After a sign-out the browser lands where rd pointed, usually a page that
// needs a session. Left alone, the gateway would start a login there (and
// a server whose own login is still open would sign the user in again at
// once), so the user never saw the sign-out work. The sign-out sets a
// short-lived marker cookie; the first login the gateway would start
// after it shows a page saying "You have been signed out" with a link to
// sign in again instead, and the password form says it above the form.
// The marker's value is fixed and the words are the gateway's own: a
// forged marker shows the same page once, and nothing from the request
// reaches it.

// signedOutTTL is how long the marker waits for the landing: it covers the
// round trip through the authorization server's end_session page.
const signedOutTTL = 10 * time.Minute

// msgSignedOut is what the user reads after a sign-out.
const msgSignedOut = "You have been signed out."

// markSignedOut sets the marker, on the sign-out's answer.
func (s *Server) markSignedOut(w http.ResponseWriter) {
	s.setCookie(w, s.cookies.signedOut, "1", signedOutTTL)
}

// takeSignedOut reports whether the request carries the marker, clearing
// it when it carries one: it is shown once.
func (s *Server) takeSignedOut(w http.ResponseWriter, r *http.Request) bool {
	v := cookieValue(r, s.cookies.signedOut)
	if v == "" {
		return false
	}
	s.clearCookie(w, s.cookies.signedOut)
	return v == "1"
}

// signedOutPage answers, instead of a login, the first navigation after a
// sign-out; its link starts the login for target.
func (s *Server) signedOutPage(w http.ResponseWriter, r *http.Request, target string) {
	if s.safeRedirect(target) == "" {
		target = "/"
	}
	s.render(w, r, http.StatusOK, pageData{
		Title:    "Signed out",
		Message:  msgSignedOut,
		Link:     s.cfg.Prefix + "/start?rd=" + url.QueryEscape(target),
		LinkText: "Sign in again",
	})
}
