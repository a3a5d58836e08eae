package metrics

import (
	"errors"
	"fmt"
	"net"
)

// Config is the metrics listener's part of the configuration file (its
// top level).
type Config struct {
	// Listen is the address of the metrics listener, e.g.
	// "127.0.0.1:9180" (or ":9180" in a pod, for the scraper): /metrics,
	// /healthz and /readyz. Never the public listener's address. Default
	// empty: no metrics listener (and no /metrics anywhere).
	Listen string `yaml:"metrics_listen"`
	// Pprof adds the Go profiler (net/http/pprof) under /debug/pprof/ on
	// the metrics listener, and only there. Default false. Profiles cost
	// CPU while they run and show the program's internals: keep the
	// listener on a private address.
	Pprof bool `yaml:"metrics_pprof"`
}

// Validate reports every problem in c, each prefixed with its key.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("metrics_listen: not a host:port address (e.g. \"127.0.0.1:9180\")"))
		}
	}
	if c.Pprof && c.Listen == "" {
		errs = append(errs, errors.New("metrics_pprof: needs metrics_listen (the profiler is served only there)"))
	}
	return errors.Join(errs...)
}
