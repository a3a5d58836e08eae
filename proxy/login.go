package proxy

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/authgate/authgate/metrics"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// maxParam bounds the callback parameters the gateway reads.
const maxParam = 4096

var (
	errLoginExpired = &pageError{status: http.StatusBadRequest, title: "Sign-in expired",
		message: "This sign-in could not be matched to your browser: it took too long, was already used, or your browser blocks cookies. Start again.",
		retry:   "/"}
	errLoginFailed = &pageError{status: http.StatusBadRequest, title: "Sign-in failed",
		message: "The authorization server's answer could not be accepted. Start again; if it keeps failing, tell the administrator.",
		retry:   "/"}
	errTokenRejected = &pageError{status: http.StatusUnauthorized, title: "Sign-in failed",
		message: "The identity token from the authorization server failed verification. Start again; if it keeps failing, tell the administrator.",
		retry:   "/"}
)

// startLogin sends the browser to the authorization endpoint: a fresh state
// (130 bits), PKCE verifier and nonce are kept server-side under the state,
// and bound to this browser by the binding cookie, which every pending login
// of the browser shares — one small cookie however many tabs log in at once.
//
// silent sends prompt=none: the server signs the user in again without a
// page when it still can, and answers login_required (or the like) when
// not, which the callback turns into an ordinary login.
func (s *Server) startLogin(w http.ResponseWriter, r *http.Request, rt *route, target string, silent bool) error {
	if fa := forwardAuthOf(r); fa != nil {
		return s.forwardAuthChallenge(w, r, fa, "/start", `Bearer realm="authgate"`)
	}
	if err := s.allowLogin(w, r, s.loginLimit); err != nil {
		return err
	}
	if s.safeRedirect(target) == "" {
		target = "/"
	}
	binding, err := s.sessions.DecodeBinding(cookieValue(r, s.cookies.binding))
	if err != nil {
		if binding, err = session.NewBinding(); err != nil {
			return err
		}
	}
	state := rand.Text()
	req := upstream.AuthRequest{
		RedirectURI: s.redirectURI(rt.provider),
		State:       state,
		Nonce:       upstream.Secret(rand.Text()),
		Verifier:    upstream.NewVerifier(),
	}
	if silent {
		req.Prompt = "none"
	}
	ls := &session.LoginState{
		Silent:     silent,
		Verifier:   req.Verifier,
		Nonce:      req.Nonce,
		RedirectTo: target,
		Route:      strconv.Itoa(rt.index),
		CreatedAt:  s.now(),
	}
	ls.BindTo(binding)
	var authURL string
	if rt.cfg.Grant == GrantImplicit {
		authURL, _, err = rt.up.ImplicitURL(r.Context(), req)
	} else {
		authURL, err = rt.up.AuthCodeURL(r.Context(), req)
	}
	if err != nil {
		return err
	}
	if err := s.sessions.SaveState(r.Context(), state, ls); err != nil {
		return err
	}
	value, err := s.sessions.EncodeBinding(binding)
	if err != nil {
		return err
	}
	s.setCookie(w, s.cookies.binding, value, s.sessions.Config().LoginTimeout)
	noStore(w.Header())
	http.Redirect(w, r, authURL, http.StatusFound)
	if silent {
		s.metrics.Auth(metrics.LoginStarted, "silent")
	} else {
		s.metrics.Auth(metrics.LoginStarted, "interactive")
	}
	return nil
}

// start serves /oauth2/start?rd=: an explicit login.
func (s *Server) start(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.fail(w, r, errMethod)
		return
	}
	// An API call sent here (nginx's error_page 401 = /oauth2/start sends
	// every refused request) cannot follow a login: it keeps its 401, and
	// stores no pending login.
	if !isNavigation(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="authgate"`)
		s.page(w, r, &pageError{status: http.StatusUnauthorized, title: "Sign-in required",
			message: "This request needs a signed-in session; open the application in a browser to sign in."})
		return
	}
	rd := r.URL.Query().Get("rd")
	if rd == "" {
		// nginx's error_page 401 = /oauth2/start cannot escape the
		// original URI into a query; ingress-nginx and oauth2-proxy's
		// nginx recipes send it in this header instead (validated alike).
		rd = r.Header.Get("X-Auth-Request-Redirect")
	}
	target := s.safeRedirect(rd)
	if target == "" {
		target = "/"
	}
	if s.takeSignedOut(w, r) {
		// Behind forward-auth the first navigation after a sign-out
		// arrives here.
		s.signedOutPage(w, r, target)
		return
	}
	rt := s.loginRoute(target)
	if rt == nil {
		s.fail(w, r, errNoRoute)
		return
	}
	// No session fixation: whatever session cookie of this server came
	// in is dropped (the sessions at other servers stay).
	if cookieValue(r, rt.provider.cookie) != "" {
		s.clearCookie(w, rt.provider.cookie)
	}
	if err := s.startLogin(w, r, rt, target, false); err != nil {
		// No login began (the store is down, say): the session cookie is
		// kept, so a blip logs no one out.
		w.Header().Del("Set-Cookie")
		s.fail(w, r, err)
	}
}

// routeFor is the route a redirect target (already validated) belongs to.
func (s *Server) routeFor(target string) *route {
	host, p := s.public.Host, target
	if u, err := parseTarget(target); err == nil {
		if u.Host != "" {
			host = u.Host
		}
		p = u.Path
	}
	return s.match(host, cleanPath(p), false)
}

// loginRoute picks the route whose grant logs in for target: the route
// matching it, else the first authorization code route.
func (s *Server) loginRoute(target string) *route {
	if rt := s.routeFor(target); rt != nil && browserLogin(rt) {
		return rt
	}
	for _, rt := range s.routes {
		if browserLogin(rt) {
			return rt
		}
	}
	return nil
}

// browserLogin reports a route whose users sign in at the authorization
// server in the browser: the code flow and the implicit grant.
func browserLogin(rt *route) bool {
	return rt.cfg.Grant == GrantAuthorizationCode || rt.cfg.Grant == GrantImplicit
}

// callback serves the redirect URI of the authorization server at:
// /oauth2/callback, or /oauth2/callback/<name> for a named upstream. The
// state is checked (single use, bound to this browser) before anything
// else, and before the code is redeemed (SECURITY.md 6); so is that the
// response came to the redirect URI of its login's server.
func (s *Server) callback(w http.ResponseWriter, r *http.Request, at *provider) {
	switch {
	case r.Method == http.MethodPost:
		s.implicitFormPost(w, r) // an implicit grant's form_post
		return
	case r.Method != http.MethodGet:
		s.fail(w, r, errMethod)
		return
	case r.URL.RawQuery == "":
		s.fragmentPage(w, r) // an implicit grant's answer is in the fragment
		return
	}
	ls, rt, ok := s.authorizationResponse(w, r, r.URL.Query(), GrantAuthorizationCode, at)
	if !ok {
		return
	}
	q := r.URL.Query()
	code := q.Get("code")
	if code == "" || len(code) > maxParam {
		s.metrics.Auth(metrics.LoginFailed, "other")
		s.fail(w, r, errLoginFailed.withCause(errors.New("no code in the authorization response")))
		return
	}
	login, err := rt.up.Exchange(r.Context(), code, upstream.AuthRequest{RedirectURI: s.redirectURI(rt.provider), State: q.Get("state"), Nonce: ls.Nonce, Verifier: ls.Verifier})
	s.finishLogin(w, r, rt, ls, login, err, http.StatusFound)
}

// authorizationResponse checks an authorization response, code or
// implicit, up to the tokens: the state first (single use, bound to this
// browser) and before anything is redeemed (SECURITY.md 6), the route it
// belongs to (of the given grant), the server's error if it sent one (a
// silent sign-in that needs the user becomes an ordinary login), and iss
// (RFC 9207). at is the server whose redirect URI the response came to, nil
// for the implicit grant's relayed responses (whose ID token binds them to
// their server). ok=false means it answered itself.
func (s *Server) authorizationResponse(w http.ResponseWriter, r *http.Request, q url.Values, grant string, at *provider) (*session.LoginState, *route, bool) {
	if err := s.allowLogin(w, r, s.callbackLimit); err != nil {
		s.fail(w, r, err)
		return nil, nil, false
	}
	ctx := r.Context()
	refuse := func(reason string, err error) (*session.LoginState, *route, bool) {
		s.metrics.Auth(metrics.LoginFailed, reason)
		s.fail(w, r, err)
		return nil, nil, false
	}
	state := q.Get("state")
	if state == "" || len(state) > maxParam {
		return refuse("state", errLoginExpired.withCause(errors.New("missing or oversized state")))
	}
	binding, err := s.sessions.DecodeBinding(cookieValue(r, s.cookies.binding))
	if err != nil {
		return refuse("state", errLoginExpired.withCause(errors.New("no valid binding cookie")))
	}
	ls, err := s.sessions.TakeState(ctx, state)
	if errors.Is(err, session.ErrNotFound) {
		return refuse("state", errLoginExpired.withCause(errors.New("unknown, used or expired state")))
	}
	if err != nil {
		return refuse(loginFailure(err), err)
	}
	if !ls.BoundTo(binding) {
		return refuse("state", errLoginExpired.withCause(errors.New("state bound to another browser")))
	}
	rt := s.routeByIndex(ls.Route)
	if rt == nil || rt.cfg.Grant != grant {
		return refuse("state", errLoginExpired.withCause(errors.New("the login's route is gone or of another grant")))
	}
	if at != nil && rt.provider != at {
		// A mix-up (RFC 9700 §4.4): the login went to one server, the
		// answer came back to another's redirect URI. Its code must reach
		// no token endpoint.
		return refuse("issuer", errLoginFailed.withCause(fmt.Errorf("the response of a login at upstream %s came to the redirect URI of upstream %s (mix-up)", rt.provider.label(), at.label())))
	}
	if e := q.Get("error"); e != "" {
		desc := q.Get("error_description")
		if ls.Silent && needsInteraction[e] {
			// prompt=none could not sign the user in without a page:
			// an ordinary login, to the same place.
			s.log.InfoContext(r.Context(), "silent sign-in needs the user; starting an interactive login", "route", rt.index, "error", truncate(e, 64))
			if err := s.startLogin(w, r, rt, ls.RedirectTo, false); err != nil {
				s.fail(w, r, err)
			}
			return nil, nil, false
		}
		s.logServerError(ctx, rt, "authorization response", e, redactParam(desc, state))
		return refuse("server_error", &pageError{status: http.StatusForbidden, reason: "server_refused", title: "Sign-in was not completed",
			message: "The authorization server answered: " + truncate(e, 100) + ": " + truncate(redactParam(desc, state), 300),
			retry:   "/"})
	}
	// RFC 9207 §2.4: a response with an ID token may omit iss (the ID
	// token's own iss is verified); oidc-provider does so.
	if q.Has("iss") || grant != GrantImplicit || q.Get("id_token") == "" {
		if err := rt.up.CheckIssuer(ctx, q.Get("iss"), q.Has("iss")); err != nil {
			return refuse("issuer", errLoginFailed.withCause(err))
		}
	}
	return ls, rt, true
}

// finishLogin turns a completed grant into a session and sends the browser
// back where it was going (status: 302 after a GET, 303 after a POST), or
// answers the grant's failure.
func (s *Server) finishLogin(w http.ResponseWriter, r *http.Request, rt *route, ls *session.LoginState, login *upstream.Login, err error, status int) {
	if err != nil {
		s.metrics.Auth(metrics.LoginFailed, loginFailure(err))
	}
	switch {
	case err == nil:
	case errors.Is(err, upstream.ErrUnavailable): // a JWKS down is no bad token
		s.fail(w, r, err)
		return
	case errors.Is(err, upstream.ErrInvalidIDToken):
		s.fail(w, r, errTokenRejected.withCause(err))
		return
	default:
		var te *upstream.TokenError
		if errors.As(err, &te) && te.Code != "" {
			// Logged here with its code and level, not again by fail.
			s.logServerError(r.Context(), rt, "token endpoint", te.Code, te.Description)
			s.fail(w, r, errLoginFailed)
			return
		}
		s.fail(w, r, errLoginFailed.withCause(err))
		return
	}
	if err := s.beginSession(w, r, rt, login); err != nil {
		s.metrics.Auth(metrics.LoginFailed, loginFailure(err))
		s.fail(w, r, err)
		return
	}
	// The binding cookie stays: other tabs may still be logging in with it.
	target := s.safeRedirect(ls.RedirectTo) // re-validated (SECURITY.md 2)
	if target == "" {
		target = "/"
	}
	s.metrics.Auth(metrics.LoginSucceeded, rt.cfg.Grant)
	exchangeOf(r).user = cmp.Or(login.Identity.User, login.Identity.Subject)
	s.log.InfoContext(r.Context(), "login", "sub", login.Identity.Subject, "route", ls.Route, "grant", rt.cfg.Grant, "silent", ls.Silent, "refresh_token", !login.Token.RefreshToken.IsZero())
	noStore(w.Header())
	http.Redirect(w, r, target, status)
}

// loginFailure is a failed login's reason for the metrics.
func loginFailure(err error) string {
	var te *upstream.TokenError
	switch {
	case errors.Is(err, upstream.ErrUnavailable), errors.Is(err, session.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, upstream.ErrInvalidIDToken):
		return "id_token_invalid"
	case errors.As(err, &te):
		return "token_refused"
	default:
		return "other"
	}
}

// sessionFrom is the session a completed login starts.
func sessionFrom(login *upstream.Login) (*session.Session, error) {
	s := identitySession(login.Identity, *login.Token)
	s.SessionID = login.Identity.SessionID
	if len(login.Identity.Claims) > 0 {
		var err error
		if s.Claims, err = json.Marshal(login.Identity.Claims); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// identitySession is the session of id carrying tok, without the further
// claims (a caller token's session needs none).
func identitySession(id *upstream.Identity, tok upstream.Token) *session.Session {
	return &session.Session{
		Subject:           id.Subject,
		User:              id.User,
		Email:             id.Email,
		EmailVerified:     id.EmailVerified,
		Name:              id.Name,
		PreferredUsername: id.PreferredUsername,
		Groups:            id.Groups,
		Token:             tok,
	}
}

// beginSession stores the session of a completed login (any grant) at rt's
// authorization server under a new ticket and sets that server's cookie.
// A previous session of this browser at that server ends here: a new
// ticket for every login (SECURITY.md 14); its sessions at other servers
// stay.
func (s *Server) beginSession(w http.ResponseWriter, r *http.Request, rt *route, login *upstream.Login) error {
	sess, err := sessionFrom(login)
	if err != nil {
		return err
	}
	rt.provider.stamp(sess)
	cookie := rt.provider.cookie
	ctx := r.Context()
	if old, err := s.sessions.DecodeTicket(cookieValue(r, cookie)); err == nil {
		_ = s.sessions.Delete(ctx, old)
	}
	ticket, err := s.sessions.Create(ctx, sess)
	if err != nil {
		return err
	}
	value, err := s.sessions.EncodeTicket(ticket)
	if err != nil {
		return err
	}
	s.setCookie(w, cookie, value, s.sessions.Config().MaxLifetime)
	if cookieValue(r, s.cookies.signedOut) != "" {
		s.clearCookie(w, s.cookies.signedOut) // signed in again: the next login needs no word
	}
	return nil
}

// routeByIndex resolves a login state's route.
func (s *Server) routeByIndex(idx string) *route {
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 || i >= len(s.routes) {
		return nil
	}
	return s.routes[i]
}

// truncate shortens s to at most n bytes, on a UTF-8 character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// needsInteraction are the authorization errors by which a prompt=none
// request says the user must see a page (OpenID Connect Core §3.1.2.6).
var needsInteraction = map[string]bool{
	"login_required":             true,
	"interaction_required":       true,
	"consent_required":           true,
	"account_selection_required": true,
}

// userErrors are authorization server errors caused by what the user did
// (or the state of their login), not by the configuration; the others
// (invalid_scope, unauthorized_client, invalid_client, ...) most often mean
// the gateway's registration or config must change, so they are warnings.
var userErrors = map[string]bool{
	"access_denied":              true,
	"login_required":             true,
	"interaction_required":       true,
	"consent_required":           true,
	"account_selection_required": true,
	"invalid_grant":              true, // a code used twice (back button), or expired
}

// logServerError logs an error the authorization server answered, once
// per occurrence, with its code and a bounded description (already free
// of the request's credentials).
func (s *Server) logServerError(ctx context.Context, rt *route, where, code, desc string) {
	level := slog.LevelWarn
	if userErrors[code] {
		level = slog.LevelInfo
	}
	s.log.Log(ctx, level, "the authorization server refused the sign-in",
		"where", where, "error", truncate(printable(code), 64), "error_description", truncate(printable(desc), 200), "route", rt.index)
}

// redactParam removes the value v (the state: a login secret) wherever a
// server echoed it.
func redactParam(s, v string) string {
	if v == "" || !strings.Contains(s, v) {
		return s
	}
	return strings.ReplaceAll(s, v, "[redacted]")
}

// printable drops control characters from text a server sent.
func printable(s string) string { return headerValue(s) }
