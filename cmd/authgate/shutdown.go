package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// defaultGrace is shutdown.grace's default.
const defaultGrace = 25 * time.Second

// traceFlushTimeout bounds the export of the last spans at shutdown, after
// the drain: keep drain_delay + grace + this below the pod's
// terminationGracePeriodSeconds.
const traceFlushTimeout = 5 * time.Second

// shutdownConfig is the `shutdown:` section: what the gateway does on
// SIGTERM (or Ctrl-C). A second signal ends the process at once.
type shutdownConfig struct {
	// DrainDelay is how long, after the signal, /readyz answers 503 while
	// every request is still served, before the listener closes: time for
	// load balancers and Kubernetes (whose endpoint updates reach kube-proxy
	// and ingress controllers a few seconds late) to stop sending new
	// connections. Default 0: no delay, for a process nothing balances
	// (systemd, docker run, a laptop), where it would only slow every
	// restart. Behind a load balancer or in Kubernetes set a few seconds
	// (deploy/ uses 5s), and keep drain_delay + grace below the pod's
	// terminationGracePeriodSeconds.
	DrainDelay time.Duration `yaml:"drain_delay"`
	// Grace is how long in-flight requests may still run once the listener
	// is closed; those still running then are cut off. Default 25s; zero
	// means the default.
	Grace time.Duration `yaml:"grace"`
}

func (c *shutdownConfig) setDefaults() {
	if c.Grace == 0 {
		c.Grace = defaultGrace
	}
}

func (c *shutdownConfig) validate() error {
	var errs []error
	if c.DrainDelay < 0 {
		errs = append(errs, fmt.Errorf("drain_delay: must not be negative, got %s", c.DrainDelay))
	}
	if c.Grace < 0 {
		errs = append(errs, fmt.Errorf("grace: must not be negative, got %s", c.Grace))
	}
	return errors.Join(errs...)
}

// drain stops a serving gateway: /readyz fails at once and keep-alive
// connections are closed after their current answer, while requests are
// still served for c.DrainDelay; then the listener closes and in-flight
// requests get c.Grace to finish. errc is hs.Serve's result.
// drainer is what drain tells that a shutdown began: /readyz fails.
type drainer interface{ Drain() }

func drain(hs *http.Server, srv drainer, errc <-chan error, c shutdownConfig, log *slog.Logger) error {
	c.setDefaults()
	srv.Drain()
	hs.SetKeepAlivesEnabled(false)
	if c.DrainDelay > 0 {
		log.Info("shutting down: /readyz fails, requests are still served", "drain_delay", c.DrainDelay.String())
		t := time.NewTimer(c.DrainDelay)
		select {
		case <-t.C:
		case err := <-errc:
			t.Stop()
			return err
		}
	}
	log.Info("shutting down: listener closed, draining in-flight requests", "grace", c.Grace.String())
	ctx, cancel := context.WithTimeout(context.Background(), c.Grace)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown: %w", err)
		}
		log.Warn("shutting down: the grace period ended with requests in flight; they were cut off", "grace", c.Grace.String())
		_ = hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// flushTraces exports the spans still queued (the drained requests' last
// ones) and stops the exporter, within traceFlushTimeout: a collector
// that does not answer delays the exit no longer. stop is startTracing's;
// nil when tracing is off.
func flushTraces(stop func(context.Context) error, log *slog.Logger) {
	if stop == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
	defer cancel()
	if err := stop(ctx); err != nil {
		log.Warn("tracing: the last spans were not all exported", "error", err.Error())
	}
}
