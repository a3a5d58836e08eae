package proxy_test

import (
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/authgate/authgate/internal/reliability"
)

// report is this package's section of RELIABILITY.md: the
// TestReliability* tests add their findings, TestMain writes them when
// AUTHGATE_RELIABILITY_REPORT is set.
var report = reliability.New("proxy", "In-process gateways (proxy package): httptest servers, upstreamtest, redis-server")

func TestMain(m *testing.M) { os.Exit(report.Write(m.Run())) }

// goroutineSettle is how long goroutines of finished requests get to end
// (a timed-out call's connection closing, a handler noticing its client
// left) before a count above the baseline is a leak.
const goroutineSettle = 5 * time.Second

// goroutineBaseline counts goroutines with no idle client connection
// held, after the scenario's warm-up: the figure leakCheck compares with.
func goroutineBaseline() int {
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	time.Sleep(50 * time.Millisecond)
	return runtime.NumGoroutine()
}

// leakCheck waits up to goroutineSettle for the goroutine count to come
// back to base, fails t if it stays above base+slack, and returns the
// last count. slack is for connections the gateway may keep pooled for
// its next request that the baseline did not have (each keep-alive
// connection to an in-process server is three goroutines); a leak here
// is per request or per fault, and the scenarios send dozens.
func leakCheck(t *testing.T, base, slack int) int {
	t.Helper()
	deadline := time.Now().Add(goroutineSettle)
	for {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		n := runtime.NumGoroutine()
		if n <= base {
			return n
		}
		if time.Now().After(deadline) {
			if n > base+slack {
				var b strings.Builder
				_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
				t.Errorf("goroutines: %d, want at most %d+%d %s after the scenario; a leak:\n%s", n, base, slack, goroutineSettle, b.String())
			}
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leakyBody returns what in an error answer would be a leak: a stack
// trace, a Go error's internals, a token or the client secret (empty:
// none).
func leakyBody(body string) string {
	for _, s := range []string{"goroutine ", "panic", ".go:", "runtime.", "eyJ", clientSecret, "dial tcp", "127.0.0.1"} {
		if strings.Contains(body, s) {
			return s
		}
	}
	return ""
}

// bodyKind names a gateway answer's content type for the report.
func bodyKind(resp *http.Response) string {
	ct := resp.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "text/html"):
		return "HTML page"
	case strings.HasPrefix(ct, "application/json"):
		return "JSON"
	case ct == "":
		return "no body"
	}
	return ct
}
