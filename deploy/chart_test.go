package deploy

import (
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "helm/authgate"

// rendered is one rendering of the chart.
type rendered struct {
	*set
	// Notes is NOTES.txt as rendered.
	Notes string
}

// renderChart renders the chart with Helm's own engine, as helm install
// would (values coalesced over values.yaml, strict about missing values,
// no cluster: lookup finds nothing).
func renderChart(t *testing.T, release, namespace string, values map[string]any) (*rendered, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading %s: %v", chartDir, err)
	}
	vals, err := util.ToRenderValues(ch, values, common.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true, Revision: 1}, nil)
	if err != nil {
		return nil, err
	}
	files, err := engine.Engine{Strict: true}.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	r := &rendered{set: &set{Name: "chart " + release, Release: true}}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		base := path.Base(name)
		switch {
		case base == "NOTES.txt":
			r.Notes = files[name]
			continue
		case strings.HasPrefix(base, "_") || !strings.HasSuffix(base, ".yaml"):
			continue
		}
		objs, err := decodeObjects(name, []byte(files[name]), namespace)
		if err != nil {
			t.Fatal(err)
		}
		r.Objects = append(r.Objects, objs...)
	}
	return r, nil
}

// values parses a YAML literal into chart values.
func values(t *testing.T, y string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(y), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// forwardAuthValues is the chart as the forward-auth gateway of a cluster:
// everything on.
const forwardAuthValues = `
replicaCount: 3
secret:
  clientSecret: "s3cret"
config:
  public_url: "https://auth.example.com"
  allowed_redirect_domains: [".example.com"]
  trusted_proxies: ["10.244.0.0/16"]
  upstream:
    issuer: "https://idp.example.com/realms/main"
    client_id: "authgate"
  session:
    cookie: { domain: ".example.com" }
  forward_auth:
    enabled: true
    pass_access_token: false
    redirect: false
  routes:
    - match: { host: "app1.example.com" }
      backend: "http://app1.apps.svc.cluster.local"
      grant: authorization_code
      allow: { email_domains: ["example.com"] }
    - match: { host: "app2.example.com" }
      backend: "http://app2.apps.svc.cluster.local"
      grant: authorization_code
      allow: { groups: ["admins"] }
redis:
  enabled: true
ingress:
  enabled: true
  className: nginx
traefik:
  middleware:
    enabled: true
    namespace: apps
networkPolicy:
  enabled: true
  from:
    - namespaceSelector:
        matchLabels: { kubernetes.io/metadata.name: ingress-nginx }
serviceAccount:
  create: true
`

func TestChart(t *testing.T) {
	tests := []struct {
		name, release, namespace, values string
		// wantKinds are the kinds the rendering must hold.
		wantKinds []string
		// secretRuns: the rendered Secret's own values pass authgate
		// check (a generated cookie secret and Redis password have the
		// shape authgate wants).
		secretRuns bool
		// noCheck says why authgate check cannot run on this config.
		noCheck string
		// configLacks must not appear in the rendered config.
		configLacks string
	}{
		{name: "defaults", release: "authgate", namespace: "authgate",
			wantKinds: []string{"ConfigMap", "Deployment", "Secret", "Service"}},
		{name: "forward-auth", release: "sso", namespace: "auth", values: forwardAuthValues,
			wantKinds:  []string{"ConfigMap", "Deployment", "Ingress", "Middleware", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount", "StatefulSet"},
			secretRuns: true},
		{name: "rawConfig", release: "gw", namespace: "default", secretRuns: true, values: `
secret: { clientSecret: s3cret }
rawConfig: |
  listen: ":4180"
  public_url: "https://legacy.example.com"
  upstream:
    issuer: "https://idp.example.com"
    client_id: "legacy"
    client_secret: "${AUTHGATE_CLIENT_SECRET}"
  session:
    cookie: { secret: "${AUTHGATE_COOKIE_SECRET}" }
  routes:
    - backend: "http://127.0.0.1:8080"
      grant: authorization_code
`, wantKinds: []string{"ConfigMap", "Deployment", "Secret", "Service"}},
		{name: "workload identity", release: "orders", namespace: "shop", values: `
config:
  public_url: "https://orders.example.com"
  upstream:
    issuer: "https://sts.example.com"
    client_id: "system:serviceaccount:shop:orders-gateway"
    client_auth: private_key_jwt
    client_assertion_file: /var/run/secrets/tokens/idp
  routes:
    - backend: "http://orders.shop.svc.cluster.local"
      grant: client_credentials
extraVolumes:
  - name: idp-token
    projected:
      sources:
        - serviceAccountToken: { audience: "https://sts.example.com", expirationSeconds: 3600, path: idp }
extraVolumeMounts:
  - { name: idp-token, mountPath: /var/run/secrets/tokens, readOnly: true }
serviceAccount: { create: true, name: orders-gateway }
`, wantKinds: []string{"ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount"},
			noCheck:     "authgate check reads client_assertion_file, which only the pod has",
			configLacks: "client_secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := renderChart(t, tt.release, tt.namespace, values(t, tt.values))
			if err != nil {
				t.Fatalf("rendering: %v", err)
			}
			if got := kinds(r.set); !slices.Equal(got, tt.wantKinds) {
				t.Errorf("kinds: got %v, want %v", got, tt.wantKinds)
			}
			for _, line := range checkSet(r.set).sorted() {
				t.Error(line)
			}
			var p problems
			for _, g := range gateways(r.set, &p) {
				if tt.configLacks != "" && strings.Contains(g.Config, tt.configLacks) {
					t.Errorf("the config contains %q:\n%s", tt.configLacks, g.Config)
				}
			}
			if tt.noCheck != "" {
				t.Log("not run through authgate check: " + tt.noCheck)
				return
			}
			checkGatewayConfigs(t, r.set)
			for _, g := range gateways(r.set, &p) {
				env, ok := g.secretEnv(r.set)
				if !ok {
					t.Fatalf("%s: env not from the rendered Secret", g.Ref)
				}
				out, err := authgateCheck(t, g.Config, env)
				switch {
				case tt.secretRuns && err != nil:
					t.Errorf("with the rendered Secret's values: authgate check: %v\n%s", err, out)
				case !tt.secretRuns && (err == nil || !strings.Contains(out, "upstream.client_secret")):
					// Without secret.clientSecret the gateway must refuse to
					// start, not run as a public client.
					t.Errorf("without secret.clientSecret: authgate check said %q, want a refusal of upstream.client_secret", out)
				}
			}
			if !strings.Contains(r.Notes, "/oauth2/callback") {
				t.Errorf("NOTES.txt does not name the redirect URI:\n%s", r.Notes)
			}
		})
	}
}

func kinds(s *set) []string {
	seen := map[string]bool{}
	for _, o := range s.Objects {
		seen[o.Kind] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// TestChartExistingSecret: with existingSecret the chart creates no Secret
// and every reference names the given one.
func TestChartExistingSecret(t *testing.T) {
	r, err := renderChart(t, "authgate", "authgate", values(t, `
existingSecret: authgate-secrets
replicaCount: 2
redis: { enabled: true }
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.all("Secret"); len(got) != 0 {
		t.Fatalf("got Secrets %v, want none", got)
	}
	// The Secret the operator brings, with the keys the chart documents.
	r.Objects = append(r.Objects, &object{
		Source: "test", Meta: metaNamed("authgate-secrets", "authgate"),
		TypeMeta: typeMeta("v1", "Secret"),
		Typed: &corev1.Secret{StringData: map[string]string{
			"AUTHGATE_CLIENT_SECRET": "x", "AUTHGATE_COOKIE_SECRET": "x", "REDIS_PASSWORD": "x",
		}},
	})
	for _, line := range checkSet(r.set).sorted() {
		t.Error(line)
	}
	checkGatewayConfigs(t, r.set)
}

// TestChartRefuses: values that would deploy something broken or leak a
// secret into a ConfigMap fail the rendering, with a message naming the
// fix.
func TestChartRefuses(t *testing.T) {
	tests := []struct{ name, values, want string }{
		{"replicas without shared sessions", "replicaCount: 2", "replicaCount > 1 needs sessions shared"},
		{"client secret in the ConfigMap", "config: { upstream: { client_secret: x } }", "config.upstream.client_secret"},
		{"cookie secret in the ConfigMap", "config: { session: { cookie: { secret: x } } }", "config.session.cookie.secret"},
		{"NetworkPolicy without peers", "networkPolicy: { enabled: true }", "networkPolicy.from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderChart(t, "authgate", "authgate", values(t, tt.values))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestChartLint runs Helm's own chart linter (helm lint) on the defaults
// and the forward-auth values: no warning, no error.
func TestChartLint(t *testing.T) {
	for name, v := range map[string]string{"defaults": "", "forward-auth": forwardAuthValues} {
		t.Run(name, func(t *testing.T) {
			res := lint.RunAll(chartDir, values(t, v), "authgate")
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Error(m.Error())
				} else {
					t.Log(m.Error())
				}
			}
		})
	}
}

// TestChartMatchesManifests: the chart renders the kinds the manifests
// use, except the Namespaces (helm install --create-namespace) and the
// apps' IngressRoutes (the chart's Ingress serves the browser endpoints
// under Traefik too).
func TestChartMatchesManifests(t *testing.T) {
	manifestKinds := map[string]bool{}
	for name := range scenarios {
		for _, o := range loadScenario(t, name).Objects {
			manifestKinds[o.APIVersion+" "+o.Kind] = true
		}
	}
	delete(manifestKinds, "v1 Namespace")
	delete(manifestKinds, "traefik.io/v1alpha1 IngressRoute")
	r, err := renderChart(t, "authgate", "authgate", values(t, forwardAuthValues))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range r.Objects {
		delete(manifestKinds, o.APIVersion+" "+o.Kind)
	}
	missing := slices.Collect(maps.Keys(manifestKinds))
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the manifests use %v, which the chart never renders", missing)
	}
}
