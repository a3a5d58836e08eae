package proxy_test

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwksRefetchInterval is upstream's least time between two JWKS fetches
// that unknown kids trigger.
const jwksRefetchInterval = 5 * time.Second

// TestReliabilityJWKSRotation: the server rotates its signing key while
// callers keep sending JWTs signed by the old one. Old tokens keep
// working; the first burst of tokens signed by the new key (caller JWTs,
// then ID tokens of new logins after a second rotation) costs exactly one
// JWKS fetch, shared by every request of the burst, and every one of them
// is served.
func TestReliabilityJWKSRotation(t *testing.T) {
	tbl := report.Table(t, "Key rotation at the authorization server mid-traffic: a steady stream of caller JWTs signed by the old key runs throughout; "+
		"the clock is past the re-fetch interval when new-key tokens arrive.",
		"step", "requests", "answers", "JWKS fetches", "took")
	e := newEnv(t, envOptions{redis: true})
	g := e.gateway(gatewayOptions{mutate: acceptBearer("urn:orders")})
	oldTok := signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")
	if resp, _ := apiCall(t, g, "/api", oldTok); resp.StatusCode != 200 {
		t.Fatalf("old-key token before the rotation: %d", resp.StatusCode)
	}

	// The steady stream of old-key tokens, each request a new token (no
	// verified-token cache hit), until the test ends.
	stop := make(chan struct{})
	var streamed, streamFailed atomic.Int64
	var wg sync.WaitGroup
	oldKeySigned := make(chan string, 64)
	for range 64 {
		oldKeySigned <- signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")
	}
	close(oldKeySigned)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for tok := range oldKeySigned {
			select {
			case <-stop:
				return
			default:
			}
			if resp, _ := apiCall(t, g, "/api", tok); resp.StatusCode != 200 {
				streamFailed.Add(1)
			}
			streamed.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()

	burst := func(step string, n int, send func(i int) int) {
		t.Helper()
		before := e.idp.Count("jwks")
		statuses := make([]int, n)
		start := time.Now()
		var bw sync.WaitGroup
		for i := range n {
			bw.Go(func() { statuses[i] = send(i) })
		}
		bw.Wait()
		took := time.Since(start)
		counts := map[int]int{}
		for _, s := range statuses {
			counts[s]++
		}
		fetches := e.idp.Count("jwks") - before
		if counts[200] != n || fetches != 1 {
			t.Errorf("%s: answers %v and %d JWKS fetches, want %d × 200 after exactly 1 fetch", step, counts, fetches, n)
		}
		tbl.Row(step, n, statusList(counts), fetches, took)
	}

	e.idp.RotateKeys()
	e.clock.Advance(jwksRefetchInterval + time.Second)
	newTokens := make([]string, 50)
	for i := range newTokens {
		newTokens[i] = signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")
	}
	burst("50 parallel caller JWTs signed by the new key", 50, func(i int) int {
		resp, _ := apiCall(t, g, "/api", newTokens[i])
		return resp.StatusCode
	})
	if resp, _ := apiCall(t, g, "/api", signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")); resp.StatusCode != 200 {
		t.Errorf("a later new-key token: %d, want 200", resp.StatusCode)
	}

	e.idp.RotateKeys()
	e.clock.Advance(jwksRefetchInterval + time.Second)
	browsers := make([]*browser, 20)
	for i := range browsers {
		browsers[i] = newBrowser(t)
	}
	burst("20 parallel logins, ID tokens signed by a newer key", 20, func(i int) int {
		resp, err := browsers[i].Get(g.URL + "/page")
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	})
	close(stop)
	wg.Wait()
	if streamFailed.Load() != 0 {
		t.Errorf("%d of %d old-key tokens were refused during the rotations, want none", streamFailed.Load(), streamed.Load())
	}
	tbl.Note("old-key caller JWTs sent during both rotations: %d, refused: %d", streamed.Load(), streamFailed.Load())
}

// TestReliabilityUnknownKidFlood: 1,000 caller JWTs with random kids
// (signed by a key the server never had), 20 at a time, while the clock
// runs 10 s: every one is refused with 401, fast, and the JWKS endpoint
// sees at most one fetch per re-fetch interval (5 s), not one per kid.
func TestReliabilityUnknownKidFlood(t *testing.T) {
	tbl := report.Table(t, "A flood of caller JWTs naming unknown kids (random, signed by a key the server never had), 20 concurrent senders; "+
		"the gateway's clock advances 1 s every 100 requests.",
		"requests", "answers", "JWKS fetches", "allowed (1 per 5 s of clock, +1)", "took", "slowest")
	e := newEnv(t, envOptions{})
	g := e.gateway(gatewayOptions{mutate: acceptBearer("urn:orders")})
	if resp, _ := apiCall(t, g, "/api", signAT(t, e, accessClaims(e, "urn:orders"), "at+jwt")); resp.StatusCode != 200 {
		t.Fatalf("valid token: %d", resp.StatusCode)
	}
	const n, senders = 1000, 20
	forged := make(chan string, n)
	for range n {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, accessClaims(e, "urn:orders"))
		var kid [12]byte
		rand.Read(kid[:])
		tok.Header["kid"] = hex.EncodeToString(kid[:])
		raw, err := tok.SignedString(attackerKey(t))
		if err != nil {
			t.Fatal(err)
		}
		forged <- raw
	}
	close(forged)
	before := e.idp.Count("jwks")
	clockStart := e.clock.Now()
	var sent atomic.Int64
	var mu sync.Mutex
	counts := map[int]int{}
	var slowest time.Duration
	start := time.Now()
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for raw := range forged {
				if sent.Add(1)%100 == 0 {
					e.clock.Advance(time.Second)
				}
				t0 := time.Now()
				resp, _ := apiCall(t, g, "/api", raw)
				d := time.Since(t0)
				mu.Lock()
				counts[resp.StatusCode]++
				slowest = max(slowest, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	fetches := e.idp.Count("jwks") - before
	allowed := int(e.clock.Now().Sub(clockStart)/jwksRefetchInterval) + 1
	if counts[http.StatusUnauthorized] != n {
		t.Errorf("answers %v, want %d × 401", counts, n)
	}
	if fetches > allowed {
		t.Errorf("JWKS fetches for %d unknown kids over %v of clock: %d, want at most %d", n, e.clock.Now().Sub(clockStart), fetches, allowed)
	}
	if e.backend.count() != 1 {
		t.Errorf("the backend saw %d requests, want only the valid token's 1", e.backend.count())
	}
	tbl.Row(n, statusList(counts), fetches, allowed, took, slowest)
}
