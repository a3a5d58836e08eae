package proxy

import (
	"context"
	"net/http"
	"time"
)

// healthz answers 200 while the process serves (liveness).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when the session store and the authorization server's
// metadata are reachable (readiness), else 503 naming what is not.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"session_store": "ok", "authorization_server": "ok"}
	status := http.StatusOK
	if err := s.sessions.Store().Ping(ctx); err != nil {
		checks["session_store"], status = "unavailable", http.StatusServiceUnavailable
	}
	for _, rt := range s.routes {
		if _, err := rt.up.Metadata(ctx); err != nil {
			checks["authorization_server"], status = "unavailable", http.StatusServiceUnavailable
			break
		}
	}
	writeJSON(w, status, map[string]any{"status": http.StatusText(status), "checks": checks})
}
