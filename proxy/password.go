package proxy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/authgate/authgate/metrics"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// Routes with grant: password (RFC 6749 §4.3, which RFC 9700 §2.4 says
// not to use where anything else works): browsers sign in through the
// gateway's own form, legacy clients send HTTP Basic and the backend gets
// a bearer token either way. Passwords go to the token endpoint and
// nowhere else: never stored, logged, cached in clear, put in a URL or
// echoed into the form.

// maxCredential bounds a username or password read from a form or a Basic
// header.
const maxCredential = 1024

var (
	// msgBadCredentials is the one answer to a wrong password and an
	// unknown user alike (SECURITY.md 35).
	msgBadCredentials = "Invalid username or password."
	errThrottled      = &pageError{status: http.StatusTooManyRequests, reason: "throttled", title: "Too many attempts",
		message: "Too many failed sign-ins for this account or from this address. Wait a while, then try again."}
	errLoginCSRF = &pageError{status: http.StatusForbidden, reason: "login_csrf", title: "Sign-in refused",
		message: "This sign-in form was not opened in this browser, or it expired. Open the sign-in page again.", retry: "/"}
	errPasswordRefused = &pageError{status: http.StatusBadGateway, title: "Sign-in service refused the gateway",
		message: "The authorization server refused the gateway's password sign-in. The administrator must allow the password grant for the gateway's client."}
)

// basic answers a request that carried HTTP Basic credentials: exchanged
// once for a token, cached under a keyed hash of the credentials for at
// most the token's lifetime and password.basic_cache_ttl.
func (s *Server) basic(w http.ResponseWriter, r *http.Request, rt *route, user, pass string) (*session.Session, bool, error) {
	if len(user) > maxCredential || len(pass) > maxCredential || user == "" || pass == "" {
		return nil, false, s.basicChallenge(w, r)
	}
	k := s.tokens.CallerKey(strconv.Itoa(len(user))+":"+user+pass, "basic\x00"+strconv.Itoa(rt.index))
	if sess, ok := s.tokens.Caller(k); ok && sess != nil {
		// Even a cached login waits out a lock: else the lock would
		// answer a guess of the cached password with 200.
		if wait, err := s.throttle.Check(r.Context(), user, subscriber(s.trusted.clientAddr(r)).String()); err != nil {
			return nil, false, err
		} else if wait > 0 {
			s.metrics.Auth(metrics.Throttled, "password")
			return nil, false, throttled(wait)
		}
		return sess, true, nil
	}
	login, err := s.passwordLogin(r, rt, user, upstream.Secret(pass))
	if err == errBadCredentialsPage {
		return nil, false, s.basicChallenge(w, r)
	}
	if err != nil {
		return nil, false, err // 429 (throttled), 502, 503, 504
	}
	sess, err := sessionFrom(login)
	if err != nil {
		return nil, false, err
	}
	until := s.now().Add(s.cfg.Password.BasicCacheTTL)
	if e := sess.Token.Expiry; !e.IsZero() && e.Before(until) {
		until = e
	}
	s.tokens.PutCaller(k, sess, until)
	return sess, true, nil
}

// errBadCredentialsPage is passwordLogin's answer to invalid_grant.
var errBadCredentialsPage = &pageError{status: http.StatusUnauthorized, title: "Sign-in failed", message: msgBadCredentials}

// basicChallenge answers 401 with the Basic challenge (RFC 7617).
func (s *Server) basicChallenge(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("WWW-Authenticate", `Basic realm="authgate", charset="UTF-8"`)
	s.page(w, r, errBadCredentialsPage)
	return nil
}

// passwordLogin is the throttled exchange of a username and password at
// rt's token endpoint, shared by the form and Basic. The throttle admits
// the attempt first (counting it for the account at once, so parallel
// attempts cannot overrun the limit), so that the right password is
// refused as well while an account or address is locked, and the token
// endpoint never sees those attempts.
func (s *Server) passwordLogin(r *http.Request, rt *route, user string, pass upstream.Secret) (*upstream.Login, error) {
	ctx := r.Context()
	addr := subscriber(s.trusted.clientAddr(r)).String()
	if wait, err := s.throttle.Begin(ctx, user, addr); err != nil {
		return nil, err
	} else if wait > 0 {
		s.metrics.Auth(metrics.Throttled, "password")
		return nil, throttled(wait)
	}
	login, err := rt.up.Password(ctx, user, pass)
	if upstream.IsInvalidGrant(err) {
		s.metrics.Auth(metrics.LoginFailed, "bad_credentials")
	} else if err != nil {
		s.metrics.Auth(metrics.LoginFailed, loginFailure(err))
	}
	if err == nil {
		s.metrics.Auth(metrics.LoginSucceeded, GrantPassword)
		exchangeOf(r).user = cmp.Or(login.Identity.User, login.Identity.Subject)
		if err := s.throttle.Succeed(ctx, user); err != nil {
			s.log.WarnContext(r.Context(), "sign-in throttle not reset", "error", err.Error())
		}
		s.log.InfoContext(r.Context(), "login", "sub", login.Identity.Subject, "route", rt.index, "grant", GrantPassword)
		return login, nil
	}
	var te *upstream.TokenError
	switch {
	case upstream.IsInvalidGrant(err):
		// A wrong password or an unknown user: counted, never cached.
		if ferr := s.throttle.Fail(context.WithoutCancel(ctx), addr); ferr != nil {
			return nil, ferr // fail closed: an uncounted attempt would dodge the throttle
		}
		s.log.InfoContext(r.Context(), "password sign-in failed", "route", rt.index, "client", addr)
		return nil, errBadCredentialsPage
	case errors.As(err, &te) && te.StatusCode >= 400 && te.StatusCode < 500 && te.Code != "":
		// invalid_client, unauthorized_client, unsupported_grant_type:
		// the configuration, not the user.
		if _, seen := s.refusalWarned.LoadOrStore(te.Code, true); !seen {
			s.log.WarnContext(r.Context(), "the authorization server refuses the password grant: allow grant type password for the gateway's client (or check its credentials)",
				"error", printable(truncate(te.Code, 64)), "error_description", printable(truncate(redactParam(redactParam(te.Description, pass.Reveal()), user), 200)), "route", rt.index)
		}
		return nil, errPasswordRefused.withMessage("The authorization server answered " + truncate(te.Code, 64) + ". The administrator must allow the password grant for the gateway's client.")
	case errors.Is(err, upstream.ErrInvalidIDToken):
		return nil, errTokenRejected.withCause(err)
	default:
		return nil, err
	}
}

// throttled is the 429 for a locked account or address.
func throttled(wait time.Duration) error {
	pe := *errThrottled
	pe.retryAfter = wait
	return &pe
}

// passwordChallenge sends a browser to the login form, and anything else
// the Basic challenge.
func (s *Server) passwordChallenge(w http.ResponseWriter, r *http.Request) error {
	if fa := forwardAuthOf(r); fa != nil && fa.redirect && isNavigation(r) {
		return s.forwardAuthChallenge(w, r, fa, "/login", "")
	}
	if !isNavigation(r) || forwardAuthOf(r) != nil {
		return s.basicChallenge(w, r)
	}
	noStore(w.Header())
	http.Redirect(w, r, s.cfg.Prefix+"/login?rd="+url.QueryEscape(s.requestTarget(r)), http.StatusFound)
	return nil
}

// login serves /oauth2/login: GET shows the form, POST signs in.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		// Credentials never come from a URL (SECURITY.md 35).
		if q := r.URL.Query(); q.Has("password") || q.Has("username") {
			s.fail(w, r, errMethod)
			return
		}
		rd := s.safeRedirect(r.URL.Query().Get("rd"))
		rt := s.passwordRoute(rd)
		if rt == nil {
			s.fail(w, r, errNoPage)
			return
		}
		notice := ""
		if s.takeSignedOut(w, r) {
			notice = msgSignedOut
		}
		s.loginForm(w, r, http.StatusOK, rd, "", "", notice)
	case http.MethodPost:
		s.loginPost(w, r)
	default:
		s.fail(w, r, errMethod)
	}
}

// loginForm renders the form with a CSRF token bound to this browser's
// binding cookie (set here when missing).
func (s *Server) loginForm(w http.ResponseWriter, r *http.Request, status int, rd, username, msg, notice string) {
	raw := cookieValue(r, s.cookies.binding)
	if _, err := s.sessions.DecodeBinding(raw); err != nil {
		b, err := session.NewBinding()
		if err == nil {
			raw, err = s.sessions.EncodeBinding(b)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.setCookie(w, s.cookies.binding, raw, s.sessions.Config().LoginTimeout)
	}
	if rd == "" {
		rd = "/"
	}
	s.render(w, r, status, pageData{
		Title:      "Sign in",
		formTarget: strings.TrimSpace(s.loginFormActions(r.Context())),
		Login:      &loginForm{Action: s.cfg.Prefix + "/login", CSRF: loginToken(raw), RD: rd, Username: username, Error: msg, Notice: notice},
	})
}

// loginPost checks the form's CSRF token before anything else, then signs
// in and answers 303 to rd.
func (s *Server) loginPost(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	f := r.PostForm // never the URL's query
	raw := cookieValue(r, s.cookies.binding)
	if _, err := s.sessions.DecodeBinding(raw); err != nil ||
		subtle.ConstantTimeCompare([]byte(f.Get("csrf")), []byte(loginToken(raw))) != 1 {
		s.fail(w, r, errLoginCSRF)
		return
	}
	rd := s.safeRedirect(f.Get("rd")) // re-validated (SECURITY.md 1)
	if rd == "" {
		rd = "/"
	}
	rt := s.passwordRoute(rd)
	if rt == nil {
		s.fail(w, r, errNoPage)
		return
	}
	user, pass := f.Get("username"), f.Get("password")
	if user == "" || pass == "" || len(user) > maxCredential || len(pass) > maxCredential {
		s.loginForm(w, r, http.StatusUnauthorized, rd, truncate(user, maxCredential), msgBadCredentials, "")
		return
	}
	login, err := s.passwordLogin(r, rt, user, upstream.Secret(pass))
	if err == errBadCredentialsPage {
		s.loginForm(w, r, http.StatusUnauthorized, rd, user, msgBadCredentials, "")
		return
	}
	if err == nil {
		err = s.beginSession(w, r, rt, login)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	noStore(w.Header())
	http.Redirect(w, r, rd, http.StatusSeeOther)
}

// passwordRoute is the password route that signs in for target: the route
// matching it, else the first password route.
func (s *Server) passwordRoute(target string) *route {
	if target == "" {
		target = "/"
	}
	if rt := s.routeFor(target); rt != nil && rt.cfg.Grant == GrantPassword {
		return rt
	}
	for _, rt := range s.routes {
		if rt.cfg.Grant == GrantPassword {
			return rt
		}
	}
	return nil
}

// loginToken is the login form's CSRF token: a hash of the HttpOnly binding
// cookie, which another site can neither read nor derive.
func loginToken(binding string) string {
	sum := sha256.Sum256([]byte("authgate login\x00" + binding))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// basicCredentials reads "Authorization: Basic"; ok is false for any other
// scheme.
func basicCredentials(authz string) (user, pass string, ok bool) {
	if len(authz) < 6 || !strings.EqualFold(authz[:6], "basic ") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(authz[6:]))
	if err != nil {
		return "", "", true // Basic, but garbage: a challenge
	}
	user, pass, _ = strings.Cut(string(raw), ":")
	return user, pass, true
}
