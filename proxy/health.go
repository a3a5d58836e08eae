package proxy

import (
	"context"
	"net/http"
	"time"
)

// Health serves /healthz and /readyz: on the public listener (for
// compatibility) and on the metrics listener.
func (s *Server) Health() http.Handler { return http.HandlerFunc(s.serveHealth) }

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/readyz" {
		s.readyz(w, r)
		return
	}
	s.healthz(w, r)
}

// healthz answers 200 while the process serves (liveness).
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Drain makes /readyz answer 503 from now on, while every other request is
// still served: the start of a graceful shutdown, so that load balancers
// and Kubernetes stop sending new requests before the listener closes.
func (s *Server) Drain() { s.draining.Store(true) }

// readyz answers 200 when the session store and every authorization
// server's metadata are reachable (readiness), else 503 naming what is
// not: "upstreams" has each server by name ("default" for `upstream:`),
// "authorization_server" is "ok" when all of them are. While shutting
// down (Drain) it answers 503 at once.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": http.StatusText(http.StatusServiceUnavailable), "checks": map[string]string{"shutdown": "draining"}})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]any{"session_store": "ok", "authorization_server": "ok"}
	status := http.StatusOK
	if err := s.sessions.Store().Ping(ctx); err != nil {
		checks["session_store"], status = "unavailable", http.StatusServiceUnavailable
	}
	// All servers at once, each bounded by the check's deadline: a
	// discovery in flight does not heed a caller's context (it is shared),
	// so one hung server must not hold the answer past it.
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(s.providers))
	ups := make(map[string]string, len(s.providers))
	for _, p := range s.providers {
		ups[p.label()] = "unavailable"
		go func() {
			_, err := p.up.Metadata(ctx)
			results <- result{p.label(), err}
		}()
	}
wait:
	for range s.providers {
		select {
		case res := <-results:
			if res.err == nil {
				ups[res.name] = "ok"
			}
		case <-ctx.Done():
			break wait
		}
	}
	for _, v := range ups {
		if v != "ok" {
			checks["authorization_server"], status = "unavailable", http.StatusServiceUnavailable
		}
	}
	checks["upstreams"] = ups
	writeJSON(w, status, map[string]any{"status": http.StatusText(status), "checks": checks})
}
