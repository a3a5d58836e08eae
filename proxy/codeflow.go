package proxy

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/authgate/authgate/metrics"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// codeFlow authenticates browser users with the authorization code grant
// and a session cookie.
type codeFlow struct {
	s *Server
}

// authenticate loads the session named by the cookie, renewing its access
// token when it is about to expire. No cookie, or one that does not decode
// or names no session, starts a login; a store failure is an error (503),
// and the cookie is kept so the user is back as soon as the store is.
func (a *codeFlow) authenticate(w http.ResponseWriter, r *http.Request, rt *route) (*session.Session, bool, error) {
	s := a.s
	raw := cookieValue(r, rt.provider.cookie)
	if raw == "" {
		return nil, false, s.challenge(w, r, rt)
	}
	ticket, err := s.sessions.DecodeTicket(raw)
	if err != nil {
		s.log.DebugContext(r.Context(), "session cookie refused", "reason", "invalid cookie")
		return nil, false, s.challenge(w, r, rt)
	}
	ctx := r.Context()
	sess, ver, err := s.loadSession(ctx, ticket)
	if errors.Is(err, session.ErrNotFound) {
		return nil, false, s.challenge(w, r, rt)
	}
	if err != nil {
		return nil, false, err
	}
	if !rt.provider.owns(sess) {
		// Another server's session under this server's cookie (the
		// upstream's issuer changed, or a cookie was copied): its token is
		// for another trust domain (SECURITY.md 30).
		s.log.DebugContext(r.Context(), "session cookie refused", "reason", "session of another authorization server", "upstream", rt.provider.label())
		return nil, false, s.challenge(w, r, rt)
	}
	if sess.Token.RefreshToken.IsZero() {
		// Nothing to renew with: the session lives as long as its token
		// (or its idle and absolute timeouts), never less.
		if sess.Token.ExpiresWithin(s.now(), 0) {
			return nil, false, s.reauthenticate(w, r, rt)
		}
		// The implicit grant never has one: a navigation shortly before
		// expiry renews silently first, so the user rarely sees a gap.
		// (Not for forward-auth: its login happens at the public URL.)
		if rt.cfg.Grant == GrantImplicit && isNavigation(r) && forwardAuthOf(r) == nil && sess.Token.RenewWithin(s.now(), s.refreshBefore) {
			return nil, false, s.startLogin(w, r, rt, s.requestTarget(r), true)
		}
	} else if sess.Token.RenewWithin(s.now(), s.refreshBefore) {
		fresh, fver, err := s.refresh(ctx, rt, ticket, sess.Token.AccessToken)
		switch {
		case err == nil:
			sess, ver = fresh, fver
		case upstream.IsInvalidGrant(err) || errors.Is(err, session.ErrNotFound):
			// SECURITY.md 20: the grant is gone; so is the session.
			if err := s.sessions.Delete(ctx, ticket); err != nil && !errors.Is(err, session.ErrNotFound) {
				return nil, false, err
			}
			return nil, false, s.challenge(w, r, rt)
		case !sess.Token.ExpiresWithin(s.now(), 0):
			// The token is still valid: serve with it, refresh next time.
			s.log.WarnContext(ctx, "token refresh failed; using the current token until it expires", "error", err.Error())
		case upstream.IsRefused(err):
			// Expired, and the server will not renew it (invalid_client,
			// a changed subject, ...): the session cannot go on, and
			// keeping it would ask the server again on every request.
			s.log.WarnContext(ctx, "token refresh refused; the user must sign in again", "error", err.Error())
			if err := s.sessions.Delete(ctx, ticket); err != nil && !errors.Is(err, session.ErrNotFound) {
				return nil, false, err
			}
			return nil, false, s.challenge(w, r, rt)
		default:
			return nil, false, err
		}
	}
	if err := s.sessions.Touch(ctx, ticket, sess, ver); err != nil {
		s.log.DebugContext(ctx, "session touch failed", "error", err.Error())
	}
	return sess, true, nil
}

// refresh renews the session's tokens once across all gateways. A session
// needs it only while it still holds the stale token: one another request
// or replica just obtained is adopted even if it is short-lived, so a
// rotated refresh token is never spent twice.
func (s *Server) refresh(ctx context.Context, rt *route, t session.Ticket, stale upstream.Secret) (*session.Session, session.Version, error) {
	needs := func(x *session.Session) bool {
		return x.Token.AccessToken == stale && x.Token.RenewWithin(s.now(), s.refreshBefore)
	}
	ctx, span := s.startSpan(ctx, "session.refresh")
	renewed := false
	renew := func(ctx context.Context, old upstream.Token) (upstream.Token, error) {
		renewed = true
		tok, err := rt.up.Refresh(ctx, old)
		if err != nil {
			s.log.DebugContext(ctx, "token refresh", "route", rt.index, "outcome", refreshOutcome(err), "error", err.Error())
			return upstream.Token{}, err
		}
		s.log.DebugContext(ctx, "token refresh", "route", rt.index, "outcome", "ok", "expires_in", tok.Expiry.Sub(s.now()).Round(time.Second).String())
		return *tok, nil
	}
	sess, ver, err := s.sessions.Refresh(ctx, t, needs, renew)
	switch {
	case err != nil:
		reason := refreshReason(err)
		s.metrics.Auth(metrics.RefreshFailed, reason)
		endSpan(span, reason, true)
	case renewed:
		s.metrics.Auth(metrics.RefreshOK, "")
		endSpan(span, "ok", false)
	default:
		s.metrics.Auth(metrics.RefreshAdopted, "")
		endSpan(span, "adopted", false)
	}
	return sess, ver, err
}

// refreshReason names a failed refresh for the metrics (bounded, unlike
// the token endpoint's error codes).
func refreshReason(err error) string {
	switch {
	case upstream.IsInvalidGrant(err):
		return "invalid_grant"
	case errors.Is(err, upstream.ErrUnavailable), errors.Is(err, session.ErrUnavailable):
		return "unavailable"
	case upstream.IsRefused(err):
		return "refused"
	default:
		return "other"
	}
}

// refreshOutcome names a failed refresh for the log: the token
// endpoint's error code when it answered one.
func refreshOutcome(err error) string {
	var te *upstream.TokenError
	switch {
	case errors.As(err, &te) && te.Code != "":
		return te.Code
	case upstream.IsRefused(err):
		return "refused"
	default:
		return "failed"
	}
}

// reauthenticate answers a request whose session can no longer be renewed
// from the gateway's side (its access token expired and it holds no refresh
// token): a navigation is signed in again silently (prompt=none), which
// falls back to an ordinary login when the server must ask the user;
// anything else gets 401. The session and its cookie stay until the new
// login replaces them, so a later navigation can still renew silently.
func (s *Server) reauthenticate(w http.ResponseWriter, r *http.Request, rt *route) error {
	if rt.cfg.Grant == GrantPassword {
		return s.passwordChallenge(w, r) // no silent way back: the form
	}
	if !isNavigation(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="authgate", error="invalid_token", error_description="the session expired"`)
		s.page(w, r, errSessionExpired)
		return nil
	}
	return s.startLogin(w, r, rt, s.requestTarget(r), true)
}

// errSessionExpired answers an API request whose session must be renewed by
// a browser navigation.
var errSessionExpired = &pageError{status: http.StatusUnauthorized, title: "Session expired",
	message: "This session's access has expired. Reload the page to sign in again.", retry: "/"}

// challenge answers an unauthenticated request: a browser navigation starts
// a login, anything else gets 401 (an API client cannot follow a login).
func (s *Server) challenge(w http.ResponseWriter, r *http.Request, rt *route) error {
	if cookieValue(r, rt.provider.cookie) != "" {
		s.clearCookie(w, rt.provider.cookie)
	}
	if rt.cfg.Grant == GrantPassword {
		return s.passwordChallenge(w, r)
	}
	if !isNavigation(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="authgate"`)
		s.page(w, r, s.errSignInRequired())
		return nil
	}
	if forwardAuthOf(r) == nil && s.takeSignedOut(w, r) {
		s.signedOutPage(w, r, s.requestTarget(r))
		return nil
	}
	return s.startLogin(w, r, rt, s.requestTarget(r), false)
}

// errSignInRequired is the 401 of a request without a session, on a route
// and at /oauth2/userinfo alike.
func (s *Server) errSignInRequired() *pageError {
	return &pageError{status: http.StatusUnauthorized, title: "Sign-in required",
		message: "This request needs a signed-in session.", retry: s.cfg.Prefix + "/start"}
}

// requestTarget is where the user goes back to after login: the request's
// path and query, made absolute when it was for another host than the
// public URL's.
func (s *Server) requestTarget(r *http.Request) string {
	uri := r.URL.RequestURI()
	if r.Host == "" || r.Host == s.public.Host {
		return uri
	}
	return s.public.Scheme + "://" + r.Host + uri
}
