package proxy

import (
	"cmp"
	"net/http"
	"strings"

	"github.com/authgate/authgate/session"
)

// maxAccountName bounds the account name a 403 page shows.
const maxAccountName = 100

// forbidden answers a signed-in user whom rt's rules refuse. The page says
// which account is signed in, for a user with several, and, for a session
// of the route's cookie, offers to sign out of it: the sign-out form's
// POST with its own CSRF token. byCookie is false for a caller's token or
// HTTP Basic, which a sign-out does not end. API clients get the JSON
// every error has.
func (s *Server) forbidden(w http.ResponseWriter, r *http.Request, rt *route, sess *session.Session, byCookie bool) {
	if !wantsHTML(r) || sess == nil {
		s.fail(w, r, errForbidden)
		return
	}
	if x := exchangeOf(r); x != nil {
		x.reason = errForbidden.reason // the access log's word, as fail gives it
	}
	d := pageData{Title: errForbidden.title, Message: errForbidden.message, Status: errForbidden.status, Account: accountName(sess)}
	if rd, ok := s.signOutReturn(r, rt); byCookie && ok {
		action := s.cfg.Prefix + "/sign_out"
		var targets []string
		if !strings.EqualFold(r.Host, s.public.Host) {
			// Another host (forward-auth, or a route of its own): the
			// sign-out lives at the public URL.
			action = s.cfg.PublicURL + action
			targets = append(targets, origin(s.cfg.PublicURL))
		}
		// CSP form-action also governs the redirect that answers the
		// POST: allow where the sign-out goes on to.
		if o := origin(s.signOutTarget(r, rd)); o != "" {
			targets = append(targets, o)
		}
		fields := map[string]string{"csrf": s.signOutToken(r, []*provider{rt.provider}), "rd": rd}
		d.Form = &pageForm{Action: action, Button: "Sign out", Fields: fields}
		d.formTarget = strings.Join(targets, " ")
	}
	s.render(w, r, http.StatusForbidden, d)
}

// signOutReturn is where the 403 page's sign-out sends the user back to:
// "/" (the post-logout redirect URI servers have registered) when its
// route signs in at rt's server, else rt's own path, else the request's
// target, so that the sign-out ends the session at rt's server. ok is
// false when the request holds no session cookie of that server.
func (s *Server) signOutReturn(r *http.Request, rt *route) (string, bool) {
	if cookieValue(r, rt.provider.cookie) == "" {
		return "", false
	}
	target := s.requestTarget(r)
	if fa := forwardAuthOf(r); fa != nil {
		target = fa.target
	}
	for _, rd := range []string{"/", rt.cfg.Match.PathPrefix, target} {
		if rd != "" && s.safeRedirect(rd) != "" && s.providerFor(rd) == rt.provider {
			return rd, true
		}
	}
	return "", false
}

// accountName is how a page names the user: the preferred username, else
// the email, else the user claim; printable and bounded. html/template
// escapes it.
func accountName(sess *session.Session) string {
	return truncate(printable(cmp.Or(sess.PreferredUsername, sess.Email, sess.UserName())), maxAccountName)
}
