package upstreamtest

import (
	"net"
	"net/http"
	"time"
)

// Fault is how an endpoint misbehaves, for fault tests (SetFault). The
// zero Fault is normal service.
type Fault struct {
	// Delay is how long the endpoint waits before it answers; with Status
	// zero and Drop false it then does its normal work (a slow server).
	// A request abandoned meanwhile gets nothing.
	Delay time.Duration
	// Status, when not zero, is sent instead of the endpoint's work, with
	// Header and Body: 500 with an HTML page, 200 with garbage JSON, 302
	// with a Location, whatever the test needs.
	Status int
	// Header holds the headers of the Status answer (Content-Type,
	// Location, ...).
	Header http.Header
	// Body is the body of the Status answer.
	Body string
	// Drop closes the connection without an answer (a TCP reset), as a
	// crashing server or a broken load balancer does.
	Drop bool
}

// SetFault makes the named endpoint ("token", "introspect", "jwks",
// "userinfo", "discovery", ... as Count names them) misbehave as f until
// the zero Fault restores it. Faulty requests are still counted by Count,
// and token requests by GrantCount. SetTokenDelay and
// SetTokenEndpointDown keep working alongside.
func (s *Server) SetFault(endpoint string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Delay == 0 && f.Status == 0 && !f.Drop {
		delete(s.faults, endpoint)
		return
	}
	s.faults[endpoint] = f
}

// injectFault applies the endpoint's fault to the request, and reports
// whether it answered (else the endpoint does its work).
func (s *Server) injectFault(endpoint string, w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	f, ok := s.faults[endpoint]
	s.mu.Unlock()
	if !ok {
		return false
	}
	if f.Delay > 0 && !s.wait(r, f.Delay) {
		return true
	}
	switch {
	case f.Drop:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return true
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, not an orderly close
		}
		_ = conn.Close()
		return true
	case f.Status != 0:
		for k, vs := range f.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(f.Body))
		return true
	}
	return false
}
