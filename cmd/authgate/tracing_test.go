package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/authgate/authgate/upstream/upstreamtest"
)

// TestTracingSwitch: what turns tracing on and off, as tracing.enabled's
// comment and the README say.
func TestTracingSwitch(t *testing.T) {
	yes, no := true, false
	const endpoint = "http://127.0.0.1:4318"
	for _, tc := range []struct {
		name    string
		enabled *bool
		env     map[string]string
		want    bool
	}{
		{"nothing set", nil, nil, false},
		{"OTEL_EXPORTER_OTLP_ENDPOINT alone", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, true},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT alone", nil, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint + "/v1/traces"}, true},
		{"an empty endpoint variable", nil, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, false},
		{"OTEL_TRACES_EXPORTER=otlp", nil, map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{"OTEL_TRACES_EXPORTER=none beats an endpoint", nil, map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, false},
		{"enabled: true", &yes, nil, true},
		{"enabled: true beats OTEL_TRACES_EXPORTER=none", &yes, map[string]string{"OTEL_TRACES_EXPORTER": "none"}, true},
		{"enabled: false beats an endpoint", &no, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, false},
		{"tracing.endpoint alone", nil, map[string]string{"file endpoint": endpoint}, true},
		{"tracing.endpoint beats OTEL_TRACES_EXPORTER=none", nil, map[string]string{"file endpoint": endpoint, "OTEL_TRACES_EXPORTER": "none"}, true},
		{"OTEL_SDK_DISABLED beats enabled: true", &yes, map[string]string{"OTEL_SDK_DISABLED": "true"}, false},
	} {
		c := tracingConfig{Enabled: tc.enabled, Endpoint: tc.env["file endpoint"]}
		if got := c.on(env(tc.env)); got != tc.want {
			t.Errorf("%s: on = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestTracingConfig: the receiver URL each setting gives the exporter,
// and the errors of the section and of the environment, each naming its
// key or variable and never a URL's credentials.
func TestTracingConfig(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		env      map[string]string
		want     string
	}{
		{"http://collector:4318", nil, "http://collector:4318/v1/traces"},
		{"https://collector:4318/", nil, "https://collector:4318/v1/traces"},
		{"http://collector:4318/otlp/v1/traces", nil, "http://collector:4318/otlp/v1/traces"},
		{"http://collector:4318", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"}, "http://collector:4318/v1/traces"},
		{"", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"}, ""}, // the exporter reads it
		{"", nil, defaultTracingEndpoint},
	} {
		c := tracingConfig{Endpoint: tc.endpoint}
		if got := c.tracesURL(env(tc.env)); got != tc.want {
			t.Errorf("endpoint %q, env %v: exporter URL %q, want %q", tc.endpoint, tc.env, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		want       string
	}{
		{"endpoint without scheme", "tracing: {endpoint: \"collector:4318\"}\n", nil, "tracing.endpoint: must be an http:// or https:// URL"},
		{"endpoint with credentials", "tracing: {endpoint: \"http://user:hunter2-canary@collector:4318\"}\n", nil, "tracing.endpoint: must not carry credentials"},
		{"ratio above 1", "tracing: {sample_ratio: 1.5}\n", nil, "tracing.sample_ratio: must be from 0 to 1, got 1.5"},
		{"ratio negative", "tracing: {sample_ratio: -0.1}\n", nil, "tracing.sample_ratio: must be from 0 to 1"},
		{"typo", "tracing: {sample_rate: 0.5}\n", nil, `tracing.sample_rate: unknown key`},
		{"another exporter", "", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: authgate exports traces over OTLP only"},
		{"gRPC", "", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			"OTEL_EXPORTER_OTLP_PROTOCOL: authgate exports OTLP over HTTP (http/protobuf, the collector's port 4318) only"},
		{"bad environment endpoint", "", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: must be an http:// or https:// URL"},
	} {
		_, err := parseConfig([]byte(validConfig+tc.yaml), env(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2-canary") {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
	// gRPC settings do not matter while tracing is off.
	if _, err := parseConfig([]byte(validConfig), env(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})); err != nil {
		t.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=grpc with tracing off: %v", err)
	}
	ok := validConfig + "tracing: {enabled: true, endpoint: \"http://collector:4318\", sample_ratio: 0.25, service_name: edge-gw}\n"
	cfg, err := parseConfig([]byte(ok), env(nil))
	if err != nil || *cfg.Tracing.Enabled != true || *cfg.Tracing.SampleRatio != 0.25 || cfg.Tracing.ServiceName != "edge-gw" {
		t.Errorf("valid tracing section: %v %+v", err, cfg)
	}
}

// otlpReceiver is an OTLP/HTTP trace receiver, as a collector's: it
// decodes each export request's protobuf and keeps its spans with their
// resource's service.name.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []receivedSpan
}

type receivedSpan struct {
	service string
	span    *tracepb.Span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	o := &otlpReceiver{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, &req) != nil {
			t.Errorf("OTLP receiver: %s %s %s: not an export request", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		for _, rs := range req.ResourceSpans {
			service := value(rs.GetResource().GetAttributes(), "service.name")
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					o.spans = append(o.spans, receivedSpan{service, s})
				}
			}
		}
		o.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(o.Close)
	return o
}

// value is the attribute k of kvs as text.
func value(kvs []*commonpb.KeyValue, k string) string {
	for _, kv := range kvs {
		if kv.Key == k {
			switch v := kv.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				return v.StringValue
			case *commonpb.AnyValue_IntValue:
				return fmt.Sprint(v.IntValue)
			}
		}
	}
	return ""
}

// find returns the received span whose request id is id.
func (o *otlpReceiver) find(id string) (receivedSpan, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.spans {
		if value(s.span.Attributes, "authgate.request_id") == id {
			return s, true
		}
	}
	return receivedSpan{}, false
}

// TestServeExportsTraces: `authgate serve` exports its spans over OTLP/HTTP
// to a receiver named by OTEL_EXPORTER_OTLP_ENDPOINT alone, or by the
// tracing section alone, and flushes them at shutdown: the export queue's
// delay is a minute here, so only the shutdown's flush can deliver them
// during the test. The request's span carries its route, status and
// request id and none of its query or cookie; the access log names its
// trace.
func TestServeExportsTraces(t *testing.T) {
	idp := upstreamtest.NewServer(upstreamtest.Config{})
	t.Cleanup(idp.Close)
	for _, tc := range []struct {
		name, extra, service string
		env                  map[string]string
	}{
		{"OTEL_EXPORTER_OTLP_ENDPOINT alone", "", "authgate", nil},
		{"the tracing section alone", "tracing: {endpoint: \"%s\", service_name: edge-gw, sample_ratio: 1}", "edge-gw", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recv := newOTLPReceiver(t)
			t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
			if tc.env == nil {
				t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			extra := tc.extra
			if strings.Contains(extra, "%s") {
				extra = fmt.Sprintf(extra, recv.URL)
			}
			public, _, logs, stop := startServe(t, idp.URL, extra)
			req, _ := http.NewRequest(http.MethodGet, public+"/x?q=query-canary-3e3e", nil)
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Cookie", "_authgate=cookie-canary-4f4f")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			id := resp.Header.Get("X-Request-Id")
			time.Sleep(200 * time.Millisecond)
			if _, ok := recv.find(id); ok {
				t.Fatal("the span was exported before the shutdown: the test proves nothing of the flush")
			}
			stop()
			got, ok := recv.find(id)
			if !ok {
				t.Fatalf("no span with request id %s reached the receiver; logs:\n%s", id, logs)
			}
			s := got.span
			if s.Name != "0" || s.Kind != tracepb.Span_SPAN_KIND_SERVER || got.service != tc.service ||
				value(s.Attributes, "http.response.status_code") != "401" || value(s.Attributes, "http.route") != "/" {
				t.Errorf("span %q kind %v of service %q, attributes %v", s.Name, s.Kind, got.service, s.Attributes)
			}
			for _, kv := range s.Attributes {
				if v := kv.String(); strings.Contains(v, "canary") {
					t.Errorf("span attribute %s", v)
				}
			}
			tid := fmt.Sprintf("%x", s.TraceId)
			if !strings.Contains(logs.String(), "request_id="+id+" trace_id="+tid) {
				t.Errorf("no access log line with request_id=%s trace_id=%s:\n%s", id, tid, logs)
			}
			if !strings.Contains(logs.String(), "msg=\"tracing on\"") {
				t.Errorf("no start-up line saying tracing is on:\n%s", logs)
			}
		})
	}
}

// TestExampleTracingSection: config.example.yaml's tracing keys, which it
// shows commented out (set, they would turn tracing on), are valid once
// uncommented, and each is documented there.
func TestExampleTracingSection(t *testing.T) {
	data, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, key := range []string{"enabled", "endpoint", "sample_ratio", "service_name"} {
		commented := "\n  # " + key + ": "
		if !strings.Contains(text, commented) {
			t.Fatalf("config.example.yaml does not show tracing.%s", key)
		}
		text = strings.Replace(text, commented, "\n  "+key+": ", 1)
	}
	cfg, err := parseConfig([]byte(text), func(k string) (string, bool) {
		return map[string]string{"AUTHGATE_CLIENT_SECRET": "x", "AUTHGATE_COOKIE_SECRET": validSecret}[k], true
	})
	if err != nil {
		t.Fatalf("the uncommented tracing section does not validate:\n%v", err)
	}
	if c := cfg.Tracing; c.Enabled == nil || !*c.Enabled || c.Endpoint == "" || c.SampleRatio == nil || c.ServiceName != "authgate" {
		t.Errorf("the example's tracing section parsed as %+v", c)
	}
}

// TestTracingNeedsRestart: the TracerProvider is the process's, so a
// reload that changes the tracing section says it needs a restart and
// keeps the running one.
func TestTracingNeedsRestart(t *testing.T) {
	old, cfg := &fileConfig{}, &fileConfig{Tracing: tracingConfig{Endpoint: "http://collector:4318"}}
	if keys := restartOnly(old, cfg); !slices.Contains(keys, "tracing") {
		t.Errorf("restart-only keys of a tracing change: %q, want tracing", keys)
	}
	keepRestartOnly(old, cfg)
	if cfg.Tracing.Endpoint != "" || len(restartOnly(old, cfg)) != 0 {
		t.Errorf("after keepRestartOnly: tracing %+v", cfg.Tracing)
	}
}
