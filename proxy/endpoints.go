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
	if r.ContentLength > maxEndpointBody {
		s.fail(w, r, errTooLarge)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxEndpointBody)
	switch name {
	case "/start":
		s.start(w, r)
	case "/callback":
		s.callback(w, r)
	case "/sign_out":
		s.signOut(w, r)
	case "/userinfo":
		s.userinfo(w, r)
	case "/login":
		s.login(w, r)
	case "/implicit":
		s.implicit(w, r)
	default:
		s.fail(w, r, errNoPage)
	}
}

// currentSession loads the session of the request's cookie; nil without
// error when there is none.
func (s *Server) currentSession(r *http.Request) (*session.Session, session.Ticket, error) {
	var zero session.Ticket
	ticket, err := s.sessions.DecodeTicket(cookieValue(r, s.cookies.session))
	if err != nil {
		return nil, zero, nil
	}
	sess, _, err := s.sessions.Load(r.Context(), ticket)
	if errors.Is(err, session.ErrNotFound) {
		return nil, zero, nil
	}
	if err != nil {
		return nil, zero, err
	}
	return sess, ticket, nil
}

// userinfo serves /oauth2/userinfo: the session's identity as JSON, never
// its tokens (SECURITY.md 29).
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.fail(w, r, errMethod)
		return
	}
	sess, _, err := s.currentSession(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if sess == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="authgate"`)
		writeJSON(w, http.StatusUnauthorized, map[string]any{"status": 401, "error": "not signed in"})
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
// carries a token bound to the session cookie, so a cross-site link or image
// cannot log a user out (SECURITY.md 16). POST deletes the session
// server-side, revokes the refresh token, clears the cookie and ends the
// session at the authorization server when it supports RP-initiated logout.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	raw := cookieValue(r, s.cookies.session)
	rd := r.URL.Query().Get("rd") // the POST reads its own from the form
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		// Always a confirmation, even without a session here: a cross-site
		// image must not send the browser to the server's end_session.
		fields := map[string]string{"rd": s.safeRedirect(rd)}
		if raw != "" {
			fields["csrf"] = signOutToken(raw)
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
		rd = r.PostForm.Get("rd")
		if raw != "" && subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(signOutToken(raw))) != 1 ||
			raw == "" && s.crossSiteWrite(r) {
			s.fail(w, r, errCrossSite)
			return
		}
		var idToken upstream.Secret
		if raw != "" {
			sess, err := s.endSession(r.Context(), s.signOutClient(rd), raw)
			if err != nil {
				s.fail(w, r, err) // the store is down: the session is not gone, say so
				return
			}
			if sess != nil {
				idToken = sess.Token.IDToken
			}
		}
		s.finishSignOut(w, r, rd, idToken)
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
	if errors.As(err, &tooBig) {
		s.fail(w, r, errTooLarge)
	} else {
		s.fail(w, r, errBadRequest)
	}
	return false
}

// endSession deletes the session server-side and revokes its refresh
// token. It returns the session it ended, nil when there was none.
func (s *Server) endSession(ctx context.Context, up *upstream.Client, raw string) (*session.Session, error) {
	ticket, err := s.sessions.DecodeTicket(raw)
	if err != nil {
		return nil, nil // nothing server-side to end
	}
	sess, _, err := s.sessions.Load(ctx, ticket)
	if err != nil && !errors.Is(err, session.ErrNotFound) {
		return nil, err
	}
	if err := s.sessions.Delete(ctx, ticket); err != nil {
		return nil, err
	}
	if sess != nil && !sess.Token.RefreshToken.IsZero() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := up.Revoke(rctx, sess.Token.RefreshToken, "refresh_token"); err != nil {
			s.log.Warn("refresh token revocation failed", "error", err.Error())
		}
	}
	s.log.Info("logout", "sub", subjectOf(sess))
	return sess, nil
}

func subjectOf(s *session.Session) string {
	if s == nil {
		return ""
	}
	return s.Subject
}

// finishSignOut clears the cookie and redirects: to the authorization
// server's end_session_endpoint when it has one (with the ended session's
// ID token as id_token_hint, which servers may require), else to rd.
func (s *Server) finishSignOut(w http.ResponseWriter, r *http.Request, rd string, idToken upstream.Secret) {
	s.clearCookie(w, s.cookies.session)
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
	end, err := s.signOutClient(target).EndSession(r.Context(), abs, idToken)
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

// signOutClient is the authorization server to sign out of: the one of the
// route that rd (where the user goes next) belongs to.
func (s *Server) signOutClient(rd string) *upstream.Client {
	target := s.safeRedirect(rd)
	if target == "" {
		target = "/"
	}
	if rt := s.loginRoute(target); rt != nil {
		return rt.up
	}
	return s.routes[0].up
}

// signOutToken is the sign-out form's CSRF token: a hash of the HttpOnly
// session cookie, which a cross-site page can neither read nor derive.
func signOutToken(cookie string) string {
	sum := sha256.Sum256([]byte("authgate sign-out\x00" + cookie))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// parseTarget parses a redirect target already accepted by safeRedirect.
func parseTarget(target string) (*url.URL, error) { return url.Parse(target) }
