package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// maxEndpointBody bounds any body sent to the gateway's own endpoints;
// only the sign-out form has one.
const maxEndpointBody = 16 << 10

var (
	errTooLarge = &pageError{status: http.StatusRequestEntityTooLarge, title: "Request too large", message: "The request body is larger than this endpoint accepts."}
	errMethod   = &pageError{status: http.StatusMethodNotAllowed, title: "Method not allowed", message: "This endpoint does not accept that method."}
	errNoPage   = &pageError{status: http.StatusNotFound, title: "Not found", message: "There is no gateway page at this address."}
)

// serveEndpoint dispatches the reserved endpoints under the prefix; name is
// the path after the prefix, e.g. "/callback".
func (s *Server) serveEndpoint(w http.ResponseWriter, r *http.Request, name string) {
	// The whole body is due within the limit, even one this handler never
	// reads: net/http drains it after the answer to keep the connection.
	boundBody(w, r, s.cfg.Limits.EndpointBodyTimeout)
	if r.ContentLength > maxEndpointBody {
		w.Header().Set("Connection", "close") // nothing of that body is read
		s.fail(w, r, errTooLarge)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxEndpointBody)
	switch name {
	case "/start":
		s.start(w, r)
	case "/callback":
		s.callback(w, r, s.providers[0])
	case "/sign_out":
		s.signOut(w, r)
	case "/userinfo":
		s.userinfo(w, r)
	case "/login":
		s.login(w, r)
	case "/implicit":
		s.implicit(w, r)
	case "/backchannel_logout":
		s.backChannelLogout(w, r)
	case "/frontchannel_logout":
		s.frontChannelLogout(w, r)
	default:
		if p := s.providerAt(name); p != nil {
			s.callback(w, r, p) // a named upstream's redirect URI
			return
		}
		s.fail(w, r, errNoPage)
	}
}

// currentSession loads the request's session at p; nil without error when
// there is none.
func (s *Server) currentSession(r *http.Request, p *provider) (*session.Session, session.Ticket, error) {
	var zero session.Ticket
	ticket, err := s.sessions.DecodeTicket(cookieValue(r, p.cookie))
	if err != nil {
		return nil, zero, nil
	}
	sess, _, err := s.loadSession(r.Context(), ticket)
	if errors.Is(err, session.ErrNotFound) {
		return nil, zero, nil
	}
	if err != nil {
		return nil, zero, err
	}
	if !p.owns(sess) {
		return nil, zero, nil
	}
	return sess, ticket, nil
}

// userinfo serves /oauth2/userinfo: the identity of the session at the
// authorization server of the route ?rd= names (default: the default
// upstream's) as JSON, never its tokens (SECURITY.md 29).
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.fail(w, r, errMethod)
		return
	}
	sess, _, err := s.currentSession(r, s.providerFor(r.URL.Query().Get("rd")))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if sess == nil {
		// The same answer as a route's: one JSON shape for every 401.
		w.Header().Set("WWW-Authenticate", `Bearer realm="authgate"`)
		s.page(w, r, s.errSignInRequired())
		return
	}
	groups := sess.Groups
	if groups == nil {
		groups = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"user":               sess.UserName(),
		"email":              sess.Email,
		"email_verified":     sess.EmailVerified,
		"name":               sess.Name,
		"preferred_username": sess.PreferredUsername,
		"groups":             groups,
	})
}

// signOut serves /oauth2/sign_out. GET shows a confirmation page whose POST
// carries a token bound to the session cookies it ends, so a cross-site
// link or image cannot log a user out (SECURITY.md 16). POST deletes the
// session server-side, revokes the refresh token, clears the cookie and
// ends the session at the authorization server when it supports
// RP-initiated logout. It ends the session at the server of the route rd
// names (the default upstream's without one), or with all=true the
// sessions at every server (RP-initiated logout still at rd's only).
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query() // the POST reads its own from the form
	rd, all := q.Get("rd"), q.Get("all") == "true"
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		// Always a confirmation, even without a session here: a cross-site
		// image must not send the browser to the server's end_session.
		fields := map[string]string{"rd": s.safeRedirect(rd)}
		if all {
			fields["all"] = "true"
		}
		if tok := s.signOutToken(r, s.signOutOf(rd, all)); tok != "" {
			fields["csrf"] = tok
		}
		// CSP form-action also governs the redirect that answers the POST
		// (Chromium blocks it otherwise): allow exactly where it will go.
		s.render(w, r, http.StatusOK, pageData{
			Title:      "Sign out",
			Message:    "Sign out of this application?",
			Form:       &pageForm{Action: s.cfg.Prefix + "/sign_out", Button: "Sign out", Fields: fields},
			formTarget: origin(s.signOutTarget(r, rd)),
		})
	case http.MethodPost:
		if !s.parseForm(w, r) {
			return
		}
		rd, all = r.PostForm.Get("rd"), r.PostForm.Get("all") == "true"
		ending := s.signOutOf(rd, all)
		tok := s.signOutToken(r, ending)
		if tok != "" && subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(tok)) != 1 ||
			tok == "" && s.crossSiteWrite(r) {
			s.fail(w, r, errCrossSite)
			return
		}
		var idToken upstream.Secret
		for _, p := range ending {
			raw := cookieValue(r, p.cookie)
			if raw == "" {
				continue
			}
			sess, err := s.endSession(r.Context(), p, raw)
			if err != nil {
				s.fail(w, r, err) // the store is down: the session is not gone, say so
				return
			}
			if sess != nil && p == ending[0] {
				idToken = sess.Token.IDToken
			}
		}
		s.finishSignOut(w, r, ending, rd, idToken)
	default:
		s.fail(w, r, errMethod)
	}
}

// parseForm parses the (size-limited) form of a POST to one of the
// gateway's endpoints, answering 413 or 400 itself when it cannot.
func (s *Server) parseForm(w http.ResponseWriter, r *http.Request) bool {
	err := r.ParseForm()
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		w.Header().Set("Connection", "close")
		s.fail(w, r, errTooLarge)
	case slowBody(err):
		s.failSlowBody(w, r)
	default:
		s.fail(w, r, errBadRequest)
	}
	return false
}

// signOutOf lists the providers a sign-out ends: rd's first, then, with
// all, every other.
func (s *Server) signOutOf(rd string, all bool) []*provider {
	first := s.providerFor(rd)
	ps := []*provider{first}
	if all {
		for _, p := range s.providers {
			if p != first {
				ps = append(ps, p)
			}
		}
	}
	return ps
}

// endSession deletes the session at p server-side and revokes its refresh
// token. It returns the session it ended, nil when there was none (or when
// it was another server's, whose token p must not see).
func (s *Server) endSession(ctx context.Context, p *provider, raw string) (*session.Session, error) {
	ticket, err := s.sessions.DecodeTicket(raw)
	if err != nil {
		return nil, nil // nothing server-side to end
	}
	sess, _, err := s.loadSession(ctx, ticket)
	if err != nil && !errors.Is(err, session.ErrNotFound) {
		return nil, err
	}
	if err := s.sessions.Delete(ctx, ticket); err != nil {
		return nil, err
	}
	if sess != nil && !p.owns(sess) {
		return nil, nil
	}
	if sess != nil && !sess.Token.RefreshToken.IsZero() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := p.up.Revoke(rctx, sess.Token.RefreshToken, "refresh_token"); err != nil {
			s.log.WarnContext(ctx, "refresh token revocation failed", "upstream", p.label(), "error", err.Error())
		}
	}
	s.log.InfoContext(ctx, "logout", "sub", subjectOf(sess), "upstream", p.label())
	return sess, nil
}

func subjectOf(s *session.Session) string {
	if s == nil {
		return ""
	}
	return s.Subject
}

// finishSignOut clears the ended providers' cookies and redirects: to the
// first one's end_session_endpoint when it has one (with the ended
// session's ID token as id_token_hint, which servers may require), else
// to rd.
func (s *Server) finishSignOut(w http.ResponseWriter, r *http.Request, ended []*provider, rd string, idToken upstream.Secret) {
	for _, p := range ended {
		if cookieValue(r, p.cookie) != "" || p == ended[0] {
			s.clearCookie(w, p.cookie)
		}
	}
	s.markSignedOut(w)
	noStore(w.Header())
	target, end := s.signOutRequest(r, rd, idToken)
	if end != nil {
		target = end.URL()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// signOutTarget is where a sign-out sends the browser: the authorization
// server's end_session_endpoint when it has one, else rd (validated).
func (s *Server) signOutTarget(r *http.Request, rd string) string {
	target, end := s.signOutRequest(r, rd, "")
	if end != nil {
		return end.URL()
	}
	return target
}

// signOutRequest returns rd validated (or "/"), and the RP-initiated logout
// request that returns there, nil when the server has none.
func (s *Server) signOutRequest(r *http.Request, rd string, idToken upstream.Secret) (string, *upstream.EndSession) {
	target := s.safeRedirect(rd)
	if target == "" {
		target = "/"
	}
	abs := target
	if target[0] == '/' {
		abs = s.cfg.PublicURL + target
	}
	end, err := s.providerFor(target).up.EndSession(r.Context(), abs, idToken)
	if err != nil {
		return target, nil
	}
	return target, end
}

// origin is the scheme://host[:port] of an absolute URL, "" for a
// relative one (or garbage).
func origin(target string) string {
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" || u.Host == "" || strings.ContainsAny(u.Host, ";,'\" ") {
		return "" // nothing that could end a CSP directive
	}
	return u.Scheme + "://" + u.Host
}

// signOutToken is the sign-out form's CSRF token: a hash of the HttpOnly
// session cookies of the providers it ends, which a cross-site page can
// neither read nor derive; "" when the request has none of them.
func (s *Server) signOutToken(r *http.Request, ending []*provider) string {
	h := sha256.New()
	h.Write([]byte("authgate sign-out\x00"))
	found := false
	for _, p := range ending {
		if v := cookieValue(r, p.cookie); v != "" {
			h.Write([]byte(p.cookie + "=" + v + "\x00"))
			found = true
		}
	}
	if !found {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// parseTarget parses a redirect target already accepted by safeRedirect.
func parseTarget(target string) (*url.URL, error) { return url.Parse(target) }
