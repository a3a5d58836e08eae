package proxy

import (
	"log/slog"
	"net/http"
	"time"
)

// statusWriter records the status and size of a response. Unwrap lets
// http.ResponseController reach Flush and Hijack (websockets, streaming).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withAccessLog logs one line per request: method, path (never the query,
// which carries codes and state), status, size and duration.
func (s *Server) withAccessLog(next http.Handler) http.Handler {
	if !on(s.cfg.AccessLog, true) {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		attrs := [...]slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", sw.status),
			slog.Int64("bytes", sw.bytes),
			slog.Duration("duration", time.Since(start)),
			slog.String("remote", r.RemoteAddr),
			{}, // the client behind trusted proxies
		}
		n := len(attrs) - 1
		if len(s.trusted) > 0 {
			attrs[n] = slog.String("client", s.trusted.clientAddr(r).String())
			n++
		}
		s.log.LogAttrs(r.Context(), levelFor(sw.status), "request", attrs[:n]...)
	})
}

// levelFor logs server failures louder than the rest.
func levelFor(status int) slog.Level {
	if status >= 500 {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
