package deploy

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

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
	// Trusting is a Traefik Middleware with trustForwardHeader: true.
	Trusting bool
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
		c := consumer{Obj: o, Address: fa.Address, Headers: fa.AuthResponseHeaders, Redirects: true, Trusting: fa.TrustForwardHeader}
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
		if c.Trusting {
			p.add(c.Obj, "forwardAuth.trustForwardHeader: want false (with true a client's own X-Forwarded-Uri could reach authgate and choose the path it decides for)")
		}
		if !cfg.ForwardAuth.Enabled {
			p.add(c.Obj, "the gateway's config lacks forward_auth.enabled: true (without it %s/auth does not exist)", cfg.prefix())
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
