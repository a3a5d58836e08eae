package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// Hot reload: SIGHUP, or a change of the config file, re-reads the
// configuration and, when it is valid, swaps in a gateway built from it:
// routes, policies, upstreams, limits, cookie secrets, log level. The
// listeners, the session store and the metrics stay, so sessions survive
// (their secrets stay, or rotate through previous_secrets) and no
// connection is dropped; requests in flight finish on the configuration
// they started with. A file with errors is logged, key by key, and the
// running configuration stays.

// watchInterval is how often the config file is checked for a change.
const watchInterval = 2 * time.Second

// retireAfter is how long a replaced gateway's session manager lives on
// for the requests still using it.
const retireAfter = time.Minute

// state is the part of a gateway a reload replaces.
type state struct {
	cfg      *fileConfig
	server   *proxy.Server
	sessions *session.Manager
	ups      map[string]*upstream.Client
	admin    http.Handler // nil without admin.token
}

// live serves through the current state.
type live struct {
	cur      atomic.Pointer[state]
	draining atomic.Bool
}

func (l *live) ServeHTTP(w http.ResponseWriter, r *http.Request) { l.cur.Load().server.ServeHTTP(w, r) }

// health serves /healthz and /readyz of the current state.
func (l *live) health() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.cur.Load().server.Health().ServeHTTP(w, r)
	})
}

// admin serves the current state's admin API (404 without admin.token).
func (l *live) admin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := l.cur.Load().admin; h != nil {
			h.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	})
}

// Drain starts a graceful shutdown on the current state and on any a
// reload still swaps in.
func (l *live) Drain() {
	l.draining.Store(true)
	l.cur.Load().server.Drain()
}

// swap installs st and returns the state it replaced.
func (l *live) swap(st *state) *state {
	if l.draining.Load() {
		st.server.Drain()
	}
	return l.cur.Swap(st)
}

// restartOnly lists the settings a reload cannot change (the listeners, the
// session store, the process log's format): their keys, when cfg changes
// them from old.
func restartOnly(old, cfg *fileConfig) []string {
	var keys []string
	check := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, key)
		}
	}
	check("listen", old.Listen, cfg.Listen)
	check("metrics_listen", old.Metrics.Listen, cfg.Metrics.Listen)
	check("metrics_pprof", old.Metrics.Pprof, cfg.Metrics.Pprof)
	check("session.store", old.Session.Store, cfg.Session.Store)
	check("session.redis", old.Session.Redis, cfg.Session.Redis)
	check("log.format", old.Log.Format, cfg.Log.Format)
	ol, nl := old.Limits, cfg.Limits
	check("limits.read_header_timeout", ol.ReadHeaderTimeout, nl.ReadHeaderTimeout)
	check("limits.idle_timeout", ol.IdleTimeout, nl.IdleTimeout)
	check("limits.max_header_bytes", ol.MaxHeaderBytes, nl.MaxHeaderBytes)
	check("tracing", old.Tracing, cfg.Tracing) // the TracerProvider is the process's
	return keys
}

// keepRestartOnly copies into cfg old's values of the settings a reload
// cannot change, so the swapped-in state matches what is running.
func keepRestartOnly(old, cfg *fileConfig) {
	cfg.Listen, cfg.Metrics, cfg.Log.Format = old.Listen, old.Metrics, old.Log.Format
	cfg.Session.Store, cfg.Session.Redis = old.Session.Store, old.Session.Redis
	cfg.Limits.ReadHeaderTimeout, cfg.Limits.IdleTimeout, cfg.Limits.MaxHeaderBytes = old.Limits.ReadHeaderTimeout, old.Limits.IdleTimeout, old.Limits.MaxHeaderBytes
	cfg.Tracing = old.Tracing
}

// reloader re-reads path on SIGHUP or when the file changes.
type reloader struct {
	path     string
	log      *slog.Logger
	level    *slog.LevelVar
	live     *live
	build    func(*fileConfig) (*state, error)
	interval time.Duration // of the file check; 0: watchInterval
	mu       sync.Mutex    // one reload at a time
}

// run reloads until ctx ends.
func (rl *reloader) run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	interval := rl.interval
	if interval <= 0 {
		interval = watchInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := fileStamp(rl.path)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			rl.log.Info("SIGHUP: reloading the configuration", "file", rl.path)
			last = fileStamp(rl.path)
			rl.reload()
		case <-tick.C:
			if st := fileStamp(rl.path); st != last {
				last = st
				rl.log.Info("the config file changed: reloading the configuration", "file", rl.path)
				rl.reload()
			}
		}
	}
}

// stamp identifies a version of a file: a Kubernetes ConfigMap update
// swaps a symlink, which os.Stat follows.
type stamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func fileStamp(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	st := stamp{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

// reload applies the file if it is valid, and reports whether it did.
func (rl *reloader) reload() bool {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	cfg, err := loadConfig(rl.path)
	if err != nil {
		rl.log.Error("configuration not reloaded: the file has errors; the running configuration stays", "file", rl.path,
			"errors", strings.Split(err.Error(), "\n"))
		return false
	}
	old := rl.live.cur.Load()
	if keys := restartOnly(old.cfg, cfg); len(keys) > 0 {
		rl.log.Warn("configuration reload: these settings change only at a restart; the running values stay", "keys", keys)
		keepRestartOnly(old.cfg, cfg)
	}
	st, err := rl.build(cfg)
	if err != nil {
		rl.log.Error("configuration not reloaded; the running configuration stays", "file", rl.path, "error", err.Error())
		return false
	}
	prev := rl.live.swap(st)
	if rl.level != nil {
		rl.level.Set(levelOf(cfg.Log.Level))
	}
	// Requests that began on prev finish on it; its session manager
	// (the cache's subscription) goes a while later.
	time.AfterFunc(retireAfter, prev.sessions.Close)
	rl.log.Info("configuration reloaded", "routes", len(cfg.Routes), "upstreams", len(cfg.Upstreams)+1)
	return true
}

// levelOf parses a validated log level.
func levelOf(s string) slog.Level {
	var level slog.Level
	_ = level.UnmarshalText([]byte(s))
	return level
}
