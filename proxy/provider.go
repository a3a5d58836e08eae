package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/authgate/authgate/session"
	"github.com/authgate/authgate/upstream"
)

// DefaultUpstream is how logs and /readyz name the `upstream:` section.
const DefaultUpstream = "default"

// maxUpstreamName bounds an upstream's name: it becomes part of a cookie
// name and of metrics labels.
const maxUpstreamName = 32

// ValidUpstreamName checks a key of `upstreams:`: lower-case letters,
// digits, "-" and "_", starting with a letter, at most 32 bytes, and not
// "default" (the name of the `upstream:` section).
func ValidUpstreamName(name string) error {
	if name == DefaultUpstream {
		return errors.New(`"default" names the upstream: section; leave the key out to use it, or pick another name`)
	}
	ok := name != "" && len(name) <= maxUpstreamName && name[0] >= 'a' && name[0] <= 'z'
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	if !ok {
		return fmt.Errorf("%q is not a valid upstream name: use lower-case letters, digits, - and _, starting with a letter, at most %d characters", name, maxUpstreamName)
	}
	return nil
}

// provider is one authorization server as the gateway's browser sessions
// see it: the upstream a route names, with the session cookie of the users
// it signed in. Each has its own cookie, so a user signed in at two
// servers holds two independent sessions (SECURITY.md 30).
type provider struct {
	// name is the key under `upstreams:`, "" for the default upstream.
	name   string
	up     *upstream.Client
	issuer string
	// cookie is the name of its session cookie.
	cookie string
	// callback is the path of its redirect URI under the prefix:
	// "/callback" for the default, "/callback/<name>" for the others. A
	// redirect URI of its own per server is the mix-up defence of RFC 9700
	// §4.4.2 for servers that send no "iss" (RFC 9207): a response that
	// arrives at another server's redirect URI than its login's is refused
	// before its code goes to any token endpoint.
	callback string
}

// label is the name logs and /readyz give the provider.
func (p *provider) label() string { return cmp.Or(p.name, DefaultUpstream) }

// owns reports whether sess was issued by this provider: its name and its
// issuer at login. Records of releases before several upstreams carry
// neither and belong to the default upstream.
func (p *provider) owns(sess *session.Session) bool {
	if sess.Upstream != p.name {
		return false
	}
	return sess.Issuer == p.issuer || sess.Issuer == "" && sess.Upstream == ""
}

// section is the config section that configures p.
func (p *provider) section() string {
	if p.name == "" {
		return "upstream"
	}
	return "upstreams." + p.name
}

// serverID names the authorization server cfg talks to, for cache keys:
// the issuer, or the endpoints of a server configured without one.
func serverID(cfg upstream.Config) string {
	if cfg.Issuer != "" {
		return cfg.Issuer
	}
	return cfg.TokenEndpoint + "\x00" + cfg.IntrospectionEndpoint
}

// stamp marks a new session as this provider's.
func (p *provider) stamp(sess *session.Session) {
	sess.Upstream, sess.Issuer = p.name, p.issuer
}

// newProviders makes the default provider and one per named upstream, in
// name order; cookie is the default session cookie's name.
func newProviders(def *upstream.Client, named map[string]*upstream.Client, cookie string) ([]*provider, error) {
	ps := []*provider{{up: def, issuer: def.Config().Issuer, cookie: cookie, callback: "/callback"}}
	names := slices.Sorted(maps.Keys(named))
	for _, n := range names {
		if err := ValidUpstreamName(n); err != nil {
			return nil, fmt.Errorf("upstreams.%s: %w", n, err)
		}
		if named[n] == nil {
			return nil, fmt.Errorf("upstreams.%s: no client", n)
		}
		// The cookie prefix (__Host-) goes before the whole name; "-"
		// keeps clear of the binding cookie's "_csrf".
		ps = append(ps, &provider{name: n, up: named[n], issuer: named[n].Config().Issuer, cookie: cookie + "-" + n, callback: "/callback/" + n})
	}
	return ps, nil
}

// provider returns the provider named name ("" the default), nil when none.
func (s *Server) provider(name string) *provider {
	for _, p := range s.providers {
		if p.name == name {
			return p
		}
	}
	return nil
}

// providerAt is the provider whose redirect URI is the endpoint name
// (the path after the prefix), nil when none.
func (s *Server) providerAt(name string) *provider {
	for _, p := range s.providers {
		if p.callback == name {
			return p
		}
	}
	return nil
}

// redirectURI is p's OAuth redirect URI: public_url + prefix + p.callback.
func (s *Server) redirectURI(p *provider) string { return s.cfg.PublicURL + s.cfg.Prefix + p.callback }

// providerFor is the provider a redirect target's route signs in with (for
// /oauth2/userinfo and sign-out): the route matching it, else the default.
func (s *Server) providerFor(rd string) *provider {
	target := s.safeRedirect(rd)
	if target == "" {
		target = "/"
	}
	if rt := s.routeFor(target); rt != nil && rt.cfg.Grant != GrantClientCredentials {
		return rt.provider
	}
	return s.providers[0]
}

// sessionCookies lists the names of every provider's session cookie.
func (s *Server) sessionCookies() []string {
	names := make([]string, len(s.providers))
	for i, p := range s.providers {
		names[i] = p.cookie
	}
	return names
}

// upstreamNames lists the named upstreams, for an error message.
func upstreamNames(named map[string]*upstream.Client) string {
	names := slices.Sorted(maps.Keys(named))
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
