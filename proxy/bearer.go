package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/authgate/authgate/metrics"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// Caller token cache bounds (SECURITY.md 44): a valid token is reused until
// its expiry and at most verifiedTTL (JWT) or the introspection cap; an
// invalid one is remembered briefly, so a flood of the same garbage costs
// one check and a token that just became valid is not refused for long.
const (
	verifiedTTL = 5 * time.Minute
	invalidTTL  = 5 * time.Second
)

// errInvalidToken answers a caller token that failed validation (RFC 6750
// §3.1): never a login redirect, never a backend call.
var errInvalidToken = &pageError{status: http.StatusUnauthorized, reason: "invalid_token", title: "Invalid access token",
	message: "The access token in the Authorization header is invalid, expired or not meant for this service."}

// callerBearer returns the token of "Authorization: Bearer", "" if none.
func callerBearer(h http.Header) string {
	v := h.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return ""
	}
	return strings.TrimSpace(v[7:])
}

// authenticateBearer validates a caller's own access token for rt and
// returns the session it stands for, carrying the token as is. A repeated
// token costs a keyed hash and a map lookup.
func (s *Server) authenticateBearer(w http.ResponseWriter, r *http.Request, rt *route, raw string) (*session.Session, bool, error) {
	k := s.tokens.CallerKey(raw, rt.callerScope)
	if sess, ok := s.tokens.Caller(k); ok {
		if sess == nil {
			s.metrics.Auth(metrics.BearerInvalid, "cached")
			return nil, false, s.refuseBearer(w, r, nil)
		}
		s.metrics.Auth(metrics.BearerValid, "cached")
		return sess, true, nil
	}
	ctx := r.Context()
	now := s.now()
	var at *upstream.AccessToken
	var err error
	shared := false
	kind := "jwt"
	if strings.Count(raw, ".") == 2 {
		at, err = rt.up.VerifyAccessToken(ctx, raw, rt.audience)
	} else if sess, ok := s.tokens.SharedCaller(ctx, k); ok {
		sess.Token.AccessToken = upstream.Secret(raw)
		s.tokens.PutCaller(k, sess, sess.Token.Expiry)
		s.metrics.Auth(metrics.BearerValid, "cached")
		return sess, true, nil
	} else {
		kind = "opaque"
		// Concurrent requests with one new token share one call.
		v, ierr, _ := s.introspections.Do(string(k[:]), func() (any, error) {
			return rt.up.Introspect(context.WithoutCancel(ctx), upstream.Secret(raw), rt.audience)
		})
		at, _ = v.(*upstream.AccessToken)
		err = ierr
		shared = true
	}
	switch {
	case err == nil:
	case errors.Is(err, upstream.ErrInvalidToken):
		s.metrics.Auth(metrics.BearerInvalid, kind)
		s.tokens.PutCaller(k, nil, now.Add(invalidTTL))
		return nil, false, s.refuseBearer(w, r, err)
	case errors.Is(err, upstream.ErrNoIntrospection):
		s.metrics.Auth(metrics.BearerInvalid, "no_introspection")
		s.introspectionWarning.Do(func() {
			s.log.WarnContext(r.Context(), "an opaque caller token cannot be validated: the authorization server has no introspection_endpoint (set upstream.introspection_endpoint)")
		})
		return nil, false, s.refuseBearer(w, r, err)
	default:
		return nil, false, err // the server or its keys are unreachable: 502/503, not the caller's fault
	}
	s.metrics.Auth(metrics.BearerValid, kind)
	id := at.Identity
	until := now.Add(verifiedTTL)
	if shared {
		until = now.Add(s.cfg.IntrospectionCacheTTL)
	}
	if !at.Expiry.IsZero() && at.Expiry.Before(until) {
		until = at.Expiry
	}
	sess := identitySession(id, upstream.Token{AccessToken: upstream.Secret(raw), TokenType: "Bearer", Expiry: until, Scope: at.Scope})
	s.tokens.PutCaller(k, sess, until)
	if shared {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		s.tokens.ShareCaller(sctx, k, sess, until)
		cancel()
	}
	return sess, true, nil
}

// refuseBearer answers 401 invalid_token (RFC 6750 §3), logging why at
// debug (never the token).
func (s *Server) refuseBearer(w http.ResponseWriter, r *http.Request, cause error) error {
	if cause != nil {
		s.log.DebugContext(r.Context(), "caller token refused", "path", r.URL.Path, "error", cause.Error())
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="authgate", error="invalid_token"`)
	s.page(w, r, errInvalidToken)
	return nil
}
