package proxy

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/authgate/authgate/upstream"
)

// minAdminToken is the shortest admin token accepted: it guards the power
// to end anyone's sessions.
const minAdminToken = 32

// Admin configures the operators' API, served only on the metrics
// listener (never the public one).
type Admin struct {
	// Token authenticates the admin API: "Authorization: Bearer <token>",
	// at least 32 characters (e.g. openssl rand -base64 32). Empty: no
	// admin API.
	Token upstream.Secret `yaml:"token"`
}

func (a Admin) validate() error {
	if !a.Token.IsZero() && len(a.Token.Reveal()) < minAdminToken {
		return fmt.Errorf("admin.token: at least %d characters (generate one with: openssl rand -base64 32)", minAdminToken)
	}
	return nil
}

// Revoke's refusals of what it was asked.
var (
	errNoSuchUpstream = errors.New("no such upstream")
	errNoTarget       = errors.New("name a sub or a sid")
)

// Revoke ends, on every replica, the sessions an operator names: every
// session of user sub, or those of the server's login session sid (of sub
// only, when both are given), at the upstream named (DefaultUpstream for
// `upstream:`), or at every configured server when upstreamName is empty;
// their refresh tokens are revoked. It returns how many ended.
func (s *Server) Revoke(ctx context.Context, upstreamName, sub, sid string) (int, error) {
	if sub == "" && sid == "" {
		return 0, errNoTarget
	}
	var issuers []string
	for _, p := range s.providers {
		if upstreamName != "" && p.label() != upstreamName || p.issuer == "" {
			continue
		}
		if !slices.Contains(issuers, p.issuer) {
			issuers = append(issuers, p.issuer)
		}
	}
	if upstreamName != "" && len(issuers) == 0 {
		return 0, fmt.Errorf("%w %q with an issuer", errNoSuchUpstream, upstreamName)
	}
	total := 0
	for _, iss := range issuers {
		n, err := s.endServerSessions(ctx, iss, sub, sid)
		total += n
		if err != nil {
			return total, err
		}
	}
	s.log.InfoContext(ctx, "sessions revoked by an operator", "upstream", upstreamName, "sub", sub, "sid", sid != "", "sessions", total)
	return total, nil
}

// AdminHandler is the operators' API, for the metrics listener only; nil
// when admin.token is not set.
//
//	POST /admin/revoke   sub=alice [sid=...] [upstream=name]
//	  → 200 {"ended": n}; 400 without sub or sid or for an unknown
//	  upstream; 401 without the admin token; 503 when the store is down.
func (s *Server) AdminHandler() http.Handler {
	if s.cfg.Admin.Token.IsZero() {
		return nil
	}
	want := []byte("Bearer " + s.cfg.Admin.Token.Reveal())
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/revoke", func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="authgate admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "the admin token is missing or wrong"})
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "POST sub= or sid= (and upstream=)"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxEndpointBody)
		if err := r.ParseForm(); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the body is not a form"})
			return
		}
		f := r.Form
		n, err := s.Revoke(r.Context(), strings.TrimSpace(f.Get("upstream")), f.Get("sub"), f.Get("sid"))
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, map[string]int{"ended": n})
		case errors.Is(err, errNoSuchUpstream) || errors.Is(err, errNoTarget):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		default:
			s.log.WarnContext(r.Context(), "admin revocation failed", "error", err.Error())
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "the session store is unavailable; retry", "ended": n})
		}
	})
	return mux
}
