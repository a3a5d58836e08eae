package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/authgate/authgate/metrics"
	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// gateway is a wired-up gateway, ready to serve: the process's session
// store and metrics, and the state built from the configuration over them
// (which a reload replaces).
type gateway struct {
	*state
	store      session.Store
	closeStore func() error
	metrics    *metrics.Metrics
	// rebuild builds a state from a configuration over the same store and
	// metrics: a reload.
	rebuild func(*fileConfig) (*state, error)
}

// closer closes the state's sessions and the store.
func (g *gateway) closer() error {
	g.sessions.Close()
	return g.closeStore()
}

// build wires the packages from cfg. The access log goes to accessLog,
// in the format of cfg.Log; tp traces requests (nil: no tracing).
func build(cfg *fileConfig, log *slog.Logger, accessLog io.Writer, tp trace.TracerProvider) (*gateway, error) {
	m := metrics.New(metrics.Build{Version: buildVersion()})
	store, closeStore, err := session.OpenStore(cfg.Session, time.Now)
	if err != nil {
		return nil, fmt.Errorf("session store: %w", err)
	}
	store = session.Observe(session.Trace(store, tp), m)
	g := &gateway{store: store, closeStore: closeStore, metrics: m}
	g.rebuild = func(cfg *fileConfig) (*state, error) { return buildState(cfg, store, m, tp, log, accessLog) }
	if g.state, err = g.rebuild(cfg); err != nil {
		closeStore()
		return nil, err
	}
	return g, nil
}

// buildState wires what a reload replaces from cfg (the session manager,
// the authorization server clients, the proxy) over the process's store
// and metrics, traced by tp (nil: off).
func buildState(cfg *fileConfig, store session.Store, m *metrics.Metrics, tp trace.TracerProvider, log *slog.Logger, accessLog io.Writer) (*state, error) {
	sessions, err := session.NewManager(cfg.Session, store, time.Now)
	if err != nil {
		return nil, &configError{[]error{fmt.Errorf("session: %w", err)}}
	}
	fail := func(err error) (*state, error) {
		sessions.Close()
		return nil, err
	}
	// Upstreams of one server share its metadata and keys.
	shared := &upstream.Shared{}
	ulog := log.With("component", "upstream")
	up, err := upstream.New(cfg.Upstream, upstream.Deps{Logger: ulog.With("upstream", proxy.DefaultUpstream), Shared: shared, Observer: m.Upstream(proxy.DefaultUpstream), TracerProvider: tp})
	if err != nil {
		return fail(&configError{[]error{fmt.Errorf("upstream: %w", err)}})
	}
	ups := map[string]*upstream.Client{proxy.DefaultUpstream: up}
	named := make(map[string]*upstream.Client, len(cfg.Upstreams))
	for name, ucfg := range cfg.Upstreams {
		c, err := upstream.New(ucfg, upstream.Deps{Logger: ulog.With("upstream", name), Shared: shared, Observer: m.Upstream(name), TracerProvider: tp})
		if err != nil {
			return fail(&configError{[]error{fmt.Errorf("upstreams.%s: %w", name, err)}})
		}
		named[name], ups[name] = c, c
	}
	srv, err := proxy.New(cfg.Config, proxy.Deps{Upstream: up, Upstreams: named, Sessions: sessions, Logger: log, Metrics: m, TracerProvider: tp,
		AccessLog: accessLog, AccessLogJSON: cfg.Log.Format == "json"})
	if err != nil {
		return fail(&configError{[]error{err}})
	}
	return &state{cfg: cfg, server: srv, sessions: sessions, ups: ups, admin: srv.AdminHandler()}, nil
}

// serveOptions are serve's knobs besides the configuration.
type serveOptions struct {
	// path is the config file, re-read on SIGHUP and when it changes;
	// empty: no reload.
	path string
	// level is the process log's level, which a reload may change.
	level *slog.LevelVar
	// watchInterval is how often the file is checked; 0: watchInterval.
	watchInterval time.Duration
}

// serve runs the gateway until ctx ends, then drains in-flight requests.
// The access log goes to accessLog.
func serve(ctx context.Context, cfg *fileConfig, log *slog.Logger, accessLog io.Writer, opts serveOptions) error {
	tp, stopTracing, err := startTracing(ctx, cfg.Tracing, os.LookupEnv, log)
	if err != nil {
		return err
	}
	defer flushTraces(stopTracing, log)
	g, err := build(cfg, log, accessLog, tp)
	if err != nil {
		return err
	}
	l := &live{}
	l.cur.Store(g.state)
	defer func() {
		l.cur.Load().sessions.Close()
		g.closeStore()
	}()
	hs := g.server.HTTPServer()
	hs.Handler = l // every request on the current state
	ln, err := net.Listen("tcp", hs.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var ms *http.Server
	var mln net.Listener
	if cfg.Metrics.Listen != "" {
		ms = g.metrics.Server(cfg.Metrics, l.health(), l.admin(), log)
		if mln, err = net.Listen("tcp", ms.Addr); err != nil {
			ln.Close()
			return fmt.Errorf("metrics_listen: %w", err)
		}
		log.Info("metrics listening", "addr", mln.Addr().String(), "pprof", cfg.Metrics.Pprof)
	}
	log.Info("authgate listening", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "routes", len(cfg.Routes), "store", cfg.Session.Store, "version", buildVersion())
	go g.warmUp(ctx, log)
	rctx, stopReload := context.WithCancel(ctx)
	defer stopReload()
	if opts.path != "" {
		rl := &reloader{path: opts.path, log: log, level: opts.level, live: l, build: g.rebuild, interval: opts.watchInterval}
		go rl.run(rctx)
	}
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
	stopReload()
	err = drain(hs, l, hsErr, l.cur.Load().cfg.Shutdown, log)
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
