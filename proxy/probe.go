package proxy

import "github.com/authgate/authgate/upstream"

// RouteClient is the client a route uses at its authorization server, and
// what it asks for there: what `authgate check -online` probes.
type RouteClient struct {
	// Route is the route's index in Config.Routes.
	Route int
	// Grant is the route's grant.
	Grant string
	// Client is the route's client: the upstream's, or the route's own
	// client_id.
	Client *upstream.Client
	// ClientCredentials is the token request of a client_credentials
	// route; the zero value on other grants.
	ClientCredentials upstream.ClientCredentialsRequest
	// AcceptBearer is the route's accept_bearer: caller JWTs are verified
	// with the JWKS.
	AcceptBearer bool
	// RedirectURI is the redirect URI of the route's authorization server.
	RedirectURI string
}

// RouteClients lists the routes' clients, in route order.
func (s *Server) RouteClients() []RouteClient {
	out := make([]RouteClient, len(s.routes))
	for i, rt := range s.routes {
		out[i] = RouteClient{Route: rt.index, Grant: rt.cfg.Grant, Client: rt.up, AcceptBearer: rt.cfg.AcceptBearer, RedirectURI: s.redirectURI(rt.provider)}
		if rt.cfg.Grant == GrantClientCredentials {
			out[i].ClientCredentials = rt.machineRequest()
		}
	}
	return out
}

// RedirectURI is the OAuth redirect URI of the upstream named (""
// or DefaultUpstream for `upstream:`): public_url + prefix + "/callback",
// or + "/callback/<name>" for a named one; "" for an unknown name.
func (s *Server) RedirectURI(upstreamName string) string {
	if upstreamName == DefaultUpstream {
		upstreamName = ""
	}
	if p := s.provider(upstreamName); p != nil {
		return s.redirectURI(p)
	}
	return ""
}
