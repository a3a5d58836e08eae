package deploy

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The image's defaults (deploy/Dockerfile): where the config is read from
// when neither -config nor AUTHGATE_CONFIG says.
const defaultConfigPath = "/etc/authgate/config.yaml"

// forwardAuthHeaders are the headers a proxy must copy from the
// forward-auth answer into the request to the app.
var forwardAuthHeaders = []string{"Authorization", "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups", "X-Auth-Request-Preferred-Username", "X-Auth-Request-Access-Token"}

// browserEndpoints are what the public host must route to the gateway for
// logins to work.
var browserEndpoints = []string{"/start", "/callback", "/sign_out"}

// gateway is an authgate container and the config it runs with.
type gateway struct {
	W   workload
	C   *corev1.Container
	Ref containerRef
	// Config is the config.yaml text from its ConfigMap.
	Config string
	// Vars are the ${VAR} references in Config.
	Vars []string
	// Parsed is Config with dummy values for Vars, decoded leniently for
	// the cross-checks (authgate check does the strict part).
	Parsed gatewayConfig
}

// gatewayConfig is the part of authgate's config file the cross-checks
// read.
type gatewayConfig struct {
	Listen                 string   `json:"listen"`
	PublicURL              string   `json:"public_url"`
	Prefix                 string   `json:"prefix"`
	AllowedRedirectDomains []string `json:"allowed_redirect_domains"`
	TrustedProxies         []string `json:"trusted_proxies"`
	Session                struct {
		Store string `json:"store"`
		Redis struct {
			URL string `json:"url"`
		} `json:"redis"`
		Cookie struct {
			Domain string `json:"domain"`
		} `json:"cookie"`
	} `json:"session"`
	ForwardAuth struct {
		Enabled  bool `json:"enabled"`
		Redirect bool `json:"redirect"`
	} `json:"forward_auth"`
	Routes []struct {
		Match struct {
			Host string `json:"host"`
		} `json:"match"`
	} `json:"routes"`
}

func (c *gatewayConfig) prefix() string {
	if c.Prefix == "" {
		return "/oauth2"
	}
	return strings.TrimSuffix(c.Prefix, "/")
}

func (c *gatewayConfig) publicHost() string {
	u, err := url.Parse(c.PublicURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// envRef is authgate's ${NAME} syntax (cmd/authgate/config.go).
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// dummyValue returns a value of the shape authgate wants for the variable:
// the cookie secret must be base64 of 32 random bytes; the rest may appear
// in URLs (a Redis password), so hex.
func dummyValue(name string) string {
	b := make([]byte, 32)
	rand.Read(b)
	if strings.Contains(name, "COOKIE_SECRET") {
		return base64.StdEncoding.EncodeToString(b)
	}
	return hex.EncodeToString(b[:16])
}

// dummyEnv gives every ${VAR} of the gateway's config a dummy value.
func (g *gateway) dummyEnv() map[string]string {
	env := map[string]string{}
	for _, v := range g.Vars {
		env[v] = dummyValue(v)
	}
	return env
}

// secretEnv gives every ${VAR} the value the pod would get: a literal, or
// the Secret's value in s. ok is false when one comes from elsewhere.
func (g *gateway) secretEnv(s *set) (env map[string]string, ok bool) {
	env = map[string]string{}
	for _, name := range g.Vars {
		for _, e := range g.C.Env {
			if e.Name != name {
				continue
			}
			switch {
			case e.ValueFrom == nil:
				env[name] = e.Value
			case e.ValueFrom.SecretKeyRef != nil:
				sec := s.find("Secret", g.W.Namespace(), e.ValueFrom.SecretKeyRef.Name)
				if sec == nil {
					return nil, false
				}
				env[name], _ = secretValue(sec, e.ValueFrom.SecretKeyRef.Key)
			default:
				return nil, false
			}
		}
	}
	return env, true
}

// gateways finds the authgate containers of s (by container name) and
// reads their config; what cannot be read is a problem.
func gateways(s *set, p *problems) []gateway {
	var out []gateway
	for _, w := range s.workloads() {
		c := w.container("authgate")
		if c == nil {
			continue
		}
		g := gateway{W: w, C: c, Ref: containerRef{w.Obj, c.Name}}
		text, ok := configText(s, g, p)
		if !ok {
			continue
		}
		g.Config = text
		seen := map[string]bool{}
		for _, m := range envRef.FindAllStringSubmatch(text, -1) {
			if !seen[m[1]] {
				seen[m[1]] = true
				g.Vars = append(g.Vars, m[1])
			}
		}
		env := g.dummyEnv()
		expanded := envRef.ReplaceAllStringFunc(text, func(ref string) string { return env[ref[2:len(ref)-1]] })
		if err := yaml.Unmarshal([]byte(expanded), &g.Parsed); err != nil {
			p.add(g.Ref, "config.yaml: %v", err)
			continue
		}
		out = append(out, g)
	}
	return out
}

// configText finds the file the container reads its config from and
// returns it from the ConfigMap mounted there.
func configText(s *set, g gateway, p *problems) (string, bool) {
	file := defaultConfigPath
	for _, e := range g.C.Env {
		if e.Name == "AUTHGATE_CONFIG" && e.ValueFrom == nil {
			file = e.Value
		}
	}
	for i, a := range g.C.Args {
		if a == "-config" && i+1 < len(g.C.Args) {
			file = g.C.Args[i+1]
		} else if v, ok := strings.CutPrefix(a, "-config="); ok {
			file = v
		}
	}
	for _, m := range g.C.VolumeMounts {
		var key string
		switch {
		case m.SubPath != "" && m.MountPath == file:
			key = m.SubPath
		case m.SubPath == "" && path.Dir(file) == path.Clean(m.MountPath):
			key = path.Base(file)
		default:
			continue
		}
		for _, v := range g.W.Template.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.ConfigMap == nil {
				p.add(g.Ref, "%s comes from volume %q, which is not a ConfigMap", file, v.Name)
				return "", false
			}
			for _, it := range v.ConfigMap.Items {
				if it.Path == key {
					key = it.Key
				}
			}
			if key != "config.yaml" {
				p.add(g.Ref, "%s comes from ConfigMap key %q, want config.yaml", file, key)
			}
			cm := s.find("ConfigMap", g.W.Namespace(), v.ConfigMap.Name)
			if cm == nil {
				return "", false // checkVolume reports it
			}
			text, ok := cm.Typed.(*corev1.ConfigMap).Data[key]
			if !ok {
				p.add(g.Ref, "ConfigMap %q has no key %q for %s", v.ConfigMap.Name, key, file)
			}
			return text, ok
		}
	}
	p.add(g.Ref, "no ConfigMap mounted at %s", file)
	return "", false
}

// checkGateways checks each authgate container against its config and the
// objects around it: probes, ports, secrets, the session store, and the
// forward-auth wiring.
func checkGateways(s *set, p *problems) {
	for _, g := range gateways(s, p) {
		c, cfg := g.C, &g.Parsed
		if !strings.Contains(c.Image, "authgate") {
			p.add(g.Ref, "image %q is not authgate's", c.Image)
		}
		if g.C.Args != nil && g.C.Args[0] != "serve" {
			p.add(g.Ref, "args %v: want serve first", g.C.Args)
		}
		_, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			p.add(g.Ref, "config listen %q: %v", cfg.Listen, err)
		}
		var http *corev1.ContainerPort
		for i := range c.Ports {
			if c.Ports[i].Name == "http" {
				http = &c.Ports[i]
			}
		}
		if http == nil {
			p.add(g.Ref, "no container port named http")
		} else if strconv.Itoa(int(http.ContainerPort)) != port {
			p.add(g.Ref, "container port http is %d, but the config listens on %q", http.ContainerPort, cfg.Listen)
		}
		for _, pr := range []struct {
			kind, path string
			probe      *corev1.Probe
		}{{"livenessProbe", "/healthz", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
			switch {
			case pr.probe == nil || pr.probe.HTTPGet == nil:
				p.add(g.Ref, "%s: want httpGet %s", pr.kind, pr.path)
			case pr.probe.HTTPGet.Path != pr.path:
				p.add(g.Ref, "%s path %q: want %s", pr.kind, pr.probe.HTTPGet.Path, pr.path)
			case pr.probe.HTTPGet.Port.Type != intstr.String:
				p.add(g.Ref, "%s: want a named port, got %s", pr.kind, pr.probe.HTTPGet.Port.String())
			}
		}
		for _, v := range g.Vars {
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == v }) {
				p.add(g.Ref, "config.yaml references ${%s}, which the container's env does not set (authgate would refuse to start)", v)
			}
		}
		if g.W.Replicas > 1 && cfg.Session.Store != "redis" {
			p.add(g.Ref, "%d replicas with session store %q: sessions must be shared (redis)", g.W.Replicas, cfg.Session.Store)
		}
		if cfg.Session.Store == "redis" {
			checkRedisReach(s, g, p)
		}
		checkForwardAuth(s, g, p)
		checkNotExposed(s, g, p)
	}
}

// serviceByHost resolves an in-cluster DNS name (name, name.ns,
// name.ns.svc, name.ns.svc.cluster.local) to a Service in s.
func (s *set) serviceByHost(host, fromNS string) *object {
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	ns := fromNS
	switch {
	case len(parts) == 1:
	case len(parts) == 2, len(parts) == 3 && parts[2] == "svc", len(parts) == 5 && strings.Join(parts[2:], ".") == "svc.cluster.local":
		ns = parts[1]
	default:
		return nil
	}
	return s.find("Service", ns, parts[0])
}

// servesGateway reports whether the Service sends traffic to g's pods.
func servesGateway(svcObj *object, g gateway) bool {
	svc := svcObj.Typed.(*corev1.Service)
	return svcObj.Meta.Namespace == g.W.Namespace() && len(svc.Spec.Selector) > 0 &&
		labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(g.W.Template.Labels))
}

// checkRedisReach checks that the Redis URL names a Service of the set and
// that its NetworkPolicies let the gateway's pods in.
func checkRedisReach(s *set, g gateway, p *problems) {
	u, err := url.Parse(g.Parsed.Session.Redis.URL)
	if err != nil || u.Hostname() == "" {
		p.add(g.Ref, "session.redis.url is not a URL with a host")
		return
	}
	svcObj := s.serviceByHost(u.Hostname(), g.W.Namespace())
	if svcObj == nil {
		p.add(g.Ref, "session.redis.url host %q is not a Service of this set", u.Hostname())
		return
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	n, _ := strconv.Atoi(port)
	sp := servicePort(svcObj.Typed.(*corev1.Service), intstr.FromInt(n))
	if sp == nil {
		p.add(g.Ref, "session.redis.url port %s is not a port of %s", port, svcObj)
		return
	}
	for _, w := range s.selected(svcObj.Meta.Namespace, labels.SelectorFromSet(svcObj.Typed.(*corev1.Service).Spec.Selector)) {
		if !admits(s, w, g.W, sp.TargetPort.String()) {
			p.add(g.Ref, "the NetworkPolicies of %s do not admit the gateway's pods (labels %v) to port %s", w.Obj, g.W.Template.Labels, sp.TargetPort.String())
		}
	}
}
