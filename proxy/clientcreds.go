package proxy

import (
	"context"
	"net/http"
	"strings"

	"github.com/authgate/authgate/metrics"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// clientCreds authenticates service-to-service routes: callers bring no
// credentials, and the backend gets the gateway's own client credentials
// token, fetched once for the fleet and renewed ahead of expiry
// (session.MachineToken). No cookie, no login, no user identity.
type clientCreds struct {
	s     *Server
	token *session.MachineToken
}

// newClientCreds sets up the route's machine token: its client (the
// route's own, or the upstream's) and what the token is for, all from
// configuration (SECURITY.md 37).
func (s *Server) newClientCreds(rt *route) (*clientCreds, error) {
	up := rt.up
	cfg := up.Config()
	req := rt.machineRequest()
	key := session.MachineKey{Issuer: serverID(cfg), ClientID: cfg.ClientID, Scopes: req.Scopes, Audience: req.Audience, Resource: req.Resource}
	fetch := func(ctx context.Context) (*upstream.Token, error) {
		tok, err := up.ClientCredentials(ctx, req)
		if err != nil {
			s.metrics.Auth(metrics.ClientCredentialsFetch, "error")
		} else {
			s.metrics.Auth(metrics.ClientCredentialsFetch, "ok")
			s.log.DebugContext(ctx, "client credentials token fetched", "route", rt.index, "expires_in", tok.Expiry.Sub(s.now()).Round(1e9).String())
		}
		return tok, err
	}
	return &clientCreds{s: s, token: s.tokens.Machine(key, fetch)}, nil
}

// machineRequest is what the route's client credentials token is for.
func (rt *route) machineRequest() upstream.ClientCredentialsRequest {
	return upstream.ClientCredentialsRequest{Scopes: rt.cfg.Scopes, Audience: rt.cfg.Audience, Resource: rt.cfg.Resource}
}

// errNoMachineToken answers when no token can be had: the authorization
// server is down or refuses the gateway, and nothing valid is cached.
var errNoMachineToken = &pageError{status: http.StatusServiceUnavailable, title: "Service token unavailable",
	message: "The gateway could not obtain its access token for this service from the authorization server. It retries by itself; try again in a moment."}

func (a *clientCreds) authenticate(_ http.ResponseWriter, r *http.Request, _ *route) (*session.Session, bool, error) {
	sess, err := a.token.Get(r.Context())
	if err != nil {
		if r.Context().Err() != nil {
			return nil, false, err
		}
		// The token cache warned when the fetch failed (once per
		// back-off period); a line per request would bury it.
		pe := errNoMachineToken.withCause(err)
		pe.logged = true
		return nil, false, pe
	}
	return sess, true, nil
}

// backendRefused drops the machine token the backend just called invalid
// (RFC 6750 §3.1 invalid_token), so the next request fetches a new one;
// the 401 itself goes back to the caller, never a silent replay.
func (a *clientCreds) backendRefused(resp *http.Response) {
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
		return
	}
	if x := exchangeOf(resp.Request); x.sess != nil {
		a.token.Invalidate(resp.Request.Context(), x.sess.Token.AccessToken)
	}
}
