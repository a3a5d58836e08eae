// Package metrics is authgate's Prometheus instrumentation: the metric
// families, created once on a registry of their own (never the
// client library's global default), the handles the hot path increments,
// and the handler of the separate metrics listener.
//
// Labels are bounded by construction: route names come from the
// configuration, every other label value from a fixed list in this
// package. No user, email, token, cookie, query or request path is ever a
// label value (SECURITY.md 46).
package metrics

import (
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds authgate's metric families and their registry. Its methods
// are safe for concurrent use. Create it with New; a nil *Metrics records
// nothing.
type Metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	durations   *prometheus.HistogramVec
	auth        [numEvents]map[string]prometheus.Counter
	upstreamVec *prometheus.HistogramVec
	upstream    *UpstreamObserver // the default's
	store       map[string]storeHandles
	otherStore  storeHandles
}

// Build describes the running binary for authgate_build_info.
type Build struct {
	// Version is the release, e.g. "v1.2.0". Empty: the main module's
	// version from the binary's build information, else "unknown".
	Version string
	// Revision is the VCS revision. Empty: vcs.revision from the build
	// information, else "unknown".
	Revision string
}

// Request duration buckets, in seconds: from a cached session (well under
// a millisecond of the gateway's own time) to a slow backend.
var requestBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Outbound call buckets: the authorization server (tens of milliseconds)
// and the session store (Redis: a fraction of a millisecond).
var callBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// New creates the metric families on a new registry, with the Go runtime
// and process collectors and authgate_build_info.
func New(b Build) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authgate_http_requests_total",
			Help: "Requests answered, by route (its name, else its index; _-prefixed values for the gateway's own endpoints), the route's grant and the status class.",
		}, []string{"route", "grant", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "authgate_http_request_duration_seconds",
			Help:    "Time from a request's arrival to its answer's last byte written, backend included, by route and grant.",
			Buckets: requestBuckets,
		}, []string{"route", "grant"}),
	}
	reg.MustRegister(m.requests, m.durations,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.newAuth(reg)
	m.newUpstream(reg)
	m.newStore(reg)
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "authgate_build_info",
		Help: "Always 1; the labels describe the running binary.",
	}, []string{"version", "goversion", "revision"})
	reg.MustRegister(info)
	b = b.complete()
	info.WithLabelValues(b.Version, runtime.Version(), b.Revision).Set(1)
	return m
}

// complete fills the empty fields from the binary's build information.
func (b Build) complete() Build {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && b.Revision == "" {
				b.Revision = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "unknown"
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	return b
}

// Registry is where the families live: for the metrics handler, and for
// tests that read a value.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Route holds the request handles of one route (or of one of the
// gateway's own endpoints), made once, so that a request costs a few
// atomic additions and no label lookup.
type Route struct {
	codes    [6]prometheus.Counter // index status/100; 0 for anything outside 1xx-5xx
	duration prometheus.Observer
}

// Route returns the handles for requests of route name with grant. The
// caller bounds the names: configured route names and a fixed set of
// endpoint names. A nil *Metrics returns nil, which records nothing.
func (m *Metrics) Route(name, grant string) *Route {
	if m == nil {
		return nil
	}
	rt := &Route{duration: m.durations.WithLabelValues(name, grant)}
	for i := range rt.codes {
		code := "other"
		if i > 0 {
			code = string(rune('0'+i)) + "xx"
		}
		rt.codes[i] = m.requests.WithLabelValues(name, grant, code)
	}
	return rt
}

// Observe records one answered request.
func (r *Route) Observe(status int, d time.Duration) {
	if r == nil {
		return
	}
	c := status / 100
	if c < 1 || c > 5 {
		c = 0
	}
	r.codes[c].Inc()
	r.duration.Observe(d.Seconds())
}
