package metrics

import "github.com/prometheus/client_golang/prometheus"

// Event is an authentication outcome counted by authgate_auth_events_total.
type Event uint8

// The events and, in events below, the reasons each may carry.
const (
	// LoginStarted: a browser was sent to the authorization server.
	LoginStarted Event = iota
	// LoginSucceeded: a login created a session.
	LoginSucceeded
	// LoginFailed: a login ended without a session.
	LoginFailed
	// RefreshOK: this request renewed the session's tokens.
	RefreshOK
	// RefreshFailed: a renewal failed.
	RefreshFailed
	// RefreshAdopted: another request or replica had renewed them; this
	// one took the result.
	RefreshAdopted
	// BearerValid: a caller's own token was accepted.
	BearerValid
	// BearerInvalid: a caller's own token was refused (401).
	BearerInvalid
	// Throttled: a request was refused by a rate limit or the password
	// throttle (429).
	Throttled
	// ClientCredentialsFetch: the gateway asked the token endpoint for a
	// client credentials token.
	ClientCredentialsFetch
	numEvents
)

// events names each event and lists its reasons; the first reason is the
// one an unknown reason is counted under.
var events = [numEvents]struct {
	name    string
	reasons []string
}{
	LoginStarted:           {"login_started", []string{"interactive", "silent"}},
	LoginSucceeded:         {"login_succeeded", []string{"authorization_code", "implicit", "password"}},
	LoginFailed:            {"login_failed", []string{"other", "state", "server_error", "issuer", "token_refused", "id_token_invalid", "bad_credentials", "unavailable"}},
	RefreshOK:              {"refresh_ok", []string{""}},
	RefreshFailed:          {"refresh_failed", []string{"other", "invalid_grant", "refused", "unavailable"}},
	RefreshAdopted:         {"refresh_adopted", []string{""}},
	BearerValid:            {"bearer_valid", []string{"cached", "jwt", "opaque"}},
	BearerInvalid:          {"bearer_invalid", []string{"cached", "jwt", "opaque", "no_introspection"}},
	Throttled:              {"throttled", []string{"login_rate", "callback_rate", "password"}},
	ClientCredentialsFetch: {"client_credentials_fetch", []string{"ok", "error"}},
}

func (m *Metrics) newAuth(reg *prometheus.Registry) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "authgate_auth_events_total",
		Help: "Authentication outcomes by event (login_started, login_succeeded, login_failed, refresh_ok, refresh_failed, refresh_adopted, bearer_valid, bearer_invalid, throttled, client_credentials_fetch) and a bounded reason.",
	}, []string{"event", "reason"})
	reg.MustRegister(vec)
	for e, ev := range events {
		m.auth[e] = make(map[string]prometheus.Counter, len(ev.reasons))
		for _, r := range ev.reasons {
			m.auth[e][r] = vec.WithLabelValues(ev.name, r)
		}
	}
}

// Auth counts event with reason, one of the event's reasons (see the
// constants); any other reason is counted under the event's first. The
// handles exist from the start: a lookup in a map nobody writes, then an
// atomic addition.
func (m *Metrics) Auth(e Event, reason string) {
	if m == nil || e >= numEvents {
		return
	}
	c, ok := m.auth[e][reason]
	if !ok {
		c = m.auth[e][events[e].reasons[0]]
	}
	c.Inc()
}
