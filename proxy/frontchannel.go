package proxy

import (
	"net/http"
	"net/url"
)

// frontChannelLogout serves Prefix + "/frontchannel_logout?iss=&sid="
// (OpenID Connect Front-Channel Logout 1.0 §2), rendered by the
// authorization server in an iframe when the user signs out there: the
// sessions of that login session end on every replica. Browsers send no
// SameSite=Lax cookie into a cross-site frame, so the request is judged by
// iss and sid alone: iss must be a configured upstream's issuer and sid a
// session the index knows; a wrong pair ends nothing. Only upstreams with
// frontchannel_logout accept it (the sid is the only proof), and it counts
// against the callbacks' per-address limit. The page may be framed only by
// that issuer's origin.
func (s *Server) frontChannelLogout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.fail(w, r, errMethod)
		return
	}
	if err := s.allowLogin(w, r, s.callbackLimit); err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	iss, sid := q.Get("iss"), q.Get("sid")
	var p *provider
	for _, c := range s.providers {
		if c.issuer != "" && c.issuer == iss && c.up.Config().FrontChannelLogout {
			p = c
			break
		}
	}
	if p == nil || sid == "" || len(q["iss"]) != 1 || len(q["sid"]) != 1 || len(sid) > maxParam {
		s.log.DebugContext(r.Context(), "front-channel logout refused", "reason", "iss is no issuer with frontchannel_logout, or sid is missing")
		s.fail(w, r, errBadRequest)
		return
	}
	n, err := s.endServerSessions(r.Context(), p.issuer, "", sid)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "front-channel logout", "upstream", p.label(), "sessions", n)
	h := w.Header()
	noStore(h)
	h.Del("X-Frame-Options") // CSP frame-ancestors names who may frame it
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors "+issuerOrigin(p.issuer)+"; base-uri 'none'")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("<!doctype html><title>Signed out</title>\n"))
}

// issuerOrigin is the origin of an issuer, for CSP frame-ancestors
// ('none' for one that has none).
func issuerOrigin(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" {
		return "'none'"
	}
	if o := origin(u.Scheme + "://" + u.Host); o != "" {
		return o
	}
	return "'none'"
}
