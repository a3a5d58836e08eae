package proxy

import (
	"cmp"
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// Forward-auth: an ingress (nginx auth_request, ingress-nginx auth-url,
// Traefik forwardAuth, Caddy forward_auth) asks Prefix + "/auth" before
// each request whether it may pass. The original request, read from the
// proxy's headers, goes through the same gate as a proxied one (route,
// public paths, caller credentials, session, refresh, policy); instead of
// the backend, the answer is 202 with the identity and the access token.
// nginx turns any status but 2xx, 401 and 403 into a 500 for the user, so
// the endpoint answers nothing else (SECURITY.md 42).

// forwardAuthKey marks, in a request's context, a request decided for
// forward-auth: the challenges answer the proxy instead of starting a
// login on the wrong host.
type forwardAuthKey struct{}

// forwardAuthReq is what a challenge needs to know of a forward-auth
// request.
type forwardAuthReq struct {
	redirect bool   // navigations get a 302 to the sign-in, not 401
	target   string // the original URL, absolute
}

func forwardAuthOf(r *http.Request) *forwardAuthReq {
	fa, _ := r.Context().Value(forwardAuthKey{}).(*forwardAuthReq)
	return fa
}

// noOriginalURI and noOriginalMethod are logged once: the proxy's
// configuration lacks a header.
var noOriginalURI, noOriginalMethod sync.Once

// forwardAuth serves Prefix + "/auth", for any method (nginx's subrequest
// keeps the original one) and without reading a body.
func (s *Server) forwardAuth(w http.ResponseWriter, r *http.Request) {
	if !s.trusted.fromTrustedProxy(r) {
		// Only the proxies that ask may hear the answer: it carries the
		// access token (config requires trusted_proxies).
		noStore(w.Header())
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var q url.Values
	if r.URL.RawQuery != "" { // most auth URLs have none: no map to build
		q = r.URL.Query()
	}
	fa := &forwardAuthReq{redirect: s.cfg.ForwardAuth.Redirect}
	switch q.Get("redirect") {
	case "true", "1":
		fa.redirect = true
	case "false", "0":
		fa.redirect = false
	}
	gw := &forwardAuthWriter{ResponseWriter: w, redirect: fa.redirect, signedIn: func() bool {
		sess, _, err := s.currentSession(r, s.providerFor(fa.target))
		return err == nil && sess != nil
	}}
	noStore(w.Header())
	if countCookies(r.Header) > s.cfg.Limits.MaxCookies {
		gw.WriteHeader(http.StatusUnauthorized)
		return
	}
	extra, ok := policyFromQuery(q)
	if !ok {
		s.log.WarnContext(r.Context(), "forward-auth: allowed_email_domains holds an address, not a domain: every request is refused; fix the auth URL the proxy calls")
		exchangeOf(r).reason = "auth_query"
		gw.WriteHeader(http.StatusForbidden)
		return
	}
	orig, target, ok := s.originalRequest(r)
	if !ok {
		// 401 sends the browser to a login, which cannot fix this
		// request: a signed-in user gets 403 (and keeps the session the
		// sign-in would replace).
		exchangeOf(r).reason = "original_request"
		gw.WriteHeader(http.StatusBadRequest) // 403 when signed in, else 401
		return
	}
	fa.target = target
	orig = orig.WithContext(context.WithValue(r.Context(), forwardAuthKey{}, fa))
	byCookie := orig.Header.Get("Authorization") == "" // gate removes it
	rt, sess, ok := s.gate(gw, orig)
	if !ok {
		return
	}
	// Every header a proxy may copy is in every 202, empty when there is
	// no value: a proxy that copies a header only when the answer has it
	// (Caddy, or a missing value) would let the client's own copy through
	// to the application (SECURITY.md 21).
	h := w.Header()
	passToken := on(s.cfg.ForwardAuth.PassAccessToken, true)
	if sess == nil { // a public path: allowed, no identity
		for _, k := range grantHeaders {
			h[k] = emptyValue
		}
		gw.grant()
		return
	}
	if !extra.permits(sess) {
		s.forbidden(gw, orig, rt, sess, byCookie && rt.cfg.Grant != GrantClientCredentials)
		return
	}
	v := injectedFor(sess)
	h["Authorization"] = v.authorization
	h["X-Auth-Request-Access-Token"] = emptyValue
	if passToken {
		h["X-Auth-Request-Access-Token"] = v.accessToken
	}
	identity := on(rt.cfg.IdentityHeaders, true)
	for _, hv := range [...]struct {
		k string
		v []string
	}{
		{"X-Auth-Request-User", v.user},
		{"X-Auth-Request-Email", v.email},
		{"X-Auth-Request-Preferred-Username", v.preferredUsername},
		{"X-Auth-Request-Groups", v.groups},
	} {
		if hv.v == nil || !identity {
			hv.v = emptyValue
		}
		h[hv.k] = hv.v
	}
	gw.grant()
}

// grantHeaders are the headers of a 202.
var grantHeaders = [...]string{"Authorization", "X-Auth-Request-Access-Token", "X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Preferred-Username", "X-Auth-Request-Groups"}

// emptyValue is an empty header value (shared: header maps replace, not
// append to, a value they set).
var emptyValue = []string{""}

// originalRequest rebuilds the request the proxy is asking about from
// X-Forwarded-Method/-Proto/-Host/-Uri (Traefik, Caddy), X-Original-URL
// and X-Original-Method (ingress-nginx) or X-Original-URI (nginx), sent
// by a trusted proxy: forwardAuth answers no one else (SECURITY.md 43).
//
// Each proxy sets its own headers but passes the client's others on (nginx
// copies every request header into its subrequest), so a client could add
// "X-Forwarded-Uri: /public/" to a request for /admin behind ingress-nginx.
// So all that are present must agree, as all readings of a path must
// (SECURITY.md 26): one header per name, the same URI, host, scheme and
// method in each, else the request is refused.
//
// The result shares r's headers: r goes nowhere else. target is its
// absolute URL, where a sign-in returns to.
func (s *Server) originalRequest(r *http.Request) (o *http.Request, target string, ok bool) {
	refuse := func(reason string) (*http.Request, string, bool) {
		s.log.DebugContext(r.Context(), "forward-auth: original request refused", "reason", reason)
		return nil, "", false
	}
	var c claims
	for _, k := range originalHeaders {
		if len(r.Header[k]) > 1 {
			return refuse(k + " sent more than once")
		}
	}
	h := r.Header
	c.add(&c.uri, h.Get("X-Forwarded-Uri"))
	if uri := h.Get("X-Original-Uri"); uri != "" {
		c.add(&c.uri, uri)
		// nginx's form: the subrequest keeps the original Host, which then
		// is a claim too (a client's X-Forwarded-Host must not pick another
		// host's route).
		c.add(&c.host, r.Host)
	}
	c.add(&c.host, h.Get("X-Forwarded-Host"))
	c.add(&c.scheme, h.Get("X-Forwarded-Proto"))
	c.add(&c.method, h.Get("X-Forwarded-Method"))
	c.add(&c.method, h.Get("X-Original-Method"))
	if full := h.Get("X-Original-Url"); full != "" {
		u, err := url.Parse(full)
		if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" || u.User != nil || u.Opaque != "" {
			return refuse("X-Original-URL is not an absolute http(s) URL")
		}
		// The request URI as sent: what follows the authority.
		rest := full[len(u.Scheme)+len("://"):]
		i := strings.IndexAny(rest, "/?")
		if i < 0 {
			return refuse("X-Original-URL has no path")
		}
		c.add(&c.uri, rest[i:])
		c.add(&c.host, u.Host)
		c.add(&c.scheme, u.Scheme)
	}
	if c.conflict != "" {
		return refuse("the proxy's headers disagree on the " + c.conflict)
	}
	uri := c.uri
	if uri == "" {
		noOriginalURI.Do(func() {
			s.log.WarnContext(r.Context(), "forward-auth request without X-Forwarded-Uri, X-Original-URL or X-Original-URI refused (401): make the proxy send the original URI, e.g. nginx: proxy_set_header X-Original-URI $request_uri;")
		})
		return refuse("no original URI")
	}
	if c.method == "" {
		noOriginalMethod.Do(func() {
			s.log.WarnContext(r.Context(), "forward-auth requests carry no X-Original-Method or X-Forwarded-Method: cross-site writes cannot be told from reads (nginx asks with GET whatever the method); add proxy_set_header X-Original-Method $request_method;")
		})
	}
	host := cmp.Or(c.host, r.Host)
	scheme := c.scheme
	if scheme != "http" && scheme != "https" {
		scheme = s.public.Scheme
	}
	// The proxies ask with GET (nginx's auth_request too) and name the
	// original method in a header. A question that is not a GET or HEAD
	// must agree with it.
	method := r.Method
	if c.method != "" {
		if method != http.MethodGet && method != http.MethodHead && !strings.EqualFold(c.method, method) {
			return refuse("the method headers disagree with the request's method")
		}
		method = strings.ToUpper(c.method)
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil || u.Host != "" || !validHost(host) {
		return refuse("malformed URI or host")
	}
	// The gateway's own endpoints are no application: a same-origin
	// script must not read the token by asking about them.
	if clean := cleanPath(u.Path); strings.HasPrefix(clean, s.endpoints) || clean == s.cfg.Prefix {
		return refuse("the URI is the gateway's own endpoint")
	}
	o = new(http.Request)
	*o = *r
	o.Method = method
	o.Host = host
	o.URL = u
	o.RequestURI = uri
	o.Body = http.NoBody
	o.ContentLength = 0
	return o, scheme + "://" + host + u.RequestURI(), true
}

// originalHeaders describe the original request of a forward-auth
// question (canonical names).
var originalHeaders = []string{"X-Forwarded-Uri", "X-Original-Uri", "X-Original-Url", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Method", "X-Original-Method"}

// claims gathers what the headers say of the original request; the first
// disagreement is kept in conflict.
type claims struct {
	uri, host, scheme, method string
	conflict                  string
}

func (c *claims) add(field *string, v string) {
	if v == "" {
		return
	}
	switch {
	case *field == "":
		*field = v
	case field == &c.uri && *field != v:
		c.conflict = "URI"
	case field == &c.host && !strings.EqualFold(hostname(*field), hostname(v)):
		c.conflict = "host"
	case (field == &c.scheme || field == &c.method) && !strings.EqualFold(*field, v):
		c.conflict = "scheme or method"
	}
}

// validHost accepts a Host header value: a name or address and an
// optional port, nothing that could smuggle a path or a user.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']', c == '_':
		default:
			return false
		}
	}
	return true
}

// policyFromQuery reads oauth2-proxy's per-ingress policy parameters:
// allowed_groups, allowed_emails, allowed_email_domains (comma-separated),
// applied on top of the route's allow.
func policyFromQuery(q url.Values) (*Allow, bool) {
	a := &Allow{
		Groups:       splitList(q["allowed_groups"]),
		Emails:       splitList(q["allowed_emails"]),
		EmailDomains: splitList(q["allowed_email_domains"]),
	}
	for _, d := range a.EmailDomains {
		if strings.Contains(d, "@") {
			return nil, false
		}
	}
	return a, true
}

func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
	}
	return out
}

// forwardAuthChallenge answers a forward-auth request that needs a login:
// 401 for nginx; for proxies that pass the answer to the browser, a
// navigation goes to the gateway's sign-in at the public URL (where the
// login's cookies belong), page names the sign-in endpoint ("/start" or
// "/login").
func (s *Server) forwardAuthChallenge(w http.ResponseWriter, r *http.Request, fa *forwardAuthReq, page string, wwwAuth string) error {
	target := fa.target
	switch {
	case s.safeRedirect(target) == "":
		s.warnTargetHost(r.Host, "add it to allowed_redirect_domains")
	case !strings.EqualFold(hostname(r.Host), s.public.Hostname()) && s.cookies.domain == "":
		s.warnTargetHost(r.Host, "the session cookie belongs to public_url's host alone; set session.cookie.domain to the parent domain both share")
	}
	if fa.redirect && isNavigation(r) {
		noStore(w.Header())
		http.Redirect(w, r, s.cfg.PublicURL+s.cfg.Prefix+page+"?rd="+url.QueryEscape(target), http.StatusFound)
		return nil
	}
	w.Header().Set("WWW-Authenticate", wwwAuth)
	w.WriteHeader(http.StatusUnauthorized)
	return nil
}

// warnTargetHost tells (the first 20 times in a process) that a login for a host cannot come
// back to it.
func (s *Server) warnTargetHost(host, problem string) {
	if targetHostWarnings.Add(1) > 20 {
		return // a client choosing Host values must not fill the log or memory
	}
	s.log.Warn("forward-auth: after sign-in the user cannot come back to this host: "+problem, "host", printable(truncate(hostname(host), 100)))
}

// targetHostWarnings counts the warnings warnTargetHost gave.
var targetHostWarnings atomic.Int64

// forwardAuthWriter keeps a forward-auth answer to what the proxy
// understands: 2xx only once the request is granted; for nginx, 401 or
// 403 for everything else (a store failure, a bad path, a throttled
// password: all "not allowed", with no body the proxy would mistake).
type forwardAuthWriter struct {
	http.ResponseWriter
	redirect bool // the answer goes to the browser: 3xx and error pages pass
	// signedIn tells a refusal that a login cannot fix (a bad path: 403)
	// from one it can (401).
	signedIn func() bool
	granted  bool
	wrote    bool
	drop     bool // the body belongs to a status that was replaced
}

func (w *forwardAuthWriter) grant() {
	w.granted = true
	w.WriteHeader(http.StatusAccepted)
}

func (w *forwardAuthWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	switch {
	case code == http.StatusAccepted && w.granted:
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
	case w.redirect && code >= 300:
	default:
		// Never a 2xx that was not granted; for nginx nothing but 401.
		h := w.Header()
		for _, k := range [...]string{"Location", "Retry-After", "Content-Type", "Content-Length"} {
			delete(h, k)
		}
		refused := 400 <= code && code < 500 && code != http.StatusTooManyRequests
		code, w.drop = http.StatusUnauthorized, true
		if refused && w.signedIn() {
			code = http.StatusForbidden
		}
	}
	if code != http.StatusAccepted {
		clearIdentity(w.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *forwardAuthWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.drop {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *forwardAuthWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// clearIdentity removes anything that could grant from a refusal: identity
// headers go only with a 2xx (SECURITY.md 43).
func clearIdentity(h http.Header) {
	for k := range h {
		if isIdentityHeader(k) {
			delete(h, k)
		}
	}
}
