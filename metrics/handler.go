package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the metrics listener: /metrics from m's registry,
// /healthz and /readyz by health (the public listener's own handlers),
// /admin/ by admin when it is not nil (the operators' API), and with
// pprof the Go profiler under /debug/pprof/. Anything else is 404.
func (m *Metrics) Handler(health, admin http.Handler, pprofOn bool, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slogPrinter{log},
		Registry:          m.reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	}))
	mux.Handle("GET /healthz", health)
	mux.Handle("GET /readyz", health)
	if admin != nil {
		mux.Handle("/admin/", admin)
	}
	if pprofOn {
		// The handlers of net/http/pprof, mounted here by hand: importing
		// it registers them on http.DefaultServeMux too, which no server
		// of the gateway serves.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Server returns the metrics listener's http.Server for cfg.Listen,
// serving Handler. Its timeouts allow a 30-second CPU profile.
func (m *Metrics) Server(cfg Config, health, admin http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              cfg.Listen,
		Handler:           m.Handler(health, admin, cfg.Pprof, log),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// slogPrinter gives promhttp's error log to slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	if p.log != nil {
		p.log.Warn("metrics: gathering failed", "error", fmt.Sprint(v...))
	}
}
