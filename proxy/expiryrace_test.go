package proxy_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestReliabilityRefreshRace: 100 concurrent requests at the moment a
// session's access token expires, half through each of two gateways
// sharing one Redis, for a code-flow and a password session, with the
// token endpoint slowed to widen the race. Exactly one refresh reaches
// the server, every request is served (nobody is logged out) with the one
// new token, the server never sees a refresh token twice, and the next
// refresh an hour later uses the rotated token.
func TestReliabilityRefreshRace(t *testing.T) {
	const n = 100
	tbl := report.Table(t, fmt.Sprintf("%d concurrent requests at the moment of expiry, split across two gateways on one Redis; the token endpoint answers after 150 ms.", n),
		"session", "answers", "refresh grants", "reused refresh tokens", "distinct tokens at the backend", "took", "next refresh")
	for _, tc := range []struct {
		name, path string
		login      func(t *testing.T, g *gateway, b *browser)
	}{
		{"code flow", "/code/", func(t *testing.T, g *gateway, b *browser) { b.login(t, g, "/code/") }},
		{"password", "/pw/", func(t *testing.T, g *gateway, b *browser) {
			if resp, _ := formLogin(t, g, b, "/pw/", "alice", "alice-password"); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("password login: %d", resp.StatusCode)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{redis: true, idp: everyGrantIdP})
			a := e.gateway(gatewayOptions{mutate: everyGrantRoutes})
			b := e.gateway(gatewayOptions{mutate: everyGrantRoutes})
			br := newBrowser(t)
			tc.login(t, a, br)
			e.clock.Advance(time.Hour) // the access token expires now
			e.idp.SetTokenDelay(150 * time.Millisecond)
			before := e.backend.count()
			client := br.noFollow()
			client.Transport = &http.Transport{MaxIdleConnsPerHost: n}
			statuses := make([]int, n)
			start := time.Now()
			var wg sync.WaitGroup
			for i := range n {
				gw := a
				if i%2 == 1 {
					gw = b
				}
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodGet, gw.URL+tc.path+"api", nil)
					req.Header.Set("Accept", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					statuses[i] = resp.StatusCode
				})
			}
			wg.Wait()
			took := time.Since(start)
			counts := map[int]int{}
			for _, s := range statuses {
				counts[s]++
			}
			e.backend.mu.Lock()
			tokens := map[string]bool{}
			for _, r := range e.backend.reqs[before:] {
				tokens[bearer(r)] = true
			}
			e.backend.mu.Unlock()
			refreshes, reuses := e.idp.GrantCount("refresh_token"), e.idp.RefreshTokenReuses()
			if counts[200] != n || refreshes != 1 || reuses != 0 || len(tokens) != 1 {
				t.Errorf("answers %v, %d refresh grants, %d reused refresh tokens, %d distinct backend tokens; want %d × 200, 1, 0, 1",
					counts, refreshes, reuses, len(tokens), n)
			}
			e.idp.SetTokenDelay(0)
			e.clock.Advance(time.Hour)
			resp, _ := client.Get(b.URL + tc.path + "again")
			if resp.StatusCode != 200 || e.idp.GrantCount("refresh_token") != 2 || e.idp.RefreshTokenReuses() != 0 {
				t.Errorf("the next refresh: %d with %d refresh grants and %d reuses, want 200, 2, 0", resp.StatusCode, e.idp.GrantCount("refresh_token"), e.idp.RefreshTokenReuses())
			}
			resp.Body.Close()
			tbl.Row(tc.name, statusList(counts), refreshes, reuses, len(tokens), took, resp.StatusCode)
		})
	}
}
