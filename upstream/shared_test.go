package upstream_test

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// Clients of one server made with one Shared discover it and fetch its keys
// once between them, whatever their client ids; a Client of another
// server, or one whose endpoints are configured differently, does not share.
func TestSharedDiscoveryAndKeys(t *testing.T) {
	clk := newClock()
	srv := newServer(t, upstreamtest.Config{Now: clk.Now})
	other := newServer(t, upstreamtest.Config{Now: clk.Now})
	shared := &upstream.Shared{}
	deps := upstream.Deps{Now: clk.Now, Shared: shared}
	a := newClient(t, configFor(srv), deps)
	bcfg := configFor(srv)
	bcfg.ClientID = "portal"
	b := newClient(t, bcfg, deps)
	c := newClient(t, configFor(other), deps)
	overridden := configFor(srv)
	overridden.JWKSURI = srv.URL + "/jwks?v=2"
	d := newClient(t, overridden, deps)

	claims := func(s *upstreamtest.Server, aud string) jwt.MapClaims {
		now := clk.Now()
		return jwt.MapClaims{"iss": s.Issuer(), "sub": "user-alice", "aud": aud, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "nonce": testNonce}
	}
	verify := func(cl *upstream.Client, s *upstreamtest.Server, aud string) {
		t.Helper()
		raw, err := s.Sign(claims(s, aud))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.VerifyIDToken(ctx(t), upstream.Secret(raw), testNonce, ""); err != nil {
			t.Fatalf("VerifyIDToken: %v", err)
		}
	}
	verify(a, srv, clientID)
	verify(b, srv, "portal")
	verify(d, srv, clientID)
	verify(c, other, clientID)
	if got := srv.Count("discovery"); got != 2 {
		t.Errorf("discovery requests to the shared server: got %d, want 2 (a and b share one, d's jwks_uri differs)", got)
	}
	if got := srv.Count("jwks"); got != 2 {
		t.Errorf("JWKS requests to the shared server: got %d, want 2", got)
	}
	if got := other.Count("discovery"); got != 1 {
		t.Errorf("discovery requests to the other server: got %d, want 1", got)
	}
}
