package main

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/authgate/authgate/metrics"
	"github.com/authgate/authgate/proxy"
	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// fileConfig is the configuration file: the packages' Configs composed.
// Every key is declared once, in the package that uses it.
type fileConfig struct {
	proxy.Config `yaml:",inline"`
	// Metrics is the metrics listener (metrics_listen, metrics_pprof).
	Metrics metrics.Config `yaml:",inline"`
	// Log configures the process log.
	Log logConfig `yaml:"log"`
	// Upstream is the default authorization server: the routes that name
	// no other use it.
	Upstream upstream.Config `yaml:"upstream"`
	// Upstreams are further authorization servers by name, for the routes
	// whose `upstream` key names them; each has the keys of Upstream.
	Upstreams map[string]upstream.Config `yaml:"upstreams"`
	// Session is where sessions live and how the cookie is made.
	Session session.Config `yaml:"session"`
	// Shutdown is what SIGTERM does.
	Shutdown shutdownConfig `yaml:"shutdown"`
	// Tracing exports OpenTelemetry traces (off unless turned on here or
	// by the OTEL_* environment variables).
	Tracing tracingConfig `yaml:"tracing"`
}

// logConfig is the `log:` section.
type logConfig struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is text (default) or json.
	Format string `yaml:"format"`
}

func (c *logConfig) setDefaults() {
	if c.Level == "" {
		c.Level = "info"
	}
	if c.Format == "" {
		c.Format = "text"
	}
}

func (c *logConfig) validate() error {
	var errs []error
	switch c.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("level: must be debug, info, warn or error, got %q", c.Level))
	}
	if c.Format != "text" && c.Format != "json" {
		errs = append(errs, fmt.Errorf("format: must be text or json, got %q", c.Format))
	}
	return errors.Join(errs...)
}

// configError is a configuration problem; main exits 2 on it.
type configError struct{ errs []error }

func (e *configError) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

// loadConfig reads, expands, decodes, defaults and validates a config file.
// Every error names the key path (e.g. "routes[0].backend: not an absolute
// URL"); none contains a secret value.
func loadConfig(path string) (*fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &configError{[]error{fmt.Errorf("cannot read config file: %w", err)}}
	}
	return parseConfig(data, os.LookupEnv)
}

// parseConfig is loadConfig after the read; lookup resolves ${VAR}.
func parseConfig(data []byte, lookup func(string) (string, bool)) (*fileConfig, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &configError{[]error{fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))}}
	}
	if len(root.Content) == 0 {
		return nil, &configError{[]error{errors.New("the config file is empty (start from config.example.yaml)")}}
	}
	// Every problem of the file is reported in one run: the walker's
	// (unknown keys, unset variables, structure), the decoder's (types)
	// and the values' own. A key the walker or the decoder already faulted
	// holds an empty or partial value, so what validation says about it,
	// or about the keys under it, is left out: it would only repeat the
	// first error in other words.
	w := &walker{lookup: lookup, lines: map[int]string{}}
	w.walk(root.Content[0], reflect.TypeOf(fileConfig{}), "")
	cfg := &fileConfig{}
	if err := root.Content[0].Decode(cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, &configError{w.redact(append(w.errs, w.typeErrors(err)...))}
		}
		w.addErrs(w.typeErrors(err))
	}
	cfg.Config.SetDefaults()
	cfg.Log.setDefaults()
	cfg.Upstream.SetDefaults()
	for name, u := range cfg.Upstreams {
		u.SetDefaults()
		cfg.Upstreams[name] = u
	}
	cfg.Session.SetDefaults()
	cfg.Shutdown.setDefaults()
	var errs []error
	errs = appendPrefixed(errs, "", cfg.Config.Validate())
	errs = appendPrefixed(errs, "", cfg.Metrics.Validate())
	if l := cfg.Metrics.Listen; l != "" && l == cfg.Config.Listen {
		errs = append(errs, errors.New("metrics_listen: must differ from listen: /metrics is never served on the public listener"))
	}
	if !cfg.Config.Admin.Token.IsZero() && cfg.Metrics.Listen == "" {
		errs = append(errs, errors.New("admin.token: the admin API is served on metrics_listen only: set metrics_listen (e.g. \"127.0.0.1:9180\")"))
	}
	errs = appendPrefixed(errs, "log.", cfg.Log.validate())
	errs = appendPrefixed(errs, "upstream.", cfg.Upstream.Validate())
	errs = append(errs, cfg.validateUpstreams()...)
	errs = appendPrefixed(errs, "session.", cfg.Session.Validate())
	errs = appendPrefixed(errs, "shutdown.", cfg.Shutdown.validate())
	errs = appendPrefixed(errs, "", cfg.Tracing.validate(lookup))
	if err := cookieDomainCovers(cfg.Config.PublicURL, cfg.Session.Cookie.Domain); err != nil {
		errs = append(errs, err)
	}
	for _, err := range errs {
		if !w.faulted(keyPath(err.Error())) {
			w.errs = append(w.errs, err)
		}
	}
	if len(w.errs) > 0 {
		return nil, &configError{w.redact(w.errs)}
	}
	return cfg, nil
}

// validateUpstreams checks every entry of upstreams: and that each route's
// upstream key names one of them.
func (c *fileConfig) validateUpstreams() []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.Upstreams)) {
		if err := proxy.ValidUpstreamName(name); err != nil {
			errs = append(errs, fmt.Errorf("upstreams.%s: %w", name, err))
			continue
		}
		u := c.Upstreams[name]
		errs = appendPrefixed(errs, "upstreams."+name+".", u.Validate())
	}
	for i, rt := range c.Routes {
		if _, ok := c.Upstreams[rt.Upstream]; rt.Upstream != "" && !ok {
			defined := "none are defined"
			if len(c.Upstreams) > 0 {
				defined = "defined: " + strings.Join(slices.Sorted(maps.Keys(c.Upstreams)), ", ")
			}
			errs = append(errs, fmt.Errorf("routes[%d].upstream: no upstream named %q under upstreams: (%s)", i, rt.Upstream, defined))
		}
	}
	return errs
}

// keyPath is the key path an error message starts with ("routes[0].backend"
// of "routes[0].backend: not an absolute URL"), "" when it names none.
func keyPath(msg string) string {
	p, _, ok := strings.Cut(msg, ": ")
	if !ok || strings.ContainsAny(p, " \t") {
		return ""
	}
	return p
}

// cookieDomainCovers checks that browsers will keep a session cookie with
// Domain=domain set by public_url's host (RFC 6265 §5.3 step 6): the host
// is the domain or under it.
func cookieDomainCovers(publicURL, domain string) error {
	if domain == "" {
		return nil
	}
	u, err := url.Parse(publicURL)
	if err != nil || u.Hostname() == "" {
		return nil // public_url's own error says it
	}
	host, d := strings.ToLower(u.Hostname()), strings.ToLower(strings.TrimPrefix(domain, "."))
	if host == d || strings.HasSuffix(host, "."+d) {
		return nil
	}
	return fmt.Errorf("session.cookie.domain: %q does not cover public_url's host %q, so browsers would refuse the session cookie: use the parent domain the gateway and the applications share (e.g. \".example.com\" for auth.example.com and app.example.com), or leave it empty", domain, host)
}

// appendPrefixed flattens a (joined) error into errs, prefixing each.
func appendPrefixed(errs []error, prefix string, err error) []error {
	if err == nil {
		return errs
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			errs = appendPrefixed(errs, prefix, e)
		}
		return errs
	}
	return append(errs, fmt.Errorf("%s%w", prefix, err))
}

// walker checks a YAML tree against the config's Go types before decoding,
// so unknown keys are reported with their full path (yaml.v3 only gives a
// line and a Go type name), and expands ${VAR} in scalars.
type walker struct {
	lookup func(string) (string, bool)
	errs   []error
	// expanded maps the values ${VAR} supplied to the variables' names:
	// errors name the variable, never its value (a secret, often).
	expanded map[string]string
	lines    map[int]string // line → key path, to name the key in type errors
	// bad are the key paths with an error already: their values are
	// empty or partial.
	bad []string
}

// fail records an error about the key at path.
func (w *walker) fail(path string, err error) {
	w.errs = append(w.errs, err)
	w.bad = append(w.bad, path)
}

// addErrs records errors that start with their key path, once each.
func (w *walker) addErrs(errs []error) {
	for _, err := range errs {
		if p := keyPath(err.Error()); p == "" || !slices.Contains(w.bad, p) {
			w.fail(p, err)
		}
	}
}

// faulted reports whether path, or a key above it, has an error already.
func (w *walker) faulted(path string) bool {
	if path == "" {
		return false
	}
	for _, b := range w.bad {
		if b == "" {
			continue
		}
		if path == b || strings.HasPrefix(path, b) && (path[len(b)] == '.' || path[len(b)] == '[') {
			return true
		}
	}
	return false
}

var durationType = reflect.TypeOf(time.Duration(0))

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if path != "" {
		if _, ok := w.lines[n.Line]; !ok {
			w.lines[n.Line] = path
		}
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.ScalarNode:
		w.expand(n, path)
		if t.Kind() == reflect.Struct && t != durationType && n.Tag != "!!null" {
			w.fail(path, fmt.Errorf("%s: must be a mapping (line %d)", orTop(path), n.Line))
		}
	case yaml.MappingNode:
		if t.Kind() == reflect.Map {
			for i := 0; i+1 < len(n.Content); i += 2 {
				key, val := n.Content[i], n.Content[i+1]
				sub := join(path, key.Value)
				w.lines[key.Line] = sub
				w.walk(val, t.Elem(), sub)
			}
			return
		}
		if t.Kind() != reflect.Struct {
			if t.Kind() != reflect.Interface {
				w.fail(path, fmt.Errorf("%s: must not be a mapping (line %d)", orTop(path), n.Line))
			}
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			sub := join(path, key.Value)
			ft, ok := fields[key.Value]
			if !ok {
				w.fail(sub, fmt.Errorf("%s: unknown key (line %d)%s", sub, key.Line, suggest(key.Value, fields)))
				continue
			}
			w.lines[key.Line] = sub
			w.walk(val, ft, sub)
		}
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice {
			w.fail(path, fmt.Errorf("%s: must not be a list (line %d)", orTop(path), n.Line))
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), path+"["+strconv.Itoa(i)+"]")
		}
	}
}

// yamlFields maps the YAML keys of struct type t to their types, following
// ",inline" fields.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

// suggest names the closest known key when one is a likely typo.
func suggest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for k := range fields {
		if d := distance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// distance is the Levenshtein distance of two short strings.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// envRef matches ${NAME}; a bare $ is left alone, since secrets contain it.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand replaces ${VAR} in a scalar with the environment value. It works on
// parsed scalars, not the raw text, so a value cannot inject YAML structure.
func (w *walker) expand(n *yaml.Node, path string) {
	if !strings.Contains(n.Value, "${") {
		return
	}
	n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
		name := ref[2 : len(ref)-1]
		v, ok := w.lookup(name)
		if !ok {
			w.fail(path, fmt.Errorf("%s: environment variable %s is not set", orTop(path), name))
		}
		if len(v) >= 4 { // shorter ones would garble every message
			if w.expanded == nil {
				w.expanded = map[string]string{}
			}
			w.expanded[v] = name
		}
		return v
	})
	// Let the expanded text resolve as if written in place (a bool, a
	// duration, a string).
	n.Tag, n.Style = "", 0
}

// redact replaces, in each error, any value an environment variable
// supplied by that variable's name: a message may quote a key's value
// ("no upstream named ..."), and one set from the environment may be a
// secret put in the wrong place.
func (w *walker) redact(errs []error) []error {
	if len(w.expanded) == 0 {
		return errs
	}
	out := make([]error, len(errs))
	for i, err := range errs {
		msg := err.Error()
		for v, name := range w.expanded {
			msg = strings.ReplaceAll(msg, v, "(the value of $"+name+")")
		}
		out[i] = errors.New(msg)
	}
	return out
}

// wantedType turns yaml.v3's "cannot unmarshal X into T" into advice.
func wantedType(msg string) string {
	switch {
	case strings.HasSuffix(msg, "into time.Duration"):
		return "must be a duration such as 30s, 10m or 12h"
	case strings.HasSuffix(msg, "into bool"):
		return "must be true or false"
	case strings.HasSuffix(msg, "into int"):
		return "must be a whole number"
	case strings.Contains(msg, "into []"):
		return "must be a list"
	case strings.HasSuffix(msg, "into string"), strings.HasSuffix(msg, "into upstream.Secret"):
		return "must be a single value (quote it)"
	default:
		return "has the wrong type"
	}
}

// typeErrors rewrites yaml.v3's "line N: cannot unmarshal ..." with the key
// path of line N.
func (w *walker) typeErrors(err error) []error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []error{err}
	}
	var out []error
	for _, msg := range te.Errors {
		var line int
		if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
			if p, ok := w.lines[line]; ok {
				// Never echo the offending value: it may be a misplaced secret.
				out = append(out, fmt.Errorf("%s: %s (line %d)", p, wantedType(msg), line))
				continue
			}
		}
		out = append(out, errors.New(msg))
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orTop(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}
