package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// scenarios are the directories under kubernetes/, each applied with the
// ones it depends on.
var scenarios = map[string][]string{
	"redis":         nil,
	"sidecar":       {"redis"},
	"ingress-nginx": {"redis"},
	"traefik":       {"redis"},
}

// loadScenario reads a scenario's directory and its dependencies' into one
// set.
func loadScenario(t *testing.T, name string) *set {
	t.Helper()
	l := loadEdited(t, name, nil)
	if l.err != "" {
		t.Fatal(l.err)
	}
	return l.set
}

// loaded is a set, or the error reading it gave (for an edited scenario,
// a decode error is a caught break too).
type loaded struct {
	set *set
	err string
}

// loadEdited is loadScenario with edit, when not nil, changing a file's
// bytes first (the tests that prove the checks can fail).
func loadEdited(t *testing.T, name string, edit func(file string, data []byte) []byte) loaded {
	t.Helper()
	s := &set{Name: name}
	for _, dir := range append(slices.Clone(scenarios[name]), name) {
		files, err := filepath.Glob(filepath.Join("kubernetes", dir, "*.yaml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("kubernetes/%s: no manifests (%v)", dir, err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if edit != nil {
				data = edit(filepath.ToSlash(f), data)
			}
			objs, err := decodeObjects(filepath.ToSlash(f), data, "")
			if err != nil {
				return loaded{err: err.Error()}
			}
			s.Objects = append(s.Objects, objs...)
		}
	}
	return loaded{set: s}
}

// TestScenariosCoverDirectories fails when a directory under kubernetes/
// is not tested (or a .yml hides from the glob).
func TestScenariosCoverDirectories(t *testing.T) {
	entries, err := os.ReadDir("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := scenarios[e.Name()]; e.IsDir() && !ok {
			t.Errorf("kubernetes/%s is not in scenarios", e.Name())
		}
	}
	err = filepath.WalkDir("kubernetes", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(path, ".yaml") {
			t.Errorf("%s: manifests are *.yaml", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestManifests(t *testing.T) {
	for _, name := range sortedKeys(scenarios) {
		t.Run(name, func(t *testing.T) {
			s := loadScenario(t, name)
			for _, line := range checkSet(s).sorted() {
				t.Error(line)
			}
			if name != "redis" {
				checkGatewayConfigs(t, s)
			}
		})
	}
}

// TestManifestPlaceholdersDoNotRun pins that the Secrets shipped with
// placeholder values cannot be used as they are: authgate refuses the
// placeholder cookie secret.
func TestManifestPlaceholdersDoNotRun(t *testing.T) {
	for _, name := range []string{"sidecar", "ingress-nginx", "traefik"} {
		t.Run(name, func(t *testing.T) {
			s := loadScenario(t, name)
			var p problems
			for _, g := range gateways(s, &p) {
				env, ok := g.secretEnv(s)
				if !ok {
					t.Fatalf("%s: its env does not come from Secrets of the set", g.Ref)
				}
				out, err := authgateCheck(t, g.Config, env)
				if err == nil || !strings.Contains(out, "session.cookie.secret") {
					t.Errorf("%s with the shipped placeholder Secret: authgate check said %q (err %v), want a refusal of session.cookie.secret", g.Ref, out, err)
				}
			}
		})
	}
}

// TestManifestChecksCatch breaks the manifests in the ways the checks are
// there for, and wants each break reported: a check that cannot fail
// proves nothing.
func TestManifestChecksCatch(t *testing.T) {
	tests := []struct {
		name, scenario, file, old, new, want string
	}{
		{"Service selector typo", "ingress-nginx", "service.yaml", "selector:\n    app.kubernetes.io/name: authgate", "selector:\n    app.kubernetes.io/name: authgat", "matches no pod template"},
		{"targetPort name", "sidecar", "service.yaml", "targetPort: http", "targetPort: web", `targetPort "web"`},
		{"probe port name", "traefik", "deployment.yaml", "path: /readyz\n              port: http", "path: /readyz\n              port: htp", "readinessProbe port htp"},
		{"ConfigMap key", "ingress-nginx", "deployment.yaml", "- key: config.yaml", "- key: config.yml", `has no key "config.yml"`},
		{"Secret name", "sidecar", "deployment.yaml", "name: legacy-app-authgate\n                  key: REDIS_PASSWORD", "name: legacy-app-secrets\n                  key: REDIS_PASSWORD", `no Secret "legacy-app-secrets"`},
		{"Secret key", "ingress-nginx", "secret.yaml", "AUTHGATE_COOKIE_SECRET:", "AUTHGATE_COOKIE_SECRT:", `has no key "AUTHGATE_COOKIE_SECRET"`},
		{"PDB selector", "ingress-nginx", "deployment.yaml", "minAvailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: authgate", "minAvailable: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: authgat", "no PodDisruptionBudget selects its pods"},
		{"PDB blocking every eviction", "sidecar", "deployment.yaml", "minAvailable: 1", "minAvailable: 2", "leaves no disruption"},
		{"Deployment selector", "traefik", "deployment.yaml", "app.kubernetes.io/name: authgate\n  strategy:", "app.kubernetes.io/name: authgat\n  strategy:", "does not match the pod template's labels"},
		{"runAsNonRoot", "traefik", "deployment.yaml", "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot: want true"},
		{"readOnlyRootFilesystem", "redis", "statefulset.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem: want true"},
		{"capabilities", "sidecar", "deployment.yaml", `drop: ["ALL"]`, `drop: ["NET_RAW"]`, "capabilities.drop"},
		{"unknown field", "ingress-nginx", "deployment.yaml", "readinessProbe:", "readynessProbe:", "unknown field"},
		{"/oauth2/auth exposed by Prefix", "ingress-nginx", "ingress-auth.yaml", "path: /oauth2/start\n            pathType: Exact", "path: /oauth2\n            pathType: Prefix", "exposes /oauth2/auth"},
		{"/oauth2/auth exposed by Traefik", "traefik", "ingressroute-auth.yaml", "Path(`/oauth2/userinfo`)", "PathPrefix(`/oauth2/`)", "exposes /oauth2/auth"},
		{"login endpoint not routed", "ingress-nginx", "ingress-auth.yaml", "path: /oauth2/callback", "path: /oauth2/callbacks", "/oauth2/callback to the gateway"},
		{"auth-url path", "ingress-nginx", "ingress-app.yaml", "4180/oauth2/auth", "4180/oauth2/authz", "want /oauth2/auth"},
		{"auth-url port", "ingress-nginx", "ingress-app.yaml", "4180/oauth2/auth", "80/oauth2/auth", "port 80 is not a port"},
		{"response header", "traefik", "middleware.yaml", "- X-Auth-Request-Email\n", "", "lack X-Auth-Request-Email"},
		{"Traefik passing a client's X-Forwarded-*", "traefik", "middleware.yaml", "    trustForwardHeader: false", "    trustForwardHeader: true", "trustForwardHeader: want false"},
		{"forward-auth not enabled", "ingress-nginx", "configmap.yaml", "enabled: true", "enabled: false", "forward_auth.enabled: true"},
		{"Traefik without redirect", "traefik", "middleware.yaml", `auth?redirect=true"`, `auth"`, "redirect=true"},
		{"redis client label", "traefik", "deployment.yaml", `authgate-redis-client: "true"`, `authgate-redis-client: "yes"`, "do not admit the gateway's pods"},
		{"redis host", "sidecar", "configmap.yaml", "@redis.authgate.svc", "@redis.default.svc", "not a Service of this set"},
		{"env for ${VAR}", "sidecar", "deployment.yaml", "- name: REDIS_PASSWORD", "- name: REDIS_PASS", "references ${REDIS_PASSWORD}"},
		{"listen vs port", "ingress-nginx", "configmap.yaml", `listen: ":4180"`, `listen: ":8080"`, "listens on"},
		{"cookie domain", "traefik", "configmap.yaml", `domain: ".example.com"`, `domain: "auth.example.com"`, "does not cover both"},
		{"unprotected host", "ingress-nginx", "configmap.yaml", `host: "app2.example.com"`, `host: "app3.example.com"`, "app2.example.com (Ingress"},
		{"namespace", "sidecar", "service.yaml", "namespace: legacy", "namespace: legacy2", `namespace "legacy2" is not created`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edited := false
			s := loadEdited(t, tt.scenario, func(file string, data []byte) []byte {
				if filepath.Base(file) != tt.file || !strings.Contains(file, "/"+tt.scenario+"/") {
					return data
				}
				if !strings.Contains(string(data), tt.old) {
					t.Fatalf("%s does not contain %q any more: update this test", file, tt.old)
				}
				edited = true
				return []byte(strings.Replace(string(data), tt.old, tt.new, 1))
			})
			if !edited {
				t.Fatalf("kubernetes/%s/%s not found", tt.scenario, tt.file)
			}
			got := s.err
			if got == "" {
				got = strings.Join(checkSet(s.set), "\n")
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("after the edit the checks said:\n%s\nwant a line containing %q", got, tt.want)
			}
		})
	}
}
