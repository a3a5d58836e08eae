package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream"
)

// Revocations of the refresh tokens of sessions a logout ends: at most
// revokeParallel at once, all within revokeTimeout.
const (
	revokeParallel = 8
	revokeTimeout  = 5 * time.Second
)

// replayWindow is how long a logout token's jti is remembered: longer than
// the oldest token VerifyLogoutToken accepts, clock skew included.
const replayWindow = upstream.MaxLogoutTokenAge + 10*time.Minute

// backChannelLogout serves Prefix + "/backchannel_logout" (OpenID Connect
// Back-Channel Logout 1.0 §2.5): the authorization server POSTs a
// logout_token; once it validates and its jti is new, every session of the
// login session it names (or of the user, without a sid) ends on every
// replica and its refresh token is revoked. 200 when done; 400 with an
// error JSON for a token that is not valid (nothing ends); 503 when the
// store cannot tell or do it, so the server may retry.
func (s *Server) backChannelLogout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		logoutError(w, http.StatusMethodNotAllowed, "invalid_request", "POST the logout_token")
		return
	}
	if err := r.ParseForm(); err != nil {
		if slowBody(err) {
			w.Header().Set("Connection", "close")
			logoutError(w, http.StatusRequestTimeout, "invalid_request", "the body arrived too slowly")
			return
		}
		logoutError(w, http.StatusBadRequest, "invalid_request", "the body is not a form")
		return
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" || len(r.PostForm["logout_token"]) != 1 {
		logoutError(w, http.StatusBadRequest, "invalid_request", "exactly one logout_token is required")
		return
	}
	ctx := r.Context()
	p, lt, err := s.verifyLogoutToken(ctx, upstream.Secret(raw))
	if err != nil {
		s.log.InfoContext(r.Context(), "back-channel logout refused", "reason", err.Error())
		logoutError(w, http.StatusBadRequest, "invalid_request", "the logout_token is not valid")
		return
	}
	jti := p.issuer + "\x00" + lt.ID
	first, err := s.sessions.Claim(ctx, jti, replayWindow)
	if err != nil {
		s.log.WarnContext(r.Context(), "back-channel logout failed", "upstream", p.label(), "error", err.Error())
		logoutError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the session store is unavailable; retry")
		return
	}
	if !first {
		s.log.InfoContext(r.Context(), "back-channel logout refused", "upstream", p.label(), "reason", "logout token replayed (jti seen before)")
		logoutError(w, http.StatusBadRequest, "invalid_request", "the logout_token was used before")
		return
	}
	n, err := s.endServerSessions(ctx, p.issuer, lt.Subject, lt.SessionID)
	if err != nil {
		// The server is told to retry: its retry must not be a replay.
		if uerr := s.sessions.Unclaim(context.WithoutCancel(ctx), jti); uerr != nil {
			s.log.WarnContext(ctx, "back-channel logout: the failed token's jti stays claimed; the server's retry will be refused", "error", uerr.Error())
		}
		s.log.WarnContext(r.Context(), "back-channel logout failed", "upstream", p.label(), "sub", lt.Subject, "error", err.Error())
		logoutError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the session store is unavailable; retry")
		return
	}
	s.log.InfoContext(r.Context(), "back-channel logout", "upstream", p.label(), "sub", lt.Subject, "sid", lt.SessionID != "", "sessions", n)
	noStore(w.Header())
	w.WriteHeader(http.StatusOK)
}

// verifyLogoutToken finds the provider a logout token is from (its issuer,
// and its client among the token's audiences) and validates the token
// with that provider's client.
func (s *Server) verifyLogoutToken(ctx context.Context, raw upstream.Secret) (*provider, *upstream.LogoutToken, error) {
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw.Reveal(), &claims); err != nil {
		return nil, nil, errors.New("not a JWT")
	}
	var lastErr error
	for _, p := range s.providers {
		if p.issuer == "" || p.issuer != claims.Issuer {
			continue
		}
		lt, err := p.up.VerifyLogoutToken(ctx, raw)
		if err == nil {
			return p, lt, nil
		}
		lastErr = err
	}
	if lastErr == nil {
		return nil, nil, errors.New("its issuer is none of the configured upstreams'")
	}
	return nil, nil, lastErr
}

// endServerSessions ends the sessions a server's logout names (see
// session.Manager.EndSessions) and revokes their refresh tokens, each at
// the server that issued it. It returns how many ended.
func (s *Server) endServerSessions(ctx context.Context, issuer, sub, sid string) (int, error) {
	ended, err := s.sessions.EndSessions(ctx, issuer, sub, sid)
	// A few at a time, all within revokeTimeout: the server that sent a
	// back-channel logout waits for the answer.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	sem := make(chan struct{}, revokeParallel)
	var wg sync.WaitGroup
	for _, sess := range ended {
		p := s.provider(sess.Upstream)
		if p == nil || !p.owns(sess) || sess.Token.RefreshToken.IsZero() {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := p.up.Revoke(rctx, sess.Token.RefreshToken, "refresh_token"); err != nil {
				s.log.WarnContext(ctx, "refresh token revocation failed", "upstream", p.label(), "error", err.Error())
			}
		})
	}
	wg.Wait()
	return len(ended), err
}

// logoutError answers a logout request that failed, in the error JSON of
// RFC 6749 §5.2 that Back-Channel Logout 1.0 §2.8 refers to.
func logoutError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}
