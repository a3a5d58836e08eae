package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// target is one thing the load generator drives: the bare proxy, an
// authgate mode or a peer.
type target struct {
	name  string
	about string // one line for the report
	// url is what every request asks for; header holds the request's
	// credentials (Cookie, Authorization) and other headers.
	url    string
	header http.Header
	// forwardAuth: the answer is the gateway's own 202 with an
	// Authorization header, not the backend's 200.
	forwardAuth bool
	// bearer: the backend must receive Authorization: Bearer.
	bearer bool
	// pid is the process whose CPU is measured; 0: unknown.
	pid int
	// proc is the process serving it, if the bench started it: its output
	// goes with a failure.
	proc *child
	// coldStart is exec to ready; 0: not measured.
	coldStart time.Duration
	client    *http.Client
}

// newLoadClient returns a keep-alive client of its own for one target,
// with an idle connection for each of the c workers.
func newLoadClient(c int) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        c,
			MaxIdleConnsPerHost: c,
			IdleConnTimeout:     5 * time.Minute,
			DisableCompression:  true,
		},
		// A redirect is a login, never a success: show it to verify.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// verify checks that resp is the answer of a request that really got
// through: the backend's 200 with the injected token, or forward-auth's
// 202 with an Authorization header. Its messages hold no token.
func (t *target) verify(resp *http.Response) error {
	if t.forwardAuth {
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("got status %d%s, want 202", resp.StatusCode, redirectHint(resp))
		}
		if !strings.HasPrefix(resp.Header.Get("Authorization"), "Bearer ") {
			return errors.New("the 202 carries no Authorization: Bearer header")
		}
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("got status %d%s, want the backend's 200", resp.StatusCode, redirectHint(resp))
	}
	if resp.Header.Get(hdrBackend) == "" {
		return errors.New("got a 200 that did not come from the bench's backend")
	}
	if t.bearer && resp.Header.Get(hdrBearer) != "1" {
		return errors.New("the backend received no Authorization: Bearer header")
	}
	return nil
}

// redirectHint names where a redirect went (path only: a login URL's
// query holds state), since that is the usual failure.
func redirectHint(resp *http.Response) string {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return ""
	}
	if u, err := url.Parse(loc); err == nil {
		return fmt.Sprintf(" (a redirect to %s%s: a login, not the backend)", u.Host, u.Path)
	}
	return " (a redirect)"
}

// check sends one request and verifies the answer.
func (t *target) check(ctx context.Context) error {
	_, err := t.answer(ctx, nil)
	return err
}

// answer sends t's request, with header h instead of t's own unless nil,
// verifies the answer and returns its headers.
func (t *target) answer(ctx context.Context, h http.Header) (http.Header, error) {
	req, err := t.request(ctx)
	if err != nil {
		return nil, err
	}
	if h != nil {
		req.Header = h
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, safeErr(err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.Header, t.verify(resp)
}

func (t *target) request(ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return nil, fmt.Errorf("bad URL for %s", t.name)
	}
	for k, v := range t.header {
		req.Header[k] = v
	}
	return req, nil
}

// measured is what drive measured.
type measured struct {
	requests  int
	elapsed   time.Duration
	latencies []time.Duration // sorted
}

// drive sends requests to t from c workers, each waiting for its answer
// before the next, for d; every answer is verified. It stops at the first
// failure and returns it: measuring failures is worthless.
func (t *target) drive(ctx context.Context, c int, d time.Duration) (measured, error) {
	return t.load(ctx, c, d, 0)
}

// load is drive with rate 0. With rate > 0 it sends at rate requests/s
// whatever the answers' pace (an open loop: request i is due at i/rate
// from the start), and a request's latency runs from when it was due, not
// from when a worker got to it, so a target that falls behind shows its
// queue in the figures (no coordinated omission).
func (t *target) load(ctx context.Context, c int, d time.Duration, rate float64) (measured, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu   sync.Mutex
		all  []time.Duration
		wg   sync.WaitGroup
		next atomic.Int64 // the open loop's next request
	)
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	start := time.Now()
	deadline := start.Add(d)
	for range c {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			defer func() { mu.Lock(); all = append(all, lat...); mu.Unlock() }()
			req, err := t.request(ctx)
			if err != nil {
				cancel(err)
				return
			}
			for ctx.Err() == nil {
				t0 := time.Now()
				if interval > 0 {
					t0 = start.Add(time.Duration(next.Add(1)-1) * interval)
					if !t0.Before(deadline) {
						return
					}
					if wait := time.Until(t0); wait > 0 {
						time.Sleep(wait)
					}
				} else if !t0.Before(deadline) {
					return
				}
				resp, err := t.client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						cancel(safeErr(err))
					}
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(t0))
				if err := t.verify(resp); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return measured{}, err
	}
	slices.Sort(all)
	return measured{requests: len(all), elapsed: time.Since(start), latencies: all}, nil
}

// percentile returns the q-quantile (0..1) of the sorted latencies.
func (r measured) percentile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[int(q*float64(len(r.latencies)-1))]
}

// safeErr drops the URL from a client error: a redirect's URL may carry
// an authorization code or state.
func safeErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		host := ""
		if u, perr := url.Parse(ue.URL); perr == nil {
			host = u.Host + u.Path
		}
		return fmt.Errorf("%s %s: %w", ue.Op, host, ue.Err)
	}
	return err
}
