package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// upstreamEndpoints are the authorization server's endpoints the gateway
// calls; upstreamOutcomes what came of a call.
var (
	upstreamEndpoints = []string{"discovery", "jwks", "token", "userinfo", "introspection", "revocation"}
	upstreamOutcomes  = []string{"2xx", "4xx", "5xx", "error"} // error: no answer (network, timeout)
)

type upstreamKey struct{ endpoint, outcome string }

func (m *Metrics) newUpstream(reg *prometheus.Registry) {
	m.upstreamVec = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "authgate_upstream_request_duration_seconds",
		Help:    "Calls to the authorization servers by upstream (its name under upstreams:, default for upstream:), endpoint (discovery, jwks, token, userinfo, introspection, revocation) and outcome (2xx, 4xx, 5xx, error: no answer).",
		Buckets: callBuckets,
	}, []string{"upstream", "endpoint", "outcome"})
	reg.MustRegister(m.upstreamVec)
	m.upstream = m.Upstream("default")
}

// UpstreamObserver records the calls to one configured authorization
// server; it implements upstream.Observer. Its handles are made once.
type UpstreamObserver struct {
	handles map[upstreamKey]prometheus.Observer
}

// Upstream returns the observer of the authorization server configured
// under name ("default" for upstream:): a name from the configuration,
// so the label stays bounded. Nil on a nil Metrics.
func (m *Metrics) Upstream(name string) *UpstreamObserver {
	if m == nil {
		return nil
	}
	o := &UpstreamObserver{handles: make(map[upstreamKey]prometheus.Observer, len(upstreamEndpoints)*len(upstreamOutcomes))}
	for _, e := range upstreamEndpoints {
		for _, oc := range upstreamOutcomes {
			o.handles[upstreamKey{e, oc}] = m.upstreamVec.WithLabelValues(name, e, oc)
		}
	}
	return o
}

// ObserveCall records a call of the default upstream; see
// UpstreamObserver.ObserveCall.
func (m *Metrics) ObserveCall(endpoint string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.upstream.ObserveCall(endpoint, status, d)
}

// ObserveCall records a call to the authorization server's endpoint (one
// of upstreamEndpoints; others are dropped) that answered status (0: no
// answer) after d.
func (o *UpstreamObserver) ObserveCall(endpoint string, status int, d time.Duration) {
	if o == nil {
		return
	}
	outcome := "error"
	switch {
	case status >= 200 && status < 300:
		outcome = "2xx"
	case status >= 400 && status < 500:
		outcome = "4xx"
	case status >= 500 && status < 600:
		outcome = "5xx"
	}
	if h, ok := o.handles[upstreamKey{endpoint, outcome}]; ok {
		h.Observe(d.Seconds())
	}
}

// storeOps are the session store's operations.
var storeOps = []string{"get", "set", "compare_and_swap", "take", "delete", "lock", "unlock", "incr", "count", "ping", "publish"}

type storeHandles struct {
	duration prometheus.Observer
	errors   prometheus.Counter
}

func (m *Metrics) newStore(reg *prometheus.Registry) {
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "authgate_session_store_duration_seconds",
		Help:    "Session store calls by operation, failed ones included.",
		Buckets: callBuckets,
	}, []string{"op"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authgate_session_store_errors_total",
		Help: "Session store calls that failed (store unreachable, timeout, full), by operation; not-found and a held lock are no errors.",
	}, []string{"op"})
	reg.MustRegister(dur, errs)
	m.store = make(map[string]storeHandles, len(storeOps))
	for _, op := range storeOps {
		m.store[op] = storeHandles{dur.WithLabelValues(op), errs.WithLabelValues(op)}
	}
	m.otherStore = storeHandles{dur.WithLabelValues("other"), errs.WithLabelValues("other")}
}

// ObserveStore records a session store call of op that took d; failed
// means the store failed (not a miss). It implements session.Observer.
func (m *Metrics) ObserveStore(op string, d time.Duration, failed bool) {
	if m == nil {
		return
	}
	h, ok := m.store[op]
	if !ok {
		h = m.otherStore
	}
	h.duration.Observe(d.Seconds())
	if failed {
		h.errors.Inc()
	}
}
