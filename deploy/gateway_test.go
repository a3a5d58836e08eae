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
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The image's defaults (deploy/Dockerfile): where the config is read from
// when neither -config nor AUTHGATE_CONFIG says.
const defaultConfigPath = "/etc/authgate/config.yaml"

// forwardAuthHeaders are the headers a proxy must copy from the
// forward-auth answer into the request to the app.
var forwardAuthHeaders = []string{"Authorization", "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups", "X-Auth-Request-Preferred-Username"}

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

// domainCovers reports whether host is within pattern: "app.example.com"
// exactly, ".example.com" any subdomain (and, for cookies, the domain
// itself).
func domainCovers(pattern, host string) bool {
	if strings.HasPrefix(pattern, ".") {
		return strings.HasSuffix(host, pattern) || host == pattern[1:]
	}
	return strings.EqualFold(pattern, host)
}

// consumer is a proxy configuration that asks the gateway: an Ingress with
// auth-url, or a Traefik forwardAuth Middleware.
type consumer struct {
	Obj     *object
	Address string
	Headers []string
	// Hosts are the app hosts it protects.
	Hosts []string
	// Redirects is true when the proxy passes the answer to the browser
	// (Traefik), which must then be a redirect, not a 401.
	Redirects bool
	// SignIn is the ingress-nginx auth-signin URL.
	SignIn string
}

func consumers(s *set) []consumer {
	var out []consumer
	for _, o := range s.all("Ingress") {
		a := o.Meta.Annotations
		addr, ok := a["nginx.ingress.kubernetes.io/auth-url"]
		if !ok {
			continue
		}
		c := consumer{Obj: o, Address: addr, SignIn: a["nginx.ingress.kubernetes.io/auth-signin"]}
		for _, h := range strings.Split(a["nginx.ingress.kubernetes.io/auth-response-headers"], ",") {
			c.Headers = append(c.Headers, strings.TrimSpace(h))
		}
		for _, r := range o.Typed.(*networkingv1.Ingress).Spec.Rules {
			c.Hosts = append(c.Hosts, r.Host)
		}
		out = append(out, c)
	}
	for _, o := range s.all("Middleware") {
		fa := o.Typed.(*traefikMiddleware).Spec.ForwardAuth
		if fa == nil {
			continue
		}
		c := consumer{Obj: o, Address: fa.Address, Headers: fa.AuthResponseHeaders, Redirects: true}
		if !fa.TrustForwardHeader {
			c.Headers = nil // reported below
		}
		for _, ir := range s.all("IngressRoute") {
			for _, r := range ir.Typed.(*traefikIngressRoute).Spec.Routes {
				for _, m := range r.Middlewares {
					if m.Name == o.Meta.Name && (m.Namespace == o.Meta.Namespace || m.Namespace == "" && ir.Meta.Namespace == o.Meta.Namespace) {
						if rl, err := parseRule(r.Match); err == nil {
							c.Hosts = append(c.Hosts, rl.Hosts...)
						}
					}
				}
			}
		}
		if !fa.TrustForwardHeader {
			out = append(out, consumer{Obj: o, Address: "trustForwardHeader"})
			continue
		}
		out = append(out, c)
	}
	return out
}

// checkForwardAuth checks every proxy that asks g: the address is g's
// forward-auth endpoint through its Service, the identity and token
// headers are copied, the sign-in goes to g's public host, which routes the
// browser endpoints, and the config allows SSO for the protected hosts.
func checkForwardAuth(s *set, g gateway, p *problems) {
	cfg := &g.Parsed
	for _, c := range consumers(s) {
		if c.Address == "trustForwardHeader" {
			p.add(c.Obj, "forwardAuth.trustForwardHeader: want true (Traefik then passes the X-Forwarded-* its entry point trusts)")
			continue
		}
		u, err := url.Parse(c.Address)
		if err != nil {
			p.add(c.Obj, "address %q: %v", c.Address, err)
			continue
		}
		svcObj := s.serviceByHost(u.Hostname(), c.Obj.Meta.Namespace)
		if svcObj == nil || !servesGateway(svcObj, g) {
			continue // another gateway's, or reported by the check below
		}
		port := u.Port()
		if port == "" {
			port = "80"
		}
		n, _ := strconv.Atoi(port)
		if sp := servicePort(svcObj.Typed.(*corev1.Service), intstr.FromInt(n)); sp == nil {
			p.add(c.Obj, "address %q: port %s is not a port of %s", c.Address, port, svcObj)
		}
		if u.Scheme != "http" {
			p.add(c.Obj, "address %q: want http:// to the in-cluster Service", c.Address)
		}
		if u.Path != cfg.prefix()+"/auth" {
			p.add(c.Obj, "address path %q: want %s/auth", u.Path, cfg.prefix())
		}
		if c.Redirects && u.Query().Get("redirect") != "true" && !cfg.ForwardAuth.Redirect {
			p.add(c.Obj, "Traefik shows the answer to the browser: want ?redirect=true in the address (or forward_auth.redirect: true)")
		}
		for _, h := range forwardAuthHeaders {
			if !slices.ContainsFunc(c.Headers, func(got string) bool { return strings.EqualFold(got, h) }) {
				p.add(c.Obj, "the response headers copied to the app lack %s (got %v)", h, c.Headers)
			}
		}
		if c.SignIn == "" && !c.Redirects {
			p.add(c.Obj, "no auth-signin: a browser without a session would see a bare 401")
		}
		if c.SignIn != "" {
			su, err := url.Parse(c.SignIn)
			if err != nil || su.Scheme != "https" || su.Hostname() != cfg.publicHost() || su.Path != cfg.prefix()+"/start" || !strings.Contains(su.RawQuery, "rd=") {
				p.add(c.Obj, "auth-signin %q: want https://%s%s/start?rd=...", c.SignIn, cfg.publicHost(), cfg.prefix())
			}
		}
		if len(cfg.TrustedProxies) == 0 {
			p.add(g.Ref, "forward-auth without trusted_proxies: the original request's headers would be believed from anyone")
		}
		for _, h := range c.Hosts {
			if !slices.ContainsFunc(cfg.Routes, func(r struct {
				Match struct {
					Host string `json:"host"`
				} `json:"match"`
			}) bool {
				return r.Match.Host == "" || strings.EqualFold(r.Match.Host, h)
			}) {
				p.add(g.Ref, "protected host %s (%s) has no route in the config", h, c.Obj)
			}
			if h != cfg.publicHost() && !slices.ContainsFunc(cfg.AllowedRedirectDomains, func(d string) bool { return domainCovers(d, h) }) {
				p.add(g.Ref, "protected host %s is not in allowed_redirect_domains %v: the login could not return to it", h, cfg.AllowedRedirectDomains)
			}
			if d := cfg.Session.Cookie.Domain; h != cfg.publicHost() && (d == "" || !domainCovers(d, h) || !domainCovers(d, cfg.publicHost())) {
				p.add(g.Ref, "session.cookie.domain %q does not cover both %s and %s: the login at one would not be seen at the other", d, cfg.publicHost(), h)
			}
		}
		for _, ep := range browserEndpoints {
			if !routesTo(s, g, cfg.publicHost(), cfg.prefix()+ep) {
				p.add(g.Ref, "nothing routes https://%s%s%s to the gateway's Service", cfg.publicHost(), cfg.prefix(), ep)
			}
		}
	}
}

// routes calls f for each Ingress path and IngressRoute route that sends
// traffic to a Service of g, with a function telling whether a request for
// host and path takes it.
func routes(s *set, g gateway, f func(o *object, what string, match func(host, path string) bool)) {
	for _, o := range s.all("Ingress") {
		for _, r := range o.Typed.(*networkingv1.Ingress).Spec.Rules {
			if r.HTTP == nil {
				continue
			}
			for _, ip := range r.HTTP.Paths {
				if ip.Backend.Service == nil {
					continue
				}
				if svc := s.find("Service", o.Meta.Namespace, ip.Backend.Service.Name); svc == nil || !servesGateway(svc, g) {
					continue
				}
				host, ipPath, pt := r.Host, ip.Path, networkingv1.PathTypeImplementationSpecific
				if ip.PathType != nil {
					pt = *ip.PathType
				}
				f(o, string(pt)+" "+ipPath, func(h, reqPath string) bool {
					return (host == "" || strings.EqualFold(host, h)) && pathCovers(pt, ipPath, reqPath)
				})
			}
		}
	}
	for _, o := range s.all("IngressRoute") {
		for _, r := range o.Typed.(*traefikIngressRoute).Spec.Routes {
			rl, err := parseRule(r.Match)
			if err != nil {
				continue // checkTraefik reports it
			}
			for _, svcRef := range r.Services {
				ns := svcRef.Namespace
				if ns == "" {
					ns = o.Meta.Namespace
				}
				if svc := s.find("Service", ns, svcRef.Name); svc != nil && servesGateway(svc, g) {
					f(o, r.Match, rl.match)
				}
			}
		}
	}
}

// pathCovers reports whether an Ingress path of type pt takes reqPath.
// ImplementationSpecific counts as a plain string prefix, as nginx's
// location does.
func pathCovers(pt networkingv1.PathType, p, reqPath string) bool {
	switch pt {
	case networkingv1.PathTypeExact:
		return p == reqPath
	case networkingv1.PathTypePrefix:
		p = strings.TrimSuffix(p, "/")
		return p == "" || reqPath == p || strings.HasPrefix(reqPath, p+"/")
	default:
		return strings.HasPrefix(reqPath, p)
	}
}

func routesTo(s *set, g gateway, host, reqPath string) bool {
	found := false
	routes(s, g, func(_ *object, _ string, match func(string, string) bool) {
		found = found || match(host, reqPath)
	})
	return found
}

// checkNotExposed checks that no public route reaches the forward-auth
// endpoint: its answer carries the user's access token, which must never
// reach the browser; only the proxy may call it, in-cluster.
func checkNotExposed(s *set, g gateway, p *problems) {
	auth := g.Parsed.prefix() + "/auth"
	hosts := []string{g.Parsed.publicHost(), "any.invalid"}
	for _, c := range consumers(s) {
		hosts = append(hosts, c.Hosts...)
	}
	routes(s, g, func(o *object, what string, match func(string, string) bool) {
		for _, h := range hosts {
			if match(h, auth) || match(h, auth+"/") {
				p.add(o, "%s exposes %s on %s: the forward-auth answer carries the access token and must be reachable only in-cluster", what, auth, h)
				return
			}
		}
	})
}
