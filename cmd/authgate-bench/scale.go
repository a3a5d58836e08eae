package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// rssTarget is the bound on a gateway's memory with 100,000
// sessions in Redis.
const rssTarget = 40 << 20

// scaleResult is what sessionsAtScale measured.
type scaleResult struct {
	sessions   int
	served     int           // distinct cookies sent once each
	perSession int64         // Redis used_memory per session, bytes
	rss        memory        // the gateway's after serving them
	coldStart  time.Duration // of that gateway
	create     time.Duration // creating the sessions
	serve      time.Duration // serving the sample
}

// sessionConfig is the session section the Redis gateways run with
// (sessionYAML), in Go.
func (b *bench) sessionConfig() session.Config {
	insecure := false
	cfg := session.Config{
		Store:  "redis",
		Redis:  session.RedisConfig{URL: b.redis.URL},
		Cookie: session.CookieConfig{Secret: upstream.Secret(b.cookieSecret), Secure: &insecure},
	}
	cfg.SetDefaults()
	return cfg
}

// sessionsAtScale fills Redis with n sessions, copies of a real login's
// session (each its own user and server login session) made through the
// gateway's own session package (so the records, index included,
// are what the gateway writes), serves sample of them once each through a
// fresh Redis gateway, and reads its memory.
func (b *bench) sessionsAtScale(ctx context.Context, n, sample int) (*scaleResult, error) {
	m := mode{name: "scale", store: "redis", grant: "authorization_code", creds: credSession}
	g, err := b.startGateway(ctx, "sessions-at-scale", m)
	if err != nil {
		return nil, err
	}
	defer g.proc.stop()
	cookies, err := login(ctx, g.URL+"/app")
	if err != nil {
		return nil, g.proc.failure(err)
	}
	cfg := b.sessionConfig()
	mgr, err := session.NewManager(cfg, session.NewRedisStore(b.redis.client, cfg.Redis.KeyPrefix), nil)
	if err != nil {
		return nil, err
	}
	defer mgr.Close()
	var real *session.Session
	for _, c := range cookies {
		if c.Name != cfg.Cookie.Name {
			continue
		}
		t, err := mgr.DecodeTicket(c.Value)
		if err != nil {
			return nil, fmt.Errorf("sessions at scale: the login's cookie: %w", err)
		}
		if real, _, err = mgr.Load(ctx, t); err != nil {
			return nil, fmt.Errorf("sessions at scale: the login's session: %w", err)
		}
	}
	if real == nil {
		return nil, fmt.Errorf("sessions at scale: no %s cookie after the login", cfg.Cookie.Name)
	}

	before, err := b.redis.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	res := &scaleResult{sessions: n, coldStart: g.coldStart}
	start := time.Now()
	tickets, err := createSessions(ctx, mgr, real, n, sample)
	if err != nil {
		return nil, err
	}
	res.create = time.Since(start)
	after, err := b.redis.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	res.perSession = (after - before) / int64(n)

	t := &target{name: "sessions-at-scale", url: g.URL + "/app", bearer: true, client: newLoadClient(b.opts.concurrency)}
	start = time.Now()
	if err := serveOnce(ctx, t, mgr, tickets, b.opts.concurrency); err != nil {
		return nil, g.proc.failure(err)
	}
	res.serve, res.served = time.Since(start), len(tickets)
	if res.rss, err = rss(g.proc.pid()); err != nil {
		return nil, err
	}
	return res, nil
}

// createSessions stores n copies of s, each under a fresh ticket, from a
// few parallel writers, and returns the first keep tickets.
func createSessions(ctx context.Context, mgr *session.Manager, s *session.Session, n, keep int) ([]session.Ticket, error) {
	const writers = 16
	tickets := make([]session.Ticket, n)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				c := *s
				c.CreatedAt, c.LastSeen = time.Time{}, time.Time{}
				// n users, each signed in once (the index keeps at most 64
				// sessions of one user at one server).
				c.Subject = fmt.Sprintf("%s-%d", s.Subject, i)
				if s.SessionID != "" {
					c.SessionID = fmt.Sprintf("%s-%d", s.SessionID, i)
				}
				t, err := mgr.Create(ctx, &c)
				if err != nil {
					errs <- fmt.Errorf("sessions at scale: create: %w", err)
					return
				}
				tickets[i] = t
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return tickets[:min(keep, n)], nil
}

// serveOnce sends one request per ticket's cookie through t, from c
// workers, verifying each answer.
func serveOnce(ctx context.Context, t *target, mgr *session.Manager, tickets []session.Ticket, c int) error {
	jobs := make(chan session.Ticket)
	errs := make(chan error, c)
	var wg sync.WaitGroup
	name := mgr.Config().Cookie.Name
	for range c {
		wg.Go(func() {
			for tk := range jobs {
				value, err := mgr.EncodeTicket(tk)
				if err != nil {
					errs <- err
					return
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
				req.AddCookie(&http.Cookie{Name: name, Value: value})
				resp, err := t.client.Do(req)
				if err != nil {
					errs <- fmt.Errorf("sessions at scale: %w", safeErr(err))
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err := t.verify(resp); err != nil {
					errs <- fmt.Errorf("sessions at scale: a created session: %w", err)
					return
				}
			}
		})
	}
	func() {
		defer close(jobs)
		for _, tk := range tickets {
			select {
			case jobs <- tk:
			case err := <-errs:
				errs <- err
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}
