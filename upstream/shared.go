package upstream

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Shared is what the Clients of one authorization server have in common:
// its metadata and its key set. Clients made with the same Shared (in
// Deps) and the same discovery settings (issuer, endpoint overrides,
// allow_insecure_http) discover and fetch keys once between them, however
// many upstreams, routes or client ids name that server. The zero value
// is ready; it is safe for concurrent use.
type Shared struct {
	mu      sync.Mutex
	servers map[string]*server
}

// server is one authorization server's published state: the metadata and
// the JWKS, with the back-off of a failed discovery.
type server struct {
	metaMu      sync.Mutex
	meta        *Metadata // nil until discovery succeeded
	metaFailed  time.Time // last failed discovery, for back-off
	metaErr     error
	metaFlights singleflight.Group
	keys        *keySet
}

// server returns the state c's discovery settings share, creating it with
// c as the client that fetches for all of them.
func (s *Shared) server(c *Client) *server {
	key := discoveryKey(c.cfg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if srv, ok := s.servers[key]; ok {
		return srv
	}
	srv := newServer(c)
	if s.servers == nil {
		s.servers = map[string]*server{}
	}
	s.servers[key] = srv
	return srv
}

func newServer(c *Client) *server {
	return &server{keys: newKeySet(c)}
}

// discoveryKey identifies the settings that decide what discovery and the
// key set return.
func discoveryKey(c Config) string {
	return strings.Join([]string{c.Issuer, c.AuthorizationEndpoint, c.TokenEndpoint, c.JWKSURI,
		c.UserinfoEndpoint, c.EndSessionEndpoint, c.RevocationEndpoint, c.IntrospectionEndpoint,
		strconv.FormatBool(c.AllowInsecureHTTP)}, "\x00")
}
