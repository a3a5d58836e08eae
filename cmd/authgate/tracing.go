package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// defaultTracingEndpoint is where traces go when neither the file nor the
// environment names a receiver: a collector beside the gateway (an agent
// on the node, a sidecar), as the OTLP specification's default.
const defaultTracingEndpoint = "http://localhost:4318/v1/traces"

// tracingConfig is the `tracing:` section: OpenTelemetry traces of every
// request, exported over OTLP/HTTP (protobuf) to a collector. Each key
// left unset falls back on its standard OTEL_* environment variable, so
// a platform that sets those for every service needs no `tracing:`
// section at all. The OTLP exporter reads the rest of them itself:
// OTEL_EXPORTER_OTLP_HEADERS (a collector's credentials), _TIMEOUT,
// _COMPRESSION, _CERTIFICATE and their _TRACES_ forms, OTEL_BSP_*
// (the export queue) and OTEL_RESOURCE_ATTRIBUTES.
type tracingConfig struct {
	// Enabled turns tracing on (true) or off (false) whatever the
	// environment says. Unset: on when Endpoint is set; else on when
	// OTEL_TRACES_EXPORTER is "otlp", off when it is "none"; with neither,
	// on when OTEL_EXPORTER_OTLP_ENDPOINT or
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; else off.
	// OTEL_SDK_DISABLED=true turns tracing off in every case.
	Enabled *bool `yaml:"enabled"`
	// Endpoint is the URL of the collector's OTLP/HTTP receiver, e.g.
	// "http://otel-collector:4318": http:// sends in the clear, https://
	// over TLS. Without a path (or with "/") the signal's path /v1/traces
	// is added; any other path is used as it is. Unset:
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the whole URL), else
	// OTEL_EXPORTER_OTLP_ENDPOINT (a base URL; /v1/traces is added), else
	// http://localhost:4318/v1/traces.
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the share of the traces that begin at the gateway
	// which are recorded, from 0 to 1. A trace a trusted proxy began keeps
	// that proxy's decision (its traceparent's sampled flag), so one trace
	// is recorded whole or not at all. Unset: OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG, else 1 (every trace). 0: only the traces a
	// trusted proxy sampled.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName is the traces' service.name. Unset: OTEL_SERVICE_NAME,
	// else service.name in OTEL_RESOURCE_ATTRIBUTES, else "authgate".
	ServiceName string `yaml:"service_name"`
}

// on reports whether the file and the environment (lookup) turn tracing
// on, as Enabled's comment says.
func (c *tracingConfig) on(lookup func(string) (string, bool)) bool {
	if v, _ := lookup("OTEL_SDK_DISABLED"); strings.EqualFold(strings.TrimSpace(v), "true") {
		return false
	}
	if c.Enabled != nil {
		return *c.Enabled
	}
	if c.Endpoint != "" {
		return true
	}
	if v, ok := lookup("OTEL_TRACES_EXPORTER"); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v) == "otlp"
	}
	return envSet(lookup, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || envSet(lookup, "OTEL_EXPORTER_OTLP_ENDPOINT")
}

func envSet(lookup func(string) (string, bool), name string) bool {
	v, _ := lookup(name)
	return strings.TrimSpace(v) != ""
}

// validate reports every problem of the section and, when tracing is on,
// of the environment variables that would make the gateway export
// otherwise than configured. Errors name the key (tracing.endpoint) or
// the variable.
func (c *tracingConfig) validate(lookup func(string) (string, bool)) error {
	var errs []error
	if c.Endpoint != "" {
		if err := checkTracingURL(c.Endpoint); err != nil {
			errs = append(errs, fmt.Errorf("tracing.endpoint: %w", err))
		}
	}
	if r := c.SampleRatio; r != nil && !(*r >= 0 && *r <= 1) {
		errs = append(errs, fmt.Errorf("tracing.sample_ratio: must be from 0 to 1, got %v", *r))
	}
	if c.ServiceName != "" && strings.TrimSpace(c.ServiceName) != c.ServiceName {
		errs = append(errs, fmt.Errorf("tracing.service_name: has leading or trailing spaces"))
	}
	if v, ok := lookup("OTEL_TRACES_EXPORTER"); ok {
		if v := strings.TrimSpace(v); v != "" && v != "otlp" && v != "none" {
			errs = append(errs, fmt.Errorf("OTEL_TRACES_EXPORTER: authgate exports traces over OTLP only: set otlp or none, got %q", v))
		}
	}
	if !c.on(lookup) {
		return errors.Join(errs...)
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		if v, _ := lookup(name); strings.TrimSpace(v) != "" && strings.TrimSpace(v) != "http/protobuf" {
			errs = append(errs, fmt.Errorf("%s: authgate exports OTLP over HTTP (http/protobuf, the collector's port 4318) only, got %q", name, v))
		}
	}
	if c.Endpoint == "" {
		for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
			if v, _ := lookup(name); strings.TrimSpace(v) != "" {
				if err := checkTracingURL(strings.TrimSpace(v)); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// checkTracingURL checks a receiver's URL; the message never repeats the
// URL, which may carry credentials.
func checkTracingURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New(`must be an http:// or https:// URL such as "http://otel-collector:4318"`)
	}
	if u.User != nil {
		return errors.New("must not carry credentials in the URL: set OTEL_EXPORTER_OTLP_HEADERS")
	}
	return nil
}

// tracesURL is the receiver URL the exporter is given: the file's
// endpoint, with /v1/traces when it has no path; the default when neither
// the file nor the environment names one; "" when the environment does
// (the exporter reads it itself, with its own rules for the path).
func (c *tracingConfig) tracesURL(lookup func(string) (string, bool)) string {
	if c.Endpoint == "" {
		if envSet(lookup, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || envSet(lookup, "OTEL_EXPORTER_OTLP_ENDPOINT") {
			return ""
		}
		return defaultTracingEndpoint
	}
	u, _ := url.Parse(c.Endpoint) // validated
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String()
}

// startTracing builds the process's TracerProvider when c and the
// environment (lookup; the exporter reads os.Getenv itself) turn tracing
// on: spans are batched and exported by a goroutine of the SDK, and a
// full queue drops spans rather than slowing requests. It returns a nil
// provider when tracing is off, and the function that flushes and stops
// the exporter (flushTraces calls it on shutdown).
//
// The OpenTelemetry error handler is process-wide state; main, which owns
// the process, points it at log (export failures: a collector down or
// refusing), as it does go-redis's logger.
func startTracing(ctx context.Context, c tracingConfig, lookup func(string) (string, bool), log *slog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	if !c.on(lookup) {
		return nil, nil, nil
	}
	var opts []otlptracehttp.Option
	endpoint := c.tracesURL(lookup)
	if endpoint != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(endpoint))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: %w", err)
	}
	// Later detectors win: the file's service_name over OTEL_SERVICE_NAME
	// and OTEL_RESOURCE_ATTRIBUTES, those over the default. No host or
	// process detector: the command line names files and the host's
	// details are the collector's to add.
	detectors := []resource.Option{
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName("authgate"), semconv.ServiceVersion(buildVersion())),
		resource.WithFromEnv(),
	}
	if c.ServiceName != "" {
		detectors = append(detectors, resource.WithAttributes(semconv.ServiceName(c.ServiceName)))
	}
	res, err := resource.New(ctx, detectors...)
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES: what parsed is kept.
		log.Warn("tracing: resource attributes", "error", err.Error())
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithBatcher(exp), sdktrace.WithResource(res)}
	sampler := "OTEL_TRACES_SAMPLER (default parentbased_always_on)"
	if r := c.SampleRatio; r != nil {
		tpOpts = append(tpOpts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(*r))))
		sampler = fmt.Sprintf("parent-based, ratio %v", *r)
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: export failed; spans are dropped while the collector is unreachable", "error", err.Error())
	}))
	if endpoint == "" {
		endpoint = "from OTEL_EXPORTER_OTLP_*ENDPOINT"
	} else {
		endpoint = redactTracingURL(endpoint)
	}
	log.Info("tracing on", "endpoint", endpoint, "sampler", sampler)
	return tp, tp.Shutdown, nil
}

// redactTracingURL is a receiver URL for the log: no query.
func redactTracingURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	u.RawQuery, u.User = "", nil
	return u.String()
}
