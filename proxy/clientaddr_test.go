package proxy

import (
	"net/http"
	"net/netip"
	"testing"
	"time"
)

func TestClientAddr(t *testing.T) {
	tp, err := parseTrustedProxies([]string{"10.0.0.0/8", "192.0.2.7", "fd00::/8", "::ffff:172.16.0.0/108"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer: its claims are ignored", "203.0.113.9:5000", []string{"1.2.3.4"}, "203.0.113.9"},
		{"trusted peer without header", "10.1.1.1:5000", nil, "10.1.1.1"},
		{"trusted peer names the client", "10.1.1.1:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		// The attacker prepends a spoofed entry; the right-most untrusted
		// hop is what the trusted proxy itself saw.
		{"spoofed left entries ignored", "10.1.1.1:5000", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"chain of trusted proxies", "10.1.1.1:5000", []string{"198.51.100.1, 192.0.2.7, 10.9.9.9"}, "198.51.100.1"},
		{"several header lines", "10.1.1.1:5000", []string{"1.2.3.4", "198.51.100.1, 10.2.2.2"}, "198.51.100.1"},
		{"malformed hop stops at the last good one", "10.1.1.1:5000", []string{"198.51.100.1, garbage, 10.2.2.2"}, "10.2.2.2"},
		{"hop with port", "10.1.1.1:5000", []string{"198.51.100.1:4321"}, "198.51.100.1"},
		{"IPv6 hop in brackets", "10.1.1.1:5000", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"IPv4-mapped peer", "[::ffff:10.1.1.1]:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"only trusted hops", "10.1.1.1:5000", []string{"10.3.3.3"}, "10.3.3.3"},
		{"IPv4-mapped trusted prefix", "172.16.5.5:5000", []string{"198.51.100.1"}, "198.51.100.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
			if tc.xff != nil {
				r.Header["X-Forwarded-For"] = tc.xff
			}
			if got := tp.clientAddr(r).String(); got != tc.want {
				t.Errorf("clientAddr: got %s, want %s", got, tc.want)
			}
		})
	}
	r := &http.Request{RemoteAddr: "10.1.1.1:5000", Header: http.Header{"X-Forwarded-For": {"1.2.3.4"}}}
	if got := trustedProxies(nil).clientAddr(r).String(); got != "10.1.1.1" {
		t.Errorf("no trusted proxies: got %s, want the peer 10.1.1.1", got)
	}
}

func TestParseTrustedProxiesRefuses(t *testing.T) {
	for _, s := range []string{"", "10.0.0.0/33", "example.com", "10.0.0.1-10.0.0.9"} {
		if _, err := parseTrustedProxies([]string{"10.0.0.0/8", s}); err == nil {
			t.Errorf("parseTrustedProxies(%q): got nil error, want one", s)
		}
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newLimiter(3, func() time.Time { return now })
	a := netip.MustParseAddr("198.51.100.1")
	for i := range 3 {
		if ok, _ := l.allow(a); !ok {
			t.Fatalf("event %d of a burst of 3: refused", i+1)
		}
	}
	ok, wait := l.allow(a)
	if ok || wait <= 0 || wait > 20*time.Second {
		t.Fatalf("4th event: got ok=%v wait=%v, want refused with a wait of at most 20s", ok, wait)
	}
	if ok, _ := l.allow(netip.MustParseAddr("198.51.100.2")); !ok {
		t.Error("another address: refused, want its own bucket")
	}
	now = now.Add(wait)
	if ok, _ := l.allow(a); !ok {
		t.Error("after the announced wait: refused")
	}
	// IPv6: one /64 is one subscriber.
	l6 := newLimiter(1, func() time.Time { return now })
	l6.allow(netip.MustParseAddr("2001:db8:1:2::1"))
	if ok, _ := l6.allow(netip.MustParseAddr("2001:db8:1:2::ffff")); ok {
		t.Error("second address in the same /64: allowed, want counted together")
	}
	if ok, _ := l6.allow(netip.MustParseAddr("2001:db8:1:3::1")); !ok {
		t.Error("another /64: refused")
	}
	if newLimiter(-1, nil) != nil {
		t.Error("newLimiter(-1): want nil (off)")
	}
	if ok, _ := (*limiter)(nil).allow(a); !ok {
		t.Error("nil limiter: refused, want no limit")
	}
}

func TestLimiterMemoryBounded(t *testing.T) {
	// An attacker with many addresses must not grow the table without end.
	now := time.Unix(1_000_000, 0)
	l := newLimiter(10, func() time.Time { return now })
	base := netip.MustParseAddr("10.0.0.0").As4()
	for i := range 3 * maxLimiterEntries {
		b := base
		b[1], b[2], b[3] = byte(i>>16), byte(i>>8), byte(i)
		l.allow(netip.AddrFrom4(b))
	}
	if n := len(l.buckets); n > maxLimiterEntries {
		t.Errorf("buckets after %d addresses: got %d, want at most %d", 3*maxLimiterEntries, n, maxLimiterEntries)
	}
}
