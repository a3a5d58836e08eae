package proxy

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/authgate/authgate/metrics"
)

// maxLimiterEntries bounds a limiter's memory: beyond it, buckets that
// have refilled (and so say nothing) are swept, and if too many are still
// draining, a random half of the table is dropped.
const maxLimiterEntries = 1 << 16

// limiter is a token bucket per client address: perMinute events at most
// in a burst, refilled at perMinute per minute. IPv6 clients are counted
// per /64, the block one subscriber usually holds. It is in-process: each
// replica counts on its own, which bounds each replica's share of the
// store (SECURITY.md 40) without a Redis round trip per login.
type limiter struct {
	perMinute float64
	now       func() time.Time
	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	warned    time.Time // last refusal logged; guarded by mu
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newLimiter returns nil (no limit) when perMinute is negative.
func newLimiter(perMinute int, now func() time.Time) *limiter {
	if perMinute < 0 {
		return nil
	}
	return &limiter{perMinute: float64(perMinute), now: now, buckets: make(map[netip.Addr]*bucket)}
}

// allow takes one token for addr. When none is left it returns false and
// how long until one is.
func (l *limiter) allow(addr netip.Addr) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	addr = subscriber(addr)
	now := l.now()
	rate := l.perMinute / float64(time.Minute) // tokens per nanosecond
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[addr]
	if b == nil {
		if len(l.buckets) >= maxLimiterEntries {
			l.sweep(now, rate)
		}
		b = &bucket{tokens: l.perMinute, last: now}
		l.buckets[addr] = b
	}
	b.tokens = math.Min(l.perMinute, b.tokens+float64(now.Sub(b.last))*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate)
}

// sweep makes room in a full table.
func (l *limiter) sweep(now time.Time, rate float64) {
	for a, b := range l.buckets {
		if b.tokens+float64(now.Sub(b.last))*rate >= l.perMinute {
			delete(l.buckets, a)
		}
	}
	for a := range l.buckets { // map order is random: a random half goes
		if len(l.buckets) < maxLimiterEntries/2 {
			break
		}
		delete(l.buckets, a)
	}
}

// errTooManyLogins is the page of a client over its login rate.
var errTooManyLogins = &pageError{status: http.StatusTooManyRequests, reason: "rate_limited", title: "Too many sign-in attempts",
	message: "This address started too many sign-ins in a short time. Wait a minute, then try again."}

// shouldWarn reports whether a refusal may be logged now: at most once a
// minute, so a flood does not flood the log too.
func (l *limiter) shouldWarn() bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.warned) < time.Minute {
		return false
	}
	l.warned = now
	return true
}

// allowLogin applies lim to r's client address. Over the limit, it sets
// Retry-After and returns the 429 page to fail with.
func (s *Server) allowLogin(w http.ResponseWriter, r *http.Request, lim *limiter) error {
	addr := s.trusted.clientAddr(r)
	ok, wait := lim.allow(addr)
	if ok {
		return nil
	}
	if lim == s.loginLimit {
		s.metrics.Auth(metrics.Throttled, "login_rate")
	} else {
		s.metrics.Auth(metrics.Throttled, "callback_rate")
	}
	if lim.shouldWarn() {
		// Behind a load balancer that is not in trusted_proxies, every
		// user shares its address and so one budget.
		s.log.WarnContext(r.Context(), "login rate limit reached; if this address is a proxy or load balancer, list it in trusted_proxies",
			"client", addr.String(), "limit_per_minute", s.cfg.Limits.LoginsPerMinute)
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
	return errTooManyLogins
}

// subscriber is the unit per-address limits count: the address, or for
// IPv6 its /64, the block one subscriber usually holds (and can rotate
// through at will).
func subscriber(addr netip.Addr) netip.Addr {
	if addr.Is6() && !addr.Is4In6() {
		return netip.PrefixFrom(addr, 64).Masked().Addr()
	}
	return addr
}
