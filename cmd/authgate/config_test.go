package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validSecret is base64 of 32 random bytes.
const validSecret = "q0dN1m3m0Q4y6V2Zr2n8f9G7kJ1pX5tB8cW3eR6yH0s="

const validConfig = `
public_url: "https://app.example.com"
upstream:
  issuer: "https://idp.example.com"
  client_id: "authgate"
  client_secret: "${TEST_CLIENT_SECRET}"
session:
  cookie:
    secret: "${TEST_COOKIE_SECRET}"
routes:
  - backend: "http://127.0.0.1:8080"
    grant: authorization_code
`

func env(extra map[string]string) func(string) (string, bool) {
	vars := map[string]string{"TEST_CLIENT_SECRET": "s3cr3t-client", "TEST_COOKIE_SECRET": validSecret}
	for k, v := range extra {
		vars[k] = v
	}
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestValidConfig(t *testing.T) {
	cfg, err := parseConfig([]byte(validConfig), env(nil))
	if err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	if cfg.Listen != ":4180" || cfg.Session.Cookie.Name != "_authgate" || cfg.Upstream.ClientSecret.Reveal() != "s3cr3t-client" {
		t.Errorf("defaults or expansion wrong: listen=%q cookie=%q", cfg.Listen, cfg.Session.Cookie.Name)
	}
	if len(cfg.Upstream.Scopes) != 3 || cfg.Session.IdleTimeout.Minutes() != 30 || cfg.Session.MaxLifetime.Hours() != 12 {
		t.Errorf("defaults: scopes=%v idle=%v max=%v", cfg.Upstream.Scopes, cfg.Session.IdleTimeout, cfg.Session.MaxLifetime)
	}
}

// TestSeveralUpstreamsConfig: upstreams: entries get upstream:'s defaults
// and routes may name them.
func TestSeveralUpstreamsConfig(t *testing.T) {
	yaml := strings.Replace(validConfig, "    grant: authorization_code", "    grant: authorization_code\n    upstream: customers", 1) +
		"upstreams:\n  customers:\n    issuer: \"https://login.customers.example\"\n    client_id: portal\n    client_secret: \"${TEST_CLIENT_SECRET}\"\n"
	cfg, err := parseConfig([]byte(yaml), env(nil))
	if err != nil {
		t.Fatalf("config with upstreams refused: %v", err)
	}
	c := cfg.Upstreams["customers"]
	if c.ClientID != "portal" || c.ClientSecret.Reveal() != "s3cr3t-client" || len(c.Scopes) != 3 || c.ClientAuth != "client_secret_basic" {
		t.Errorf("upstreams.customers: got client_id %q scopes %v client_auth %q; want portal, the default scopes, client_secret_basic", c.ClientID, c.Scopes, c.ClientAuth)
	}
	if cfg.Routes[0].Upstream != "customers" {
		t.Errorf("routes[0].upstream: got %q", cfg.Routes[0].Upstream)
	}
}

// TestAuthorizationParamsExpand: ${VAR} works inside map values too.
func TestAuthorizationParamsExpand(t *testing.T) {
	yaml := strings.Replace(validConfig, `  client_id: "authgate"`, `  client_id: "authgate"`+"\n  authorization_params:\n    audience: \"${TEST_AUDIENCE}\"\n    prompt: consent", 1)
	cfg, err := parseConfig([]byte(yaml), env(map[string]string{"TEST_AUDIENCE": "https://api.example.com"}))
	if err != nil {
		t.Fatalf("config refused: %v", err)
	}
	if got := cfg.Upstream.AuthorizationParams; got["audience"] != "https://api.example.com" || got["prompt"] != "consent" {
		t.Errorf("authorization_params = %v, want audience expanded and prompt kept", got)
	}
}

// TestExampleConfigIsValid keeps config.example.yaml honest.
func TestExampleConfigIsValid(t *testing.T) {
	data, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig(data, func(k string) (string, bool) {
		return map[string]string{"AUTHGATE_CLIENT_SECRET": "x", "AUTHGATE_COOKIE_SECRET": validSecret}[k], true
	})
	if err != nil {
		t.Fatalf("config.example.yaml does not validate:\n%v", err)
	}
	if cfg.Shutdown.DrainDelay != 0 || cfg.Shutdown.Grace != 25*time.Second {
		t.Errorf("example shutdown = %+v, want the defaults (drain_delay 0, grace 25s)", cfg.Shutdown)
	}
	if cfg.Session.Store != "redis" || len(cfg.Routes) != 3 || cfg.Routes[1].Grant != "client_credentials" || cfg.Routes[2].Grant != "password" {
		t.Errorf("example parsed oddly: store %q, %d routes, %+v", cfg.Session.Store, len(cfg.Routes), cfg.Upstream.AuthorizationParams)
	}
}

// TestExampleRedisModes keeps config.example.yaml's commented sentinel
// and cluster forms honest: each, uncommented in place of url, validates,
// its ${VAR} passwords expanded.
func TestExampleRedisModes(t *testing.T) {
	data, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"AUTHGATE_CLIENT_SECRET": "x", "AUTHGATE_COOKIE_SECRET": validSecret,
		"AUTHGATE_REDIS_PASSWORD": "redis-pw", "AUTHGATE_SENTINEL_PASSWORD": "sentinel-pw"}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for _, form := range []string{"sentinel", "cluster"} {
		t.Run(form, func(t *testing.T) {
			var out []string
			in := false
			for line := range strings.SplitSeq(string(data), "\n") {
				switch {
				case line == "    # "+form+":":
					in = true
					line = "    " + form + ":"
				case in && strings.HasPrefix(line, "    #   "):
					line = "      " + strings.TrimPrefix(line, "    #   ")
				case strings.HasPrefix(line, "    url: "):
					continue
				default:
					in = false
				}
				out = append(out, line)
			}
			cfg, err := parseConfig([]byte(strings.Join(out, "\n")), lookup)
			if err != nil {
				t.Fatalf("config.example.yaml with %s does not validate:\n%v", form, err)
			}
			r := cfg.Session.Redis
			switch {
			case r.URL != "":
				t.Errorf("url still set: %q", r.URL)
			case form == "sentinel" && (r.Sentinel == nil || r.Sentinel.MasterName == "" || len(r.Sentinel.Addrs) != 3 ||
				r.Sentinel.Password.Reveal() != "redis-pw" || r.Sentinel.SentinelPassword.Reveal() != "sentinel-pw"):
				t.Errorf("sentinel parsed as %+v", r.Sentinel)
			case form == "cluster" && (r.Cluster == nil || len(r.Cluster.Addrs) != 3 || r.Cluster.Password.Reveal() != "redis-pw"):
				t.Errorf("cluster parsed as %+v", r.Cluster)
			}
		})
	}
}

// TestBrokenConfigs: each broken file exits 2 before listening, naming the
// key path and the problem, and never printing a secret.
func TestBrokenConfigs(t *testing.T) {
	replace := func(old, new string) string {
		if !strings.Contains(validConfig, old) {
			t.Fatalf("test bug: %q not in the valid config", old)
		}
		return strings.Replace(validConfig, old, new, 1)
	}
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"not yaml", "routes: [\n", []string{"not valid YAML"}},
		{"empty", "", []string{"empty"}},
		{"unknown top-level key", validConfig + "lisen: \":1\"\n", []string{"lisen: unknown key", `did you mean "listen"`}},
		{"unknown nested key", replace("client_id:", "clent_id: x\n  client_id:"), []string{"upstream.clent_id: unknown key"}},
		{"unknown route key", replace("    grant:", "    backnd: x\n    grant:"), []string{"routes[0].backnd: unknown key"}},
		{"backend not absolute", replace(`"http://127.0.0.1:8080"`, `"127.0.0.1:8080"`), []string{"routes[0].backend: not an absolute URL"}},
		{"no backend", replace(`  - backend: "http://127.0.0.1:8080"`+"\n    grant:", "  - grant:"), []string{"routes[0].backend: required"}},
		{"backend without scheme", replace(`"http://127.0.0.1:8080"`, `"localhost:8080"`), []string{"routes[0].backend: not an absolute URL", "e.g. http://"}},
		{"backend without host", replace(`"http://127.0.0.1:8080"`, `"http://:8080"`), []string{"routes[0].backend: not an absolute URL"}},
		{"backend scheme", replace(`"http://127.0.0.1:8080"`, `"ftp://files.example.com/"`), []string{"routes[0].backend:", `scheme "ftp" not supported`}},
		{"public_url with a path", replace(`"https://app.example.com"`, `"https://app.example.com/app"`), []string{"public_url: must not have a path"}},
		{"match.host with IPv6 port", replace("  - backend:", "  - match: {host: \"[::1]:4180\"}\n    backend:"), []string{"routes[0].match.host:", "without a port"}},
		{"match.host with port", replace("  - backend:", "  - match: {host: \"app.example.com:443\"}\n    backend:"), []string{"routes[0].match.host:", "without a port"}},
		{"grant unknown", replace("grant: authorization_code", "grant: magic"), []string{"routes[0].grant: unknown grant"}},
		{"no public_url", replace(`public_url: "https://app.example.com"`, ""), []string{"public_url: required"}},
		{"public_url relative", replace(`"https://app.example.com"`, `"app.example.com"`), []string{"public_url: not an absolute"}},
		{"bad duration", replace("session:\n", "session:\n  idle_timeout: soon\n"), []string{"session.idle_timeout: must be a duration"}},
		{"list where map", replace("session:\n", "session:\n  cookie: [a]\n"), []string{"session.cookie: must not be a list"}},
		{"no routes", strings.Split(validConfig, "routes:")[0], []string{"routes: at least one route"}},
		{"unset env var", replace("${TEST_CLIENT_SECRET}", "${NOT_SET_ANYWHERE}"), []string{"upstream.client_secret: environment variable NOT_SET_ANYWHERE is not set"}},
		{"short cookie secret", replace("${TEST_COOKIE_SECRET}", "c2hvcnQ="), []string{"session.cookie.secret:"}},
		{"no client_id", replace(`  client_id: "authgate"`+"\n", ""), []string{"upstream.client_id: required"}},
		{"http issuer", replace(`"https://idp.example.com"`, `"http://idp.example.com"`), []string{"upstream.issuer: plain http"}},
		{"bad store", replace("session:\n", "session:\n  store: mongo\n"), []string{"session.store:"}},
		{"redis without url", replace("session:\n", "session:\n  store: redis\n"), []string{"session.redis.url:"}},
		{"sentinel without addrs", replace("session:\n", "session:\n  store: redis\n  redis: {sentinel: {master_name: m}}\n"), []string{"session.redis.sentinel.addrs: at least one host:port"}},
		{"url and cluster", replace("session:\n", "session:\n  store: redis\n  redis: {url: \"redis://h\", cluster: {addrs: [\"h:6379\"]}}\n"), []string{"session.redis.cluster: set together with url"}},
		{"cluster addr not host:port", replace("session:\n", "session:\n  store: redis\n  redis: {cluster: {addrs: [redis-0]}}\n"), []string{`session.redis.cluster.addrs[0]: "redis-0" is not a host:port`}},
		{"unknown sentinel key", replace("session:\n", "session:\n  store: redis\n  redis: {sentinel: {master_nam: m, addrs: [\"h:1\"]}}\n"), []string{"session.redis.sentinel.master_nam: unknown key", `did you mean "master_name"`}},
		{"unset sentinel password var", replace("session:\n", "session:\n  store: redis\n  redis: {sentinel: {master_name: m, addrs: [\"h:1\"], sentinel_password: \"${NOT_SET_ANYWHERE}\"}}\n"), []string{"session.redis.sentinel.sentinel_password: environment variable NOT_SET_ANYWHERE is not set"}},
		{"bad trusted proxy", validConfig + "trusted_proxies: [10.0.0.0/8, example.com]\n", []string{"trusted_proxies[1]:", "CIDR"}},
		{"bad login limit", validConfig + "limits:\n  logins_per_minute: -5\n", []string{"limits.logins_per_minute: must be positive"}},
		{"bad log level", validConfig + "log:\n  level: loud\n", []string{"log.level: must be"}},
		{"negative drain delay", validConfig + "shutdown:\n  drain_delay: -5s\n", []string{"shutdown.drain_delay: must not be negative"}},
		{"grace not a duration", validConfig + "shutdown: {grace: long}\n", []string{"shutdown.grace: must be a duration"}},
		{"shutdown typo", validConfig + "shutdown: {drain_dalay: 5s}\n", []string{"shutdown.drain_dalay: unknown key", `did you mean "drain_delay"`}},
		{"reserved authorization param", replace(`  client_id: "authgate"`, `  client_id: "authgate"`+"\n  authorization_params: {prompt: consent, redirect_uri: x}"), []string{"upstream.authorization_params.redirect_uri: is set by the gateway"}},
		{"authorization params not a map", replace(`  client_id: "authgate"`, `  client_id: "authgate"`+"\n  authorization_params: [prompt]"), []string{"upstream.authorization_params: must not be a list"}},
		{"unset env var in a map", replace(`  client_id: "authgate"`, `  client_id: "authgate"`+"\n  authorization_params: {audience: \"${NOT_SET_ANYWHERE}\"}"), []string{"upstream.authorization_params.audience: environment variable NOT_SET_ANYWHERE is not set"}},
		{"route client_id without a secret", replace("    grant: authorization_code", "    grant: client_credentials\n    client_id: orders"), []string{"routes[0].client_secret: required with client_id"}},
		{"allow on a client_credentials route", replace("    grant: authorization_code", "    grant: client_credentials\n    allow: {groups: [admins]}"), []string{"routes[0].allow:", "accept_bearer"}},
		{"unknown claims key", replace(`  client_id: "authgate"`, `  client_id: "authgate"`+"\n  claims: {usr: email}"), []string{"upstream.claims.usr: unknown key", `did you mean "user"`}},
		{"cookie domain not covering public_url", replace(`    secret: "${TEST_COOKIE_SECRET}"`, `    secret: "${TEST_COOKIE_SECRET}"`+"\n    domain: .example.org"), []string{"session.cookie.domain:", `does not cover public_url's host "app.example.com"`}},
		{"forward_auth typo", validConfig + "forward_auth: {redirekt: true}\n", []string{"forward_auth.redirekt: unknown key", `did you mean "redirect"`}},
		{"route naming an unknown upstream", replace("    grant: authorization_code", "    grant: authorization_code\n    upstream: customers"), []string{`routes[0].upstream: no upstream named "customers" under upstreams: (none are defined)`}},
		{"route naming a misspelt upstream", replace("    grant: authorization_code", "    grant: authorization_code\n    upstream: custmers") + "upstreams:\n  customers: {issuer: \"https://login.customers.example\", client_id: portal}\n", []string{`routes[0].upstream: no upstream named "custmers"`, "defined: customers"}},
		{"upstream named default", validConfig + "upstreams:\n  default: {issuer: \"https://idp.example.com\", client_id: x}\n", []string{"upstreams.default:", "names the upstream: section"}},
		{"bad upstream name", validConfig + "upstreams:\n  Customers.EU: {issuer: \"https://idp.example.com\", client_id: x}\n", []string{"upstreams.Customers.EU:", "not a valid upstream name"}},
		{"named upstream problems", validConfig + "upstreams:\n  customers: {issuer: \"http://login.customers.example\", client_secret: \"${NOT_SET_ANYWHERE}\"}\n", []string{"upstreams.customers.client_secret: environment variable NOT_SET_ANYWHERE is not set"}},
		{"named upstream invalid", validConfig + "upstreams:\n  customers: {issuer: \"http://login.customers.example\"}\n", []string{"upstreams.customers.issuer: plain http", "upstreams.customers.client_id: required"}},
		{"named upstream unknown key", validConfig + "upstreams:\n  customers: {isuer: \"https://login.customers.example\", client_id: x}\n", []string{"upstreams.customers.isuer: unknown key", `did you mean "issuer"`}},
		{"a secret in a key whose errors quote it", replace("    grant: authorization_code", "    grant: authorization_code\n    upstream: \"${TEST_CLIENT_SECRET}\""), []string{`routes[0].upstream:`, "(the value of $TEST_CLIENT_SECRET)"}},
		{"several problems at once", replace(`"http://127.0.0.1:8080"`, `"nope"`) + "lisen: x\n", []string{"lisen: unknown key", "routes[0].backend: not an absolute URL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("TEST_CLIENT_SECRET", "s3cr3t-client")
			t.Setenv("TEST_COOKIE_SECRET", validSecret)
			for _, cmd := range []string{"check", "serve"} {
				var stdout, stderr bytes.Buffer
				code := run(context.Background(), []string{cmd, "-config", path}, &stdout, &stderr)
				if code != 2 {
					t.Errorf("%s: exit %d, want 2; stderr:\n%s", cmd, code, stderr.String())
				}
				for _, w := range tc.want {
					if !strings.Contains(stderr.String(), w) {
						t.Errorf("%s: stderr lacks %q:\n%s", cmd, w, stderr.String())
					}
				}
				for _, secret := range []string{"s3cr3t-client", validSecret} {
					if strings.Contains(stderr.String(), secret) {
						t.Errorf("%s: stderr contains a secret value", cmd)
					}
				}
			}
		})
	}
}

// TestEveryErrorAtOnce: a file with an unknown key, an unset variable and
// a bad backend URL gets all three in one run (they once came in rounds:
// the backend only after the other two were fixed), each once, and
// nothing that merely repeats one of them.
func TestEveryErrorAtOnce(t *testing.T) {
	const file = `
public_url: "https://app.example.com"
upstream:
  issuer: "https://idp.example.com"
  clent_id: "authgate"
  client_id: "authgate"
  client_secret: "${TEST_CLIENT_SECRET}"
session:
  cookie:
    secret: "${UNSET_COOKIE_SECRET}"
routes:
  - backend: "127.0.0.1:8080"
    grant: authorization_code
`
	_, err := parseConfig([]byte(file), env(nil))
	if err == nil {
		t.Fatal("the broken file was accepted")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`upstream.clent_id: unknown key (line 5); did you mean "client_id"?`,
		"session.cookie.secret: environment variable UNSET_COOKIE_SECRET is not set",
		"routes[0].backend: not an absolute URL",
	}
	if len(got) != len(want) {
		t.Errorf("got %d errors, want %d:\n%s", len(got), len(want), err)
	}
	for i, w := range want {
		if i >= len(got) || !strings.HasPrefix(got[i], w) {
			t.Errorf("error %d: got %q, want it to start %q", i, got[min(i, len(got)-1)], w)
		}
	}
}

// TestFaultedKeysNotRepeated: a key whose value is already faulted (an
// unset variable, a wrong type, a list for a mapping) is not reported
// again by the validation of its empty value.
func TestFaultedKeysNotRepeated(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		want           string
	}{
		{"unset variable", "${TEST_COOKIE_SECRET}", "${UNSET_ANYWHERE}", "session.cookie.secret: environment variable UNSET_ANYWHERE is not set"},
		{"list for a mapping", "  cookie:\n    secret: \"${TEST_COOKIE_SECRET}\"\n", "  cookie: [a]\n", "session.cookie: must not be a list (line 8)"},
		{"wrong type", "session:\n", "session:\n  idle_timeout: soon\n", "session.idle_timeout: must be a duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validConfig, tc.old) {
				t.Fatalf("test bug: %q not in the valid config", tc.old)
			}
			_, err := parseConfig([]byte(strings.Replace(validConfig, tc.old, tc.new, 1)), env(nil))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v, want exactly one error starting %q", err, tc.want)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ok.yaml")
	os.WriteFile(path, []byte(validConfig), 0o600)
	t.Setenv("TEST_CLIENT_SECRET", "x")
	t.Setenv("TEST_COOKIE_SECRET", validSecret)
	for _, tc := range []struct {
		args []string
		env  string
		code int
		out  string
	}{
		{[]string{"check", "-config", path}, "", 0, "OK"},
		{[]string{"check"}, path, 0, "OK"}, // AUTHGATE_CONFIG
		{[]string{"check"}, "", 2, "no config file"},
		{[]string{"check", "-config", filepath.Join(dir, "missing.yaml")}, "", 2, "cannot read config file"},
		{[]string{"version"}, "", 0, "authgate"},
		{[]string{"frobnicate"}, "", 2, "unknown command"},
		{[]string{"-nope"}, "", 2, "flag provided but not defined"},
	} {
		t.Setenv("AUTHGATE_CONFIG", tc.env)
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.out) {
			t.Errorf("authgate %v: exit %d (want %d), output %q (want %q)", tc.args, code, tc.code, stdout.String()+stderr.String(), tc.out)
		}
	}
}
