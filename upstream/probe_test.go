package upstream_test

import (
	"errors"
	"testing"

	"github.com/authgate/authgate/upstream"
	"github.com/authgate/authgate/upstream/upstreamtest"
)

// TestProbeClientAuth: a made-up code tells a working client registration
// (invalid_grant) from a wrong secret (invalid_client) and from a client
// that may not use the code flow (unauthorized_client), and redeems
// nothing.
func TestProbeClientAuth(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{Clients: []upstreamtest.Client{
		{ID: clientID, Secret: clientSecret},
		{ID: "machine", Secret: "machine-secret", GrantTypes: []string{"client_credentials"}},
	}})
	for _, tc := range []struct {
		name, id, secret string
		wantCode         string // "" means nil
	}{
		{"registered client", clientID, clientSecret, ""},
		{"wrong secret", clientID, "not-the-secret", "invalid_client"},
		{"unknown client", "nobody", clientSecret, "invalid_client"},
		{"client without the code flow", "machine", "machine-secret", "unauthorized_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configFor(srv)
			cfg.ClientID, cfg.ClientSecret = tc.id, upstream.Secret(tc.secret)
			err := newClient(t, cfg, upstream.Deps{}).ProbeClientAuth(ctx(t), redirectURI)
			var te *upstream.TokenError
			switch {
			case tc.wantCode == "" && err != nil:
				t.Errorf("got %v, want nil (invalid_grant for the made-up code)", err)
			case tc.wantCode != "" && (!errors.As(err, &te) || te.Code != tc.wantCode):
				t.Errorf("got %v, want a TokenError %s", err, tc.wantCode)
			}
		})
	}
	if n := srv.GrantCount("authorization_code"); n != 4 {
		t.Errorf("token endpoint saw %d authorization_code requests, want 4", n)
	}
}

// TestProbeClientAuthServerDown: an unreachable server is not a refusal.
func TestProbeClientAuthServerDown(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	c := newClient(t, configFor(srv), upstream.Deps{})
	if _, err := c.Metadata(ctx(t)); err != nil {
		t.Fatal(err)
	}
	srv.SetTokenEndpointDown(503)
	if err := c.ProbeClientAuth(ctx(t), redirectURI); err == nil || !errors.Is(err, upstream.ErrUnavailable) {
		t.Errorf("token endpoint down: got %v, want ErrUnavailable", err)
	}
}

// TestKeyCount counts the usable keys of the JWKS, fetched anew each time.
func TestKeyCount(t *testing.T) {
	srv := newServer(t, upstreamtest.Config{})
	c := newClient(t, configFor(srv), upstream.Deps{})
	if n, err := c.KeyCount(ctx(t)); n != 1 || err != nil {
		t.Errorf("KeyCount = %d, %v; want 1 key", n, err)
	}
	srv.RotateKeys()
	if n, err := c.KeyCount(ctx(t)); n != 2 || err != nil {
		t.Errorf("after a rotation KeyCount = %d, %v; want 2 keys", n, err)
	}
}
