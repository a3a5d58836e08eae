package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/authgate/authgate/metrics"
	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// gateway is a wired-up gateway, ready to serve.
type gateway struct {
	server *proxy.Server
	closer func() error
	// ups are the authorization servers by name, "default" for upstream:.
	ups     map[string]*upstream.Client
	store   session.Store
	metrics *metrics.Metrics
}

// build wires the packages from cfg. The access log goes to accessLog,
// in the format of cfg.Log.
func build(cfg *fileConfig, log *slog.Logger, accessLog io.Writer) (*gateway, error) {
	m := metrics.New(metrics.Build{Version: buildVersion()})
	store, closeStore, err := session.OpenStore(cfg.Session, time.Now)
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	store = session.Observe(store, m)
	sessions, err := session.NewManager(cfg.Session, store, time.Now)
	if err != nil {
		closeStore()
		return nil, &configError{[]error{fmt.Errorf("session: %w", err)}}
	}
	closer := func() error { sessions.Close(); return closeStore() }
	// Upstreams of one server share its metadata and keys.
	shared := &upstream.Shared{}
	ulog := log.With("component", "upstream")
	up, err := upstream.New(cfg.Upstream, upstream.Deps{Logger: ulog.With("upstream", proxy.DefaultUpstream), Shared: shared, Observer: m})
	if err != nil {
		closer()
		return nil, &configError{[]error{fmt.Errorf("upstream: %w", err)}}
	}
	ups := map[string]*upstream.Client{proxy.DefaultUpstream: up}
	named := make(map[string]*upstream.Client, len(cfg.Upstreams))
	for name, ucfg := range cfg.Upstreams {
		c, err := upstream.New(ucfg, upstream.Deps{Logger: ulog.With("upstream", name), Shared: shared, Observer: m})
		if err != nil {
			closer()
			return nil, &configError{[]error{fmt.Errorf("upstreams.%s: %w", name, err)}}
		}
		named[name], ups[name] = c, c
	}
	srv, err := proxy.New(cfg.Config, proxy.Deps{Upstream: up, Upstreams: named, Sessions: sessions, Logger: log, Metrics: m,
		AccessLog: accessLog, AccessLogJSON: cfg.Log.Format == "json"})
	if err != nil {
		closer()
		return nil, &configError{[]error{err}}
	}
	return &gateway{server: srv, closer: closer, ups: ups, store: store, metrics: m}, nil
}

// serve runs the gateway until ctx ends, then drains in-flight requests.
// The access log goes to accessLog.
func serve(ctx context.Context, cfg *fileConfig, log *slog.Logger, accessLog io.Writer) error {
	g, err := build(cfg, log, accessLog)
	if err != nil {
		return err
	}
	defer g.closer()
	hs := g.server.HTTPServer()
	ln, err := net.Listen("tcp", hs.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var ms *http.Server
	var mln net.Listener
	if cfg.Metrics.Listen != "" {
		ms = g.metrics.Server(cfg.Metrics, g.server.Health(), g.server.AdminHandler(), log)
		if mln, err = net.Listen("tcp", ms.Addr); err != nil {
			ln.Close()
			return fmt.Errorf("metrics_listen: %w", err)
		}
		log.Info("metrics listening", "addr", mln.Addr().String(), "pprof", cfg.Metrics.Pprof)
	}
	log.Info("authgate listening", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "routes", len(cfg.Routes), "store", cfg.Session.Store, "version", buildVersion())
	go g.warmUp(ctx, log)
	hsErr, msErr := make(chan error, 1), make(chan error, 1)
	go func() { hsErr <- hs.Serve(ln) }()
	if ms != nil {
		go func() { msErr <- ms.Serve(mln) }()
	}
	select {
	case err := <-hsErr:
		if ms != nil {
			ms.Close()
		}
		return err
	case err := <-msErr:
		hs.Close()
		return err
	case <-ctx.Done():
	}
	err = drain(hs, g.server, hsErr, cfg.Shutdown, log)
	if ms != nil {
		// Served until the public listener is drained: a scrape during
		// the drain still sees the gateway.
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = ms.Shutdown(sctx)
		cancel()
	}
	return err
}

// warmUp loads the authorization server's metadata and checks the store,
// logging progress while either is not there yet, so an operator sees why
// /readyz fails. Requests are served meanwhile.
func (g *gateway) warmUp(ctx context.Context, log *slog.Logger) {
	for name, up := range g.ups {
		go func() {
			if err := up.Discover(ctx); err == nil {
				log.Info("authorization server ready", "upstream", name)
			}
		}()
	}
	delay := 500 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := g.store.Ping(pctx)
		cancel()
		if err == nil {
			log.Info("session store ready")
			return
		}
		log.Warn("session store not reachable, retrying", "retry_in", delay.String(), "error", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}
